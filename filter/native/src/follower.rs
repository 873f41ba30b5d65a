//! The process's one compiled program, and the thread that keeps it current: it long-polls
//! control (`control_client`), compiles each new snapshot once and swaps it in atomically, so
//! every worker thread decides with the same program from its next request on, with no copy per
//! worker and no Envoy shared data.
//!
//! The same fail-closed rules as the wasm filter's relay: until the first snapshot the program
//! is not in sync (503, connections closed); a snapshot that does not decode is logged and
//! refused, and the program in force stays; when control goes away the last good program stays
//! and polls are retried every `retry_interval`. A refused version is sent back as the version
//! held, so control long-polls instead of resending it, as long as the program it was refused
//! over is still in force.

use crate::control_client::{self, Address, Answer, PollError};
use alp_engine::{envelope, Engine, Options};
use alp_filter::host::Level;
use alp_filter::vm_state::ProcessEngine;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most one failure line per this interval (the rest are counted).
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Where the follower's log lines go (Envoy's log in the module).
pub type Logger = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// What a follower follows, and how it compiles: followers are shared by every filter
/// configuration with equal settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowSettings {
    pub address: Address,
    pub poll_timeout: Duration,
    pub retry_interval: Duration,
    pub options: Options,
}

/// Counts and times for the metrics (`alp_snapshot_*`).
#[derive(Debug, Default)]
pub struct FollowStats {
    /// Snapshots installed.
    pub reloads: AtomicU64,
    /// Snapshots refused.
    pub refusals: AtomicU64,
    /// When the program in force was received (ms since the Unix epoch; 0: none yet).
    pub received_ms: AtomicU64,
}

/// The compiled program in force, shared by every worker thread.
#[derive(Debug)]
pub struct Follower {
    settings: FollowSettings,
    engine: ArcSwap<Engine>,
    pub stats: FollowStats,
}

impl ProcessEngine for Follower {
    fn current(&self) -> Arc<Engine> {
        self.engine.load_full()
    }
}

impl Follower {
    /// A follower that has nothing yet; [`spawn`](Self::spawn) starts its thread.
    pub fn new(settings: FollowSettings) -> Arc<Follower> {
        Arc::new(Follower {
            settings,
            engine: ArcSwap::from_pointee(Engine::not_in_sync()),
            stats: FollowStats::default(),
        })
    }

    pub fn settings(&self) -> &FollowSettings {
        &self.settings
    }

    /// Starts following control on a thread of its own. The thread holds only a weak
    /// reference: once every configuration using this follower is gone it ends after its
    /// current poll.
    pub fn spawn(self: &Arc<Self>, log: Logger) -> std::io::Result<()> {
        let weak = Arc::downgrade(self);
        let address = self.settings.address.clone();
        std::thread::Builder::new()
            .name("calico-alp-follow".to_string())
            .spawn(move || {
                let mut state = PollState::default();
                loop {
                    let Some(follower) = weak.upgrade() else {
                        return;
                    };
                    let have = state.have(&follower);
                    let wait = follower.settings.poll_timeout;
                    // The poll blocks for up to `wait`; the follower is not kept alive meanwhile.
                    drop(follower);
                    let answer = control_client::poll(&address, have, wait);
                    let Some(follower) = weak.upgrade() else {
                        return;
                    };
                    let pause = follower.take(&mut state, answer, &*log);
                    drop(follower);
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
            })
            .map(|_| ())
    }

    /// Acts on one poll's result; returns how long to wait before the next poll.
    pub(crate) fn take(
        &self,
        state: &mut PollState,
        answer: Result<Answer, PollError>,
        log: &(dyn Fn(Level, &str) + Send + Sync),
    ) -> Duration {
        let retry = self.settings.retry_interval;
        match answer {
            Ok(Answer::Snapshot { body, version }) => {
                state.recovered(log);
                self.install(state, &body, version, log)
            }
            Ok(Answer::Unchanged) => {
                state.recovered(log);
                Duration::ZERO
            }
            Ok(Answer::Status(status)) => {
                state.failed(self, &format!("control answered HTTP {status}"), log);
                retry
            }
            Err(err) => {
                state.failed(self, &err.to_string(), log);
                retry
            }
        }
    }

    fn install(
        &self,
        state: &mut PollState,
        body: &[u8],
        header_version: Option<u64>,
        log: &(dyn Fn(Level, &str) + Send + Sync),
    ) -> Duration {
        match envelope::decode(body) {
            Ok((version, snapshot)) => {
                let engine = Engine::from_snapshot_with(version, &snapshot, &self.settings.options);
                drop(snapshot);
                self.engine.store(Arc::new(engine));
                self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                self.stats.received_ms.store(now_ms(), Ordering::Relaxed);
                state.refused = None;
                log(
                    Level::Info,
                    &format!("policy version {version} installed ({} bytes)", body.len()),
                );
                Duration::ZERO
            }
            Err(err) => {
                self.stats.refusals.fetch_add(1, Ordering::Relaxed);
                let version = envelope::peek_version(body).ok().or(header_version);
                let named = version.map_or_else(
                    || "of unknown version".to_string(),
                    |v| format!("version {v}"),
                );
                log(
                    Level::Warn,
                    &format!(
                        "refused policy {named} from control: {err}; keeping {}",
                        self.describe()
                    ),
                );
                state.refused = version.map(|version| Refused {
                    version,
                    over: self.current().version(),
                });
                self.settings.retry_interval
            }
        }
    }

    /// `version N` or `no policy`, for log lines.
    fn describe(&self) -> String {
        match self.current().version() {
            Some(v) => format!("version {v}"),
            None => "no policy (requests get 503)".to_string(),
        }
    }
}

/// A version control sent that could not be decoded, and the version in force then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    version: u64,
    over: Option<u64>,
}

/// What the polling thread remembers between polls.
#[derive(Debug, Default)]
pub(crate) struct PollState {
    refused: Option<Refused>,
    failures: u64,
    last_logged: Option<std::time::Instant>,
    suppressed: u64,
}

impl PollState {
    /// The version to send as held: the one in force, or one refused over it.
    pub(crate) fn have(&self, follower: &Follower) -> u64 {
        let current = follower.current().version();
        match self.refused {
            Some(r) if r.over == current => r.version,
            _ => current.unwrap_or(0),
        }
    }

    fn failed(
        &mut self,
        follower: &Follower,
        what: &str,
        log: &(dyn Fn(Level, &str) + Send + Sync),
    ) {
        self.failures += 1;
        let due = self
            .last_logged
            .is_none_or(|t| t.elapsed() >= FAILURE_LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            return;
        }
        let mut line = format!(
            "policy poll to control at {} failed: {what}; retrying every {} ms, keeping {}",
            follower.settings.address,
            follower.settings.retry_interval.as_millis(),
            follower.describe()
        );
        if self.suppressed > 0 {
            line.push_str(&format!(
                " ({} more failures since the last report)",
                self.suppressed
            ));
        }
        log(Level::Warn, &line);
        self.last_logged = Some(std::time::Instant::now());
        self.suppressed = 0;
    }

    fn recovered(&mut self, log: &(dyn Fn(Level, &str) + Send + Sync)) {
        if self.failures > 0 {
            log(
                Level::Info,
                &format!(
                    "control reachable again after {} failed polls",
                    self.failures
                ),
            );
            self.failures = 0;
            self.last_logged = None;
            self.suppressed = 0;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;

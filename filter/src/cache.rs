//! The VM's compiled snapshot and how it follows shared data.
//!
//! Shared data (one map per Envoy `vm_id`, process-wide):
//! * `alp.snapshot`: the envelope bytes (`alp_engine::envelope`) of the newest snapshot;
//! * `alp.received`: when the fetcher received it from control, 8 bytes little-endian, ms since
//!   the Unix epoch (the snapshot age gauge), written before `alp.version`;
//! * `alp.version`: its version, 8 bytes little-endian, written *after* `alp.snapshot`, so a
//!   reader that sees a version finds that snapshot or a newer one.
//!
//! Every tick reads only `alp.version`, and so does the request path, at most once per
//! [`RECHECK_MS`] (a clock read costs a fraction of a shared-data read, which copies into the VM);
//! the snapshot is copied out, decoded and compiled once per version in each VM that serves (a
//! VM that has not created a context, such as Envoy's main-thread VMs, only follows the version).
//! A snapshot that fails to decode is logged once and the VM keeps what it had.

use crate::host::{Host, Level};
use alp_engine::{envelope, Engine, Options, Snapshot};
use std::sync::Arc;

pub const SNAPSHOT_KEY: &str = "alp.snapshot";
pub const VERSION_KEY: &str = "alp.version";
pub const RECEIVED_KEY: &str = "alp.received";
/// How long the request path goes on with the version it last read, in ms: a new version is in
/// force in every VM at most this much later than it would be with a read on every request.
pub const RECHECK_MS: u64 = 1;

/// Snapshot events since the metrics last took them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// Snapshots received from control and installed (by the fetcher: once per process).
    pub reloads: u64,
    /// Snapshots refused: received from control, or found in shared data, and not decodable.
    pub refusals: u64,
}

#[derive(Debug)]
pub struct SnapshotCache {
    /// The `alp.version` value last acted on (installed or refused).
    seen: Option<u64>,
    engine: Arc<Engine>,
    /// How to compile: the staged rehearsal too (`staged`), trust domains (`trust_domains`).
    options: Options,
    /// When the snapshot in force was received from control (ms since the Unix epoch).
    received_ms: Option<u64>,
    events: Events,
    /// The request path reads `alp.version` again from this time on (ms since the Unix epoch).
    next_check_ms: u64,
    /// Whether this VM decides anything. One that does not yet (Envoy's two main-thread VMs
    /// never do; a worker's until its first request or connection) follows the version without
    /// compiling it: at 10 000 rules a compiled program and its decoding cost about 12 MB of
    /// linear memory per VM, which a wasm VM never gives back.
    serving: bool,
    /// The version a VM that is not serving knows of (its engine stays not in sync).
    known: Option<u64>,
}

impl Default for SnapshotCache {
    fn default() -> Self {
        SnapshotCache {
            seen: None,
            engine: Arc::new(Engine::not_in_sync()),
            options: Options::default(),
            received_ms: None,
            events: Events::default(),
            next_check_ms: 0,
            serving: true,
            known: None,
        }
    }
}

impl SnapshotCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled policy in force in this VM (not in sync before the first snapshot).
    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.engine)
    }

    /// The version in force (compiled), or for a VM that is not serving the newest one it
    /// knows of.
    pub fn version(&self) -> Option<u64> {
        self.engine.version().or(self.known)
    }

    /// Whether this VM decides requests or connections ([`SnapshotCache::serving`]); becoming
    /// serving compiles the newest snapshot on the next refresh.
    pub fn set_serving(&mut self, serving: bool) {
        if serving && !self.serving {
            self.seen = None;
        }
        self.serving = serving;
    }

    /// How to compile (plugin configuration); a change applies from the next version (or at
    /// once to the current one, recompiled from shared data on the next refresh).
    pub fn set_options(&mut self, options: Options) {
        if self.options != options {
            self.options = options;
            self.seen = None;
        }
    }

    /// When the snapshot in force was received from control (ms since the Unix epoch).
    pub fn received_ms(&self) -> Option<u64> {
        self.received_ms
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Events {
        std::mem::take(&mut self.events)
    }

    /// [`refresh`](Self::refresh) from the request path: on every request until a version has
    /// been seen, then at most once per [`RECHECK_MS`] (a clock read otherwise).
    pub fn refresh_on_request(&mut self, host: &dyn Host) {
        let now = host.now_ms();
        if self.seen.is_some() && now < self.next_check_ms {
            return;
        }
        self.next_check_ms = now.saturating_add(RECHECK_MS);
        self.refresh(host);
    }

    /// Follows shared data: one 8-byte read when nothing changed.
    pub fn refresh(&mut self, host: &dyn Host) {
        let Some(published) = read_version(host) else {
            return;
        };
        if self.seen == Some(published) {
            return;
        }
        self.seen = Some(published);
        if !self.serving {
            self.known = Some(published);
            self.received_ms = read_u64(host, RECEIVED_KEY);
            return;
        }
        let (bytes, _) = host.shared_data(SNAPSHOT_KEY);
        let Some(bytes) = bytes else {
            host.log(
                Level::Warn,
                &format!("{VERSION_KEY} is {published} but {SNAPSHOT_KEY} is missing"),
            );
            return;
        };
        let decoded = envelope::decode(&bytes);
        drop(bytes);
        match decoded {
            Ok((version, _))
                if Some(version) == self.engine.version()
                    && *self.engine.options() == self.options => {}
            Ok((version, snapshot)) => {
                self.install(version, &snapshot);
                self.received_ms = read_u64(host, RECEIVED_KEY).or(Some(host.now_ms()));
                host.log(
                    Level::Debug,
                    &format!("policy version {version} loaded from shared data"),
                );
            }
            Err(err) => {
                self.events.refusals += 1;
                host.log(
                    Level::Warn,
                    &format!(
                        "refused policy version {published} from shared data: {err}; keeping {}",
                        self.describe()
                    ),
                );
            }
        }
    }

    /// Installs a snapshot received from control: decodes it, publishes it to shared data for
    /// the other VMs and compiles it (if serving). On error nothing changes.
    pub fn accept(
        &mut self,
        host: &dyn Host,
        bytes: &[u8],
    ) -> Result<u64, envelope::EnvelopeError> {
        let (version, snapshot) = match envelope::decode(bytes) {
            Ok(decoded) => decoded,
            Err(err) => {
                self.events.refusals += 1;
                return Err(err);
            }
        };
        let now = host.now_ms();
        // Snapshot first, version last: see the module comment.
        let _ = host.set_shared_data(SNAPSHOT_KEY, bytes, None);
        let _ = host.set_shared_data(RECEIVED_KEY, &now.to_le_bytes(), None);
        let _ = host.set_shared_data(VERSION_KEY, &version.to_le_bytes(), None);
        if self.serving {
            self.install(version, &snapshot);
        } else {
            self.known = Some(version);
        }
        self.seen = Some(version);
        self.received_ms = Some(now);
        self.events.reloads += 1;
        Ok(version)
    }

    /// Compiles a decoded snapshot in place of the engine in force, which is freed first
    /// (nothing can fail once the snapshot decoded, and no request runs meanwhile). A VM's linear
    /// memory never shrinks, so it keeps the peak: one program and one decoded snapshot, not two
    /// programs. (The per-policy counters keep only the program's names.)
    fn install(&mut self, version: u64, snapshot: &Snapshot) {
        self.engine = Arc::new(Engine::not_in_sync());
        self.engine = Arc::new(Engine::from_snapshot_with(version, snapshot, &self.options));
    }

    /// `version N` or `no policy`, for log lines.
    pub fn describe(&self) -> String {
        match self.version() {
            Some(v) => format!("version {v}"),
            None => "no policy".to_string(),
        }
    }
}

fn read_version(host: &dyn Host) -> Option<u64> {
    read_u64(host, VERSION_KEY)
}

fn read_u64(host: &dyn Host, key: &str) -> Option<u64> {
    let (bytes, _) = host.shared_data(key);
    let bytes: [u8; 8] = bytes?.as_slice().try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use alp_engine::snapshot::{Endpoint, Snapshot, Tier};

    /// A snapshot whose endpoint has one empty tier (`tag` makes versions distinguishable).
    pub(crate) fn snapshot(tag: &str) -> Snapshot {
        Snapshot {
            endpoint: Some(Endpoint {
                tiers: vec![Tier {
                    name: tag.into(),
                    ..Default::default()
                }],
                profile_ids: vec![],
            }),
            ..Default::default()
        }
    }

    pub(crate) fn envelope(version: u64, tag: &str) -> Vec<u8> {
        envelope::encode(version, &snapshot(tag)).unwrap()
    }

    /// Publishes as a fetcher VM would.
    pub(crate) fn publish(host: &FakeHost, version: u64, bytes: &[u8]) {
        host.put_shared(SNAPSHOT_KEY, bytes);
        host.put_shared(VERSION_KEY, &version.to_le_bytes());
    }

    #[test]
    fn nothing_published_means_not_in_sync() {
        let host = FakeHost::new();
        let mut cache = SnapshotCache::new();
        cache.refresh(&host);
        assert_eq!(cache.version(), None);
        assert_eq!(*host.shared_reads.borrow(), vec![VERSION_KEY]);
    }

    #[test]
    fn request_path_reads_the_version_at_most_once_per_recheck_interval() {
        let host = FakeHost::new();
        host.now.set(1_000);
        let mut cache = SnapshotCache::new();
        cache.refresh_on_request(&host);
        cache.refresh_on_request(&host);
        assert_eq!(
            *host.shared_reads.borrow(),
            vec![VERSION_KEY, VERSION_KEY],
            "every request until a first version"
        );
        publish(&host, 5, &envelope(5, "a"));
        cache.refresh_on_request(&host);
        assert_eq!(cache.version(), Some(5), "the first version at once");
        host.shared_reads.borrow_mut().clear();
        publish(&host, 6, &envelope(6, "b"));
        cache.refresh_on_request(&host);
        cache.refresh_on_request(&host);
        assert!(
            host.shared_reads.borrow().is_empty(),
            "no read within the interval"
        );
        assert_eq!(cache.version(), Some(5));
        host.now.set(1_000 + RECHECK_MS);
        cache.refresh_on_request(&host);
        assert_eq!(
            cache.version(),
            Some(6),
            "read again once the interval has passed"
        );
        cache.refresh(&host);
        assert_eq!(
            host.shared_reads
                .borrow()
                .iter()
                .filter(|k| **k == VERSION_KEY)
                .count(),
            2,
            "the tick always reads"
        );
    }

    #[test]
    fn picks_up_once_per_version() {
        let host = FakeHost::new();
        publish(&host, 5, &envelope(5, "a"));
        let mut cache = SnapshotCache::new();
        cache.refresh(&host);
        assert_eq!(cache.version(), Some(5));
        host.shared_reads.borrow_mut().clear();
        cache.refresh(&host);
        cache.refresh(&host);
        assert_eq!(
            *host.shared_reads.borrow(),
            vec![VERSION_KEY, VERSION_KEY],
            "no snapshot copy when unchanged"
        );
        publish(&host, 6, &envelope(6, "b"));
        cache.refresh(&host);
        assert_eq!(cache.version(), Some(6));
    }

    /// Envoy's main-thread VMs never decide: they follow versions (for the gauges, and to fetch
    /// when they hold the lease) without decoding or compiling them, until a context is created.
    #[test]
    fn a_vm_that_is_not_serving_follows_versions_without_compiling() {
        let host = FakeHost::new();
        host.put_shared(RECEIVED_KEY, &1_000u64.to_le_bytes());
        publish(&host, 5, &envelope(5, "a"));
        let mut cache = SnapshotCache::new();
        cache.set_serving(false);
        host.shared_reads.borrow_mut().clear();
        cache.refresh(&host);
        assert_eq!(cache.version(), Some(5));
        assert_eq!(cache.received_ms(), Some(1_000));
        assert_eq!(cache.engine().version(), None, "nothing compiled");
        assert_eq!(*host.shared_reads.borrow(), vec![VERSION_KEY, RECEIVED_KEY]);

        // Fetching: validated and published, not compiled.
        assert_eq!(cache.accept(&host, &envelope(6, "b")), Ok(6));
        assert_eq!(cache.version(), Some(6));
        assert_eq!(cache.engine().version(), None);
        assert!(cache.accept(&host, b"garbage").is_err());
        assert_eq!(cache.version(), Some(6));

        // Its first request or connection: the published snapshot is compiled at once.
        cache.set_serving(true);
        cache.refresh_on_request(&host);
        assert_eq!(cache.engine().version(), Some(6));
    }

    #[test]
    fn corrupt_snapshot_keeps_the_old_one_and_is_tried_once() {
        let host = FakeHost::new();
        publish(&host, 5, &envelope(5, "a"));
        let mut cache = SnapshotCache::new();
        cache.refresh(&host);
        let mut bad = envelope(6, "b");
        bad.truncate(bad.len() - 2);
        publish(&host, 6, &bad);
        cache.refresh(&host);
        assert_eq!(cache.version(), Some(5));
        assert_eq!(cache.take_events().refusals, 1);
        assert!(host.logged(Level::Warn, "refused policy version 6"));
        assert!(host.logged(Level::Warn, "keeping version 5"));
        host.shared_reads.borrow_mut().clear();
        cache.refresh(&host);
        assert_eq!(
            *host.shared_reads.borrow(),
            vec![VERSION_KEY],
            "a refused version is not decoded again"
        );
    }

    #[test]
    fn accept_publishes_snapshot_then_version() {
        let host = FakeHost::new();
        let mut cache = SnapshotCache::new();
        let bytes = envelope(9, "a");
        assert_eq!(cache.accept(&host, &bytes), Ok(9));
        assert_eq!(host.shared_value(SNAPSHOT_KEY), Some(bytes));
        assert_eq!(
            host.shared_value(VERSION_KEY),
            Some(9u64.to_le_bytes().to_vec())
        );
        assert_eq!(cache.version(), Some(9));

        assert!(cache.accept(&host, b"garbage").is_err());
        assert_eq!(cache.version(), Some(9));
        assert_eq!(
            host.shared_value(VERSION_KEY),
            Some(9u64.to_le_bytes().to_vec())
        );
        assert_eq!(
            cache.take_events(),
            Events {
                reloads: 1,
                refusals: 1
            }
        );
        assert_eq!(cache.take_events(), Events::default(), "taken");
    }

    #[test]
    fn every_vm_knows_when_the_snapshot_was_received() {
        let host = FakeHost::new();
        let mut fetcher = SnapshotCache::new();
        fetcher.accept(&host, &envelope(9, "a")).unwrap();
        assert_eq!(fetcher.received_ms(), Some(1_000_000));
        let other = host.sibling();
        other.advance(5_000);
        let mut cache = SnapshotCache::new();
        cache.refresh(&other);
        assert_eq!(
            cache.received_ms(),
            Some(1_000_000),
            "from shared data, not when this VM picked it up"
        );
        assert_eq!(
            cache.take_events(),
            Events::default(),
            "only the fetcher counts reloads"
        );
    }

    #[test]
    fn staged_setting_recompiles_the_current_version() {
        let host = FakeHost::new();
        publish(&host, 5, &envelope(5, "a"));
        let mut cache = SnapshotCache::new();
        cache.refresh(&host);
        assert!(!cache.engine().staged_requested());
        cache.set_options(Options {
            staged: true,
            ..Options::default()
        });
        cache.refresh(&host);
        assert_eq!(cache.version(), Some(5));
        assert!(cache.engine().staged_requested());
    }
}

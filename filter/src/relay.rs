//! The fetcher: the lease-holding VM long-polls control through an Envoy cluster and publishes
//! what it gets into shared data (see [`crate::cache`]), so every other VM picks it up.
//!
//! The wire contract (path, headers, waits, the envelope) is `alp_engine::relay_contract`;
//! this side of it (one call in flight per process):
//! ```text
//! GET /v1/snapshot            to cluster `control_cluster`, :authority `control_authority`
//! x-alp-have-version: <u64>   the version this VM holds (0: none), or one it refused
//! x-alp-wait-ms: <ms>         poll_timeout_ms; the callout times out 5 s later
//! -> 200  body: envelope (application/octet-stream), x-alp-version: <u64>
//!         decoded and compiled; on success published, on failure logged and refused
//!         (the previous snapshot stays); the next poll starts at once
//! -> 204  nothing newer within the wait; the next poll starts at once
//! -> other status, or the call failed: logged (rate-limited), next poll after retry_interval_ms
//! ```

use crate::cache::SnapshotCache;
use crate::config::Config;
use crate::host::{Host, Level};
use crate::lease::Lease;
use alp_engine::envelope;
use alp_engine::relay_contract::{
    self, HAVE_VERSION_HEADER, SNAPSHOT_PATH, VERSION_HEADER, WAIT_HEADER,
};
use std::time::Duration;

/// At most one failure line per this interval (the rest are counted).
const FAILURE_LOG_INTERVAL_MS: u64 = 30_000;
/// A callout Envoy never answered (it always should) is forgotten this long after its timeout.
const STUCK_GRACE_MS: u64 = 10_000;

#[derive(Debug)]
pub struct Relay {
    config: Config,
    lease: Lease,
    in_flight: Option<InFlight>,
    next_poll_at: u64,
    refused: Option<Refused>,
    failures: Failures,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    token: u32,
    since: u64,
}

/// A version control sent that this VM could not decode: asked for as "have" so control
/// long-polls instead of resending it, as long as the VM still holds `over`.
#[derive(Debug, Clone, Copy)]
struct Refused {
    version: u64,
    over: Option<u64>,
}

#[derive(Debug, Default)]
struct Failures {
    count: u64,
    last_logged: Option<u64>,
    suppressed: u64,
}

impl Relay {
    pub fn new(config: Config, owner: u64) -> Self {
        let lease = Lease::new(owner, config.lease_ms());
        Relay {
            config,
            lease,
            in_flight: None,
            next_poll_at: 0,
            refused: None,
            failures: Failures::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Root context tick: follow shared data, take or renew the lease, poll if due.
    pub fn on_tick(&mut self, host: &dyn Host, cache: &mut SnapshotCache) {
        let now = host.now_ms();
        cache.refresh(host);
        if let Some(call) = self.in_flight {
            if now > call.since + self.config.call_timeout_ms() + STUCK_GRACE_MS {
                host.log(
                    Level::Warn,
                    &format!(
                        "policy poll {} never completed; starting another",
                        call.token
                    ),
                );
                self.in_flight = None;
            }
        }
        self.lease.renew(host, now);
        self.poll(host, cache, now);
    }

    /// A callout response (`token`) arrived.
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        cache: &mut SnapshotCache,
        token: u32,
        body_size: usize,
    ) {
        match self.in_flight {
            Some(call) if call.token == token => self.in_flight = None,
            _ => {
                host.log(
                    Level::Debug,
                    &format!("ignoring response to unknown callout {token}"),
                );
                return;
            }
        }
        let now = host.now_ms();
        let status = host
            .call_response_header(":status")
            .and_then(|s| s.trim().parse::<u16>().ok());
        match status {
            Some(200) => {
                self.recovered(host);
                self.install(host, cache, now, body_size);
            }
            Some(204) => {
                self.recovered(host);
                self.next_poll_at = now;
            }
            Some(other) => self.failed(host, cache, now, &format!("control answered HTTP {other}")),
            None => self.failed(
                host,
                cache,
                now,
                "the call failed (timeout, reset or no healthy upstream)",
            ),
        }
        self.poll(host, cache, now);
    }

    fn install(&mut self, host: &dyn Host, cache: &mut SnapshotCache, now: u64, body_size: usize) {
        let body = host.call_response_body(body_size).unwrap_or_default();
        match cache.accept(host, &body) {
            Ok(version) => {
                host.log(
                    Level::Info,
                    &format!("policy version {version} installed ({} bytes)", body.len()),
                );
                self.refused = None;
                self.next_poll_at = now;
            }
            Err(err) => {
                let version = envelope::peek_version(&body).ok().or_else(|| {
                    host.call_response_header(VERSION_HEADER)
                        .and_then(|v| relay_contract::parse_number(&v))
                });
                let named = version.map_or_else(
                    || "of unknown version".to_string(),
                    |v| format!("version {v}"),
                );
                host.log(
                    Level::Warn,
                    &format!(
                        "refused policy {named} from control: {err}; keeping {}",
                        cache.describe()
                    ),
                );
                self.refused = version.map(|version| Refused {
                    version,
                    over: cache.version(),
                });
                self.next_poll_at = now + self.config.retry_interval_ms;
            }
        }
    }

    /// Starts a poll if this VM holds the lease, none is in flight, and one is due.
    fn poll(&mut self, host: &dyn Host, cache: &mut SnapshotCache, now: u64) {
        if !self.lease.holds(now) || self.in_flight.is_some() || now < self.next_poll_at {
            return;
        }
        cache.refresh(host);
        let have = match self.refused {
            Some(r) if r.over == cache.version() => r.version,
            _ => cache.version().unwrap_or(0),
        };
        let have = have.to_string();
        let wait = self.config.poll_timeout_ms.to_string();
        let headers = [
            (":method", "GET"),
            (":path", SNAPSHOT_PATH),
            (":authority", self.config.control_authority.as_str()),
            (HAVE_VERSION_HEADER, have.as_str()),
            (WAIT_HEADER, wait.as_str()),
        ];
        let timeout = Duration::from_millis(self.config.call_timeout_ms());
        match host.dispatch_call(&self.config.control_cluster, &headers, timeout) {
            Ok(token) => self.in_flight = Some(InFlight { token, since: now }),
            Err(err) => {
                let what = format!(
                    "the callout could not start ({err}; is cluster {:?} defined?)",
                    self.config.control_cluster
                );
                self.failed(host, cache, now, &what);
            }
        }
    }

    fn failed(&mut self, host: &dyn Host, cache: &SnapshotCache, now: u64, what: &str) {
        self.failures.count += 1;
        self.next_poll_at = now + self.config.retry_interval_ms;
        let due = self
            .failures
            .last_logged
            .is_none_or(|t| now >= t + FAILURE_LOG_INTERVAL_MS);
        if !due {
            self.failures.suppressed += 1;
            return;
        }
        let mut line = format!(
            "policy poll to cluster {:?} failed: {what}; retrying every {} ms, keeping {}",
            self.config.control_cluster,
            self.config.retry_interval_ms,
            cache.describe()
        );
        if self.failures.suppressed > 0 {
            line.push_str(&format!(
                " ({} more failures since the last report)",
                self.failures.suppressed
            ));
        }
        host.log(Level::Warn, &line);
        self.failures.last_logged = Some(now);
        self.failures.suppressed = 0;
    }

    fn recovered(&mut self, host: &dyn Host) {
        if self.failures.count > 0 {
            host.log(
                Level::Info,
                &format!(
                    "control reachable again after {} failed polls",
                    self.failures.count
                ),
            );
            self.failures = Failures::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{envelope, publish};
    use crate::cache::VERSION_KEY;
    use crate::host::fake::FakeHost;

    struct Vm {
        host: FakeHost,
        relay: Relay,
        cache: SnapshotCache,
    }

    impl Vm {
        fn new(host: FakeHost, owner: u64) -> Self {
            Vm {
                host,
                relay: Relay::new(Config::default(), owner),
                cache: SnapshotCache::new(),
            }
        }
        fn tick(&mut self) {
            self.relay.on_tick(&self.host, &mut self.cache);
        }
        fn advance(&mut self, ms: u64) {
            self.host.advance(ms);
        }
        fn answer(&mut self, status: u16, body: &[u8]) {
            let token = self.host.last_call().unwrap().token;
            self.host.respond(status, body);
            self.relay
                .on_response(&self.host, &mut self.cache, token, body.len());
        }
        fn fail(&mut self) {
            let token = self.host.last_call().unwrap().token;
            self.host.respond_failure();
            self.relay
                .on_response(&self.host, &mut self.cache, token, 0);
        }
        fn calls(&self) -> usize {
            self.host.calls.borrow().len()
        }
    }

    fn two_vms() -> (Vm, Vm) {
        let a = FakeHost::new();
        let b = a.sibling();
        (Vm::new(a, 1), Vm::new(b, 2))
    }

    #[test]
    fn only_the_lease_holder_polls() {
        let (mut a, mut b) = two_vms();
        for _ in 0..5 {
            a.tick();
            b.tick();
            a.advance(100);
            b.advance(100);
        }
        assert_eq!(a.calls(), 1, "one call in flight at a time");
        assert_eq!(b.calls(), 0);
        let call = a.host.last_call().unwrap();
        assert_eq!(call.cluster, "alp_control");
        assert_eq!(call.header(":method"), Some("GET"));
        assert_eq!(call.header(":path"), Some("/v1/snapshot"));
        assert_eq!(call.header(":authority"), Some("alp-control"));
        assert_eq!(call.header("x-alp-have-version"), Some("0"));
        assert_eq!(call.header("x-alp-wait-ms"), Some("20000"));
        assert_eq!(call.timeout, Duration::from_millis(25_000));
    }

    #[test]
    fn snapshot_is_published_and_picked_up_by_the_other_vm() {
        let (mut a, mut b) = two_vms();
        a.tick();
        b.tick();
        a.answer(200, &envelope(100, "x"));
        assert_eq!(a.cache.version(), Some(100));
        assert_eq!(a.calls(), 2, "polls again at once");
        assert_eq!(
            a.host.last_call().unwrap().header("x-alp-have-version"),
            Some("100")
        );
        // B has not ticked yet; a request would refresh, and so does its tick.
        assert_eq!(b.cache.version(), None);
        b.cache.refresh(&b.host);
        assert_eq!(b.cache.version(), Some(100));
    }

    #[test]
    fn no_change_polls_again_at_once() {
        let (mut a, _) = two_vms();
        a.tick();
        a.answer(204, b"");
        assert_eq!(a.calls(), 2);
        assert!(a.host.logs.borrow().iter().all(|(l, _)| *l < Level::Warn));
    }

    #[test]
    fn failures_retry_after_the_interval_and_keep_the_snapshot() {
        let (mut a, _) = two_vms();
        a.tick();
        a.answer(200, &envelope(7, "x"));
        a.fail();
        assert_eq!(a.calls(), 2, "no immediate retry");
        assert!(a.host.logged(Level::Warn, "failed: the call failed"));
        assert!(a.host.logged(Level::Warn, "keeping version 7"));
        for _ in 0..4 {
            a.advance(100);
            a.tick();
        }
        assert_eq!(a.calls(), 2, "retry_interval_ms not reached");
        a.advance(100);
        a.tick();
        assert_eq!(a.calls(), 3);
        a.answer(503, b"overloaded");
        let warnings = a
            .host
            .logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == Level::Warn)
            .count();
        assert_eq!(warnings, 1, "failure lines are rate-limited");
        assert_eq!(a.cache.version(), Some(7));
        a.advance(500);
        a.tick();
        a.answer(204, b"");
        assert!(a
            .host
            .logged(Level::Info, "reachable again after 2 failed polls"));
    }

    #[test]
    fn dispatch_failure_is_reported() {
        let (mut a, _) = two_vms();
        a.host.fail_dispatch.set(true);
        a.tick();
        assert!(a.host.logged(Level::Warn, "could not start"));
        assert!(a.host.logged(Level::Warn, "\"alp_control\""));
    }

    #[test]
    fn refused_snapshot_keeps_the_old_one_and_is_not_refetched_at_once() {
        let (mut a, mut b) = two_vms();
        a.tick();
        a.answer(200, &envelope(7, "x"));
        let mut bad = envelope(8, "y");
        bad.truncate(bad.len() - 1);
        a.answer(200, &bad);
        assert_eq!(a.cache.version(), Some(7));
        assert!(a
            .host
            .logged(Level::Warn, "refused policy version 8 from control"));
        assert_eq!(
            a.host.shared_value(VERSION_KEY),
            Some(7u64.to_le_bytes().to_vec()),
            "not published"
        );
        b.cache.refresh(&b.host);
        assert_eq!(b.cache.version(), Some(7));
        // The next poll waits retry_interval_ms and then asks for anything but 8.
        let calls = a.calls();
        a.advance(500);
        a.tick();
        assert_eq!(a.calls(), calls + 1);
        assert_eq!(
            a.host.last_call().unwrap().header("x-alp-have-version"),
            Some("8")
        );
        // A good version 9 clears the refusal.
        a.answer(200, &envelope(9, "z"));
        assert_eq!(a.cache.version(), Some(9));
        assert_eq!(
            a.host.last_call().unwrap().header("x-alp-have-version"),
            Some("9")
        );
    }

    #[test]
    fn a_dead_fetcher_is_replaced() {
        let (mut a, mut b) = two_vms();
        a.tick();
        b.tick();
        a.answer(200, &envelope(3, "x"));
        assert_eq!(b.calls(), 0);
        // A stops ticking (its worker is gone or stuck); B takes over after ~3 ticks.
        for _ in 0..4 {
            b.advance(100);
            b.tick();
        }
        assert_eq!(b.calls(), 1);
        assert_eq!(
            b.host.last_call().unwrap().header("x-alp-have-version"),
            Some("3"),
            "asks from the shared version"
        );
        assert!(b.host.logged(Level::Info, "now fetches policy"));
    }

    #[test]
    fn late_or_unknown_responses_are_ignored() {
        let (mut a, _) = two_vms();
        a.tick();
        a.host.respond(200, &envelope(1, "x"));
        a.relay.on_response(&a.host, &mut a.cache, 999, 10);
        assert_eq!(a.cache.version(), None);
        assert_eq!(a.calls(), 1);
    }

    #[test]
    fn a_newer_shared_version_overrides_a_refusal() {
        let (mut a, _) = two_vms();
        a.tick();
        a.answer(200, b"not an envelope");
        assert!(a
            .host
            .logged(Level::Warn, "refused policy of unknown version"));
        a.advance(500);
        a.tick();
        let mut bad = envelope(8, "y");
        bad.truncate(bad.len() - 1);
        a.answer(200, &bad);
        // Another fetcher (e.g. before a lease hand-over) published version 4.
        publish(&a.host, 4, &envelope(4, "w"));
        a.advance(500);
        a.tick();
        assert_eq!(a.cache.version(), Some(4));
        assert_eq!(
            a.host.last_call().unwrap().header("x-alp-have-version"),
            Some("4")
        );
    }
}

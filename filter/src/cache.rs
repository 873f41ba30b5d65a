//! The VM's compiled snapshot and how it follows shared data.
//!
//! Shared data (one map per Envoy `vm_id`, process-wide):
//! * `alp.snapshot`: the envelope bytes (`alp_engine::envelope`) of the newest snapshot;
//! * `alp.version`: its version, 8 bytes little-endian, written *after* `alp.snapshot`, so a
//!   reader that sees a version finds that snapshot or a newer one.
//!
//! Every request (and every tick) reads only `alp.version`; the snapshot is copied out,
//! decoded and compiled once per version per VM. A snapshot that fails to decode is logged
//! once and the VM keeps what it had.

use crate::host::{Host, Level};
use alp_engine::{envelope, Engine};
use std::rc::Rc;

pub const SNAPSHOT_KEY: &str = "alp.snapshot";
pub const VERSION_KEY: &str = "alp.version";

#[derive(Debug)]
pub struct SnapshotCache {
    /// The `alp.version` value last acted on (installed or refused).
    seen: Option<u64>,
    engine: Rc<Engine>,
}

impl Default for SnapshotCache {
    fn default() -> Self {
        SnapshotCache {
            seen: None,
            engine: Rc::new(Engine::not_in_sync()),
        }
    }
}

impl SnapshotCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled policy in force in this VM (not in sync before the first snapshot).
    pub fn engine(&self) -> Rc<Engine> {
        Rc::clone(&self.engine)
    }

    pub fn version(&self) -> Option<u64> {
        self.engine.version()
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
        let (bytes, _) = host.shared_data(SNAPSHOT_KEY);
        let Some(bytes) = bytes else {
            host.log(
                Level::Warn,
                &format!("{VERSION_KEY} is {published} but {SNAPSHOT_KEY} is missing"),
            );
            return;
        };
        match envelope::decode(&bytes) {
            Ok((version, _)) if Some(version) == self.engine.version() => {}
            Ok((version, snapshot)) => {
                self.engine = Rc::new(Engine::from_snapshot(version, &snapshot));
                host.log(
                    Level::Debug,
                    &format!("policy version {version} loaded from shared data"),
                );
            }
            Err(err) => host.log(
                Level::Warn,
                &format!(
                    "refused policy version {published} from shared data: {err}; keeping {}",
                    self.describe()
                ),
            ),
        }
    }

    /// Installs a snapshot received from control: decodes and compiles it, then publishes it to
    /// shared data for the other VMs. On error nothing changes.
    pub fn accept(
        &mut self,
        host: &dyn Host,
        bytes: &[u8],
    ) -> Result<u64, envelope::EnvelopeError> {
        let (version, snapshot) = envelope::decode(bytes)?;
        let engine = Engine::from_snapshot(version, &snapshot);
        // Snapshot first, version second: see the module comment.
        let _ = host.set_shared_data(SNAPSHOT_KEY, bytes, None);
        let _ = host.set_shared_data(VERSION_KEY, &version.to_le_bytes(), None);
        self.engine = Rc::new(engine);
        self.seen = Some(version);
        Ok(version)
    }

    /// `version N` or `no policy`, for log lines.
    pub fn describe(&self) -> String {
        match self.engine.version() {
            Some(v) => format!("version {v}"),
            None => "no policy".to_string(),
        }
    }
}

fn read_version(host: &dyn Host) -> Option<u64> {
    let (bytes, _) = host.shared_data(VERSION_KEY);
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
    }
}

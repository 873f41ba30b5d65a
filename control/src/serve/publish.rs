//! From the source's revisions to what the filters fetch: each new revision (a new
//! generation, [`crate::versioner`]) gets a new version and is encoded once.
//!
//! Versions increase within the process and start from the current Unix time in
//! microseconds, so a restarted control publishes versions larger than before. A revision
//! already published (e.g. a file touched without a change keeps its generation) keeps its
//! version, so the filters' long-polls are not woken for nothing.

use crate::source::Policy;
use crate::versioner::{Next, Versioner};
use alp_engine::envelope;
use axum::body::Bytes;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// A versioned, encoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: u64,
    /// `alp_engine::envelope` bytes.
    pub envelope: Bytes,
}

/// Versions and encodes.
pub struct Publisher<C: Fn() -> u64> {
    versioner: Versioner<Published, C>,
}

/// What [`Publisher::update`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Publish this (a new version, or the previous one again after a not-in-sync spell).
    Publish(Arc<Published>),
    /// Same as what is published: nothing to do.
    Unchanged,
    /// The source is not in sync: publish nothing.
    NotInSync,
    /// The snapshot could not be encoded (logged); the previous one stays.
    Failed,
}

impl<C: Fn() -> u64> Publisher<C> {
    pub fn new(clock: C) -> Self {
        Publisher {
            versioner: Versioner::new(clock),
        }
    }

    /// `current` is what is published now (to tell "republish" from "unchanged").
    pub fn update(&mut self, policy: &Policy, current: Option<&Arc<Published>>) -> Update {
        let (generation, version, snapshot) = match self.versioner.next(policy) {
            Next::NotInSync => return Update::NotInSync,
            Next::Built(last) => {
                return match current {
                    Some(c) if Arc::ptr_eq(c, &last) => Update::Unchanged,
                    _ => Update::Publish(last),
                };
            }
            Next::Build {
                generation,
                version,
                snapshot,
            } => (generation, version, snapshot),
        };
        match envelope::encode(version, &snapshot) {
            Ok(bytes) => {
                let published = Arc::new(Published {
                    version,
                    envelope: Bytes::from(bytes),
                });
                self.versioner
                    .built(generation, version, Arc::clone(&published));
                Update::Publish(published)
            }
            Err(e) => {
                error!(
                    version,
                    "cannot encode snapshot: {e}; keeping the previous one"
                );
                Update::Failed
            }
        }
    }
}

/// Follows the source and publishes; ends when the source's sender is gone.
pub async fn run(
    mut policy: watch::Receiver<Policy>,
    published: watch::Sender<Option<Arc<Published>>>,
    clock: impl Fn() -> u64,
) {
    let mut publisher = Publisher::new(clock);
    loop {
        let current = policy.borrow_and_update().clone();
        let now = published.borrow().clone();
        match publisher.update(&current, now.as_ref()) {
            Update::Publish(p) => {
                info!(
                    version = p.version,
                    bytes = p.envelope.len(),
                    "publishing snapshot"
                );
                published.send_replace(Some(p));
            }
            Update::Unchanged => debug!("snapshot unchanged; version kept"),
            Update::NotInSync => {
                if now.is_some() {
                    warn!("source not in sync; withdrawing the snapshot (filters keep theirs)");
                }
                published.send_replace(None);
            }
            Update::Failed => {}
        }
        if policy.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Revision;
    use crate::versioner::unix_micros;
    use alp_engine::snapshot::{Endpoint, Tier};
    use alp_engine::Snapshot;
    use std::cell::Cell;

    /// A revision of the source: its generation, and a snapshot that tells it apart.
    fn snapshot(generation: u64, tier: &str) -> Policy {
        Some(Revision {
            generation,
            snapshot: Arc::new(Snapshot {
                endpoint: Some(Endpoint {
                    tiers: vec![Tier {
                        name: tier.into(),
                        ..Default::default()
                    }],
                    profile_ids: vec![],
                }),
                ..Default::default()
            }),
        })
    }

    fn published(u: &Update) -> Arc<Published> {
        match u {
            Update::Publish(p) => Arc::clone(p),
            other => panic!("expected Publish, got {other:?}"),
        }
    }

    #[test]
    fn versions_start_at_the_clock_and_grow_per_change_only() {
        let clock = Cell::new(1_000);
        let mut v = Publisher::new(|| clock.get());
        assert_eq!(v.update(&None, None), Update::NotInSync);
        let first = published(&v.update(&snapshot(1, "a"), None));
        assert_eq!(first.version, 1_000);
        assert_eq!(envelope::decode(&first.envelope).unwrap().0, 1_000);
        // The same revision again (a different allocation): unchanged.
        assert_eq!(v.update(&snapshot(1, "a"), Some(&first)), Update::Unchanged);
        // The clock did not move: +1.
        let second = published(&v.update(&snapshot(2, "b"), Some(&first)));
        assert_eq!(second.version, 1_001);
        // The clock moved on: its value.
        clock.set(5_000);
        let third = published(&v.update(&snapshot(3, "c"), Some(&second)));
        assert_eq!(third.version, 5_000);
        // The clock went back: still increasing.
        clock.set(10);
        assert_eq!(
            published(&v.update(&snapshot(4, "d"), Some(&third))).version,
            5_001
        );
    }

    #[test]
    fn back_in_sync_with_the_same_snapshot_republishes_its_version() {
        let mut v = Publisher::new(|| 7);
        let first = published(&v.update(&snapshot(1, "a"), None));
        assert_eq!(v.update(&None, Some(&first)), Update::NotInSync);
        let again = published(&v.update(&snapshot(1, "a"), None));
        assert!(Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn restart_gives_larger_versions() {
        let before =
            published(&Publisher::new(unix_micros).update(&snapshot(1, "a"), None)).version;
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = published(&Publisher::new(unix_micros).update(&snapshot(1, "a"), None)).version;
        assert!(after > before);
        assert!(
            before > 1_600_000_000_000_000,
            "microseconds since the epoch"
        );
    }

    #[tokio::test]
    async fn run_follows_the_source() {
        let (policy_tx, policy_rx) = watch::channel(None);
        let (published_tx, mut published_rx) = watch::channel(None);
        let task = tokio::spawn(run(policy_rx, published_tx, || 42));
        policy_tx.send_replace(snapshot(1, "a"));
        published_rx.changed().await.unwrap();
        assert_eq!(
            published_rx.borrow_and_update().as_ref().map(|p| p.version),
            Some(42)
        );
        policy_tx.send_replace(snapshot(2, "b"));
        published_rx.changed().await.unwrap();
        assert_eq!(
            published_rx.borrow_and_update().as_ref().map(|p| p.version),
            Some(43)
        );
        drop(policy_tx);
        task.await.unwrap();
    }
}

//! Versions for what the servers build from a source's revisions: `control serve` encodes
//! envelopes, `control ext-authz` compiles engines, both through one [`Versioner`].
//!
//! A revision is new when its generation is (the source's `SyncState` generation: equal
//! generations, equal stores), so nothing is compared but two numbers. Versions increase
//! within the process (`+1` per new revision at least) and start from the current Unix time in
//! microseconds, so a restarted control hands out versions larger than before. A revision
//! already built keeps its version and what was built from it: a file touched without a change
//! wakes no filter's long-poll and compiles nothing.

use crate::source::Policy;
use alp_engine::Snapshot;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The clock versions start from: microseconds since the Unix epoch.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Versions revisions and keeps what was last built from one (a `T`).
pub struct Versioner<T, C: Fn() -> u64> {
    clock: C,
    last: Option<Built<T>>,
}

struct Built<T> {
    generation: u64,
    version: u64,
    value: Arc<T>,
}

/// What to do with a source's policy ([`Versioner::next`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// The source is not in sync: nothing to serve.
    NotInSync,
    /// The revision last built: what was built from it.
    Built(Arc<T>),
    /// A new revision: build `snapshot` as `version`, then report it with
    /// [`Versioner::built`] (a build that fails is not reported; the next call asks again).
    Build {
        generation: u64,
        version: u64,
        snapshot: Arc<Snapshot>,
    },
}

impl<T, C: Fn() -> u64> Versioner<T, C> {
    /// Nothing built yet; versions start from `clock`.
    pub fn new(clock: C) -> Self {
        Versioner { clock, last: None }
    }

    /// Whether `policy` is a revision already built, and if not the version to build it as.
    pub fn next(&self, policy: &Policy) -> Next<T> {
        let Some(revision) = policy else {
            return Next::NotInSync;
        };
        if let Some(last) = self
            .last
            .as_ref()
            .filter(|l| l.generation == revision.generation)
        {
            return Next::Built(Arc::clone(&last.value));
        }
        let previous = self.last.as_ref().map_or(0, |l| l.version);
        Next::Build {
            generation: revision.generation,
            version: (previous + 1).max((self.clock)()),
            snapshot: Arc::clone(&revision.snapshot),
        }
    }

    /// `value` was built from the revision `generation` as `version` (from [`Next::Build`]).
    pub fn built(&mut self, generation: u64, version: u64, value: Arc<T>) {
        self.last = Some(Built {
            generation,
            version,
            value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Revision;
    use std::cell::Cell;

    fn revision(generation: u64) -> Policy {
        Some(Revision {
            generation,
            snapshot: Arc::new(Snapshot::default()),
        })
    }

    /// Builds what `next` asks for (the version itself); what is served.
    fn step(v: &mut Versioner<u64, impl Fn() -> u64>, policy: &Policy) -> Option<u64> {
        match v.next(policy) {
            Next::NotInSync => None,
            Next::Built(value) => Some(*value),
            Next::Build {
                generation,
                version,
                ..
            } => {
                v.built(generation, version, Arc::new(version));
                Some(version)
            }
        }
    }

    #[test]
    fn a_new_version_per_generation() {
        let clock = Cell::new(1_000);
        let mut v = Versioner::new(|| clock.get());
        assert_eq!(step(&mut v, &None), None);
        assert_eq!(step(&mut v, &revision(1)), Some(1_000));
        assert_eq!(
            step(&mut v, &revision(1)),
            Some(1_000),
            "same generation, same version"
        );
        assert_eq!(
            step(&mut v, &revision(2)),
            Some(1_001),
            "the clock did not move: +1"
        );
        clock.set(5_000);
        assert_eq!(
            step(&mut v, &revision(3)),
            Some(5_000),
            "the clock moved on: its value"
        );
        clock.set(10);
        assert_eq!(
            step(&mut v, &revision(4)),
            Some(5_001),
            "the clock went back: still increasing"
        );
        assert_eq!(step(&mut v, &None), None);
        assert_eq!(
            step(&mut v, &revision(4)),
            Some(5_001),
            "back in sync: the same again"
        );
    }

    #[test]
    fn a_failed_build_is_asked_for_again() {
        let mut v: Versioner<u64, _> = Versioner::new(|| 7);
        assert!(matches!(
            v.next(&revision(1)),
            Next::Build { version: 7, .. }
        ));
        assert!(matches!(
            v.next(&revision(1)),
            Next::Build { version: 7, .. }
        ));
        v.built(1, 7, Arc::new(7));
        assert_eq!(v.next(&revision(1)), Next::Built(Arc::new(7)));
        assert!(matches!(
            v.next(&revision(2)),
            Next::Build {
                generation: 2,
                version: 8,
                ..
            }
        ));
    }
}

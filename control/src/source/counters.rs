//! What the sources count: Felix streams that ended, messages applied, snapshot build times.
//! `control serve` renders them at `GET /metrics` (`serve::metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the build time histogram, seconds.
pub const BUILD_BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// Counters the sources update (a handful of atomics).
#[derive(Debug, Default)]
pub struct Counters {
    reconnects: AtomicU64,
    updates_applied: AtomicU64,
    builds: AtomicU64,
    build_micros: AtomicU64,
    /// Per bucket (not cumulative).
    build_buckets: [AtomicU64; BUILD_BUCKETS.len()],
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Felix streams that ended or could not start (each followed by a reconnect).
    pub reconnects: u64,
    /// Felix Policy Sync messages applied to the store.
    pub updates_applied: u64,
    /// Snapshots built.
    pub builds: u64,
    /// Their total build time, microseconds.
    pub build_micros: u64,
    /// Builds per bucket of [`BUILD_BUCKETS`] (not cumulative; slower builds are in none).
    pub build_buckets: [u64; BUILD_BUCKETS.len()],
}

impl Counters {
    /// A Felix stream ended or could not start.
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// `messages` Policy Sync messages applied.
    pub fn applied(&self, messages: u64) {
        self.updates_applied.fetch_add(messages, Ordering::Relaxed);
    }

    /// One snapshot built in `took`.
    pub fn built(&self, took: Duration) {
        self.builds.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.build_micros.fetch_add(micros, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        if let Some(i) = BUILD_BUCKETS.iter().position(|b| seconds <= *b) {
            self.build_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The values now.
    pub fn read(&self) -> Counted {
        Counted {
            reconnects: self.reconnects.load(Ordering::Relaxed),
            updates_applied: self.updates_applied.load(Ordering::Relaxed),
            builds: self.builds.load(Ordering::Relaxed),
            build_micros: self.build_micros.load(Ordering::Relaxed),
            build_buckets: std::array::from_fn(|i| self.build_buckets[i].load(Ordering::Relaxed)),
        }
    }
}

//! The filter's counters and gauges (`wasmcustom.alp.*`) from Envoy's admin `/stats`, as the
//! tests compare them: a snapshot, the change since an earlier one, and bounded waits for the
//! filter's flush (on its 100 ms root tick).
//!
//! These are test steps: they panic (with what went wrong) instead of returning errors.

use crate::stack::Stack;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every `wasmcustom.alp.*` stat at one moment, keyed without the `wasmcustom.` prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlpStats(pub BTreeMap<String, u64>);

impl AlpStats {
    /// Reads `/stats?filter=alp` (a failed read panics).
    pub fn read(stack: &Stack) -> Self {
        let r = stack
            .envoy
            .admin_get("/stats?filter=alp")
            .unwrap_or_else(|e| panic!("admin /stats: {e:#}"));
        AlpStats(
            r.body
                .lines()
                .filter_map(|l| l.split_once(": "))
                .filter_map(|(n, v)| {
                    let name = n.strip_prefix("wasmcustom.")?;
                    Some((name.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// Stat `name` (`alp.connections.allowed`); 0 when absent.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// How much `name` grew since `before`.
    pub fn delta(&self, before: &AlpStats, name: &str) -> u64 {
        self.get(name).saturating_sub(before.get(name))
    }

    /// The counters, without the gauges that move by themselves (`alp.snapshot.age_seconds`).
    fn counters(&self) -> BTreeMap<&str, u64> {
        self.0
            .iter()
            .filter(|(k, _)| !k.contains(".snapshot.age"))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

/// Waits (up to 10 s) until the stats satisfy `done`; panics with them and the logs otherwise.
pub fn stats_until(stack: &Stack, what: &str, done: impl Fn(&AlpStats) -> bool) -> AlpStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = AlpStats::read(stack);
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the stats never got there: {:#?}\n{}",
            stats.0,
            stack.diagnostics(&stack.workloads[0].name)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stats once a snapshot is in and every VM has flushed what it counted so far (two reads
/// three ticks apart agree): the baseline to measure a test's own decisions from.
pub fn settled(stack: &Stack) -> AlpStats {
    let mut last = stats_until(stack, "first snapshot", |s| {
        s.get("alp.snapshot.version") > 0
    });
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = AlpStats::read(stack);
        if now.counters() == last.counters() {
            return now;
        }
        last = now;
    }
}

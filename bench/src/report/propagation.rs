//! Propagation's part of the results (`--propagation`, `bench/src/propagation.rs`): per
//! artefact and rule count, the time from a policy change to its enforcement on every worker.

use super::{rules_text, RunReport};
use alp_e2e::stats::{percentile, sorted};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The propagation target (ms): p99 from control's publication to every worker.
pub const TARGET_P99_MS: f64 = 10.0;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PropagationRow {
    pub config: String,
    pub label: String,
    pub rules: usize,
    /// Envoy's workers.
    pub concurrency: u32,
    /// control's `--watch-interval-ms`.
    pub watch_interval_ms: u64,
    /// Probe connections each worker held.
    pub connections_per_worker: Vec<u64>,
    /// Probe connections the server closed and the bench opened again.
    pub reopened: usize,
    /// Per change (ms): from replacing the updates file until requests on every probe
    /// connection (every worker) answered the new decision.
    pub enforced_ms: Vec<f64>,
    /// Per change (ms): from replacing the updates file until control published the new version.
    pub published_ms: Vec<f64>,
}

/// p50, p99 (nearest rank) and max of `values`; NaN for none.
pub fn summary(values: &[f64]) -> [f64; 3] {
    if values.is_empty() {
        return [f64::NAN; 3];
    }
    let s = sorted(values);
    [percentile(&s, 50.0), percentile(&s, 99.0), s[s.len() - 1]]
}

impl PropagationRow {
    /// Per change (ms): from control's publication until every worker enforced it.
    pub fn after_publication_ms(&self) -> Vec<f64> {
        self.enforced_ms
            .iter()
            .zip(&self.published_ms)
            .map(|(e, p)| (e - p).max(0.0))
            .collect()
    }
}

fn ms3(v: [f64; 3]) -> String {
    let f = |x: f64| {
        if x.is_finite() {
            format!("{x:.1}")
        } else {
            "–".into()
        }
    };
    format!("{} / {} / {}", f(v[0]), f(v[1]), f(v[2]))
}

/// The propagation section of the markdown report.
pub fn markdown(run: &RunReport, s: &mut String) {
    let Some(first) = run.propagation.first() else {
        return;
    };
    let _ = writeln!(
        s,
        "## Propagation: a policy change to enforcement on every worker\n"
    );
    let _ = writeln!(
        s,
        "An Envoy of its own per artefact and rule count with `--concurrency {}` (not pinned), `control serve` following its updates file \
         with `--watch-interval-ms {}`; keep-alive probe connections (plaintext, `GET {}`) until every worker held some. Per change, after a \
         pause of 60-180 ms, the updates file is replaced (renamed over) by the same policy with the allowing rule's action flipped (allow, \
         deny, allow, ...). **To every worker**: from the rename until every probe connection has answered the new decision (requests \
         round-robin over the connections, so within about a round of requests). **Control**: from the rename until a long poll of control's \
         `/v1/snapshot` (a thread of the bench's) was answered with the new version: control's file watch (0-{} ms) and rebuild. \
         **Publication to every worker** = the difference, per change: what the artefact adds (its fetch from control, decode, compile, \
         hand-over to the workers). No other load. Times in ms, p50 / p99 / max (nearest rank over the changes).\n",
        first.concurrency,
        first.watch_interval_ms,
        crate::policy::REQUEST_PATH,
        first.watch_interval_ms,
    );
    let _ = writeln!(
        s,
        "| configuration | rules | changes | probe connections per worker | to every worker | control (file to publication) | publication to every worker |\n|---|---:|---:|---|---:|---:|---:|"
    );
    for r in &run.propagation {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:?}{} | {} | {} | {} |",
            r.label,
            rules_text(Some(r.rules)),
            r.enforced_ms.len(),
            r.connections_per_worker,
            if r.reopened > 0 {
                format!(" ({} reopened)", r.reopened)
            } else {
                String::new()
            },
            ms3(summary(&r.enforced_ms)),
            ms3(summary(&r.published_ms)),
            ms3(summary(&r.after_publication_ms())),
        );
    }
    let _ = writeln!(s);
}

/// One progress line for a propagation row.
pub fn one_line(r: &PropagationRow) -> String {
    let [p50, p99, max] = summary(&r.enforced_ms);
    let [a50, a99, amax] = summary(&r.after_publication_ms());
    format!(
        "{:<30} {:>6} rules propagation, {} changes, {} workers {:?}: to every worker p50 {p50:.1} p99 {p99:.1} max {max:.1} ms; after control's publication p50 {a50:.1} p99 {a99:.1} max {amax:.1} ms",
        r.label,
        rules_text(Some(r.rules)),
        r.enforced_ms.len(),
        r.concurrency,
        r.connections_per_worker,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    #[test]
    fn the_table_gives_each_leg_and_the_target_uses_the_publication_leg() {
        let row = PropagationRow {
            config: "native".into(),
            label: "calico-alp native module".into(),
            rules: 10000,
            concurrency: 2,
            watch_interval_ms: 10,
            connections_per_worker: vec![3, 3],
            reopened: 0,
            enforced_ms: vec![10.0, 12.0, 30.0, 8.0],
            published_ms: vec![6.0, 9.0, 20.0, 6.0],
        };
        assert_eq!(row.after_publication_ms(), vec![4.0, 3.0, 10.0, 2.0]);
        assert_eq!(summary(&row.enforced_ms), [10.0, 30.0, 30.0]);
        let rows = sample::rows(1, "plaintext", [1.0; 5], [1.0; 5]);
        let run = RunReport::new(sample::meta(), rows, vec![], vec![], vec![])
            .with_propagation(vec![row]);
        let md = crate::report::markdown(&run);
        assert!(md.contains("## Propagation: a policy change to enforcement on every worker"));
        assert!(
            md.contains("| calico-alp native module | 10 000 | 4 | [3, 3] | 10.0 / 30.0 / 30.0 | 6.0 / 20.0 / 20.0 | 3.0 / 10.0 / 10.0 |"),
            "{md}"
        );
        let t = run
            .targets
            .iter()
            .find(|t| t.target.contains("propagation"))
            .unwrap();
        assert_eq!((t.value, t.met), (10.0, Some(true)));
    }
}

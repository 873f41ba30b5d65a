//! Envoy's memory by configuration, rule count and worker count: the rows of the memory-only
//! Envoys (`--concurrency`), beside the throughput Envoy's RSS after its windows.

use super::{rss_mb, rules_text, RunReport};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Envoy's (and the authz server's) resident memory with `concurrency` workers, after a short
/// load that every worker served.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryRow {
    pub config: String,
    pub label: String,
    pub rules: Option<usize>,
    pub concurrency: u32,
    pub envoy_rss_kb: u64,
    pub envoy_rss_peak_kb: u64,
    pub authz_rss_kb: Option<u64>,
    /// Connections each worker accepted during the load (both listeners).
    pub worker_connections: Vec<u64>,
}

/// How the memory-only Envoys were loaded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryMeta {
    pub concurrency: Vec<u32>,
    /// Closed loop on each listener (plaintext, mTLS), keep-alive, minimal headers.
    pub connections: usize,
    pub seconds: f64,
}

/// (config, label, rules) of every setup with a row, in first-seen order.
fn setups(run: &RunReport) -> Vec<(String, String, Option<usize>)> {
    let mut out: Vec<(String, String, Option<usize>)> = Vec::new();
    let rows = run.rows.iter().map(|r| (&r.config, &r.label, r.rules));
    let mem = run.memory.iter().map(|r| (&r.config, &r.label, r.rules));
    for (c, l, n) in rows.chain(mem) {
        if !out.iter().any(|(oc, _, on)| oc == c && *on == n) {
            out.push((c.clone(), l.clone(), n));
        }
    }
    out
}

/// The memory table of the markdown report.
pub fn markdown(run: &RunReport, s: &mut String) {
    if run.rows.is_empty() && run.memory.is_empty() {
        return;
    }
    let mut counts: Vec<u32> = run.memory.iter().map(|r| r.concurrency).collect();
    counts.sort_unstable();
    counts.dedup();
    let _ = writeln!(s, "## Memory\n");
    let mut intro = String::from(
        "Envoy's resident memory (`VmRSS`, MB; ext_authz: + the authz server's). \
         \"After the windows\": the throughput Envoy (one worker) after its measured windows, the RSS column above (the larger of its transports).",
    );
    if let (Some(m), false) = (&run.meta.memory, counts.is_empty()) {
        let _ = write!(
            intro,
            " \"N workers\": an Envoy of its own per setup started with `--concurrency N` (not pinned), after a closed loop of {} connections for {:.1} s \
             on each listener (plaintext, mTLS; minimal headers, HTTP/1.1, keep-alive), repeated until every worker had served connections \
             (each worker has its own wasm VM and its own copy of the policy).",
            m.connections, m.seconds
        );
    }
    let _ = writeln!(s, "{intro}\n");
    let mut head = String::from("| configuration | rules | after the windows (1 worker) |");
    let mut line = String::from("|---|---:|---:|");
    for c in &counts {
        let _ = write!(head, " {c} worker{} |", if *c == 1 { "" } else { "s" });
        line.push_str("---:|");
    }
    let per_worker = counts.len() > 1;
    if per_worker {
        head.push_str(" per extra worker (Envoy) |");
        line.push_str("---:|");
    }
    let _ = writeln!(s, "{head}\n{line}");
    for (config, label, rules) in setups(run) {
        let after = run
            .rows
            .iter()
            .filter(|r| r.config == config && r.rules == rules)
            .max_by_key(|r| r.envoy_rss_kb)
            .map_or("–".into(), |r| rss_mb(r.envoy_rss_kb, r.authz_rss_kb));
        let at = |c: u32| {
            run.memory
                .iter()
                .find(|r| r.config == config && r.rules == rules && r.concurrency == c)
        };
        let mut cells = String::new();
        for &c in &counts {
            let v = at(c).map_or("–".into(), |r| rss_mb(r.envoy_rss_kb, r.authz_rss_kb));
            let _ = write!(cells, " {v} |");
        }
        if per_worker {
            let (lo, hi) = (counts[0], counts[counts.len() - 1]);
            let v = match (at(lo), at(hi)) {
                (Some(a), Some(b)) => format!(
                    "{:+.1}",
                    (b.envoy_rss_kb as f64 - a.envoy_rss_kb as f64) / 1024.0 / f64::from(hi - lo)
                ),
                _ => "–".into(),
            };
            let _ = write!(cells, " {v} |");
        }
        let _ = writeln!(s, "| {label} | {} | {after} |{cells}", rules_text(rules));
    }
    let _ = writeln!(s);
}

/// One progress line for a memory row.
pub fn one_line(r: &MemoryRow) -> String {
    format!(
        "{:<30} {:>6} rules memory, {} worker{}: Envoy RSS {} MB (connections per worker {:?})",
        r.label,
        rules_text(r.rules),
        r.concurrency,
        if r.concurrency == 1 { "" } else { "s" },
        rss_mb(r.envoy_rss_kb, r.authz_rss_kb),
        r.worker_connections
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    fn row(config: &str, rules: Option<usize>, concurrency: u32, mb: u64) -> MemoryRow {
        MemoryRow {
            config: config.into(),
            label: config.into(),
            rules,
            concurrency,
            envoy_rss_kb: mb * 1024,
            envoy_rss_peak_kb: mb * 1024,
            authz_rss_kb: None,
            worker_connections: vec![8; concurrency as usize],
        }
    }

    #[test]
    fn one_column_per_worker_count_and_the_cost_of_a_worker() {
        let mut meta = sample::meta();
        meta.memory = Some(MemoryMeta {
            concurrency: vec![1, 2],
            connections: 16,
            seconds: 1.0,
        });
        let rows = sample::rows(1, "plaintext", [1.0; 5], [1.0; 5]);
        let memory = vec![
            row("none", None, 1, 30),
            row("none", None, 2, 33),
            row("alp", Some(1), 1, 50),
            row("alp", Some(1), 2, 62),
        ];
        let run = RunReport::new(meta, rows, vec![], vec![], memory);
        let md = crate::report::markdown(&run);
        assert!(md.contains("| configuration | rules | after the windows (1 worker) | 1 worker | 2 workers | per extra worker (Envoy) |\n|---|---:|---:|---:|---:|---:|\n"), "{md}");
        assert!(
            md.contains("| no filter | – | 40.0 | 30.0 | 33.0 | +3.0 |"),
            "{md}"
        );
        assert!(md.contains("| calico-alp wasm | 1 | 43.0 | 50.0 | 62.0 | +12.0 |"));
        // Not measured with more workers: dashes.
        assert!(md.contains("| ext_authz (gRPC, unix socket) | 1 | 44.0 + 10.0 | – | – | – |"));
    }
}

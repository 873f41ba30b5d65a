//! Reliability runs: the soak (`scripts/soak.sh`, `tests/tests/soak.rs`) and the chaos cases
//! (`scripts/chaos.sh`, `tests/tests/chaos.rs`). What they share lives here:
//!
//! * [`scenario`]: a known sequence of policy states (which paths, and whether the TCP client's
//!   address is in an IP set) and the Felix messages that move from one to the next, so the right
//!   decision of every request under every state is computable (and checked against
//!   `control check` once per state: [`scenario::verify_with_control`]);
//! * [`traffic`]: the load (keep-alive HTTP/1.1 threads with an `x-request-id` each, plus new
//!   plaintext TCP connections), every request recorded with its send and receive times;
//! * [`logscan`]: the filter's decision-log lines (`decision_log: all`), which pin the snapshot
//!   version each request and connection was decided with;
//! * [`oracle`]: joins them: every answer against the state of the version that decided it
//!   (and that version against the states in force while the request was in flight, with an
//!   uncertainty window `W` after each change), or, for a request without a log line, against
//!   the states in force within the window;
//! * [`rss`]: resident memory sampled every second.

pub mod logscan;
pub mod oracle;
pub mod rss;
pub mod scenario;
pub mod traffic;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (fractional), the clock every record uses (the decision
/// log's `ts` is on the same clock, to the millisecond).
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Percentile `p` (0..=100) of `v` (sorted here); `None` when empty.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    Some(s[i.min(s.len() - 1)])
}

/// A plain text table: a header row, a rule, rows; columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.push(line(width.iter().map(|w| "-".repeat(*w)).collect()));
    for r in rows {
        out.push(line(r.clone()));
    }
    out.join("\n")
}

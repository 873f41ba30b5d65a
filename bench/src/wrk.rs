//! Closed-loop maximum throughput with wrk (plaintext HTTP/1.1: wrk has no client certificates
//! and no HTTP/2), its percentiles read by `bench/wrk-report.lua`, which also sends the request
//! bytes it is given (`request`), so wrk and the bench's generator send the same request.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct WrkReport {
    pub requests: u64,
    pub duration_us: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub errors_connect: u64,
    pub errors_read: u64,
    pub errors_write: u64,
    /// Responses other than 2xx/3xx.
    pub errors_status: u64,
    pub errors_timeout: u64,
}

impl WrkReport {
    pub fn errors(&self) -> u64 {
        self.errors_connect + self.errors_read + self.errors_write + self.errors_timeout
    }
}

/// The seconds wrk runs for `duration`: it takes whole seconds, sub-second durations round up.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil().max(1.0) as u64
}

/// `wrk -t1 -cN -dD -s wrk-report.lua URL`, pinned to `cpu` when given, sending the bytes of
/// the file `request` (the URL then only says where to connect).
pub fn run(
    script: &Path,
    url: &str,
    request: &Path,
    connections: usize,
    duration: Duration,
    cpu: Option<usize>,
) -> Result<WrkReport> {
    let mut cmd = match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string(), "wrk"]);
            cmd
        }
        None => Command::new("wrk"),
    };
    let seconds = whole_seconds(duration);
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--timeout",
        "5s",
        "-s",
    ])
    .arg(script)
    .arg(url)
    .env("ALP_BENCH_REQUEST", request);
    let out = cmd
        .output()
        .context("running wrk (apt-get install -y wrk)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("wrk printed no report:\n{stdout}"))?;
    serde_json::from_str(line).with_context(|| format!("wrk report {line:?}"))
}

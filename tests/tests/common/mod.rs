//! What the soak and chaos tests share on top of `alp_e2e::reliability`.
#![allow(dead_code)]

use alp_e2e::http;
use alp_e2e::Stack;
use anyhow::{bail, Result};
use felix_sim::felix::ToDataplane;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn felix_message(v: &Value) -> ToDataplane {
    felix_sim::parse_message(&v.to_string()).unwrap()
}

/// A value of control's `/metrics` (on its unix socket).
pub fn control_metric(socket: &Path, name: &str) -> Option<f64> {
    let r = http::unix_get(socket, "/metrics").ok()?;
    r.body.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Waits until control serves a snapshot version other than `previous` (and not 0).
pub fn wait_version(socket: &Path, previous: u64, timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = control_metric(socket, "alp_control_snapshot_version") {
            let v = v as u64;
            if v != previous && v != 0 {
                return Ok(v);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "control published no new snapshot version (still {previous}) within {timeout:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Envoy's `wasm.*` counters and gauges (VMs created, active...).
pub fn wasm_counters(stack: &Stack) -> BTreeMap<String, u64> {
    let Ok(r) = stack.envoy.admin_get("/stats?filter=^wasm") else {
        return BTreeMap::new();
    };
    r.body
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(n, v)| Some((n.to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// Prints the report (stderr, not captured) and writes it to the file `$var` names, if any.
pub fn write_report(var: &str, report: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{report}");
    if let Some(p) = std::env::var_os(var) {
        let _ = std::fs::write(p, format!("{report}\n"));
    }
}

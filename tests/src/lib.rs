//! alp-e2e: the local harness for Calico application layer policy in Envoy, and the library its
//! end-to-end tests (`tests/tests/*.rs`) and the `local-stack` demo are built on.
//!
//! Everything runs as real processes on 127.0.0.1: one Envoy (rendered from
//! `envoy/bootstrap.yaml`) protecting one inbound listener per workload with the wasm filter, one
//! `control serve` per workload fed from a Felix `ToDataplane` JSON Lines file, and clients that
//! are `curl` (TLS/mTLS with SPIFFE certificates from a throw-away CA) or a small HTTP/1.1 client,
//! bound to chosen 127.x source addresses. Each workload also has a raw TCP listener (the network
//! filter before tcp_proxy), reached with `tcp_client` (plaintext, or mTLS with rustls: `tls`)
//! and served by Envoy's echo filter or the harness's recording `tcp_backend`; `tcp_cases` checks
//! a connection from both ends. The tests that run requests under load share `load` (background
//! requests whose every answer is checked; `tcp_load` for new connections), `probe` (connections
//! on every Envoy worker, waiting for a change to reach them) and `stats` (percentiles, the
//! latency budget); `filter_stats` and `decision_log` read what the filter reports.

pub mod architecture;
pub mod artifacts;
pub mod backend;
pub mod canonical;
pub mod certs;
pub mod client;
pub mod compose;
pub mod control;
pub mod decision_log;
pub mod demo;
pub mod demo_tcp;
pub mod envoy;
pub mod filter_stats;
pub mod http;
pub mod load;
pub mod policy;
pub mod probe;
pub mod process;
pub mod reliability;
pub mod stack;
pub mod stats;
pub mod tcp_backend;
pub mod tcp_cases;
pub mod tcp_client;
pub mod tcp_load;
pub mod template;
pub mod tls;

pub use client::{Outcome, Request, Transport};
pub use envoy::PathMode;
pub use stack::{Stack, StackOptions, Updates, WorkloadSpec};

/// Prints a result line that `cargo test` does not capture (it writes to the stderr handle, not
/// through `eprintln!`), so measurements show in every run.
pub fn report(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "alp-e2e: {line}");
}

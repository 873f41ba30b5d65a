//! A short load that reaches every Envoy worker, before a memory sample: each worker has its own
//! wasm VM and its own copy of the policy, so RSS only counts them all once every worker served
//! requests. Envoy spreads connections over its workers (a listen socket per worker with
//! `SO_REUSEPORT`, the kernel hashing each connection to one), so a few rounds of a dozen
//! connections reach every worker; the listener's per-worker stats tell.

use crate::load::{self, Pace, Settings, Target};
use crate::variant::ConnMode;
use alp_e2e::envoy::Envoy;
use anyhow::{bail, Result};
use std::time::Duration;

/// Rounds of load on one listener before giving up on reaching every worker.
const ROUNDS: usize = 4;

/// Runs a closed loop of `connections` on each `(listener, target)` for `duration` until every
/// one of the `concurrency` workers accepted connections on it; returns the connections each
/// worker accepted, over all listeners.
pub fn every_worker(
    envoy: &Envoy,
    targets: &[(&str, &Target)],
    concurrency: u32,
    connections: usize,
    duration: Duration,
    cpu: Option<usize>,
) -> Result<Vec<u64>> {
    let settings = Settings {
        connections,
        warmup: Duration::ZERO,
        duration,
        pace: Pace::Closed,
        cpu,
        watch: None,
        connection: ConnMode::KeepAlive,
    };
    let mut total = vec![0; concurrency as usize];
    for (listener, target) in targets {
        let mut per_worker = Vec::new();
        for round in 1..=ROUNDS {
            let o = load::run(target, &settings)?;
            // No response within the window is no failure by itself (native RBAC at 10 000 rules
            // on a busy machine answers in about a second): the workers accepted the connections
            // and are deciding their first requests. Errors and denials are failures.
            if o.errors > 0 || o.non_2xx > 0 {
                bail!(
                    "warm-up on {listener}: {} responses, {} non-2xx, {} errors",
                    o.requests,
                    o.non_2xx,
                    o.errors
                );
            }
            per_worker = envoy.worker_stats(listener, "downstream_cx_total", concurrency)?;
            if per_worker.iter().all(|&n| n > 0) {
                break;
            }
            if round == ROUNDS {
                bail!("warm-up on {listener}: connections per worker {per_worker:?} after {ROUNDS} rounds");
            }
        }
        for (t, n) in total.iter_mut().zip(per_worker) {
            *t += n;
        }
    }
    Ok(total)
}

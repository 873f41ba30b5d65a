//! A policy change while requests flow takes effect in every Envoy worker, and how fast:
//! update-to-enforcement latency = from rewriting the updates file to the moment requests on
//! keep-alive connections held by *every* worker (checked with Envoy's per-worker gauges) see
//! the new decision, while paced background traffic runs. Budget: p99 <= 50 ms with
//! `--concurrency 2` (override with ALP_E2E_LATENCY_BUDGET_MS); a second series of changes is
//! measured if the first misses it, and every series is printed. The figure includes control's
//! file polling (`--watch-interval-ms 10`, so about 5 ms on average). This file holds one test
//! so it never shares the machine with another stack.

use alp_e2e::http::Conn;
use alp_e2e::policy::single_policy;
use alp_e2e::probe::{assert_stable, await_decision, connections_on_every_worker, stagger};
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::stats::{self, latency_budget_ms, percentile, sorted, tenths};
use alp_e2e::{report, Stack};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRIALS: usize = 20;
const PROBE_CONNECTIONS: usize = 8;

fn policy(allow: bool) -> Vec<Value> {
    let action = if allow { "allow" } else { "deny" };
    single_policy(
        "app",
        "127.0.32.1",
        vec![],
        json!([{"action": action, "httpMatch": {"methods": ["GET"]}}]),
    )
}

fn status_of(allow: bool) -> u16 {
    if allow {
        200
    } else {
        403
    }
}

#[test]
fn policy_changes_reach_every_worker_quickly_under_load() {
    let mut stack = Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new("app", Updates::Messages(policy(true)))],
        concurrency: 2,
        ..StackOptions::default()
    })
    .expect("start the stack");
    let addr = stack.addr("app");
    let (mut conns, per_worker) = connections_on_every_worker(&stack, "app", PROBE_CONNECTIONS);
    println!("probe connections per worker: {per_worker:?}");

    // Background load on its own connections: every answer must be a decision (200 or 403),
    // never an error or 503, while the policy flips underneath.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut c =
                    Conn::tcp(addr, None, Duration::from_secs(10)).map_err(|e| e.to_string())?;
                while !stop.load(Ordering::Relaxed) {
                    if c.is_closed() {
                        c = Conn::tcp(addr, None, Duration::from_secs(10))
                            .map_err(|e| e.to_string())?;
                    }
                    let r = c
                        .request("GET", "/load", &[])
                        .map_err(|e| format!("load request: {e:#}"))?;
                    if r.status != 200 && r.status != 403 {
                        return Err(format!("load got {}", r.summary()));
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    // Paced (about 1-2 k requests/s per thread): steady traffic on both workers
                    // without starving control and Envoy's main thread of the two cores.
                    std::thread::sleep(Duration::from_micros(500));
                }
                Ok(())
            })
        })
        .collect();

    // A timing budget on a shared 2-core machine: a noisy neighbour can stall one change, so a
    // second series is measured if the first misses the budget; every series is printed.
    let budget = latency_budget_ms(50.0);
    let mut allow = true;
    let mut results = vec![];
    for series in 1..=2 {
        let (all, skew) = measure_series(&stack, &mut conns, &mut allow);
        let (all_s, skew_s) = (sorted(&all), sorted(&skew));
        let (p50, p99) = (percentile(&all_s, 50.0), percentile(&all_s, 99.0));
        report(format!(
            "update-to-enforcement latency, series {series}, {TRIALS} changes, every worker (--concurrency {}, control \
             --watch-interval-ms 10): p50 {p50:.1} ms, p99 {p99:.1} ms (budget {budget} ms); first-to-last connection p50 {:.1} ms, \
             p99 {:.1} ms; samples {:?}",
            stack.concurrency,
            percentile(&skew_s, 50.0),
            percentile(&skew_s, 99.0),
            tenths(&all),
        ));
        results.push(p99);
        if p99 <= budget {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap().unwrap();
    }
    let per_worker = stack
        .envoy
        .worker_connections("inbound_app", stack.concurrency)
        .unwrap();
    report(format!("{} load requests during the changes; probe connections per worker at the end {per_worker:?}", served.load(Ordering::Relaxed)));
    let best = stats::min(&results);
    assert!(
        best <= budget,
        "update-to-enforcement p99 {results:?} ms exceeds {budget} ms; {}",
        stack.diagnostics("app")
    );
    stack.kill_control("app");
}

/// Flips the policy TRIALS times; per change, the time until every probe connection saw it and
/// the spread between the first and the last connection to see it (ms).
fn measure_series(stack: &Stack, conns: &mut [Conn], allow: &mut bool) -> (Vec<f64>, Vec<f64>) {
    let addr = stack.addr("app");
    let (mut all_ms, mut skew_ms) = (vec![], vec![]);
    for trial in 0..TRIALS {
        *allow = !*allow;
        let want = status_of(*allow);
        // Pause a varying time so the write lands at different points of control's watch cycle
        // and the filters' tick.
        std::thread::sleep(stagger(trial));
        let start = Instant::now();
        stack.write_updates("app", &policy(*allow)).unwrap();
        let seen = await_decision(conns, addr, "/probe", want, start, Duration::from_secs(10));
        assert!(
            seen.iter().all(Option::is_some),
            "trial {trial}: not every connection saw the change in 10 s; {}",
            stack.diagnostics("app")
        );
        let last = seen.iter().flatten().max().copied().unwrap_or_default();
        let first = seen.iter().flatten().min().copied().unwrap_or_default();
        all_ms.push(last.as_secs_f64() * 1000.0);
        skew_ms.push((last - first).as_secs_f64() * 1000.0);
        // Once enforced, the decision is stable on every connection.
        assert_stable(conns, "/probe", want, trial);
    }
    (all_ms, skew_ms)
}

//! Keep-alive probe connections held by every Envoy worker, and waiting for a change to reach
//! all of them: how the latency tests see a decision change on every worker, not just where one
//! connection happens to land.
//!
//! These are test steps: they panic (with what went wrong) instead of returning errors.

use crate::http::Conn;
use crate::stack::Stack;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens keep-alive connections to workload `name` (one `GET /warm` on each) until there are at
/// least `at_least` and every Envoy worker holds some (Envoy's kernel-balanced listener decides
/// which worker gets a connection; the admin's per-worker gauges tell). Returns them with the
/// per-worker connection counts; panics after 64 connections.
pub fn connections_on_every_worker(
    stack: &Stack,
    name: &str,
    at_least: usize,
) -> (Vec<Conn>, Vec<u64>) {
    let addr = stack.addr(name);
    let listener = format!("inbound_{name}");
    let mut conns = vec![];
    for _ in 0..64 {
        let mut c = Conn::tcp(addr, None, CONNECT_TIMEOUT).unwrap();
        c.request("GET", "/warm", &[]).unwrap();
        conns.push(c);
        if conns.len() >= at_least {
            let per_worker = stack
                .envoy
                .worker_connections(&listener, stack.concurrency)
                .unwrap();
            if per_worker.iter().all(|&n| n > 0) {
                return (conns, per_worker);
            }
        }
    }
    panic!("could not get connections on every worker");
}

/// Replaces `c` with a new connection to `addr` once the server has closed it.
pub fn reopen_if_closed(c: &mut Conn, addr: SocketAddr) {
    if c.is_closed() {
        *c = Conn::tcp(addr, None, CONNECT_TIMEOUT).unwrap();
    }
}

/// How long to pause before change `trial` of a series: varied, so the changes land at different
/// points of control's watch cycle and the filters' polls and ticks.
pub fn stagger(trial: usize) -> Duration {
    Duration::from_millis(60 + (trial as u64 * 37) % 120)
}

/// Sends `GET path` on every connection (reopening closed ones) until each has answered `want`
/// once, or `within` has passed since `start`; returns, per connection, how long after `start`
/// it first answered `want` (`None`: not within the time). Every answer must be 200 or 403.
pub fn await_decision(
    conns: &mut [Conn],
    addr: SocketAddr,
    path: &str,
    want: u16,
    start: Instant,
    within: Duration,
) -> Vec<Option<Duration>> {
    let mut seen: Vec<Option<Duration>> = vec![None; conns.len()];
    let deadline = start + within;
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, c) in conns.iter_mut().enumerate() {
            if seen[i].is_some() {
                continue;
            }
            reopen_if_closed(c, addr);
            let r = c.request("GET", path, &[]).unwrap();
            assert!(
                r.status == 200 || r.status == 403,
                "probe got {}",
                r.summary()
            );
            if r.status == want {
                seen[i] = Some(start.elapsed());
            }
        }
    }
    seen
}

/// Once change `trial` is enforced, the decision is stable: every open connection answers
/// `GET path` with `want` again.
pub fn assert_stable(conns: &mut [Conn], path: &str, want: u16, trial: usize) {
    for c in conns.iter_mut().filter(|c| !c.is_closed()) {
        assert_eq!(
            c.request("GET", path, &[]).unwrap().status,
            want,
            "trial {trial}: decision flapped"
        );
    }
}

//! Background load that checks every answer: threads sending `GET /denied/x` (which the
//! workload's policy must refuse with 403) and `GET /allowed/x` (which it must serve with 200),
//! alternating, on keep-alive connections with a fresh one every 50th request, for as long as a
//! test restarts Felix, control or Envoy underneath. Every answer is tallied; any other answer
//! or a failed request is a violation.

use crate::http::{Conn, Response};
use anyhow::Result;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the load (and any probe that shares it) saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests that had to be refused (403) and were.
    pub denied_ok: u64,
    /// Requests that had to be served (200) and were.
    pub allowed_ok: u64,
    /// Everything else, each as `<what>: <answer or error>`.
    pub violations: Vec<String>,
}

impl Tally {
    /// Counts the `outcome` of a request (`what` names it in a violation) that had to answer
    /// `want`: 403 counts as a refused denied request, 200 as a served allowed one.
    pub fn record(&mut self, what: &str, want: u16, outcome: Result<Response>) {
        match outcome {
            Ok(r) if r.status == want => {
                if want == 403 {
                    self.denied_ok += 1
                } else {
                    self.allowed_ok += 1
                }
            }
            Ok(r) => self.violations.push(format!("{what}: {}", r.summary())),
            Err(e) => self.violations.push(format!("{what}: {e:#}")),
        }
    }
}

/// How the load runs.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Sending threads (each on its own connections).
    pub threads: usize,
    /// Pause after each request; `None` sends back to back.
    pub pace: Option<Duration>,
    /// Whether a connection that cannot be opened is a violation (`cannot connect`, retried
    /// after 10 ms) or is retried at once without counting.
    pub connect_failure_is_violation: bool,
}

/// The running load; [`DecisionLoad::stop`] ends it and hands back the tally. Dropped without
/// `stop`, it tells its threads to end.
pub struct DecisionLoad {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
}

impl DecisionLoad {
    /// Starts the threads against the listener at `addr`.
    pub fn start(addr: SocketAddr, opts: LoadOptions) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let threads = (0..opts.threads as u64)
            .map(|n| {
                let (stop, tally) = (stop.clone(), tally.clone());
                std::thread::spawn(move || run(addr, n, opts, &stop, &tally))
            })
            .collect();
        DecisionLoad {
            stop,
            tally,
            threads,
        }
    }

    /// The tally the threads add to, for probes whose answers count with the load's.
    pub fn tally(&self) -> &Mutex<Tally> {
        &self.tally
    }

    /// Stops the threads, waits for them and returns what they (and the probes) saw.
    pub fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

impl Drop for DecisionLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One thread; thread `n` alternates out of step with thread `n + 1`, so both kinds of request
/// are always in flight.
fn run(addr: SocketAddr, n: u64, opts: LoadOptions, stop: &AtomicBool, tally: &Mutex<Tally>) {
    let mut conn: Option<Conn> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        // Mostly keep-alive; every 50th request on a fresh connection.
        if conn.as_ref().is_none_or(|c| c.is_closed()) || i.is_multiple_of(50) {
            conn = Conn::tcp(addr, None, Duration::from_secs(10)).ok();
        }
        let Some(c) = conn.as_mut() else {
            if opts.connect_failure_is_violation {
                tally
                    .lock()
                    .unwrap()
                    .violations
                    .push("cannot connect".into());
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        };
        let (path, want) = if i % 2 == n % 2 {
            ("/denied/x", 403)
        } else {
            ("/allowed/x", 200)
        };
        let outcome = c.request("GET", path, &[]);
        tally.lock().unwrap().record(path, want, outcome);
        if let Some(pace) = opts.pace {
            std::thread::sleep(pace);
        }
    }
}

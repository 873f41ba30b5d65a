//! Background load of new connections: threads opening plaintext connections back to back
//! against a TCP listener while a test changes the policy underneath, each connection checked:
//! it must be echoed whole or closed without a byte (whichever the policy says at the time),
//! never half of an answer, never a connection error.

use crate::tcp_cases::token;
use crate::tcp_client::{self, TcpTransport};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The running load; [`ConnectionLoad::stop`] ends it and says what it saw. Dropped without
/// `stop`, it tells its threads to end.
pub struct ConnectionLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(u64, Vec<String>)>>,
}

impl ConnectionLoad {
    /// Two threads opening connections from `source` to the TCP listener at `addr`.
    pub fn start(addr: SocketAddr, source: IpAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|n| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut served, mut violations) = (0u64, vec![]);
                    while !stop.load(Ordering::Relaxed) {
                        let payload = token(&format!("load{n}"));
                        match tcp_client::dial(
                            addr,
                            Some(source),
                            &TcpTransport::Plaintext,
                            0,
                            &payload,
                        ) {
                            Ok(o) if o.passed(&payload) || o.closed_silently() => served += 1,
                            Ok(o) => violations.push(o.summary()),
                            Err(e) => violations.push(format!("{e:#}")),
                        }
                        // Paced: steady new connections on both workers without starving
                        // control and Envoy's main thread of the two cores.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    (served, violations)
                })
            })
            .collect();
        ConnectionLoad { stop, threads }
    }

    /// Stops the threads and waits for them: how many connections were as they must be, and
    /// every one that was not (what the client saw). A thread that panicked panics here.
    pub fn stop(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = (0, vec![]);
        for t in self.threads.drain(..) {
            let (served, violations) = t.join().expect("a load thread panicked");
            total.0 += served;
            total.1.extend(violations);
        }
        total
    }
}

impl Drop for ConnectionLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

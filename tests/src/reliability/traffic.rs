//! The load of a reliability run, every request recorded.
//!
//! * HTTP: `http_threads` threads, each on its own keep-alive HTTP/1.1 connection (a fresh one
//!   every `reconnect_every` requests, and whenever the server closed it), cycling through
//!   `scenario::HTTP_CLASSES`, paced to `http_rate` requests per second in total. Each request
//!   carries `x-request-id: r<thread>-<seq>` (the bootstrap preserves it), so its decision-log
//!   line is found.
//! * TCP: `tcp_threads` threads opening new plaintext connections from `scenario::TCP_SOURCE`
//!   at `tcp_rate` per second in total, each sending a token and reading until the echo comes
//!   back (allowed) or the connection closes without a byte (denied). The local port is kept:
//!   with the time it finds the connection's decision-log line.

use super::now_ms;
use super::scenario::{Class, HTTP_CLASSES, TCP_SOURCE};
use crate::http::Conn;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a request or connection got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// HTTP 200, or a TCP connection echoed whole.
    Allowed,
    /// HTTP 403 `denied by policy`, or a TCP connection closed before any byte came back.
    Denied,
    /// Another HTTP status (503 while not in sync, a crashed VM...).
    Status(u16),
    /// No answer: could not connect, reset, timed out, half an echo.
    Failed,
}

impl Answer {
    /// Whether the request got through (the only answer that can be a security violation).
    pub fn is_allowed(self) -> bool {
        self == Answer::Allowed
    }
}

/// One request (or connection).
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub class: Class,
    /// HTTP: the load thread; TCP: 255.
    pub thread: u8,
    /// HTTP: the request's sequence number on its thread (its id is `r<thread>-<seq>`); TCP: the
    /// client's local port.
    pub seq: u32,
    pub sent_ms: f64,
    pub received_ms: f64,
    pub answer: Answer,
}

impl Record {
    pub fn request_id(&self) -> String {
        format!("r{}-{}", self.thread, self.seq)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct TrafficOptions {
    pub http_threads: usize,
    /// Requests per second over all HTTP threads.
    pub http_rate: f64,
    pub reconnect_every: u32,
    pub tcp_threads: usize,
    /// New connections per second over all TCP threads.
    pub tcp_rate: f64,
    /// Read timeout of every request and connection.
    pub timeout: Duration,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        TrafficOptions {
            http_threads: 4,
            http_rate: 2400.0,
            reconnect_every: 200,
            tcp_threads: 2,
            tcp_rate: 160.0,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Where the load goes; changed with [`Traffic::retarget`] when Envoy restarts on new ports.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    pub http: SocketAddr,
    pub tcp: SocketAddr,
}

/// The running load.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Targets>>,
    threads: Vec<JoinHandle<Vec<Record>>>,
    started: Instant,
}

impl Traffic {
    pub fn start(targets: Targets, opts: TrafficOptions) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(targets));
        let mut threads = vec![];
        for n in 0..opts.http_threads {
            let (stop, targets) = (stop.clone(), targets.clone());
            let interval = opts.http_threads as f64 / opts.http_rate;
            threads.push(std::thread::spawn(move || {
                http_thread(n as u8, interval, opts, &stop, &targets)
            }));
        }
        for n in 0..opts.tcp_threads {
            let (stop, targets) = (stop.clone(), targets.clone());
            let interval = opts.tcp_threads as f64 / opts.tcp_rate;
            threads.push(std::thread::spawn(move || {
                tcp_thread(n as u64, interval, opts, &stop, &targets)
            }));
        }
        Traffic {
            stop,
            targets,
            threads,
            started: Instant::now(),
        }
    }

    pub fn retarget(&self, targets: Targets) {
        if let Ok(mut t) = self.targets.lock() {
            *t = targets;
        }
    }

    /// Stops the threads: every record, sorted by send time, and how long the load ran.
    pub fn stop(mut self) -> (Vec<Record>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let ran = self.started.elapsed();
        let mut all = vec![];
        for t in self.threads.drain(..) {
            all.extend(t.join().expect("a load thread panicked"));
        }
        all.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
        (all, ran)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sleeps until `next` (seconds since `start`), then advances it by `interval`; when more than
/// a second behind, it starts again from now rather than bursting.
fn pace(start: Instant, next: &mut f64, interval: f64) {
    let now = start.elapsed().as_secs_f64();
    if *next > now {
        std::thread::sleep(Duration::from_secs_f64(*next - now));
    } else if now - *next > 1.0 {
        *next = now;
    }
    *next += interval;
}

fn http_thread(
    n: u8,
    interval: f64,
    opts: TrafficOptions,
    stop: &AtomicBool,
    targets: &Mutex<Targets>,
) -> Vec<Record> {
    let mut out = Vec::with_capacity(1 << 16);
    let mut conn: Option<Conn> = None;
    let mut on_conn = 0u32;
    let start = Instant::now();
    let mut next = 0.0;
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        pace(start, &mut next, interval);
        let addr = targets
            .lock()
            .map(|t| t.http)
            .unwrap_or_else(|e| e.into_inner().http);
        if conn.as_ref().is_none_or(|c| c.is_closed()) || on_conn >= opts.reconnect_every {
            conn = Conn::tcp(addr, None, opts.timeout).ok();
            on_conn = 0;
        }
        seq += 1;
        let class = HTTP_CLASSES[(seq as usize + n as usize) % HTTP_CLASSES.len()];
        let sent_ms = now_ms();
        let answer = match conn.as_mut() {
            None => Answer::Failed,
            Some(c) => {
                on_conn += 1;
                let id = format!("r{n}-{seq}");
                match c.request("GET", class.path(), &[("x-request-id", &id)]) {
                    Ok(r) if r.status == 200 => Answer::Allowed,
                    Ok(r) if r.status == 403 => Answer::Denied,
                    Ok(r) => Answer::Status(r.status),
                    Err(_) => {
                        conn = None;
                        Answer::Failed
                    }
                }
            }
        };
        out.push(Record {
            class,
            thread: n,
            seq,
            sent_ms,
            received_ms: now_ms(),
            answer,
        });
        if answer == Answer::Failed {
            // Do not spin on a listener that is not there.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    out
}

fn tcp_thread(
    n: u64,
    interval: f64,
    opts: TrafficOptions,
    stop: &AtomicBool,
    targets: &Mutex<Targets>,
) -> Vec<Record> {
    let mut out = Vec::with_capacity(1 << 14);
    let start = Instant::now();
    let mut next = 0.0;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        pace(start, &mut next, interval);
        let addr = targets
            .lock()
            .map(|t| t.tcp)
            .unwrap_or_else(|e| e.into_inner().tcp);
        i += 1;
        let token = format!("tcp-{n}-{i}\n");
        let sent_ms = now_ms();
        let (port, answer) = dial(addr, token.as_bytes(), opts.timeout);
        out.push(Record {
            class: Class::Tcp,
            thread: 255,
            seq: u32::from(port),
            sent_ms,
            received_ms: now_ms(),
            answer,
        });
    }
    out
}

/// One connection: (local port, what happened).
fn dial(addr: SocketAddr, token: &[u8], timeout: Duration) -> (u16, Answer) {
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else {
        return (0, Answer::Failed);
    };
    if socket
        .bind(&SockAddr::from(SocketAddr::new(TCP_SOURCE, 0)))
        .is_err()
    {
        return (0, Answer::Failed);
    }
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(0, |a| a.port());
    if socket
        .connect_timeout(&SockAddr::from(addr), timeout)
        .is_err()
    {
        return (port, Answer::Failed);
    }
    let mut s: TcpStream = socket.into();
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    // A denied connection may be closed before or while the token is written.
    let wrote = s.write_all(token).is_ok();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                got.extend_from_slice(&buf[..k]);
                if got.len() >= token.len() {
                    break;
                }
            }
            Err(e)
                if got.is_empty()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) =>
            {
                break
            }
            Err(_) => return (port, Answer::Failed),
        }
    }
    let answer = if got == token {
        Answer::Allowed
    } else if got.is_empty() {
        let _ = wrote;
        Answer::Denied
    } else {
        Answer::Failed
    };
    (port, answer)
}

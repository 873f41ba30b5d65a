//! The benchmark's own HTTP/1.1 load generator, for what wrk cannot do:
//!
//! * **mTLS**: wrk has no client certificates; this presents the client's SPIFFE certificate
//!   (rustls), so the filter sees a real peer identity;
//! * **open loop at a fixed rate**, corrected for coordinated omission as wrk2 does (wrk2 is
//!   not packaged by Debian; `oha` builds for minutes): each connection has its own schedule of
//!   send times (the rate spread evenly over the connections, interleaved), and a request's
//!   latency runs from its *scheduled* time, so a slow response also charges the requests it
//!   delayed. Pacing is microsecond-accurate: tokio's timer (1 ms) only sleeps until shortly
//!   before a send time, then the task spins by yielding (the generator has a core of its own).
//!
//! One thread, a single-threaded tokio runtime, N keep-alive connections each with one request
//! in flight (no pipelining), the same request bytes as wrk sends (`headers.rs`). TLS handshakes
//! happen before the warm-up, so the measurement is steady-state record encryption. Latencies are
//! kept whole (sorted at the end), so percentiles are exact.
//!
//! With [`ConnMode::Close`] each request gets a connection of its own instead: connect (mTLS: a
//! full handshake, the client configuration keeps no sessions), send with `connection: close`,
//! read the response, close (the client first, as wrk does; Envoy would wait for it). Its latency
//! runs from the connect.
//!
//! `http2.rs` drives HTTP/2 with the same thread, window and tally ([`on_load_thread`],
//! [`gather`]).

use crate::headers::{self, HeaderSet};
use crate::procstat::{CpuUsed, CpuWindow, Own};
use crate::variant::ConnMode;
use anyhow::{anyhow, bail, Context as _, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

/// Where and what to send.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// TLS with a client certificate; `None`: plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The request target (`/orders/42`).
    pub path: String,
    /// The fields sent besides `Host` / the pseudo-headers.
    pub headers: HeaderSet,
}

impl Target {
    /// The HTTP/1.1 request (`close`: with `connection: close`); `Host` is the address.
    pub fn request_bytes(&self, close: bool) -> Vec<u8> {
        headers::http1_request(&self.path, &self.addr.to_string(), self.headers, close)
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Each connection sends its next request as soon as the previous response is in.
    Closed,
    /// `rate` requests per second in total, on a fixed schedule.
    Open { rate: f64 },
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub pace: Pace,
    /// Pin the generator's thread to this CPU.
    pub cpu: Option<usize>,
    /// Processes whose CPU time to measure over the window, and the CPU they run on (watched
    /// for other work, as is the generator's own CPU).
    pub watch: Option<(Vec<u32>, usize)>,
    /// HTTP/1.1: keep-alive connections, or one per request.
    pub connection: ConnMode,
}

/// What one run measured (the warm-up excluded).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Responses counted in the measured window.
    pub requests: u64,
    pub non_2xx: u64,
    /// Connection and protocol errors.
    pub errors: u64,
    /// Open loop: scheduled requests never sent because the server fell too far behind.
    pub unsent: u64,
    pub elapsed: Duration,
    /// Nanoseconds, sorted.
    pub latencies: Vec<u64>,
    /// CPU used over the measured window (`Settings::watch`).
    pub cpu: Option<CpuUsed>,
}

impl Outcome {
    /// The `p`-th percentile latency in microseconds (nearest rank).
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[i] as f64 / 1e3
    }
}

/// A rustls client configuration trusting `ca` and presenting `cert`/`key` (PEM files), offering
/// `alpn` (`http/1.1`, `h2`) alone. `resume`: keep session tickets (rustls' default); without,
/// every handshake is a full one.
pub fn tls_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    alpn: &str,
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut config = alp_e2e::tls::client_config_from(ca, cert, key)?;
    config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// A client connection, plaintext or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// A connection to `target` (TLS: handshake done, the one protocol offered by ALPN agreed).
pub async fn connect(target: &Target) -> Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    tcp.set_nodelay(true)?;
    match &target.tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .context("TLS handshake")?;
            let agreed = tls.get_ref().1.alpn_protocol();
            if let Some(offered) = config.alpn_protocols.first() {
                if agreed != Some(offered.as_slice()) {
                    bail!(
                        "ALPN: offered {:?}, agreed {:?}",
                        String::from_utf8_lossy(offered),
                        agreed.map(String::from_utf8_lossy)
                    );
                }
            }
            Ok(Box::new(tls))
        }
    }
}

/// Reads one response; returns its status and whether the server closes the connection after
/// it. `buf` keeps any bytes past it (none without pipelining).
async fn read_response(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<(u16, bool)> {
    let mut scanned: usize = 0;
    let head_end = loop {
        if let Some(i) = buf[scanned.saturating_sub(3)..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            break scanned.saturating_sub(3) + i + 4;
        }
        scanned = buf.len();
        if buf.len() > 64 * 1024 {
            bail!("response head too long");
        }
        read_more(io, buf).await?;
    };
    let head = &buf[..head_end];
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
    let mut length = None;
    let mut close = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
        } else if name.eq_ignore_ascii_case(b"connection") && value.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            bail!("chunked responses are not expected");
        }
    }
    let length = length.ok_or_else(|| anyhow!("response without content-length"))?;
    while buf.len() < head_end + length {
        read_more(io, buf).await?;
    }
    buf.drain(..head_end + length);
    Ok((status, close))
}

async fn read_more(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 4096];
    let n = io.read(&mut chunk).await?;
    if n == 0 {
        bail!("connection closed");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// One request on a fresh connection (`close`: with `connection: close`): its status (sanity
/// checks before measuring).
pub fn probe(target: &Target, close: bool) -> Result<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut io = connect(target).await?;
        io.write_all(&target.request_bytes(close)).await?;
        let mut buf = Vec::new();
        let (status, _) =
            tokio::time::timeout(Duration::from_secs(5), read_response(&mut io, &mut buf))
                .await
                .context("no response in 5 s")??;
        Ok(status)
    })
}

/// Waits until `at`: the timer while far, then yielding (microsecond accuracy).
pub async fn wait_until(at: Instant) {
    const SPIN: Duration = Duration::from_micros(1500);
    let now = Instant::now();
    if at > now + SPIN {
        tokio::time::sleep_until((at - SPIN).into()).await;
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

/// The measured window: what starts before `start` is warm-up.
#[derive(Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

/// What one connection (or HTTP/2 stream loop) counted in the window.
#[derive(Default)]
pub struct Tally {
    pub requests: u64,
    pub unsent: u64,
    pub non_2xx: u64,
    pub errors: u64,
    pub latencies: Vec<u64>,
}

impl Tally {
    /// A response (`status`) to a request sent at `from`, in at `done`.
    pub fn count(&mut self, status: u16, from: Instant, done: Instant) {
        self.requests += 1;
        if !(200..300).contains(&status) {
            self.non_2xx += 1;
        }
        self.latencies.push((done - from).as_nanos() as u64);
    }
}

/// One connection's loop (`ConnMode::Close`: one connection after another). `io`: the
/// keep-alive connection made before the warm-up; `None`: connect when sending.
async fn connection(
    target: Target,
    mut io: Option<Box<dyn Io>>,
    k: usize,
    settings: Settings,
    begin: Instant,
    window: Window,
) -> Tally {
    let close = settings.connection == ConnMode::Close;
    let request = target.request_bytes(close);
    let mut buf = Vec::with_capacity(8192);
    let mut tally = Tally::default();
    let interval = match settings.pace {
        Pace::Open { rate } => Some(Duration::from_secs_f64(settings.connections as f64 / rate)),
        Pace::Closed => None,
    };
    // Open loop: connection k's sends are at begin + (k + j*C)/rate.
    let mut next = match interval {
        Some(i) => begin + i.mul_f64(k as f64 / settings.connections as f64),
        None => begin,
    };
    loop {
        let intended = match interval {
            Some(i) => {
                let slot = next;
                next += i;
                if slot >= window.end {
                    break;
                }
                if Instant::now() > window.end + Duration::from_secs(1) {
                    // Saturated: the schedule is far behind. Count what was never sent.
                    let left = (window.end - slot).as_secs_f64() / i.as_secs_f64();
                    tally.unsent += left.ceil() as u64;
                    break;
                }
                wait_until(slot).await;
                slot
            }
            None => {
                let now = Instant::now();
                if now >= window.end {
                    break;
                }
                now
            }
        };
        let result = async {
            if io.is_none() {
                io = Some(connect(&target).await?);
            }
            let conn = io.as_mut().context("no connection")?;
            conn.write_all(&request).await?;
            match read_response(conn, &mut buf).await? {
                (status, false) => Ok(status),
                (status, true) if close => Ok(status),
                (_, true) => Err(anyhow!("server closed the connection")),
            }
        }
        .await;
        let done = Instant::now();
        if close || result.is_err() {
            // Close: the client closes first, right after the response.
            io = None;
            buf.clear();
        }
        let counted = match interval {
            Some(_) => intended >= window.start,
            None => intended >= window.start && done <= window.end,
        };
        match result {
            Ok(status) => {
                if counted {
                    tally.count(status, intended, done);
                }
            }
            Err(_) => {
                // Reconnects when sending the next request.
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

/// Runs the load and returns what was measured. Blocks for warm-up + duration.
pub fn run(target: &Target, settings: &Settings) -> Result<Outcome> {
    let (target, settings) = (target.clone(), settings.clone());
    on_load_thread(settings.cpu, move || run_async(target, settings))
}

/// Runs `body` on a thread of its own (pinned to `cpu`), in a single-threaded runtime inside a
/// `LocalSet` (so `spawn_local` works), and returns its result.
pub fn on_load_thread<T, F, Fut>(cpu: Option<usize>, body: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(tokio::task::LocalSet::new().run_until(body()))
            })
            .join()
            .map_err(|_| anyhow!("the load generator thread panicked"))?
    })
}

/// The window of a run that starts now: warm-up, then the measured duration.
pub fn window(settings: &Settings) -> (Instant, Window) {
    let begin = Instant::now() + Duration::from_millis(5);
    let start = begin + settings.warmup;
    (
        begin,
        Window {
            start,
            end: start + settings.duration,
        },
    )
}

async fn run_async(target: Target, settings: Settings) -> Result<Outcome> {
    let mut streams = Vec::with_capacity(settings.connections);
    for _ in 0..settings.connections {
        streams.push(match settings.connection {
            ConnMode::KeepAlive => Some(connect(&target).await?),
            ConnMode::Close => None,
        });
    }
    let (begin, window) = window(&settings);
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, io)| {
            tokio::task::spawn_local(connection(
                target.clone(),
                io,
                k,
                settings.clone(),
                begin,
                window,
            ))
        })
        .collect();
    gather(handles, &settings, window).await
}

/// Waits for the tasks of one run (spawned on the current `LocalSet`, right before), measures
/// the CPU over `window` meanwhile (`Settings::watch`), and sums their tallies.
pub async fn gather(
    handles: Vec<JoinHandle<Tally>>,
    settings: &Settings,
    window: Window,
) -> Result<Outcome> {
    let Window { start, end } = window;
    let load_cpu = settings.cpu;
    let watcher = settings.watch.clone().map(|(pids, cpu)| {
        tokio::task::spawn_local(async move {
            wait_until(start).await;
            let window = CpuWindow::start(&pids, cpu, load_cpu.map(|c| (c, Own::Thread)))?;
            wait_until(end).await;
            window.stop()
        })
    });
    let mut tallies = Vec::new();
    for h in handles {
        // A response stuck past the end (a hung server) must not hang the benchmark.
        match tokio::time::timeout_at((end + Duration::from_secs(5)).into(), h).await {
            Ok(Ok(t)) => tallies.push(t),
            Ok(Err(e)) => return Err(anyhow!("connection task failed: {e}")),
            Err(_) => tallies.push(Tally {
                errors: 1,
                ..Tally::default()
            }),
        }
    }
    let cpu = match watcher {
        Some(w) => Some(w.await.map_err(|e| anyhow!("CPU watcher failed: {e}"))??),
        None => None,
    };
    let mut outcome = Outcome {
        elapsed: settings.duration,
        cpu,
        ..Outcome::default()
    };
    for t in tallies {
        outcome.requests += t.requests;
        outcome.non_2xx += t.non_2xx;
        outcome.errors += t.errors;
        outcome.unsent += t.unsent;
        outcome.latencies.extend(t.latencies);
    }
    outcome.latencies.sort_unstable();
    Ok(outcome)
}

/// Restricts the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it; sched_setaffinity(0, ...)
    // applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity(cpu {cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

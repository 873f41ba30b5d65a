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
//! in flight (no pipelining), the same request bytes as wrk sends. TLS handshakes happen before
//! the warm-up, so the measurement is steady-state record encryption. Latencies are kept whole
//! (sorted at the end), so percentiles are exact.

use crate::procstat::{CpuUsed, CpuWindow, Own};
use anyhow::{anyhow, bail, Context as _, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Where and what to send.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// TLS with a client certificate; `None`: plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The request target (`/orders/42`).
    pub path: String,
}

impl Target {
    fn request_bytes(&self) -> Vec<u8> {
        format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", self.path, self.addr).into_bytes()
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
/// HTTP/1.1 by ALPN.
pub fn tls_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut config = alp_e2e::tls::client_config_from(ca, cert, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client connection, plaintext or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

async fn connect(target: &Target) -> Result<Box<dyn Io>> {
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
            Ok(Box::new(tls))
        }
    }
}

/// Reads one response; returns its status. `buf` keeps any bytes past it (none without
/// pipelining).
async fn read_response(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Result<u16> {
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
    if close {
        bail!("server closed the connection");
    }
    Ok(status)
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

/// One request on a fresh connection: its status (sanity checks before measuring).
pub fn probe(target: &Target) -> Result<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut io = connect(target).await?;
        io.write_all(&target.request_bytes()).await?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), read_response(&mut io, &mut buf))
            .await
            .context("no response in 5 s")?
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

struct Window {
    start: Instant,
    end: Instant,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    unsent: u64,
    non_2xx: u64,
    errors: u64,
    latencies: Vec<u64>,
}

async fn connection(
    target: Target,
    mut io: Box<dyn Io>,
    k: usize,
    settings: Settings,
    begin: Instant,
    window: Window,
) -> Tally {
    let request = target.request_bytes();
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
            io.write_all(&request).await?;
            read_response(&mut io, &mut buf).await
        }
        .await;
        let done = Instant::now();
        let counted = match interval {
            Some(_) => intended >= window.start,
            None => intended >= window.start && done <= window.end,
        };
        match result {
            Ok(status) => {
                if counted {
                    tally.requests += 1;
                    if !(200..300).contains(&status) {
                        tally.non_2xx += 1;
                    }
                    tally.latencies.push((done - intended).as_nanos() as u64);
                }
            }
            Err(_) => {
                tally.errors += 1;
                buf.clear();
                tokio::time::sleep(Duration::from_millis(10)).await;
                match connect(&target).await {
                    Ok(fresh) => io = fresh,
                    Err(_) if Instant::now() < window.end => continue,
                    Err(_) => break,
                }
            }
        }
    }
    tally
}

/// Runs the load and returns what was measured. Blocks for warm-up + duration.
pub fn run(target: &Target, settings: &Settings) -> Result<Outcome> {
    let target = target.clone();
    let settings = settings.clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if let Some(cpu) = settings.cpu {
                    pin_current_thread(cpu)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(run_async(target, settings))
            })
            .join()
            .map_err(|_| anyhow!("the load generator thread panicked"))?
    })
}

async fn run_async(target: Target, settings: Settings) -> Result<Outcome> {
    let mut streams = Vec::with_capacity(settings.connections);
    for _ in 0..settings.connections {
        streams.push(connect(&target).await?);
    }
    let begin = Instant::now() + Duration::from_millis(5);
    let start = begin + settings.warmup;
    let end = start + settings.duration;
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, io)| {
            local.spawn_local(connection(
                target.clone(),
                io,
                k,
                settings.clone(),
                begin,
                Window { start, end },
            ))
        })
        .collect();
    let load_cpu = settings.cpu;
    let watcher = settings.watch.clone().map(|(pids, cpu)| {
        local.spawn_local(async move {
            wait_until(start).await;
            let window = CpuWindow::start(&pids, cpu, load_cpu.map(|c| (c, Own::Thread)))?;
            wait_until(end).await;
            window.stop()
        })
    });
    let (tallies, cpu) = local
        .run_until(async {
            let mut out = Vec::new();
            for h in handles {
                // A response stuck past the end (a hung server) must not hang the benchmark.
                match tokio::time::timeout_at((end + Duration::from_secs(5)).into(), h).await {
                    Ok(Ok(t)) => out.push(t),
                    Ok(Err(e)) => return Err(anyhow!("connection task failed: {e}")),
                    Err(_) => out.push(Tally {
                        errors: 1,
                        ..Tally::default()
                    }),
                }
            }
            let cpu = match watcher {
                Some(w) => Some(w.await.map_err(|e| anyhow!("CPU watcher failed: {e}"))??),
                None => None,
            };
            Ok::<_, anyhow::Error>((out, cpu))
        })
        .await?;
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

//! The benchmark's raw TCP load, against the TCP listeners (network filters, tcp_proxy, Envoy's
//! echo listener behind it):
//!
//! * **connection rate**: a closed loop of W workers, each opening a connection (plaintext, or
//!   TLS with the client's certificate: a full handshake unless resumption is asked for), writing
//!   a short request, reading it echoed back and closing, then the next. A connection counts
//!   when it started and ended inside the window; its latency runs from `connect` to the last
//!   echoed byte;
//! * **throughput**: S long-lived connections, each writing fixed-size chunks as fast as the
//!   connection takes them and reading the echo on another task; the bytes received back inside
//!   the window are counted (every byte crosses Envoy four times: in and out on the way to the
//!   echo listener, and back).
//!
//! One thread, a single-threaded tokio runtime, pinned like `load.rs`'s generator.

use crate::load::{pin_current_thread, wait_until, Io};
use crate::procstat::{CpuUsed, CpuWindow, Own};
use anyhow::{anyhow, bail, Context as _, Result};
use std::cell::Cell;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls;

/// The request of the connection-rate loop and of the probes, echoed back.
pub const MESSAGE: &[u8] = b"calico-alp bench: one short request on a fresh connection, echoed\n";

/// Where to connect, and how.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// TLS with a client certificate; `None`: plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Bind to this local address first (a denied source); `None`: the kernel's choice.
    pub source: Option<Ipv4Addr>,
}

async fn connect(target: &Target) -> Result<Box<dyn Io>> {
    let tcp = match target.source {
        None => TcpStream::connect(target.addr).await,
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((ip, 0)))?;
            socket.connect(target.addr).await
        }
    }
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

/// One short exchange on a fresh connection: connect, send, read the echo.
async fn exchange(target: &Target, message: &[u8]) -> Result<()> {
    let mut io = connect(target).await?;
    io.write_all(message).await?;
    let mut echoed = vec![0u8; message.len()];
    io.read_exact(&mut echoed).await?;
    if echoed != message {
        bail!("the echo differs from what was sent");
    }
    Ok(())
}

/// What a probe connection saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The request came back.
    Echoed,
    /// Closed (or reset) before any echo: refused.
    Closed,
}

/// One exchange (sanity checks before measuring): echoed, or closed without any echoed byte.
pub fn probe(target: &Target) -> Result<Probe> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let mut io = match connect(target).await {
                Ok(io) => io,
                // A TLS handshake the server broke off: refused.
                Err(e) if target.tls.is_some() && format!("{e:#}").contains("TLS") => {
                    return Ok(Probe::Closed)
                }
                Err(e) => return Err(e),
            };
            if io.write_all(MESSAGE).await.is_err() {
                return Ok(Probe::Closed);
            }
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while got.len() < MESSAGE.len() {
                match io.read(&mut chunk).await {
                    Ok(0) | Err(_) if got.is_empty() => return Ok(Probe::Closed),
                    Ok(0) | Err(_) => bail!("closed after {} echoed bytes", got.len()),
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
            if got != MESSAGE {
                bail!("the echo differs from what was sent");
            }
            Ok(Probe::Echoed)
        })
        .await
        .context("no echo and no close in 5 s")?
    })
}

/// How one window is run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Connection rate: concurrent workers; throughput: long connections.
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Throughput: bytes per write.
    pub chunk: usize,
    /// Pin the generator's thread to this CPU.
    pub cpu: Option<usize>,
    /// Processes whose CPU time to measure over the window, and the CPU they run on.
    pub watch: (Vec<u32>, usize),
}

/// What one window measured (the warm-up excluded).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Connection rate: connections completed in the window.
    pub connections: u64,
    /// Throughput: bytes echoed back in the window.
    pub bytes: u64,
    /// Failed connections or streams.
    pub errors: u64,
    pub elapsed: Duration,
    /// Connection rate: nanoseconds from connect to the echo, sorted.
    pub latencies: Vec<u64>,
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

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

#[derive(Default)]
struct Tally {
    connections: u64,
    errors: u64,
    latencies: Vec<u64>,
}

async fn rate_worker(target: Target, window: Window) -> Tally {
    let mut tally = Tally::default();
    loop {
        let began = Instant::now();
        if began >= window.end {
            break;
        }
        let result = exchange(&target, MESSAGE).await;
        let done = Instant::now();
        match result {
            Ok(()) => {
                if began >= window.start && done <= window.end {
                    tally.connections += 1;
                    tally.latencies.push((done - began).as_nanos() as u64);
                }
            }
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

/// Runs `task` on a pinned thread with its own single-threaded runtime.
fn on_load_thread<T: Send + 'static>(
    cpu: Option<usize>,
    task: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<T>>>> + Send + 'static,
) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(task())
            })
            .join()
            .map_err(|_| anyhow!("the TCP load generator thread panicked"))?
    })
}

/// Measures CPU over the window (spawned on the local set, awaited by the caller).
fn watcher(
    local: &tokio::task::LocalSet,
    settings: &Settings,
    window: Window,
) -> tokio::task::JoinHandle<Result<CpuUsed>> {
    let (pids, cpu) = settings.watch.clone();
    let load_cpu = settings.cpu;
    local.spawn_local(async move {
        wait_until(window.start).await;
        let w = CpuWindow::start(&pids, cpu, load_cpu.map(|c| (c, Own::Thread)))?;
        wait_until(window.end).await;
        w.stop()
    })
}

/// The connection-rate loop. Blocks for warm-up + duration.
pub fn connection_rate(target: &Target, settings: &Settings) -> Result<Outcome> {
    let (target, settings) = (target.clone(), settings.clone());
    on_load_thread(settings.cpu, move || {
        Box::pin(async move {
            let begin = Instant::now() + Duration::from_millis(5);
            let window = Window {
                start: begin + settings.warmup,
                end: begin + settings.warmup + settings.duration,
            };
            let local = tokio::task::LocalSet::new();
            let workers: Vec<_> = (0..settings.connections)
                .map(|_| local.spawn_local(rate_worker(target.clone(), window)))
                .collect();
            let cpu = watcher(&local, &settings, window);
            local
                .run_until(async move {
                    let mut outcome = Outcome {
                        elapsed: settings.duration,
                        ..Outcome::default()
                    };
                    for w in workers {
                        // A connection stuck past the end (a hung server) must not hang the run.
                        match tokio::time::timeout_at(
                            (window.end + Duration::from_secs(5)).into(),
                            w,
                        )
                        .await
                        {
                            Ok(Ok(t)) => {
                                outcome.connections += t.connections;
                                outcome.errors += t.errors;
                                outcome.latencies.extend(t.latencies);
                            }
                            Ok(Err(e)) => bail!("connection worker failed: {e}"),
                            Err(_) => outcome.errors += 1,
                        }
                    }
                    outcome.cpu = Some(cpu.await.map_err(|e| anyhow!("CPU watcher: {e}"))??);
                    outcome.latencies.sort_unstable();
                    Ok(outcome)
                })
                .await
        })
    })
}

/// One long connection: a writer task sending `chunk`-byte writes until the end, this task
/// reading the echo and counting what arrives inside the window.
async fn stream(
    mut io: Box<dyn Io>,
    chunk: Rc<Vec<u8>>,
    window: Window,
    received: Rc<Cell<u64>>,
) -> Result<()> {
    let (mut rd, mut wr) = tokio::io::split(&mut io);
    let writer = async {
        while Instant::now() < window.end {
            wr.write_all(&chunk).await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let reader = async {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match tokio::time::timeout_at(window.end.into(), rd.read(&mut buf)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => bail!("the connection closed"),
                Ok(Ok(n)) => {
                    let now = Instant::now();
                    if now >= window.start && now <= window.end {
                        received.set(received.get() + n as u64);
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    };
    // Both halves on this task. The reader ends at the window's end; the writer's last write
    // may then wait for buffer space no one frees, so it is abandoned (dropped) there.
    let mut writer = std::pin::pin!(writer);
    let mut reader = std::pin::pin!(reader);
    let mut writer_done = false;
    std::future::poll_fn(|cx| {
        if !writer_done {
            if let std::task::Poll::Ready(r) = writer.as_mut().poll(cx) {
                r?;
                writer_done = true;
            }
        }
        reader.as_mut().poll(cx)
    })
    .await
}

/// The throughput of `settings.connections` long connections. Blocks for warm-up + duration.
pub fn throughput(target: &Target, settings: &Settings) -> Result<Outcome> {
    let (target, settings) = (target.clone(), settings.clone());
    on_load_thread(settings.cpu, move || {
        Box::pin(async move {
            let mut streams = Vec::with_capacity(settings.connections);
            for _ in 0..settings.connections {
                streams.push(connect(&target).await?);
            }
            let begin = Instant::now() + Duration::from_millis(5);
            let window = Window {
                start: begin + settings.warmup,
                end: begin + settings.warmup + settings.duration,
            };
            let chunk = Rc::new(vec![b'x'; settings.chunk.max(1)]);
            let received = Rc::new(Cell::new(0u64));
            let local = tokio::task::LocalSet::new();
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|io| {
                    local.spawn_local(stream(io, Rc::clone(&chunk), window, Rc::clone(&received)))
                })
                .collect();
            let cpu = watcher(&local, &settings, window);
            local
                .run_until(async move {
                    let mut errors = 0;
                    for t in tasks {
                        match tokio::time::timeout_at(
                            (window.end + Duration::from_secs(5)).into(),
                            t,
                        )
                        .await
                        {
                            Ok(Ok(Ok(()))) => {}
                            Ok(Ok(Err(_))) | Err(_) => errors += 1,
                            Ok(Err(e)) => bail!("stream task failed: {e}"),
                        }
                    }
                    let cpu = cpu.await.map_err(|e| anyhow!("CPU watcher: {e}"))??;
                    Ok(Outcome {
                        bytes: received.get(),
                        errors,
                        elapsed: settings.duration,
                        cpu: Some(cpu),
                        ..Outcome::default()
                    })
                })
                .await
        })
    })
}

//! `--listen`: `HOST:PORT` (TCP) or `unix:PATH` (a Unix socket; Envoy reaches it with a
//! `pipe` address); and serving HTTP on it within [`ConnLimits`] (`--header-read-timeout`,
//! `--max-connections`).

use anyhow::{bail, Context, Result};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// `--listen`: the relay contract's address (`alp_engine::relay_contract::Address`).
pub use alp_engine::relay_contract::Address as Listen;

/// A bound listener, not yet serving.
pub enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

/// Binds a listener: `Listen::bind` (the address type is the relay contract's, in the engine).
pub trait Bind {
    async fn bind(&self) -> Result<Bound>;
}

impl Bind for Listen {
    async fn bind(&self) -> Result<Bound> {
        match self {
            Listen::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr.as_str())
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                Ok(Bound::Tcp(listener))
            }
            Listen::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = tokio::net::UnixListener::bind(path)
                    .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
                Ok(Bound::Unix(listener, path.clone()))
            }
        }
    }
}

/// Removes a socket file left by a previous run; refuses to touch a live socket or any other
/// kind of file.
async fn remove_stale_socket(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match tokio::fs::symlink_metadata(path).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        );
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        bail!("{} is in use by another process", path.display());
    }
    warn!(path = %path.display(), "removing stale socket");
    tokio::fs::remove_file(path)
        .await
        .with_context(|| format!("cannot remove stale socket {}", path.display()))
}

impl Bound {
    /// The address actually bound: `127.0.0.1:41234` or `unix:/path`.
    pub fn address(&self) -> String {
        match self {
            Bound::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string()),
            Bound::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// Serves `app` (HTTP/1.1) until `shutdown` turns true, then finishes the requests in
    /// progress; a connection that has not sent its request headers within
    /// `limits.header_read_timeout` is closed, and one beyond `limits.max_connections` is closed
    /// as soon as it is accepted.
    pub async fn serve_with(
        self,
        app: Router,
        limits: ConnLimits,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let address = self.address();
        match self {
            Bound::Tcp(listener) => accept_loop(listener, &address, app, limits, shutdown).await,
            Bound::Unix(listener, path) => {
                let result = accept_loop(listener, &address, app, limits, shutdown).await;
                if tokio::fs::remove_file(&path).await.is_ok() {
                    info!(path = %path.display(), "removed socket");
                }
                result
            }
        }
    }
}

/// What one listener lets a client hold: `--header-read-timeout` and `--max-connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// How long a connection may take to send complete request headers (of its first request,
    /// and of each next one on a kept-alive connection) before it is closed.
    pub header_read_timeout: Duration,
    /// Connections open at once on the listener; more are closed at once.
    pub max_connections: usize,
}

impl ConnLimits {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Connections closed because `--max-connections` were open (all listeners of the process).
static REFUSED: AtomicU64 = AtomicU64::new(0);
/// Connections closed because their request headers did not arrive in time.
static HEADER_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Connections refused at the `--max-connections` cap so far (for `/metrics`).
pub fn connections_refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Connections closed at `--header-read-timeout` so far (for `/metrics`).
pub fn header_timeouts() -> u64 {
    HEADER_TIMEOUTS.load(Ordering::Relaxed)
}

/// At most one warning per this long about refused connections (a flood must not flood the log).
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

async fn accept_loop<L>(
    mut listener: L,
    address: &str,
    app: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()>
where
    L: axum::serve::Listener,
{
    // At most u32::MAX: all the slots are taken back at once when the server stops.
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut last_warned: Option<Instant> = None;
    let mut refused_since_warned = 0u64;
    loop {
        let io = tokio::select! {
            biased;
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            // Errors (out of file descriptors, ...) are logged and retried by the listener.
            (io, _) = listener.accept() => io,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(io);
            REFUSED.fetch_add(1, Ordering::Relaxed);
            refused_since_warned += 1;
            if last_warned.is_none_or(|t| t.elapsed() >= REFUSED_LOG_EVERY) {
                warn!(
                    listen = address,
                    refused = refused_since_warned,
                    "connection refused: {max} connections already open (--max-connections)"
                );
                last_warned = Some(Instant::now());
                refused_since_warned = 0;
            }
            continue;
        };
        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone()));
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            let stopping = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stopping => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            match result {
                Err(e) if e.is_timeout() => {
                    HEADER_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                    debug!("connection closed: no complete request headers in time (--header-read-timeout)");
                }
                Err(e) => debug!("connection closed: {e}"),
                Ok(()) => {}
            }
        });
    }
    // Every connection gives its slot back when it ends: wait for the requests in progress.
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}

/// A duration flag: `10s`, `500ms`, `2m`, or bare seconds (`10`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("{s:?}: give a duration such as 10s, 500ms or 2m")),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!(
            "{s:?}: give a positive duration such as 10s, 500ms or 2m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "127.0.0.1:9400".parse(),
            Ok(Listen::Tcp("127.0.0.1:9400".into()))
        );
        assert_eq!("[::1]:0".parse(), Ok(Listen::Tcp("[::1]:0".into())));
        assert_eq!(
            "localhost:80".parse(),
            Ok(Listen::Tcp("localhost:80".into()))
        );
        assert_eq!(
            "unix:/tmp/a.sock".parse(),
            Ok(Listen::Unix("/tmp/a.sock".into()))
        );
        assert!("unix:".parse::<Listen>().is_err());
        assert!("9400".parse::<Listen>().is_err());
        assert!(":9400".parse::<Listen>().is_err());
        assert!("host:http".parse::<Listen>().is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "0", "0s", "-1s", "10h", "s", "1.2.3s", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn replaces_a_stale_socket_but_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        // A socket nobody listens on any more.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let bound = Listen::Unix(path.clone()).bind().await.unwrap();
        assert_eq!(bound.address(), format!("unix:{}", path.display()));
        // Live: refused.
        let err = Listen::Unix(path.clone()).bind().await.err().unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(bound);
        // A regular file: refused.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = Listen::Unix(file.clone()).bind().await.err().unwrap();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert!(file.exists());
    }
}

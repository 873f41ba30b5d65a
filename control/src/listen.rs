//! `--listen`: `HOST:PORT` (TCP) or `unix:PATH` (a Unix socket; Envoy reaches it with a
//! `pipe` address).

use anyhow::{bail, Context, Result};
use axum::Router;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path (unix:/run/alp/control.sock)".to_string());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Listen::Tcp(s.to_string()))
            }
            _ => Err(format!("{s:?} is neither HOST:PORT nor unix:PATH")),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => f.write_str(addr),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound listener, not yet serving.
pub enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Listen {
    pub async fn bind(&self) -> Result<Bound> {
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

    /// Serves `app` until `shutdown` turns true, then finishes the requests in progress.
    pub async fn serve(self, app: Router, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let signal = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        match self {
            Bound::Tcp(listener) => axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
                .context("server"),
            Bound::Unix(listener, path) => {
                let result = axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
                    .context("server");
                if tokio::fs::remove_file(&path).await.is_ok() {
                    info!(path = %path.display(), "removed socket");
                }
                result
            }
        }
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

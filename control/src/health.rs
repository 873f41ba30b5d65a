//! `control health readiness|liveness`: asks a running `control serve` for `/readyz` or
//! `/healthz` and exits 0 when it answers 200, 1 otherwise (not ready, not answering, or no
//! server at all). Meant for Kubernetes `exec` probes, where the image has no `curl`.

use crate::listen::Listen;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Probe {
    /// `/readyz`: in sync with the policy source, snapshot published.
    Readiness,
    /// `/healthz`: the server answers.
    Liveness,
}

impl Probe {
    pub fn path(self) -> &'static str {
        match self {
            Probe::Readiness => "/readyz",
            Probe::Liveness => "/healthz",
        }
    }
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Which probe.
    #[arg(value_enum)]
    pub probe: Probe,
    /// Where `control serve` listens: HOST:PORT or unix:PATH (as its --listen).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9400",
        env = "ALP_LISTEN"
    )]
    pub listen: Listen,
    /// How long the whole probe may take.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// Exit code 0 when the probe answers 200, 1 otherwise; prints the answer (or the error).
pub fn run(args: &HealthArgs) -> ExitCode {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    match probe(&args.listen, args.probe.path(), timeout) {
        Ok((200, body)) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!("{status} {}", body.trim_end());
            ExitCode::from(1)
        }
        Err(e) => {
            println!("{} {}: {e:#}", args.listen, args.probe.path());
            ExitCode::from(1)
        }
    }
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// One `GET path` with `Connection: close`; status and body.
pub fn probe(listen: &Listen, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    let mut conn: Box<dyn Conn> = match listen {
        Listen::Tcp(addr) => {
            use std::net::ToSocketAddrs;
            let addrs: Vec<_> = addr
                .to_socket_addrs()
                .with_context(|| format!("resolving {addr}"))?
                .collect();
            let mut last = None;
            let mut stream = None;
            for a in addrs {
                match std::net::TcpStream::connect_timeout(&a, timeout) {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let s = match (stream, last) {
                (Some(s), _) => s,
                (None, Some(e)) => return Err(e).with_context(|| format!("connecting to {addr}")),
                (None, None) => bail!("{addr} resolves to no address"),
            };
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Box::new(s)
        }
        Listen::Unix(socket) => {
            let s = std::os::unix::net::UnixStream::connect(socket)
                .with_context(|| format!("connecting to unix:{}", socket.display()))?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Box::new(s)
        }
    };
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: alp-control\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .context("sending the request")?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if Instant::now() > deadline {
            bail!("no complete answer within {timeout:?}");
        }
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e).context("reading the answer"),
        }
        if raw.len() > 1 << 20 {
            bail!("answer too long");
        }
    }
    parse_response(&raw)
}

/// Status and body of an HTTP/1.1 response read to the end (`Connection: close`).
fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed answer {text:?}");
    };
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").unwrap(),
            (200, "ok\n".to_string())
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready\n")
                .unwrap()
                .0,
            503
        );
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 x\r\n\r\n").is_err());
    }

    #[test]
    fn nobody_listening_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let listen = Listen::Unix(dir.path().join("none.sock"));
        assert!(probe(&listen, "/readyz", Duration::from_millis(500)).is_err());
    }
}

//! A minimal HTTP/1.1 client over TCP (optionally from a chosen source address) and unix sockets:
//! keep-alive connections for the latency probes and health checks. TLS requests go through
//! `curl` (see `client.rs`).

use anyhow::{anyhow, bail, Context as _, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A response: status, headers (names lower-cased) and body.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    /// The protocol of the status line (`HTTP/1.1`, `HTTP/2`).
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `403 denied by policy`, `200 customer: ok`, ...
    pub fn summary(&self) -> String {
        format!("{} {}", self.status, self.body.trim())
    }
}

/// A TCP connection to `addr` from `source` if given (any 127.x works on Linux), with no Nagle
/// delay and `timeout` for connecting, reads and writes.
pub fn dial(addr: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = source {
        socket
            .bind(&SockAddr::from(SocketAddr::new(ip, 0)))
            .with_context(|| format!("binding to {ip}"))?;
    }
    socket
        .connect_timeout(&SockAddr::from(addr), timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<Box<dyn Stream>>,
    closed: bool,
}

impl Conn {
    /// Connects to `addr`, binding the local side to `source` if given (any 127.x works on Linux).
    pub fn tcp(addr: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> Result<Self> {
        let stream = dial(addr, source, timeout)?;
        Ok(Conn {
            reader: BufReader::new(Box::new(stream)),
            closed: false,
        })
    }

    /// Connects to a unix socket.
    pub fn unix(path: &Path, timeout: Duration) -> Result<Self> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to {}", path.display()))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn {
            reader: BufReader::new(Box::new(stream)),
            closed: false,
        })
    }

    /// True once the server has said it will close the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends one request and reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        if self.closed {
            bail!("connection closed by the server");
        }
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: alp.test\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
        self.read_response(method == "HEAD")
    }

    fn read_response(&mut self, head: bool) -> Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            self.closed = true;
            bail!("connection closed before a response");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut resp = Response {
            status,
            ..Default::default()
        };
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                resp.headers
                    .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.closed = true;
        }
        let mut body = Vec::new();
        if head || status == 204 || status == 304 || (100..200).contains(&status) {
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().context("content-length")?;
            body.resize(len, 0);
            self.reader.read_exact(&mut body)?;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .context("chunk size")?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.reader.read_to_end(&mut body)?;
            self.closed = true;
        }
        resp.body = String::from_utf8_lossy(&body).into_owned();
        Ok(resp)
    }
}

/// One request on a fresh connection.
pub fn get_once(addr: SocketAddr, source: Option<IpAddr>, path: &str) -> Result<Response> {
    Conn::tcp(addr, source, Duration::from_secs(10))?.request("GET", path, &[])
}

/// One GET over a unix socket (control's /healthz and /readyz).
pub fn unix_get(socket: &Path, path: &str) -> Result<Response> {
    Conn::unix(socket, Duration::from_secs(5))?.request("GET", path, &[])
}

//! Raw TCP clients of the `tcp_W` listeners, plaintext or mTLS (rustls), from a chosen 127.x
//! source address, and the one exchange the tests make: wait for the server's greeting (when it
//! speaks first), send some bytes, read them back from the echo backend. Every byte received is
//! kept, with how the connection ended, so a test tells "passed" from "closed without a byte".

use crate::http;
use anyhow::Result;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How the client talks to the listener.
#[derive(Clone)]
pub enum TcpTransport {
    /// Raw bytes: the filter sees no peer certificate (principal "").
    Plaintext,
    /// TLS with this client configuration (`tls::client_config`: CA and client certificate).
    Tls(Arc<rustls::ClientConfig>),
}

impl TcpTransport {
    pub fn label(&self) -> &'static str {
        match self {
            TcpTransport::Plaintext => "plaintext",
            TcpTransport::Tls(_) => "mTLS",
        }
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// An open connection (TLS handshake done, if any).
pub struct TcpConn {
    stream: Box<dyn Stream>,
    local: SocketAddr,
}

/// How an exchange ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Everything expected arrived; the connection is still open.
    Open,
    /// The server closed it: EOF (with or without TLS close_notify), reset, broken pipe.
    Closed(String),
    /// Nothing (more) arrived within the read timeout.
    TimedOut,
    /// Any other error (a TLS alert, for example).
    Failed(String),
}

/// What one exchange saw.
#[derive(Clone, Debug)]
pub struct TcpOutcome {
    /// Every byte received, greeting included.
    pub received: Vec<u8>,
    pub end: End,
}

impl TcpOutcome {
    /// Exactly `expected` arrived and the connection is still open.
    pub fn passed(&self, expected: &[u8]) -> bool {
        self.end == End::Open && self.received == expected
    }

    /// Closed by the server before a single byte reached the client.
    pub fn closed_silently(&self) -> bool {
        self.received.is_empty() && matches!(self.end, End::Closed(_))
    }

    /// `passed, 23 bytes "220 ready\r\nping"` or `closed (EOF) after 0 bytes`.
    pub fn summary(&self) -> String {
        let bytes = String::from_utf8_lossy(&self.received);
        match &self.end {
            End::Open => format!("passed, {} bytes {bytes:?}", self.received.len()),
            End::Closed(how) => format!(
                "closed ({how}) after {} bytes {bytes:?}",
                self.received.len()
            ),
            End::TimedOut => format!("timed out after {} bytes {bytes:?}", self.received.len()),
            End::Failed(e) => format!("failed ({e}) after {} bytes {bytes:?}", self.received.len()),
        }
    }
}

/// Connects to `addr` from `source` (any 127.x works on Linux); reads time out after `timeout`.
/// For TLS (server name `localhost`, as in the server certificates) the handshake happens with
/// the first read or write, so a connection the server closes before or during the handshake
/// (the filter can decide before it, when the verdict cannot depend on the peer) shows as an
/// exchange that ended `Closed`, like one closed after it.
pub fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    transport: &TcpTransport,
    timeout: Duration,
) -> Result<TcpConn> {
    let tcp = http::dial(addr, source, timeout)?;
    let local = tcp.local_addr()?;
    let stream: Box<dyn Stream> = match transport {
        TcpTransport::Plaintext => Box::new(tcp),
        TcpTransport::Tls(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let tls = rustls::ClientConnection::new(Arc::clone(config), name)?;
            Box::new(rustls::StreamOwned::new(tls, tcp))
        }
    };
    Ok(TcpConn { stream, local })
}

impl TcpConn {
    /// The client's end of the connection (what the filter sees as the source).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// As a client of a server-first protocol: reads `greeting_len` bytes first (0: the client
    /// speaks first), then sends `payload` and reads until `greeting_len + payload.len()` bytes
    /// have arrived in all, the connection ends, or a read times out.
    pub fn exchange(&mut self, greeting_len: usize, payload: &[u8]) -> TcpOutcome {
        let mut received = Vec::new();
        if let Some(end) = self.read_until(&mut received, greeting_len) {
            return TcpOutcome { received, end };
        }
        self.send_then_read(received, greeting_len + payload.len(), payload)
    }

    /// Sends `payload` at once, without waiting for the greeting, then reads until
    /// `greeting_len + payload.len()` bytes have arrived (bytes travel both ways undecided).
    pub fn exchange_eager(&mut self, greeting_len: usize, payload: &[u8]) -> TcpOutcome {
        self.send_then_read(Vec::new(), greeting_len + payload.len(), payload)
    }

    fn send_then_read(
        &mut self,
        mut received: Vec<u8>,
        total: usize,
        payload: &[u8],
    ) -> TcpOutcome {
        if let Err(e) = self.send(payload) {
            return TcpOutcome {
                received,
                end: classify(&e),
            };
        }
        let end = self.read_until(&mut received, total).unwrap_or(End::Open);
        TcpOutcome { received, end }
    }

    /// Sends `bytes` (no reading).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads into `received` until it holds `total` bytes (`None`), or how it ended otherwise.
    fn read_until(&mut self, received: &mut Vec<u8>, total: usize) -> Option<End> {
        let mut buf = [0u8; 16 * 1024];
        while received.len() < total {
            match self.stream.read(&mut buf) {
                Ok(0) => return Some(End::Closed("EOF".into())),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Some(classify(&e)),
            }
        }
        None
    }
}

fn classify(e: &std::io::Error) -> End {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => End::TimedOut,
        ErrorKind::ConnectionReset => End::Closed("reset".into()),
        ErrorKind::ConnectionAborted => End::Closed("aborted".into()),
        ErrorKind::BrokenPipe => End::Closed("broken pipe".into()),
        // rustls: the peer closed the TCP connection without a close_notify alert.
        ErrorKind::UnexpectedEof => End::Closed("EOF without close_notify".into()),
        _ => End::Failed(e.to_string()),
    }
}

/// One exchange on a fresh connection: connect, then [`TcpConn::exchange`]. A connection that
/// cannot even be opened is an error (the listener always accepts; the filter decides later).
pub fn dial(
    addr: SocketAddr,
    source: Option<IpAddr>,
    transport: &TcpTransport,
    greeting_len: usize,
    payload: &[u8],
) -> Result<TcpOutcome> {
    let mut conn = connect(addr, source, transport, Duration::from_secs(5))?;
    Ok(conn.exchange(greeting_len, payload))
}

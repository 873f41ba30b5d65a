//! One long-poll to `control serve` over its socket (the relay contract,
//! `alp_engine::relay_contract`), as blocking HTTP/1.1 on a connection of its own: the follower
//! thread is the only caller, and a poll per connection keeps the client small. The response
//! parser ([`parse_response`]) is pure, so it is tested without a socket.

pub use alp_engine::relay_contract::Address;
use alp_engine::relay_contract::{
    self, HAVE_VERSION_HEADER, SNAPSHOT_PATH, VERSION_HEADER, WAIT_HEADER,
};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The largest response accepted: a 10 000-rule snapshot is about 1 MB.
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// The largest response head (status line and headers).
const MAX_HEAD_BYTES: usize = 16 << 10;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a poll returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: an envelope, and the version header if control sent one.
    Snapshot { body: Vec<u8>, version: Option<u64> },
    /// 204: nothing newer within the wait.
    Unchanged,
    /// Any other status.
    Status(u16),
}

/// Why a poll got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("cannot connect to control at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("the connection to control failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("control's response is malformed: {0}")]
    Malformed(&'static str),
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Asks control for anything other than `have`, waiting at most `wait` (plus a grace for the
/// answer to arrive).
pub fn poll(address: &Address, have: u64, wait: Duration) -> Result<Answer, PollError> {
    let timeout = wait + Duration::from_secs(5);
    let connect_error = |source| PollError::Connect {
        address: address.to_string(),
        source,
    };
    let mut stream: Box<dyn Stream> = match address {
        Address::Unix(path) => {
            let s = UnixStream::connect(path).map_err(connect_error)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
            Box::new(s)
        }
        Address::Tcp(addr) => {
            let target = addr
                .to_socket_addrs()
                .map_err(connect_error)?
                .next()
                .ok_or_else(|| connect_error(std::io::ErrorKind::NotFound.into()))?;
            let s = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).map_err(connect_error)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
    };
    stream.write_all(request(have, wait).as_bytes())?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES as u64 + MAX_HEAD_BYTES as u64)
        .read_to_end(&mut response)?;
    parse_response(&response)
}

/// The poll request (one per connection: `connection: close`).
fn request(have: u64, wait: Duration) -> String {
    format!(
        "GET {SNAPSHOT_PATH} HTTP/1.1\r\nhost: alp-control\r\n{HAVE_VERSION_HEADER}: {have}\r\n\
         {WAIT_HEADER}: {}\r\nconnection: close\r\n\r\n",
        wait.as_millis()
    )
}

/// Parses a complete HTTP/1.1 response read to the end of the connection. The body is
/// `content-length` bytes (or, without it, the rest); chunked bodies are decoded.
pub fn parse_response(bytes: &[u8]) -> Result<Answer, PollError> {
    let head_end = bytes
        .windows(4)
        .take(MAX_HEAD_BYTES)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(PollError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| PollError::Malformed("headers are not UTF-8"))?;
    let rest = &bytes[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(proto), Some(code)) = (parts.next(), parts.next()) else {
        return Err(PollError::Malformed("no status line"));
    };
    if !proto.starts_with("HTTP/1.") {
        return Err(PollError::Malformed("not an HTTP/1.x response"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| PollError::Malformed("status is not a number"))?;
    let mut length = None;
    let mut chunked = false;
    let mut version = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(PollError::Malformed("a header line without ':'"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| PollError::Malformed("content-length is not a number"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case(VERSION_HEADER) {
            version = relay_contract::parse_number(value);
        }
    }
    match status {
        200 => {
            let body = if chunked {
                dechunk(rest)?
            } else if let Some(n) = length {
                rest.get(..n)
                    .ok_or(PollError::Malformed("body shorter than content-length"))?
                    .to_vec()
            } else {
                rest.to_vec()
            };
            Ok(Answer::Snapshot { body, version })
        }
        204 => Ok(Answer::Unchanged),
        other => Ok(Answer::Status(other)),
    }
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, PollError> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(PollError::Malformed("a chunk without its size line"))?;
        let size_text = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| PollError::Malformed("a chunk size is not text"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| PollError::Malformed("a chunk size is not hexadecimal"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if size > MAX_RESPONSE_BYTES.saturating_sub(body.len()) {
            return Err(PollError::Malformed("body larger than the response cap"));
        }
        let chunk = rest
            .get(..size)
            .ok_or(PollError::Malformed("a chunk shorter than its size"))?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_follows_the_relay_contract() {
        let r = request(7, Duration::from_millis(250));
        assert!(r.starts_with("GET /v1/snapshot HTTP/1.1\r\n"), "{r}");
        assert!(r.contains("\r\nx-alp-have-version: 7\r\n"), "{r}");
        assert!(r.contains("\r\nx-alp-wait-ms: 250\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n"), "{r}");
    }

    #[test]
    fn parses_answers() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nX-Alp-Version: 12\r\n\r\nabcEXTRA";
        assert_eq!(
            parse_response(ok).unwrap(),
            Answer::Snapshot {
                body: b"abc".to_vec(),
                version: Some(12)
            }
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1;x=y\r\nc\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            Answer::Snapshot {
                body: b"abc".to_vec(),
                version: None
            }
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            Answer::Unchanged
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").unwrap(),
            Answer::Status(400)
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\n",
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\nab",
            b"HTTP/1.1 200 OK\r\n\xff: x\r\n\r\n",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        /// Any bytes, and any response with a mangled head, give an answer or an error.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_response(&bytes);
            let mut framed = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = parse_response(&framed);
        }
    }
}

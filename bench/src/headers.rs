//! The request header sets of the HTTP cells, in one place: every generator (wrk through the
//! request file `bench/wrk-report.lua` reads, the bench's HTTP/1.1 and HTTP/2 generators) sends
//! the fields listed here, in this order, so a cell's header set is the same whoever measures it.
//!
//! * `minimal`: what the benchmark always sent, `GET path HTTP/1.1` with `Host` (HTTP/2: the
//!   pseudo-headers alone);
//! * `realistic`: a browser or gRPC client behind an edge proxy, about 1 KB: user agent,
//!   content negotiation, a cookie of a few hundred bytes, a bearer token, request id, W3C and
//!   B3 tracing, forwarding headers. Fixed values (generated once), so every run sends the same
//!   bytes. None of them is connection-specific, so HTTP/2 carries the same set.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which header fields a request carries besides `Host` / `:authority`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum HeaderSet {
    #[default]
    Minimal,
    Realistic,
}

/// The `realistic` set: (lower-case name, value).
const REALISTIC: &[(&str, &str)] = &[
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
    ("accept", "application/json, text/plain, */*"),
    ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
    ("accept-encoding", "gzip, deflate, br"),
    ("content-type", "application/json"),
    ("cookie", "session=Pzrx7Ou9FBCrQX7A0nu_y100Dhd64Vm1n8hibC39kXU; csrftoken=ca969a1bc97732d97b1e88ce8396c216; _ga=GA1.2.1234567890.1767222000; _gid=GA1.2.987654321.1767222000; cart=8bfb4e1aa590eab8f08f837b97acf5803a5737ed; theme=dark; locale=en-US"),
    // An ES256-style JWT (header and claims base64url, the signature fixed bytes).
    ("authorization", "Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImJlbmNoLWtleS0xIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlLmNvbSIsInN1YiI6InVzZXItNDcxMSIsImF1ZCI6Im9yZGVycyIsImV4cCI6MTc2NzIyNTYwMCwiaWF0IjoxNzY3MjIyMDAwLCJzY29wZSI6Im9yZGVyczpyZWFkIG9yZGVyczp3cml0ZSJ9.ClNV9G1N0iDJhZ_BrdnqJy4GPSNdpBBYVuNS7WySoTeq0mRqK_QHvDK3b7DRIqxVr3T_hXtKThvF93MEc9oArg"),
    ("x-request-id", "7c1e6f0a-3b2d-4c5e-9f8a-1b2c3d4e5f60"),
    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("x-b3-spanid", "00f067aa0ba902b7"),
    ("x-b3-parentspanid", "5b4185666d50f68b"),
    ("x-b3-sampled", "1"),
    // Envoy (use_remote_address) appends the peer; the policy matches the peer itself.
    ("x-forwarded-for", "203.0.113.7, 10.0.0.12"),
    ("x-forwarded-proto", "https"),
    ("referer", "https://shop.example.com/orders?page=2"),
];

impl HeaderSet {
    pub const ALL: [HeaderSet; 2] = [HeaderSet::Minimal, HeaderSet::Realistic];

    pub fn key(self) -> &'static str {
        match self {
            HeaderSet::Minimal => "minimal",
            HeaderSet::Realistic => "realistic",
        }
    }

    pub fn parse(s: &str) -> Result<HeaderSet, String> {
        HeaderSet::ALL
            .into_iter()
            .find(|h| h.key() == s)
            .ok_or_else(|| format!("unknown header set {s:?} (minimal, realistic)"))
    }

    /// The fields besides `Host` (HTTP/2: besides the pseudo-headers), in sending order.
    pub fn fields(self) -> &'static [(&'static str, &'static str)] {
        match self {
            HeaderSet::Minimal => &[],
            HeaderSet::Realistic => REALISTIC,
        }
    }

    /// Bytes of the fields on an HTTP/1.1 request (`name: value\r\n` each).
    pub fn http1_bytes(self) -> usize {
        self.fields()
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum()
    }
}

impl fmt::Display for HeaderSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The HTTP/1.1 request: `GET path`, `Host`, the set's fields, then `connection: close` when
/// each request gets a connection of its own. (wrk sends these bytes too.)
pub fn http1_request(path: &str, host: &str, set: HeaderSet, close: bool) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in set.fields() {
        s.push_str(name);
        s.push_str(": ");
        s.push_str(value);
        s.push_str("\r\n");
    }
    if close {
        s.push_str("connection: close\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_is_the_request_the_benchmark_always_sent() {
        assert_eq!(
            http1_request("/orders/42", "127.0.0.1:8080", HeaderSet::Minimal, false),
            b"GET /orders/42 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        assert_eq!(HeaderSet::Minimal.http1_bytes(), 0);
    }

    #[test]
    fn realistic_is_about_fifteen_headers_and_one_kilobyte() {
        let n = HeaderSet::Realistic.fields().len();
        let bytes = HeaderSet::Realistic.http1_bytes();
        assert!((14..=16).contains(&n), "{n} headers");
        assert!((900..=1300).contains(&bytes), "{bytes} bytes");
        let cookie = HeaderSet::Realistic
            .fields()
            .iter()
            .find(|(k, _)| *k == "cookie")
            .map(|(_, v)| v.len());
        assert!(matches!(cookie, Some(200..=400)), "cookie {cookie:?}");
    }

    #[test]
    fn realistic_fields_are_valid_for_http2() {
        // Lower-case names, no connection-specific fields (HTTP/2 forbids them), no duplicates.
        let fields = HeaderSet::Realistic.fields();
        for (i, (name, value)) in fields.iter().enumerate() {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(![
                "connection",
                "keep-alive",
                "host",
                "te",
                "transfer-encoding",
                "upgrade"
            ]
            .contains(name));
            assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{name}");
            assert!(fields[..i].iter().all(|(n, _)| n != name), "{name} twice");
        }
    }

    #[test]
    fn request_bytes_add_up() {
        let minimal = http1_request("/p", "h:1", HeaderSet::Minimal, false).len();
        let realistic = http1_request("/p", "h:1", HeaderSet::Realistic, false).len();
        assert_eq!(realistic - minimal, HeaderSet::Realistic.http1_bytes());
        let close = http1_request("/p", "h:1", HeaderSet::Realistic, true);
        assert!(close.ends_with(b"\r\nconnection: close\r\n\r\n"));
        assert_eq!(close.len() - realistic, "connection: close\r\n".len());
        let text = String::from_utf8(close).unwrap();
        assert!(text.starts_with("GET /p HTTP/1.1\r\nHost: h:1\r\nuser-agent: Mozilla/5.0"));
        let lines = 2 + HeaderSet::Realistic.fields().len() + 1 + 1;
        assert_eq!(text.matches("\r\n").count(), lines);
    }
}

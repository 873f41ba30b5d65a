//! The request attributes the engine decides on (spec section 3), and their JSON form.

use crate::address::parse_ip;
use crate::protocol::{TCP, UDP};
use serde::Deserialize;
use std::net::IpAddr;

/// One side of the connection, as the proxy saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer<'a> {
    /// Certificate identity (URI SAN), `""` for plaintext.
    pub principal: &'a str,
    pub address: Option<IpAddr>,
    /// 0 when there is no address.
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http<'a> {
    pub method: &'a str,
    /// `:path`, including any query.
    pub path: &'a str,
    /// `:authority`; carried for logs, never evaluated.
    pub host: &'a str,
}

/// Everything the engine needs about one request. Borrowed, so the filter builds it without
/// copying what it read from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub source: Peer<'a>,
    pub destination: Peer<'a>,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// `None` for a connection-level (raw TCP) check.
    pub http: Option<Http<'a>>,
}

/// The JSON request shape of `control check` and the conformance cases; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default)]
    pub source: PeerSpec,
    #[serde(default)]
    pub destination: PeerSpec,
    #[serde(default)]
    pub http: Option<HttpSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// `TCP` or `UDP`; read on the destination only (absent or anything else means TCP).
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
}

impl PeerSpec {
    fn peer(&self) -> Peer<'_> {
        let address = self.address.as_deref().and_then(parse_ip);
        Peer {
            principal: self.principal.as_deref().unwrap_or(""),
            address,
            port: if address.is_some() {
                self.port.unwrap_or(0)
            } else {
                0
            },
        }
    }
}

impl RequestSpec {
    pub fn request(&self) -> Request<'_> {
        let protocol = match self.destination.protocol.as_deref() {
            Some(p) if p.eq_ignore_ascii_case("udp") => UDP,
            _ => TCP,
        };
        Request {
            source: self.source.peer(),
            destination: self.destination.peer(),
            protocol,
            http: self.http.as_ref().map(|h| Http {
                method: h.method.as_deref().unwrap_or(""),
                path: h.path.as_deref().unwrap_or(""),
                host: h.host.as_deref().unwrap_or(""),
            }),
        }
    }
}

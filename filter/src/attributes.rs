//! Request attributes (spec section 3), read only from what Envoy itself established: TLS
//! identities and socket addresses are connection properties, method and path the request's
//! pseudo-headers. No header a client can set freely is consulted.
//!
//! Connection-level attributes cannot change during a connection, so a VM keeps them per
//! `connection.id` ([`ConnectionCache`]): a keep-alive connection costs one property read per
//! request instead of four or more.

use crate::host::{Host, HostError};
use alp_engine::address::parse_ip;
use alp_engine::protocol::TCP;
use alp_engine::{Http, Peer, Request};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

/// The attributes of one downstream connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// Peer certificate identity; `""` for plaintext.
    pub source_principal: String,
    /// Local certificate identity; `""` for plaintext.
    pub destination_principal: String,
    /// Downstream remote address.
    pub source: Option<(IpAddr, u16)>,
    /// Downstream local address.
    pub destination: Option<(IpAddr, u16)>,
}

impl Connection {
    /// Reads the connection's attributes from Envoy's properties; a host error on any of them
    /// fails the whole read (D11: never mistaken for plaintext or a missing address).
    pub fn read(host: &dyn Host) -> Result<Connection, HostError> {
        let mut tls = None;
        Ok(Connection {
            source_principal: principal(host, Side::Peer, &mut tls)?,
            destination_principal: principal(host, Side::Local, &mut tls)?,
            source: property_str(host, &["source", "address"])?
                .as_deref()
                .and_then(split_address),
            destination: property_str(host, &["destination", "address"])?
                .as_deref()
                .and_then(split_address),
        })
    }

    pub fn source(&self) -> Peer<'_> {
        peer(&self.source_principal, self.source)
    }

    pub fn destination(&self) -> Peer<'_> {
        peer(&self.destination_principal, self.destination)
    }
}

/// What the engine is asked about: a connection's peers with `http` for an HTTP request, or
/// without for a raw TCP connection. With no connection read (no policy yet, or a decision made
/// before the engine) both peers are unknown and there is no HTTP.
pub fn engine_request<'a>(
    connection: Option<&'a Connection>,
    http: Option<Http<'a>>,
) -> Request<'a> {
    match connection {
        Some(c) => Request {
            source: c.source(),
            destination: c.destination(),
            protocol: TCP,
            http,
        },
        None => Request {
            source: Peer::default(),
            destination: Peer::default(),
            protocol: TCP,
            http: None,
        },
    }
}

fn peer(principal: &str, address: Option<(IpAddr, u16)>) -> Peer<'_> {
    Peer {
        principal,
        address: address.map(|(ip, _)| ip),
        port: address.map_or(0, |(_, port)| port),
    }
}

#[derive(Clone, Copy)]
enum Side {
    Peer,
    Local,
}

/// The certificate identity Envoy's `principal` uses: URI SAN, else DNS SAN, else subject.
/// Without TLS (or without a certificate) it is `""`. The common cases cost one read: a
/// SPIFFE URI SAN, or a plaintext connection (whose `tls_version` is read once for both sides).
fn principal(host: &dyn Host, side: Side, tls: &mut Option<bool>) -> Result<String, HostError> {
    let (uri, dns, subject) = match side {
        Side::Peer => (
            "uri_san_peer_certificate",
            "dns_san_peer_certificate",
            "subject_peer_certificate",
        ),
        Side::Local => (
            "uri_san_local_certificate",
            "dns_san_local_certificate",
            "subject_local_certificate",
        ),
    };
    if *tls == Some(false) {
        return Ok(String::new());
    }
    if let Some(v) = property_str(host, &["connection", uri])?.filter(|v| !v.is_empty()) {
        return Ok(v);
    }
    let is_tls = match *tls {
        Some(known) => known,
        None => {
            let known =
                property_str(host, &["connection", "tls_version"])?.is_some_and(|v| !v.is_empty());
            *tls = Some(known);
            known
        }
    };
    if !is_tls {
        return Ok(String::new());
    }
    for name in [dns, subject] {
        if let Some(v) = property_str(host, &["connection", name])?.filter(|v| !v.is_empty()) {
            return Ok(v);
        }
    }
    Ok(String::new())
}

/// A property as text; bytes that are not UTF-8 become U+FFFD (so a malformed principal stays
/// non-empty and malformed rather than turning into plaintext).
fn property_str(host: &dyn Host, path: &[&str]) -> Result<Option<String>, HostError> {
    Ok(host.property(path)?.map(|v| match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

/// Splits Envoy's `ip:port` / `[ipv6]:port`. Anything else (a pipe path, a zone, a
/// leading-zero octet, a missing or bad port) is no address.
pub fn split_address(text: &str) -> Option<(IpAddr, u16)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?,
        None => {
            let (host, port) = text.rsplit_once(':')?;
            if host.contains(':') {
                return None;
            }
            (host, port)
        }
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    Some((parse_ip(host)?, port))
}

/// `:method` and `:path` of the current request (`:authority` is never evaluated and decisions
/// are logged without header values, so it is not read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAttributes {
    pub method: String,
    /// The path decided on and forwarded: the request's, or its canonical form after a D10
    /// rewrite.
    pub path: String,
    /// The request's own path when [`HttpAttributes::path`] is its rewrite.
    pub original_path: Option<String>,
}

impl HttpAttributes {
    pub fn read(host: &dyn Host) -> Result<HttpAttributes, HostError> {
        let (method, path) = host.request_method_and_path()?;
        Ok(HttpAttributes {
            // Taken over, not copied, when it is UTF-8 (always, for a method Envoy accepted).
            method: method
                .map(|m| {
                    String::from_utf8(m)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                })
                .unwrap_or_default(),
            path: path.map(path_text).unwrap_or_default(),
            original_path: None,
        })
    }

    pub fn http(&self) -> Http<'_> {
        Http {
            method: &self.method,
            path: &self.path,
            host: "",
        }
    }

    /// The path as the client sent it.
    pub fn received_path(&self) -> &str {
        self.original_path.as_deref().unwrap_or(&self.path)
    }

    /// Decide on and forward `canonical` instead of the request's path.
    pub fn rewrite(&mut self, canonical: String) {
        self.original_path = Some(std::mem::replace(&mut self.path, canonical));
    }
}

/// `:path` as text without losing bytes: a byte that is not part of valid UTF-8 becomes its
/// `%XX` escape, which normalises to the same byte (a lossy U+FFFD would merge distinct paths).
fn path_text(raw: Vec<u8>) -> String {
    String::from_utf8(raw)
        .unwrap_or_else(|e| alp_engine::path::escape_invalid_utf8(e.as_bytes()).into_owned())
}

/// Connection attributes by `connection.id`, per VM. Bounded: when full it starts over (entries
/// of closed connections are dropped then; Envoy never reuses a connection id).
#[derive(Debug, Default)]
pub struct ConnectionCache {
    entries: HashMap<u64, Rc<Connection>>,
}

impl ConnectionCache {
    const CAPACITY: usize = 1024;

    pub fn new() -> Self {
        Self::default()
    }

    /// The current request's connection attributes, read once per connection. A failed read
    /// is not cached: the next request of the connection tries again.
    pub fn get(&mut self, host: &dyn Host) -> Result<Rc<Connection>, HostError> {
        let id = host
            .property(&["connection", "id"])
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok());
        let Some(id) = id.map(u64::from_le_bytes) else {
            return Connection::read(host).map(Rc::new);
        };
        if let Some(c) = self.entries.get(&id) {
            return Ok(Rc::clone(c));
        }
        if self.entries.len() >= Self::CAPACITY {
            self.entries.clear();
        }
        let c = Rc::new(Connection::read(host)?);
        self.entries.insert(id, Rc::clone(&c));
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SPIFFE_A: &str = "spiffe://cluster.local/ns/default/sa/a";
    const SPIFFE_B: &str = "spiffe://cluster.local/ns/default/sa/b";

    #[test]
    fn splits_addresses() {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let table: &[(&str, Option<(IpAddr, u16)>)] = &[
            ("10.0.0.1:8080", Some((v4(10, 0, 0, 1), 8080))),
            ("127.0.0.1:0", Some((v4(127, 0, 0, 1), 0))),
            ("[::1]:443", Some((IpAddr::V6(Ipv6Addr::LOCALHOST), 443))),
            (
                "[2001:db8::1]:65535",
                Some(("2001:db8::1".parse().unwrap(), 65535)),
            ),
            // IPv4-mapped IPv6 is the IPv4 address (spec section 3).
            ("[::ffff:10.1.2.3]:80", Some((v4(10, 1, 2, 3), 80))),
            ("[fe80::1%eth0]:80", None),
            ("010.0.0.1:80", None),
            ("::1:80", None),
            ("10.0.0.1", None),
            ("10.0.0.1:", None),
            ("10.0.0.1:+80", None),
            ("10.0.0.1:65536", None),
            ("[::1]", None),
            ("/var/run/envoy.sock", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(split_address(text), *want, "{text}");
        }
    }

    fn tls_host(peer: &str, local: &str) -> FakeHost {
        let host = FakeHost::new();
        host.set_property("connection.uri_san_peer_certificate", peer);
        host.set_property("connection.uri_san_local_certificate", local);
        host.set_property("connection.tls_version", "TLSv1.3");
        host.set_property("source.address", "10.0.0.1:34567");
        host.set_property("destination.address", "[2001:db8::2]:8080");
        host
    }

    #[test]
    fn reads_mtls_connection() {
        let host = tls_host(SPIFFE_A, SPIFFE_B);
        let c = Connection::read(&host).unwrap();
        assert_eq!(c.source_principal, SPIFFE_A);
        assert_eq!(c.destination_principal, SPIFFE_B);
        let src = c.source();
        assert_eq!(
            (src.principal, src.address, src.port),
            (SPIFFE_A, "10.0.0.1".parse().ok(), 34567)
        );
        let dst = c.destination();
        assert_eq!(
            (dst.principal, dst.address, dst.port),
            (SPIFFE_B, "2001:db8::2".parse().ok(), 8080)
        );
        // URI SANs present: no TLS or fallback reads.
        assert_eq!(host.property_reads(), 4);
    }

    #[test]
    fn plaintext_and_missing_addresses() {
        let host = FakeHost::new();
        let c = Connection::read(&host).unwrap();
        assert_eq!(c, Connection::default());
        assert_eq!(
            c.source(),
            Peer {
                principal: "",
                address: None,
                port: 0
            }
        );
        assert_eq!(
            c.destination(),
            Peer {
                principal: "",
                address: None,
                port: 0
            }
        );
        // peer URI SAN, tls_version (so no local certificate either), two addresses.
        assert_eq!(host.property_reads(), 4);

        let host = FakeHost::new();
        host.set_property("source.address", "[fe80::1%2]:80");
        host.set_property("destination.address", "10.0.0.9:80");
        let c = Connection::read(&host).unwrap();
        assert_eq!(
            c.source(),
            Peer {
                principal: "",
                address: None,
                port: 0
            }
        );
        assert_eq!(c.destination().port, 80);
    }

    #[test]
    fn principal_falls_back_to_dns_san_then_subject_under_tls() {
        let host = tls_host("", "");
        host.set_property("connection.dns_san_peer_certificate", "client.example.com");
        host.set_property("connection.subject_local_certificate", "CN=server");
        let c = Connection::read(&host).unwrap();
        assert_eq!(c.source_principal, "client.example.com");
        assert_eq!(c.destination_principal, "CN=server");

        // TLS without a client certificate: plaintext identity.
        let host = tls_host("", SPIFFE_B);
        let c = Connection::read(&host).unwrap();
        assert_eq!(c.source_principal, "");
        assert_eq!(c.destination_principal, SPIFFE_B);

        // Without TLS the fallbacks are not consulted.
        let host = FakeHost::new();
        host.set_property("connection.subject_peer_certificate", "CN=ignored");
        assert_eq!(Connection::read(&host).unwrap().source_principal, "");
    }

    #[test]
    fn non_utf8_principal_stays_malformed() {
        let host = tls_host("", "");
        host.set_property_bytes(
            "connection.uri_san_peer_certificate",
            b"spiffe://x/ns/a/sa/\xff",
        );
        let c = Connection::read(&host).unwrap();
        assert!(!c.source_principal.is_empty());
        assert!(c.source_principal.ends_with('\u{fffd}'));
    }

    #[test]
    fn reads_http_pseudo_headers_only() {
        let host = FakeHost::new();
        host.set_header(":method", "POST");
        host.set_header(":path", "/a/b?c=d");
        host.set_header(":authority", "evil.example");
        host.set_header("x-forwarded-client-cert", "By=spiffe://x/ns/a/sa/b");
        let h = HttpAttributes::read(&host).unwrap();
        assert_eq!(
            h.http(),
            Http {
                method: "POST",
                path: "/a/b?c=d",
                host: ""
            }
        );
        assert_eq!(
            HttpAttributes::read(&FakeHost::new()).unwrap(),
            HttpAttributes::default()
        );
    }

    #[test]
    fn caches_per_connection_id() {
        let host = tls_host(SPIFFE_A, SPIFFE_B);
        host.set_property_bytes("connection.id", &7u64.to_le_bytes());
        let mut cache = ConnectionCache::new();
        let first = cache.get(&host).unwrap();
        let reads = host.property_reads();
        let again = cache.get(&host).unwrap();
        assert_eq!(first, again);
        assert_eq!(
            host.property_reads(),
            reads + 1,
            "only connection.id is read again"
        );

        host.set_property_bytes("connection.id", &8u64.to_le_bytes());
        host.set_property("source.address", "10.0.0.2:1");
        assert_eq!(
            cache.get(&host).unwrap().source().address,
            "10.0.0.2".parse().ok()
        );
        assert_eq!(cache.len(), 2);

        // Without a connection id every request reads afresh.
        let host = FakeHost::new();
        let mut cache = ConnectionCache::new();
        cache.get(&host).unwrap();
        assert!(cache.is_empty());
    }

    #[test]
    fn host_errors_are_not_absence() {
        // D11: a failed read of any attribute the decision uses is an error, never plaintext or
        // a missing address.
        for (tls, failing) in [
            (false, "connection.uri_san_peer_certificate"),
            (false, "connection.tls_version"),
            (true, "connection.uri_san_local_certificate"),
            (false, "source.address"),
            (true, "destination.address"),
        ] {
            let host = if tls {
                tls_host(SPIFFE_A, SPIFFE_B)
            } else {
                FakeHost::new()
            };
            host.fail_property(failing);
            assert_eq!(Connection::read(&host), Err(HostError), "{failing}");
            let mut cache = ConnectionCache::new();
            host.set_property_bytes("connection.id", &1u64.to_le_bytes());
            assert_eq!(cache.get(&host), Err(HostError), "{failing}");
            assert!(cache.is_empty(), "a failed read is not cached");
        }
        // Under TLS the fallbacks count too.
        let host = tls_host("", "");
        host.fail_property("connection.dns_san_peer_certificate");
        assert_eq!(Connection::read(&host), Err(HostError));
        let host = FakeHost::new();
        host.fail_headers.set(true);
        assert_eq!(HttpAttributes::read(&host), Err(HostError));
        // A failed connection.id read only loses the cache.
        let host = tls_host(SPIFFE_A, SPIFFE_B);
        host.fail_property("connection.id");
        assert_eq!(
            ConnectionCache::new().get(&host).unwrap().source_principal,
            SPIFFE_A
        );
    }

    #[test]
    fn paths_that_are_not_utf8_keep_their_bytes() {
        let host = FakeHost::new();
        host.headers
            .borrow_mut()
            .insert(":path".into(), b"/admin/\xff\xc3\xa9x?q=\xfe".to_vec());
        let h = HttpAttributes::read(&host).unwrap();
        assert_eq!(h.path, "/admin/%FF\u{e9}x?q=%FE");
        let matching = alp_engine::path::normalize(&h.path).unwrap();
        let mut want = b"/admin/".to_vec();
        want.push(0xff);
        want.extend_from_slice("\u{e9}x".as_bytes());
        assert_eq!(matching, want);
    }

    #[test]
    fn cache_is_bounded() {
        let host = FakeHost::new();
        let mut cache = ConnectionCache::new();
        for id in 0..(ConnectionCache::CAPACITY as u64 + 10) {
            host.set_property_bytes("connection.id", &id.to_le_bytes());
            cache.get(&host).unwrap();
        }
        assert!(cache.len() <= ConnectionCache::CAPACITY);
    }
}

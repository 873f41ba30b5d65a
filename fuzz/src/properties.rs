//! The filter's reading of Envoy properties (`alp_filter::attributes`): `split_address` on
//! `source.address` / `destination.address`, the principal rules over the certificate
//! properties, `Connection::read` and `ConnectionCache`. Input: property values separated by
//! NUL bytes, in the order of [`PROPERTIES`]; a value that is the single byte 0x01 is a host
//! error, 0x02 (or a missing value) an absent property.
//!
//! Invariants:
//! * `split_address` agrees with std's `SocketAddr` parser wherever std reads a plain address
//!   (no zone, no leading zero in the port): same IP (IPv4-mapped IPv6 read as IPv4) and port; and what it accepts prints
//!   back, as Envoy prints addresses, to text it reads the same;
//! * `Connection::read` fails only when a property read fails; its addresses are
//!   `split_address` of the properties; with TLS its principals are the first non-empty of URI
//!   SAN, DNS SAN, subject; with no certificate property at all they are empty;
//! * the cache answers a connection id with the same attributes.

use alp_engine::address::unmap;
use alp_filter::attributes::{split_address, Connection, ConnectionCache};
use alp_filter::host::{CasMismatch, Clock, Host, HostError, Level, MethodAndPath};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The properties the input gives values to, in order.
pub const PROPERTIES: &[&[&str]] = &[
    &["source", "address"],
    &["destination", "address"],
    &["connection", "uri_san_peer_certificate"],
    &["connection", "dns_san_peer_certificate"],
    &["connection", "subject_peer_certificate"],
    &["connection", "uri_san_local_certificate"],
    &["connection", "dns_san_local_certificate"],
    &["connection", "subject_local_certificate"],
    &["connection", "tls_version"],
    &["connection", "id"],
];

type Property = Result<Option<Vec<u8>>, HostError>;

/// A host (the filter's `Host` and `Clock` traits: keep in step with them) that answers property reads and the request's `:method` / `:path` from fixed values.
#[derive(Default)]
pub struct FuzzHost {
    properties: Vec<Property>,
    request: MethodAndPath,
}

impl FuzzHost {
    pub fn with_request(request: MethodAndPath) -> Self {
        FuzzHost {
            properties: Vec::new(),
            request,
        }
    }

    fn value(&self, index: usize) -> Property {
        self.properties.get(index).cloned().unwrap_or(Ok(None))
    }

    fn text(&self, index: usize) -> Option<String> {
        match self.value(index) {
            Ok(Some(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
            _ => None,
        }
    }
}

impl Host for FuzzHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        match PROPERTIES.iter().position(|p| *p == path) {
            Some(index) => self.value(index),
            None => Ok(None),
        }
    }
    fn request_method_and_path(&self) -> Result<MethodAndPath, HostError> {
        Ok(self.request.clone())
    }
    fn request_header(&self, _: &str) -> Option<String> {
        None
    }
    fn set_filter_state(&self, _: &str, _: &[u8]) {}
    fn set_request_header(&self, _: &str, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn clear_route_cache(&self) {}
    fn shared_data(&self, _: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (None, None)
    }
    fn set_shared_data(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), CasMismatch> {
        Ok(())
    }
    fn send_local_reply(&self, _: u16, _: &[(&str, &str)], _: &str) {}
    fn close_downstream(&self) {}
    fn dispatch_call(&self, _: &str, _: &[(&str, &str)], _: Duration) -> Result<u32, String> {
        Err("no callouts".into())
    }
    fn call_response_header(&self, _: &str) -> Option<String> {
        None
    }
    fn call_response_body(&self, _: usize) -> Option<Vec<u8>> {
        None
    }
    fn log(&self, _: Level, _: &str) {}
    fn log_enabled(&self, _: Level) -> bool {
        false
    }
}

impl Clock for FuzzHost {
    fn now_ms(&self) -> u64 {
        0
    }
}

pub fn fuzz(data: &[u8]) {
    check_split_address(&String::from_utf8_lossy(data));

    let properties: Vec<Property> = data
        .split(|&b| b == 0)
        .take(PROPERTIES.len())
        .map(|v| match v {
            [1] => Err(HostError),
            [2] => Ok(None),
            v => Ok(Some(v.to_vec())),
        })
        .collect();
    let host = FuzzHost {
        properties,
        request: (None, None),
    };
    for index in [0, 1] {
        if let Some(text) = host.text(index) {
            check_split_address(&text);
        }
    }

    let read = Connection::read(&host);
    let failing = host.properties.iter().any(Result::is_err);
    let connection = match read {
        Ok(c) => c,
        Err(HostError) => {
            assert!(failing, "Connection::read failed with no failing property");
            return;
        }
    };
    let address = |index| host.text(index).as_deref().and_then(split_address);
    assert_eq!(connection.source, address(0));
    assert_eq!(connection.destination, address(1));
    let non_empty = |index| host.text(index).filter(|t| !t.is_empty());
    let tls = non_empty(8).is_some();
    for (principal, first) in [
        (&connection.source_principal, 2),
        (&connection.destination_principal, 5),
    ] {
        let chosen = (first..first + 3).find_map(non_empty).unwrap_or_default();
        if tls || (2..8).all(|i| non_empty(i).is_none()) {
            assert_eq!(*principal, chosen, "principal (properties from {first})");
        }
    }

    let mut cache = ConnectionCache::new();
    let (Ok(a), Ok(b)) = (cache.get(&host), cache.get(&host)) else {
        panic!("the cache failed where Connection::read did not");
    };
    assert_eq!(*a, connection);
    assert_eq!(*b, connection);
    if matches!(host.value(9), Ok(Some(id)) if id.len() == 8) {
        assert!(
            std::rc::Rc::ptr_eq(&a, &b),
            "a cached connection was read again"
        );
        assert_eq!(cache.len(), 1);
    } else {
        assert!(cache.is_empty());
    }
}

fn check_split_address(text: &str) {
    let ours = split_address(text);
    // Envoy prints ports without leading zeros, and split_address refuses more than 5 digits.
    let port = text.rsplit(':').next().unwrap_or("");
    let leading_zero = port.len() > 1 && port.starts_with('0');
    if !text.contains('%') && !leading_zero {
        if let Ok(std) = text.parse::<SocketAddr>() {
            assert_eq!(
                ours,
                Some((unmap(std.ip()), std.port())),
                "{text:?}: std reads {std}"
            );
        }
    }
    if let Some((ip, port)) = ours {
        let printed = match ip {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        };
        assert_eq!(
            split_address(&printed),
            ours,
            "{text:?} printed {printed:?}"
        );
    }
}

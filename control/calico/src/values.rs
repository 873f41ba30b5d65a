//! Parsers of the values resources hold: protocols, ports, nets, and the `NAMESPACE/NAME` of a
//! workload. The validator reports what they refuse; the compiler converts what they accept.

use crate::model::NumOrString;
use std::net::IpAddr;

/// The Calico name of a protocol (`tcp`, `udp`, ...) or its number in decimal.
pub fn protocol(p: &NumOrString) -> Option<String> {
    match p {
        NumOrString::Num(n) if (1..=255).contains(n) => Some(n.to_string()),
        NumOrString::Num(_) => None,
        NumOrString::Str(s) => match s.to_ascii_lowercase().as_str() {
            name @ ("tcp" | "udp" | "icmp" | "icmpv6" | "sctp" | "udplite") => {
                Some(name.to_string())
            }
            n => n
                .parse::<i64>()
                .ok()
                .and_then(|n| protocol(&NumOrString::Num(n))),
        },
    }
}

/// A rule port: a numeric range or a named port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    Range(i32, i32),
    Named(String),
}

/// Parses `80`, `"80"`, `"1000:2000"` or a port name.
pub fn port(p: &NumOrString) -> Result<Port, String> {
    let num = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 65535)
            .map(|n| n as i32)
    };
    match p {
        NumOrString::Num(n) if (0..=65535).contains(n) => Ok(Port::Range(*n as i32, *n as i32)),
        NumOrString::Num(n) => Err(format!("port {n} is out of range 0-65535")),
        NumOrString::Str(s) => {
            if let Some((a, b)) = s.split_once(':') {
                match (num(a), num(b)) {
                    (Some(a), Some(b)) if a <= b => Ok(Port::Range(a, b)),
                    _ => Err(format!(
                        "port range {s:?} must be FIRST:LAST with 0 <= FIRST <= LAST <= 65535"
                    )),
                }
            } else if let Some(n) = num(s) {
                Ok(Port::Range(n, n))
            } else if !s.is_empty()
                && s.len() <= 128
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                Ok(Port::Named(s.clone()))
            } else {
                Err(format!("{s:?} is neither a port, a range nor a port name"))
            }
        }
    }
}

/// An address or CIDR as the network Felix sends (`10.0.0.0/8`; an address is a full-length
/// prefix); `None` if it is neither.
pub fn net(text: &str) -> Option<String> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    Some(match addr {
        IpAddr::V4(a) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return None;
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return None;
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    })
}

/// `--workload` that is not `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("workload {0:?} must be NAMESPACE/NAME")]
pub struct BadWorkload(pub String);

/// `NAMESPACE/NAME` -> (namespace, name).
pub fn parse_workload(text: &str) -> Result<(String, String), BadWorkload> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(BadWorkload(text.to_string())),
    }
}

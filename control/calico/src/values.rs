//! Parsers of the values resources hold: networks and the `NAMESPACE/NAME` of a workload. The
//! validator reports what they refuse; the compiler converts what they accept.

use std::net::IpAddr;

/// An address, as Go's `net.ParseIP` reads one (dotted IPv4 without leading zeros, or IPv6
/// without a zone).
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok()
}

/// `ADDRESS/LENGTH` as Go's `net.ParseCIDR` reads it: the address and the prefix length.
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = text.split_once('/')?;
    let addr = parse_ip(addr)?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// A CIDR, or an address (a full-length prefix): Calico's `ParseCIDROrIP`.
pub fn parse_cidr_or_ip(text: &str) -> Option<(IpAddr, u8)> {
    if text.contains('/') {
        parse_cidr(text)
    } else {
        let addr = parse_ip(text)?;
        Some((addr, if addr.is_ipv4() { 32 } else { 128 }))
    }
}

/// `addr` with the bits after `len` cleared.
pub fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// An address or CIDR as the network Felix sends (`10.0.0.0/8`; an address is a full-length
/// prefix); `None` if it is neither.
pub fn net(text: &str) -> Option<String> {
    let (addr, len) = parse_cidr_or_ip(text)?;
    Some(format!("{}/{len}", masked(addr, len)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_as_go_reads_them() {
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(parse_cidr("10.0.0.0/08").is_some());
        assert!(parse_cidr("aabb:aabb::0000/122").is_some());
        for bad in [
            "10.0.0.1",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "010.0.0.0/8",
            "::/129",
            "fe80::1%eth0/64",
            "x/8",
        ] {
            assert!(parse_cidr(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_cidr_or_ip("10.1.2.3").map(|(_, l)| l), Some(32));
        assert_eq!(net("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(net("::1").as_deref(), Some("::1/128"));
    }
}

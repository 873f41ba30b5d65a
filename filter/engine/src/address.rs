//! IP addresses and CIDRs (spec section 3 "Addresses", section 2.2 `NET`, section 5 nets).
//!
//! * [`parse_ip`]: only plain IPv4 / IPv6 literals; zone ids, leading-zero IPv4 octets, brackets,
//!   ports and whitespace are rejected. An IPv4-mapped IPv6 address is returned as IPv4.
//! * [`canonical`]: dotted decimal, or RFC 5952 text for IPv6 (lower-case hex, the longest run of
//!   two or more zero groups as `::`, leftmost on a tie, never an embedded dotted quad).
//! * [`parse_cidr`]: `<addr>/<len>` only; host bits are masked off.
//!
//! Every function here treats an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4
//! address it maps, so a caller holding an `IpAddr` from elsewhere gets the same answers as one
//! that went through [`parse_ip`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Parse a plain IPv4 or IPv6 literal; anything else (zone, leading-zero octet, brackets, port,
/// surrounding whitespace, empty) is `None`. `::ffff:a.b.c.d` becomes the IPv4 `a.b.c.d`.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    parse_literal(text).map(unmap)
}

/// Parse without mapping `::ffff:a.b.c.d` to IPv4 (the literal's own family).
fn parse_literal(text: &str) -> Option<IpAddr> {
    // std's parsers accept exactly the plain literals: IPv4 as four decimal octets without
    // leading zeros (since Rust 1.56), IPv6 as RFC 4291 text without a zone.
    if text.contains(':') {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// An IPv4-mapped IPv6 address as IPv4; every other address unchanged.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// The canonical text of `ip` (spec section 3). An IPv4-mapped IPv6 address is written as the
/// IPv4 address it maps.
pub fn canonical(ip: IpAddr) -> String {
    let mut out = String::with_capacity(39);
    write_canonical(ip, &mut out);
    out
}

/// Append the canonical text of `ip` to `out` (no allocation beyond `out`'s growth).
pub fn write_canonical(ip: IpAddr, out: &mut String) {
    match unmap(ip) {
        IpAddr::V4(v4) => write_v4(v4, out),
        IpAddr::V6(v6) => write_v6(v6, out),
    }
}

fn write_v4(ip: Ipv4Addr, out: &mut String) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        write_decimal(u32::from(octet), out);
    }
}

fn write_decimal(mut n: u32, out: &mut String) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        if let Some(slot) = digits.get_mut(len) {
            // `n % 10` is below 10, so the cast cannot truncate.
            *slot = b'0' + (n % 10) as u8;
        }
        len += 1;
        n /= 10;
        if n == 0 || len >= digits.len() {
            break;
        }
    }
    for d in digits.iter().take(len).rev() {
        out.push(char::from(*d));
    }
}

fn write_v6(ip: Ipv6Addr, out: &mut String) {
    let groups = ip.segments();

    // Longest run of two or more zero groups, leftmost on a tie (RFC 5952 4.2.2, 4.2.3).
    let mut best: Option<(usize, usize)> = None; // (start, len)
    let mut run_start = 0;
    let mut run_len = 0;
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if run_len >= 2 && best.is_none_or(|(_, len)| run_len > len) {
                best = Some((run_start, run_len));
            }
        } else {
            run_len = 0;
        }
    }

    let mut i = 0;
    while i < groups.len() {
        if let Some((start, len)) = best {
            if i == start {
                out.push_str("::");
                i += len;
                continue;
            }
        }
        // A separator unless this group directly follows `::` or is the first.
        let after_gap = best.is_some_and(|(start, len)| i == start + len);
        if i > 0 && !after_gap {
            out.push(':');
        }
        if let Some(&g) = groups.get(i) {
            write_hex(g, out);
        }
        i += 1;
    }
}

/// Lower-case hex without leading zeros (RFC 5952 4.1, 4.3).
fn write_hex(g: u16, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12u32, 8, 4, 0] {
        let nibble = usize::from((g >> shift) & 0xf);
        if nibble != 0 || started || shift == 0 {
            started = true;
            if let Some(&c) = HEX.get(nibble) {
                out.push(char::from(c));
            }
        }
    }
}

/// A CIDR block: an address with its host bits cleared and a prefix length within the family's
/// bounds. An IPv4-mapped IPv6 block of length 96 or more is held as the IPv4 block it maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// The block of `len` leading bits of `addr` (host bits are cleared); `None` when `len`
    /// exceeds the family's width (32 or 128).
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        match addr {
            IpAddr::V4(v4) => {
                if len > 32 {
                    return None;
                }
                Some(Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & v4_mask(len))),
                    len,
                })
            }
            IpAddr::V6(v6) => {
                if len > 128 {
                    return None;
                }
                if let (Some(v4), Some(v4_len)) = (v6.to_ipv4_mapped(), len.checked_sub(96)) {
                    return Cidr::new(IpAddr::V4(v4), v4_len);
                }
                Some(Cidr {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & v6_mask(len))),
                    len,
                })
            }
        }
    }

    /// The full-length block holding only `addr`.
    pub fn host(addr: IpAddr) -> Cidr {
        let addr = unmap(addr);
        Cidr {
            addr,
            len: family_width(addr),
        }
    }

    /// The network address (host bits clear).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` lies in this block; always false across address families.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & v4_mask(self.len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & v6_mask(self.len) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    /// `<canonical address>/<len>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", canonical(self.addr), self.len)
    }
}

/// Parse `<addr>/<len>` (a bare address is `None`): `addr` a plain literal as for [`parse_ip`],
/// `len` one to three decimal digits within the literal's family width. Host bits are masked.
pub fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, len) = text.split_once('/')?;
    let len = parse_prefix_len(len)?;
    Cidr::new(parse_literal(addr)?, len)
}

/// A `NET` IP-set member (spec section 2.2): a CIDR, or a bare address as a full-length prefix.
pub fn parse_net_member(text: &str) -> Option<Cidr> {
    if text.contains('/') {
        parse_cidr(text)
    } else {
        parse_ip(text).map(Cidr::host)
    }
}

fn parse_prefix_len(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u8>().ok()
}

fn family_width(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Network mask of `len` leading one bits (`len` above 32 is treated as 32).
pub(crate) fn v4_mask(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(len)))
        .unwrap_or(0)
}

/// Network mask of `len` leading one bits (`len` above 128 is treated as 128).
pub(crate) fn v6_mask(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(len)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal")
    }

    #[test]
    fn parse_ip_table() {
        let table: &[(&str, Option<&str>)] = &[
            ("10.0.0.1", Some("10.0.0.1")),
            ("0.0.0.0", Some("0.0.0.0")),
            ("255.255.255.255", Some("255.255.255.255")),
            ("::", Some("::")),
            ("::1", Some("::1")),
            ("2001:DB8::1", Some("2001:db8::1")),
            (
                "2001:0db8:0000:0000:0000:0000:0000:0001",
                Some("2001:db8::1"),
            ),
            // IPv4-mapped -> IPv4, in either spelling.
            ("::ffff:1.2.3.4", Some("1.2.3.4")),
            ("::FFFF:1.2.3.4", Some("1.2.3.4")),
            ("::ffff:102:304", Some("1.2.3.4")),
            ("0:0:0:0:0:ffff:0a00:0001", Some("10.0.0.1")),
            // IPv4-compatible (deprecated) stays IPv6, no dotted quad in canonical form.
            ("::1.2.3.4", Some("::102:304")),
            ("64:ff9b::1.2.3.4", Some("64:ff9b::102:304")),
            // Rejected.
            ("", None),
            ("1.2.3", None),
            ("1.2.3.4.5", None),
            ("256.0.0.1", None),
            ("01.2.3.4", None),
            ("1.2.3.04", None),
            ("1.2.3.00", None),
            ("0x1.2.3.4", None),
            ("1.2.3.4 ", None),
            (" 1.2.3.4", None),
            ("+1.2.3.4", None),
            ("1.2.3.4/32", None),
            ("1.2.3.4:80", None),
            ("fe80::1%eth0", None),
            ("fe80::1%1", None),
            ("[::1]", None),
            ("[::1]:80", None),
            ("::ffff:01.2.3.4", None),
            ("1::2::3", None),
            ("12345::", None),
            ("1:2:3:4:5:6:7:8:9", None),
            ("localhost", None),
            ("not-an-ip", None),
        ];
        for (text, want) in table {
            let got = parse_ip(text).map(canonical);
            assert_eq!(got.as_deref(), *want, "parse_ip({text:?})");
        }
        assert_eq!(parse_ip("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert!(parse_ip("::1.2.3.4").is_some_and(|a| a.is_ipv6()));
    }

    #[test]
    fn canonical_rfc5952_table() {
        let table: &[(&str, &str)] = &[
            ("0:0:0:0:0:0:0:0", "::"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("1:0:0:0:0:0:0:0", "1::"),
            ("2001:db8:0:0:0:0:2:1", "2001:db8::2:1"),
            // A single zero group is never shortened (4.2.2).
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            // Longest run wins (4.2.3).
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            // Tie: leftmost run (4.2.3).
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("0:0:1:0:0:1:0:0", "::1:0:0:1:0:0"),
            // Lower case, no leading zeros (4.1, 4.3).
            (
                "2001:0DB8:00AB:0CD0:000E:F000:0000:0001",
                "2001:db8:ab:cd0:e:f000:0:1",
            ),
            ("fe80::1", "fe80::1"),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ),
            // Never an embedded dotted quad.
            ("::1.2.3.4", "::102:304"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
            // Mapped is written as IPv4.
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("1.2.3.4", "1.2.3.4"),
            ("0.0.0.0", "0.0.0.0"),
            ("100.20.3.0", "100.20.3.0"),
        ];
        for (text, want) in table {
            assert_eq!(canonical(ip(text)), *want, "canonical({text})");
        }
    }

    #[test]
    fn cidr_table() {
        let table: &[(&str, Option<&str>)] = &[
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            ("10.1.2.3/8", Some("10.0.0.0/8")),
            ("10.1.2.3/32", Some("10.1.2.3/32")),
            ("10.1.2.3/0", Some("0.0.0.0/0")),
            ("10.1.2.3/31", Some("10.1.2.2/31")),
            ("10.0.0.0/08", Some("10.0.0.0/8")),
            ("2001:db8::1/64", Some("2001:db8::/64")),
            ("2001:DB8::/128", Some("2001:db8::/128")),
            ("::/0", Some("::/0")),
            ("::ffff:10.1.2.3/104", Some("10.0.0.0/8")),
            ("::ffff:10.1.2.3/128", Some("10.1.2.3/32")),
            ("::ffff:0.0.0.0/96", Some("0.0.0.0/0")),
            ("::ffff:10.1.2.3/64", Some("::/64")),
            ("10.0.0.1", None),
            ("10.0.0.0/33", None),
            ("10.0.0.0/", None),
            ("/8", None),
            ("10.0.0.0/-1", None),
            ("10.0.0.0/+8", None),
            ("10.0.0.0/ 8", None),
            ("10.0.0.0/8 ", None),
            ("10.0.0.0/0008", None),
            ("10.0.0.0/8/8", None),
            ("10.0.0.0/256", None),
            ("2001:db8::/129", None),
            ("fe80::%eth0/64", None),
            ("010.0.0.0/8", None),
        ];
        for (text, want) in table {
            let got = parse_cidr(text).map(|c| c.to_string());
            assert_eq!(got.as_deref(), *want, "parse_cidr({text:?})");
        }
    }

    #[test]
    fn cidr_contains_table() {
        let table: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.255.1.1", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("10.0.0.0/8", "::a00:1", false),
            ("0.0.0.0/0", "1.2.3.4", true),
            ("0.0.0.0/0", "::1", false),
            ("::/0", "1.2.3.4", false),
            ("::/0", "::ffff:1.2.3.4", false),
            ("::/0", "2001:db8::1", true),
            ("10.1.2.4/31", "10.1.2.5", true),
            ("10.1.2.4/31", "10.1.2.6", false),
            ("2001:db8::/121", "2001:db8::7f", true),
            ("2001:db8::/121", "2001:db8::80", false),
            ("2001:db8::10/127", "2001:db8::11", true),
            ("1.2.3.4/32", "1.2.3.4", true),
            ("1.2.3.4/32", "1.2.3.5", false),
        ];
        for (cidr, addr, want) in table {
            let c = parse_cidr(cidr).expect("valid cidr");
            assert_eq!(c.contains(ip(addr)), *want, "{cidr} contains {addr}");
        }
    }

    #[test]
    fn net_member_forms() {
        assert_eq!(
            parse_net_member("10.0.0.1")
                .map(|c| c.to_string())
                .as_deref(),
            Some("10.0.0.1/32")
        );
        assert_eq!(
            parse_net_member("2001:db8::1")
                .map(|c| c.to_string())
                .as_deref(),
            Some("2001:db8::1/128")
        );
        assert_eq!(
            parse_net_member("::ffff:1.2.3.4")
                .map(|c| c.to_string())
                .as_deref(),
            Some("1.2.3.4/32")
        );
        assert_eq!(parse_net_member("nope"), None);
        assert_eq!(parse_net_member("1.2.3.4/33"), None);
    }

    #[test]
    fn masks() {
        assert_eq!(v4_mask(0), 0);
        assert_eq!(v4_mask(1), 0x8000_0000);
        assert_eq!(v4_mask(32), u32::MAX);
        assert_eq!(v4_mask(200), u32::MAX);
        assert_eq!(v6_mask(0), 0);
        assert_eq!(v6_mask(128), u128::MAX);
        assert_eq!(v6_mask(127), u128::MAX - 1);
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
            // Addresses with many zero groups, to exercise `::` placement.
            prop::array::uniform8(prop_oneof![Just(0u16), Just(1u16), any::<u16>()])
                .prop_map(|g| IpAddr::V6(Ipv6Addr::from(g))),
            any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn canonical_round_trips(a in any_ip()) {
            let text = canonical(a);
            prop_assert_eq!(parse_ip(&text), Some(unmap(a)));
            prop_assert!(!text.bytes().any(|b| b.is_ascii_uppercase()));
            if unmap(a).is_ipv6() {
                prop_assert!(!text.contains('.'));
            }
        }

        #[test]
        fn canonical_agrees_with_std_display_off_mapped(a in any_ip()) {
            // std's Display follows RFC 5952 too, except that it writes mapped addresses with a
            // dotted quad; we write those as plain IPv4.
            let a = unmap(a);
            prop_assert_eq!(canonical(a), a.to_string());
        }

        #[test]
        fn parse_ip_never_panics(s in ".{0,50}") {
            let _ = parse_ip(&s);
            let _ = parse_cidr(&s);
            let _ = parse_net_member(&s);
        }

        #[test]
        fn cidr_contains_own_network(a in any_ip(), len in 0u8..=128) {
            if let Some(c) = Cidr::new(a, len) {
                // A mapped address is IPv4: a block kept as IPv6 (length below 96) misses it.
                prop_assert_eq!(c.contains(a), unmap(a).is_ipv4() == c.addr().is_ipv4());
                prop_assert!(c.contains(c.addr()));
                prop_assert_eq!(parse_cidr(&c.to_string()), Some(c));
            }
        }
    }
}

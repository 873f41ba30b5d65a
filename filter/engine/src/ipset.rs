//! IP-set membership (spec section 2.2, D5).
//!
//! * [`Members`]: the mutable set the store keeps; applies `ipset_update` / delta semantics.
//! * [`IpSetLookup`]: a read-only set built once per snapshot for the per-request path.
//!
//! `NET` sets are held per address family as a short list of the distinct prefix lengths present,
//! each with a hash set of the masked network numbers. A lookup masks the address once per length
//! present and probes: exact for every prefix length (D5), and at most 33 (IPv4) or 129 (IPv6)
//! probes whatever the member count.

use crate::address::{canonical, parse_ip, parse_net_member, unmap, v4_mask, v6_mask, Cidr};
use crate::protocol::proto_name;
use crate::snapshot::IpSetKind;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A `NET` member that is neither a CIDR nor an address; the caller logs it, the set is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    #[error("invalid NET member {member:?}: not a CIDR or IP address")]
    InvalidNet { member: String },
}

/// Mutable membership as the store keeps it (spec section 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    kind: IpSetKind,
    repr: MembersRepr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MembersRepr {
    /// `IP`, `IP_AND_PORT`: the member strings, compared exactly.
    Strings(FastSet<String>),
    /// `NET`: masked blocks.
    Nets(NetTable),
}

impl Members {
    /// An empty set of `kind`.
    pub fn new(kind: IpSetKind) -> Self {
        let repr = match kind {
            IpSetKind::Ip | IpSetKind::IpAndPort => MembersRepr::Strings(FastSet::default()),
            IpSetKind::Net => MembersRepr::Nets(NetTable::default()),
        };
        Members { kind, repr }
    }

    pub fn kind(&self) -> IpSetKind {
        self.kind
    }

    /// Add a member. `IP` / `IP_AND_PORT`: any string, kept verbatim. `NET`: `<addr>/<len>` or a
    /// bare address (full-length prefix), host bits ignored; anything else is an error and leaves
    /// the set unchanged. Adding a present member is a no-op.
    pub fn add(&mut self, member: &str) -> Result<(), MemberError> {
        match &mut self.repr {
            MembersRepr::Strings(set) => {
                if !set.contains(member) {
                    set.insert(member.to_owned());
                }
                Ok(())
            }
            MembersRepr::Nets(table) => match parse_net_member(member) {
                Some(cidr) => {
                    table.insert(cidr);
                    Ok(())
                }
                None => Err(MemberError::InvalidNet {
                    member: member.to_owned(),
                }),
            },
        }
    }

    /// Remove a member. `IP` / `IP_AND_PORT`: the exact string. `NET`: the member with the same
    /// masked address and prefix length (a bare address is a full-length prefix); an unparsable
    /// or absent member is a no-op.
    pub fn remove(&mut self, member: &str) {
        match &mut self.repr {
            MembersRepr::Strings(set) => {
                set.remove(member);
            }
            MembersRepr::Nets(table) => {
                if let Some(cidr) = parse_net_member(member) {
                    table.remove(cidr);
                }
            }
        }
    }

    /// Membership of `key` (spec section 2.2): exact string equality for `IP` / `IP_AND_PORT`;
    /// for `NET`, `key` parsed as an address (failure: false) lies in some member block.
    pub fn contains(&self, key: &str) -> bool {
        match &self.repr {
            MembersRepr::Strings(set) => set.contains(key),
            MembersRepr::Nets(table) => parse_ip(key).is_some_and(|ip| table.contains(ip)),
        }
    }

    /// Whether `member` itself is in the set, as [`Members::remove`] would find it: the exact
    /// string for `IP` / `IP_AND_PORT`; for `NET`, a member with the same masked address and
    /// prefix length (an unparsable member: false). Unlike [`Members::contains`], a `NET` member
    /// inside a larger block is not in the set.
    pub fn has_member(&self, member: &str) -> bool {
        match &self.repr {
            MembersRepr::Strings(set) => set.contains(member),
            MembersRepr::Nets(table) => parse_net_member(member).is_some_and(|c| table.has(c)),
        }
    }

    /// The members as strings, sorted: verbatim for `IP` / `IP_AND_PORT`, canonical
    /// `<addr>/<len>` (masked) for `NET`. [`IpSetLookup::build`] on these gives the same answers.
    pub fn to_strings(&self) -> Vec<String> {
        let mut out: Vec<String> = match &self.repr {
            MembersRepr::Strings(set) => set.iter().cloned().collect(),
            MembersRepr::Nets(table) => table.cidrs().map(|c| c.to_string()).collect(),
        };
        out.sort_unstable();
        out
    }

    /// Number of distinct members.
    pub fn len(&self) -> usize {
        match &self.repr {
            MembersRepr::Strings(set) => set.len(),
            MembersRepr::Nets(table) => table.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Read-only membership built once per snapshot, for the per-request path.
#[derive(Debug, Clone)]
pub struct IpSetLookup {
    kind: IpSetKind,
    repr: LookupRepr,
}

#[derive(Debug, Clone)]
enum LookupRepr {
    Strings {
        /// Every member, for exact string lookups.
        all: FastSet<Box<str>>,
        /// Members that are canonical address text, parsed: `contains_ip` without formatting.
        ips: FastSet<IpAddr>,
        /// Members that are canonical `<ip>,<proto>:<port>` text, parsed.
        ip_ports: FastSet<(IpAddr, u8, u16)>,
    },
    Nets(NetTable),
}

impl IpSetLookup {
    /// Build from snapshot members. Invalid `NET` members are ignored (the store already logged
    /// them when they arrived).
    pub fn build(kind: IpSetKind, members: &[String]) -> Self {
        let repr = match kind {
            IpSetKind::Ip | IpSetKind::IpAndPort => {
                let mut all = FastSet::default();
                let mut ips = FastSet::default();
                let mut ip_ports = FastSet::default();
                all.reserve(members.len());
                for member in members {
                    if let Some(ip) = parse_canonical_ip(member) {
                        ips.insert(ip);
                    } else if let Some(key) = parse_canonical_port_key(member) {
                        ip_ports.insert(key);
                    }
                    all.insert(Box::from(member.as_str()));
                }
                LookupRepr::Strings { all, ips, ip_ports }
            }
            IpSetKind::Net => {
                let mut table = NetTable::default();
                for cidr in members.iter().filter_map(|m| parse_net_member(m)) {
                    table.insert(cidr);
                }
                LookupRepr::Nets(table)
            }
        };
        IpSetLookup { kind, repr }
    }

    /// Build from the store's set.
    pub fn from_members(members: &Members) -> Self {
        let repr = match &members.repr {
            MembersRepr::Strings(set) => {
                let strings: Vec<String> = set.iter().cloned().collect();
                return IpSetLookup::build(members.kind, &strings);
            }
            MembersRepr::Nets(table) => LookupRepr::Nets(table.clone()),
        };
        IpSetLookup {
            kind: members.kind,
            repr,
        }
    }

    pub fn kind(&self) -> IpSetKind {
        self.kind
    }

    /// Number of distinct members (`NET`: distinct valid blocks).
    pub fn len(&self) -> usize {
        match &self.repr {
            LookupRepr::Strings { all, .. } => all.len(),
            LookupRepr::Nets(table) => table.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Membership of a key string, as [`Members::contains`].
    pub fn contains_key(&self, key: &str) -> bool {
        match &self.repr {
            LookupRepr::Strings { all, .. } => all.contains(key),
            LookupRepr::Nets(table) => parse_ip(key).is_some_and(|ip| table.contains(ip)),
        }
    }

    /// `contains_key(canonical(ip))` (the `ip_key` of spec section 3), without formatting.
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        match &self.repr {
            LookupRepr::Strings { ips, .. } => ips.contains(&unmap(ip)),
            LookupRepr::Nets(table) => table.contains(ip),
        }
    }

    /// `contains_key(canonical(ip) + "," + proto_name(protocol) + ":" + port)` (the `port_key`
    /// of spec section 3), without formatting. A protocol without a name has no key: false.
    pub fn contains_ip_port(&self, ip: IpAddr, protocol: u8, port: u16) -> bool {
        match &self.repr {
            LookupRepr::Strings { ip_ports, .. } => {
                proto_name(i32::from(protocol)).is_some()
                    && ip_ports.contains(&(unmap(ip), protocol, port))
            }
            // A port key never parses as an address.
            LookupRepr::Nets(_) => false,
        }
    }
}

/// `text` if it is exactly the canonical form of an address.
fn parse_canonical_ip(text: &str) -> Option<IpAddr> {
    let ip = parse_ip(text)?;
    (canonical(ip) == text).then_some(ip)
}

/// `text` if it is exactly `canonical(ip) + "," + proto_name + ":" + decimal port`.
fn parse_canonical_port_key(text: &str) -> Option<(IpAddr, u8, u16)> {
    let (ip, rest) = text.split_once(',')?;
    let (proto, port) = rest.split_once(':')?;
    let proto: u8 = match proto {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        _ => return None,
    };
    let canonical_port = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && (port == "0" || !port.starts_with('0'));
    if !canonical_port {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    Some((parse_canonical_ip(ip)?, proto, port))
}

/// `NET` members of both families.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NetTable {
    v4: PrefixTable<u32>,
    v6: PrefixTable<u128>,
}

impl NetTable {
    fn insert(&mut self, cidr: Cidr) -> bool {
        match cidr.addr() {
            IpAddr::V4(a) => self.v4.insert(cidr.prefix_len(), u32::from(a)),
            IpAddr::V6(a) => self.v6.insert(cidr.prefix_len(), u128::from(a)),
        }
    }

    fn remove(&mut self, cidr: Cidr) -> bool {
        match cidr.addr() {
            IpAddr::V4(a) => self.v4.remove(cidr.prefix_len(), u32::from(a)),
            IpAddr::V6(a) => self.v6.remove(cidr.prefix_len(), u128::from(a)),
        }
    }

    fn has(&self, cidr: Cidr) -> bool {
        match cidr.addr() {
            IpAddr::V4(a) => self.v4.has(cidr.prefix_len(), u32::from(a)),
            IpAddr::V6(a) => self.v6.has(cidr.prefix_len(), u128::from(a)),
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match unmap(ip) {
            IpAddr::V4(a) => self.v4.contains(u32::from(a)),
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn cidrs(&self) -> impl Iterator<Item = Cidr> + '_ {
        let v4 = self
            .v4
            .iter()
            .filter_map(|(len, net)| Cidr::new(IpAddr::V4(Ipv4Addr::from(net)), len));
        let v6 = self
            .v6
            .iter()
            .filter_map(|(len, net)| Cidr::new(IpAddr::V6(Ipv6Addr::from(net)), len));
        v4.chain(v6)
    }
}

/// Address bits of one family.
trait Bits: Copy + Hash + Eq {
    fn masked(self, len: u8) -> Self;
}

impl Bits for u32 {
    fn masked(self, len: u8) -> u32 {
        self & v4_mask(len)
    }
}

impl Bits for u128 {
    fn masked(self, len: u8) -> u128 {
        self & v6_mask(len)
    }
}

/// Networks of one family: for each prefix length present (longest first), the set of masked
/// network numbers. Lengths with no member are dropped, so a lookup probes only lengths in use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrefixTable<T: Bits> {
    by_len: Vec<(u8, FastSet<T>)>,
}

impl<T: Bits> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable { by_len: Vec::new() }
    }
}

impl<T: Bits> PrefixTable<T> {
    fn position(&self, len: u8) -> Result<usize, usize> {
        // Sorted by descending length.
        self.by_len.binary_search_by(|(l, _)| len.cmp(l))
    }

    fn insert(&mut self, len: u8, net: T) -> bool {
        let net = net.masked(len);
        match self.position(len) {
            Ok(i) => self
                .by_len
                .get_mut(i)
                .is_some_and(|(_, nets)| nets.insert(net)),
            Err(i) => {
                let mut nets = FastSet::default();
                nets.insert(net);
                self.by_len.insert(i, (len, nets));
                true
            }
        }
    }

    fn remove(&mut self, len: u8, net: T) -> bool {
        let net = net.masked(len);
        let Ok(i) = self.position(len) else {
            return false;
        };
        let Some((_, nets)) = self.by_len.get_mut(i) else {
            return false;
        };
        let removed = nets.remove(&net);
        if nets.is_empty() {
            self.by_len.remove(i);
        }
        removed
    }

    fn has(&self, len: u8, net: T) -> bool {
        self.position(len)
            .ok()
            .and_then(|i| self.by_len.get(i))
            .is_some_and(|(_, nets)| nets.contains(&net.masked(len)))
    }

    fn contains(&self, addr: T) -> bool {
        self.by_len
            .iter()
            .any(|(len, nets)| nets.contains(&addr.masked(*len)))
    }

    fn len(&self) -> usize {
        self.by_len.iter().map(|(_, nets)| nets.len()).sum()
    }

    fn iter(&self) -> impl Iterator<Item = (u8, T)> + '_ {
        self.by_len
            .iter()
            .flat_map(|(len, nets)| nets.iter().map(move |net| (*len, *net)))
    }
}

/// Hash sets with a fixed, fast hasher. Members come from Felix, not from requests, and requests
/// only probe, so flooding is not a concern; a fixed hasher also needs no entropy from the host
/// (std's `RandomState` asks WASI for random bytes).
type FastSet<T> = HashSet<T, BuildHasherDefault<MixHasher>>;

/// A small multiply-rotate hasher with a final avalanche step, so both the high bits (the
/// table's control bytes) and the low bits (the bucket index) depend on every input bit.
#[derive(Debug, Clone, Copy, Default)]
struct MixHasher {
    state: u64,
}

const MIX_MUL: u64 = 0x9e37_79b9_7f4a_7c15;
const FINISH_MUL: u64 = 0xd6e8_feb8_6659_fd93;

impl MixHasher {
    fn add(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(MIX_MUL).rotate_left(29);
    }
}

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        let x = self.state.wrapping_mul(FINISH_MUL);
        let x = x ^ (x >> 32);
        let x = x.wrapping_mul(FINISH_MUL);
        x ^ (x >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            for (dst, src) in word.iter_mut().zip(rest) {
                *dst = *src;
            }
            // Tag the tail with its length so "a" and "a\0" differ.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u128(&mut self, n: u128) {
        // Truncations keep the low and the high half respectively.
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind_from(name: &str) -> IpSetKind {
        match name {
            "IP" => IpSetKind::Ip,
            "IP_AND_PORT" => IpSetKind::IpAndPort,
            "NET" => IpSetKind::Net,
            other => panic!("unknown ipset type {other}"),
        }
    }

    fn strs(v: &serde_json::Value) -> Vec<&str> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string"))
            .collect()
    }

    #[test]
    fn conformance_ipset() {
        let all: serde_json::Value = serde_json::from_str(
            &crate::testdata::shared_file("conformance/unit_cases.json")
                .expect("shared/conformance/unit_cases.json"),
        )
        .expect("unit_cases.json");
        let cases = all["ipset"].as_array().expect("array");
        assert!(!cases.is_empty());
        for case in cases {
            let kind = kind_from(case["type"].as_str().expect("type"));
            let mut set = Members::new(kind);
            for m in strs(&case["add"]) {
                set.add(m).expect("conformance members are valid");
            }
            for m in strs(&case["remove"]) {
                set.remove(m);
            }
            let lookup = IpSetLookup::build(kind, &set.to_strings());
            let direct = IpSetLookup::from_members(&set);
            for (key, want) in case["contains"].as_object().expect("object") {
                let want = want.as_bool().expect("bool");
                assert_eq!(set.contains(key), want, "case {case}: contains({key})");
                assert_eq!(lookup.contains_key(key), want, "case {case}: lookup({key})");
                assert_eq!(direct.contains_key(key), want, "case {case}: direct({key})");
                if let Some(ip) = parse_ip(key) {
                    if kind == IpSetKind::Net || canonical(ip) == *key {
                        assert_eq!(lookup.contains_ip(ip), want, "case {case}: ip {key}");
                    }
                }
            }
        }
    }

    #[test]
    fn exact_strings_for_ip_kinds() {
        let mut set = Members::new(IpSetKind::Ip);
        set.add("10.0.0.1").expect("ok");
        set.add("2001:DB8::1").expect("ok");
        set.add("::ffff:1.2.3.4").expect("ok");
        set.add("not an address").expect("ok");
        assert!(set.contains("10.0.0.1"));
        assert!(!set.contains("10.0.0.01"));
        assert!(!set.contains("10.0.0.1/32"));
        assert!(set.contains("2001:DB8::1"));
        assert!(!set.contains("2001:db8::1"));
        assert!(set.contains("not an address"));
        assert_eq!(set.len(), 4);

        let lookup = IpSetLookup::build(IpSetKind::Ip, &set.to_strings());
        let ip = |s: &str| parse_ip(s).expect("ip");
        assert!(lookup.contains_ip(ip("10.0.0.1")));
        assert!(lookup.contains_ip(ip("::ffff:10.0.0.1")));
        // The canonical key "2001:db8::1" / "1.2.3.4" is not a member string.
        assert!(!lookup.contains_ip(ip("2001:db8::1")));
        assert!(!lookup.contains_ip(ip("1.2.3.4")));
        assert!(lookup.contains_key("not an address"));

        set.remove("10.0.0.1");
        set.remove("absent");
        assert!(!set.contains("10.0.0.1"));
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn has_member_is_exact_membership() {
        let mut ips = Members::new(IpSetKind::Ip);
        ips.add("10.0.0.1").expect("ok");
        assert!(ips.has_member("10.0.0.1"));
        assert!(!ips.has_member("10.0.0.1/32"));
        let mut nets = Members::new(IpSetKind::Net);
        nets.add("10.0.0.0/8").expect("ok");
        nets.add("10.1.2.3").expect("ok");
        nets.add("2001:db8::/32").expect("ok");
        // Same masked address and length, whatever the spelling.
        assert!(nets.has_member("10.9.9.9/8"));
        assert!(nets.has_member("10.1.2.3/32"));
        assert!(nets.has_member("10.1.2.3"));
        assert!(nets.has_member("2001:db8:1::/32"));
        // Inside a member block, but not a member; unparsable; other lengths.
        assert!(nets.contains("10.2.0.0"));
        assert!(!nets.has_member("10.2.0.0/16"));
        assert!(!nets.has_member("10.1.2.3/31"));
        assert!(!nets.has_member("10.0.0.0/9"));
        assert!(!nets.has_member("junk"));
        nets.remove("10.0.0.0/8");
        assert!(!nets.has_member("10.0.0.0/8"));
    }

    #[test]
    fn ip_and_port_keys() {
        let members: Vec<String> = [
            "10.0.0.1,tcp:8080",
            "10.0.0.1,udp:53",
            "2001:db8::1,tcp:443",
            "10.0.0.2,TCP:80",
            "10.0.0.3,tcp:080",
            "10.0.0.4,sctp:80",
            "10.0.0.5,tcp:0",
            "10.0.0.6,icmp:0",
            "10.0.0.7,tcp:65536",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let lookup = IpSetLookup::build(IpSetKind::IpAndPort, &members);
        let ip = |s: &str| parse_ip(s).expect("ip");
        let table: &[(&str, u8, u16, bool)] = &[
            ("10.0.0.1", 6, 8080, true),
            ("10.0.0.1", 17, 8080, false),
            ("10.0.0.1", 17, 53, true),
            ("::ffff:10.0.0.1", 6, 8080, true),
            ("2001:db8::1", 6, 443, true),
            ("10.0.0.2", 6, 80, false),
            ("10.0.0.3", 6, 80, false),
            ("10.0.0.4", 132, 80, false),
            ("10.0.0.5", 6, 0, true),
            ("10.0.0.6", 1, 0, true),
            ("10.0.0.7", 6, 0, false),
            ("10.0.0.1", 58, 8080, false),
        ];
        for (addr, proto, port, want) in table {
            let a = ip(addr);
            assert_eq!(
                lookup.contains_ip_port(a, *proto, *port),
                *want,
                "{addr} {proto} {port}"
            );
            // Agrees with the string key whenever that key exists.
            if let Some(name) = proto_name(i32::from(*proto)) {
                let key = format!("{},{name}:{port}", canonical(a));
                assert_eq!(lookup.contains_key(&key), *want, "{key}");
            }
        }
        assert!(lookup.contains_key("10.0.0.2,TCP:80"));
        assert!(!lookup.contains_ip(ip("10.0.0.1")));
        assert_eq!(lookup.len(), members.len());

        let net = IpSetLookup::build(IpSetKind::Net, &["0.0.0.0/0".to_owned()]);
        assert!(!net.contains_ip_port(ip("10.0.0.1"), 6, 80));
        assert!(!net.contains_key("10.0.0.1,tcp:80"));
    }

    #[test]
    fn net_members() {
        let mut set = Members::new(IpSetKind::Net);
        assert_eq!(
            set.add("bogus"),
            Err(MemberError::InvalidNet {
                member: "bogus".to_owned()
            })
        );
        assert!(set.add("10.0.0.0/33").is_err());
        assert!(set.add("10.0.0.1/8 ").is_err());
        assert!(set.add("fe80::1%eth0").is_err());
        assert!(set.is_empty());

        set.add("10.1.2.3/8").expect("ok");
        set.add("10.0.0.0/8").expect("ok"); // same block
        set.add("192.168.1.1").expect("ok"); // full length
        set.add("2001:db8::1/32").expect("ok");
        set.add("::ffff:172.16.0.0/108").expect("ok"); // 172.16.0.0/12
        assert_eq!(set.len(), 4);
        assert_eq!(
            set.to_strings(),
            vec![
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.1.1/32",
                "2001:db8::/32"
            ]
        );
        assert!(set.contains("10.200.0.1"));
        assert!(set.contains("::ffff:10.0.0.1"));
        assert!(set.contains("172.31.255.255"));
        assert!(!set.contains("172.32.0.0"));
        assert!(set.contains("192.168.1.1"));
        assert!(!set.contains("192.168.1.2"));
        assert!(set.contains("2001:db8:ffff::"));
        assert!(!set.contains("2001:db9::"));
        assert!(!set.contains(""));
        assert!(!set.contains("10.0.0.1/32"));
        assert!(!set.contains("010.0.0.1"));

        // Removal: same masked address and length.
        set.remove("10.9.9.9/8");
        assert!(!set.contains("10.0.0.1"));
        set.remove("192.168.1.1/24"); // different length: no-op
        assert!(set.contains("192.168.1.1"));
        set.remove("192.168.1.1/32");
        assert!(!set.contains("192.168.1.1"));
        set.remove("garbage");
        assert_eq!(set.len(), 2);

        // Delta: added then removed in the same update ends removed.
        set.add("8.8.8.8").expect("ok");
        set.remove("8.8.8.8");
        assert!(!set.contains("8.8.8.8"));
    }

    #[test]
    fn every_prefix_length() {
        // D5: a member of each length contains the addresses of its block and nothing else.
        for len in 0u8..=32 {
            let base = 0xc0a8_5a5au32; // 192.168.90.90
            let cidr = Cidr::new(IpAddr::V4(Ipv4Addr::from(base)), len).expect("valid");
            let set = IpSetLookup::build(IpSetKind::Net, &[cidr.to_string()]);
            assert!(set.contains_ip(IpAddr::V4(Ipv4Addr::from(base))), "/{len}");
            let first = u32::from_be_bytes(match cidr.addr() {
                IpAddr::V4(a) => a.octets(),
                IpAddr::V6(_) => unreachable!(),
            });
            let last = first | !v4_mask(len);
            assert!(set.contains_ip(IpAddr::V4(Ipv4Addr::from(first))));
            assert!(set.contains_ip(IpAddr::V4(Ipv4Addr::from(last))));
            if len > 0 {
                assert!(!set.contains_ip(IpAddr::V4(Ipv4Addr::from(last.wrapping_add(1)))));
                assert!(!set.contains_ip(IpAddr::V4(Ipv4Addr::from(first.wrapping_sub(1)))));
            }
        }
        for len in 0u8..=128 {
            let base = 0x2001_0db8_5a5a_5a5a_5a5a_5a5a_5a5a_5a5au128;
            let cidr = Cidr::new(IpAddr::V6(Ipv6Addr::from(base)), len).expect("valid");
            let set = IpSetLookup::build(IpSetKind::Net, &[cidr.to_string()]);
            let first = match cidr.addr() {
                IpAddr::V6(a) => u128::from(a),
                IpAddr::V4(_) => unreachable!(),
            };
            let last = first | !v6_mask(len);
            assert!(set.contains_ip(IpAddr::V6(Ipv6Addr::from(base))), "/{len}");
            assert!(set.contains_ip(IpAddr::V6(Ipv6Addr::from(first))));
            assert!(set.contains_ip(IpAddr::V6(Ipv6Addr::from(last))));
            if len > 0 {
                assert!(!set.contains_ip(IpAddr::V6(Ipv6Addr::from(last.wrapping_add(1)))));
                assert!(!set.contains_ip(IpAddr::V6(Ipv6Addr::from(first.wrapping_sub(1)))));
            }
        }
    }

    #[test]
    fn large_set() {
        // 100k members over many prefix lengths; build and probe stay quick.
        let mut members = Vec::with_capacity(100_000);
        let mut x = 0x1234_5678u32;
        for i in 0..100_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = 16 + (i % 17);
            members.push(format!("{}/{}", Ipv4Addr::from(x), len));
        }
        let lookup = IpSetLookup::build(IpSetKind::Net, &members);
        let mut store = Members::new(IpSetKind::Net);
        for m in &members {
            store.add(m).expect("valid");
        }
        assert_eq!(store.len(), lookup.len());
        for m in members.iter().take(1000) {
            let addr = m.split('/').next().expect("addr");
            assert!(lookup.contains_key(addr));
            assert!(store.contains(addr));
        }
        let mut hits = 0;
        for q in 0..100_000u32 {
            if lookup.contains_ip(IpAddr::V4(Ipv4Addr::from(q.wrapping_mul(0x9e37_79b1)))) {
                hits += 1;
            }
        }
        assert!(hits > 0);
    }

    #[test]
    fn hasher_distinguishes_tails() {
        let h = |b: &[u8]| {
            let mut s = MixHasher::default();
            s.write(b);
            s.finish()
        };
        assert_ne!(h(b"a"), h(b"a\0"));
        assert_ne!(h(b""), h(b"\0"));
        assert_ne!(h(b"12345678"), h(b"12345679"));
    }

    /// Naive reference: a list of (is_v6, network bits, len), scanned bit by bit.
    #[derive(Default)]
    struct Reference {
        members: Vec<(bool, u128, u8)>,
    }

    impl Reference {
        fn key(ip: IpAddr, len: u8) -> (bool, u128, u8) {
            let (v6, bits, width) = match ip {
                IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32u8),
                IpAddr::V6(a) => (true, u128::from(a), 128u8),
            };
            let mut net = 0u128;
            for i in 0..len {
                let bit = 1u128 << (width - 1 - i);
                net |= bits & bit;
            }
            (v6, net, len)
        }

        fn add(&mut self, ip: IpAddr, len: u8) {
            let k = Self::key(ip, len);
            if !self.members.contains(&k) {
                self.members.push(k);
            }
        }

        fn remove(&mut self, ip: IpAddr, len: u8) {
            let k = Self::key(ip, len);
            self.members.retain(|m| *m != k);
        }

        fn contains(&self, ip: IpAddr) -> bool {
            self.members
                .iter()
                .any(|&member| member.0 == ip.is_ipv6() && Self::key(ip, member.2) == member)
        }
    }

    /// Addresses clustered so that members and queries overlap often.
    fn clustered_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u32..512).prop_map(|n| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))),
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            (0u128..512).prop_map(|n| IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96 | n))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        ]
    }

    fn member() -> impl Strategy<Value = (IpAddr, u8, bool)> {
        // (address, len, bare): `bare` writes a full-length member without "/len".
        (clustered_ip(), 0u8..=128, any::<bool>()).prop_map(|(ip, len, bare)| {
            let width = if ip.is_ipv4() { 32 } else { 128 };
            let len = if bare { width } else { len % (width + 1) };
            (ip, len, bare)
        })
    }

    fn member_text(ip: IpAddr, len: u8, bare: bool) -> String {
        if bare {
            ip.to_string()
        } else {
            format!("{ip}/{len}")
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn net_agrees_with_linear_scan(
            adds in prop::collection::vec(member(), 0..40),
            removes in prop::collection::vec(member(), 0..20),
            remove_some in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            queries in prop::collection::vec(clustered_ip(), 1..40),
        ) {
            let mut set = Members::new(IpSetKind::Net);
            let mut reference = Reference::default();
            for &(ip, len, bare) in &adds {
                set.add(&member_text(ip, len, bare)).expect("valid member");
                reference.add(ip, len);
            }
            // Removals of random members and of members that were added.
            let mut to_remove = removes.clone();
            if !adds.is_empty() {
                to_remove.extend(remove_some.iter().map(|i| *i.get(&adds)));
            }
            for &(ip, len, bare) in &to_remove {
                set.remove(&member_text(ip, len, bare));
                reference.remove(ip, len);
            }
            prop_assert_eq!(set.len(), reference.members.len());
            let lookup = IpSetLookup::build(IpSetKind::Net, &set.to_strings());
            let direct = IpSetLookup::from_members(&set);
            let mut probes = queries.clone();
            probes.extend(adds.iter().map(|m| m.0));
            for q in probes {
                let want = reference.contains(q);
                let key = q.to_string();
                prop_assert_eq!(set.contains(&key), want, "query {}", key);
                prop_assert_eq!(lookup.contains_key(&key), want, "query {}", key);
                prop_assert_eq!(lookup.contains_ip(q), want, "query {}", key);
                prop_assert_eq!(direct.contains_ip(q), want, "query {}", key);
            }
        }

        #[test]
        fn ip_lookup_agrees_with_strings(
            members in prop::collection::vec(clustered_ip(), 0..30),
            raw in prop::collection::vec("[0-9a-f:.,tcpud]{0,12}", 0..5),
            queries in prop::collection::vec(clustered_ip(), 0..30),
            proto in prop_oneof![Just(6u8), Just(17u8), Just(1u8), Just(58u8)],
            port in prop_oneof![Just(80u16), Just(0u16), any::<u16>()],
        ) {
            let mut texts: Vec<String> = members.iter().map(|ip| canonical(*ip)).collect();
            texts.extend(members.iter().map(|ip| format!("{},tcp:80", canonical(*ip))));
            texts.extend(raw);
            let lookup = IpSetLookup::build(IpSetKind::Ip, &texts);
            let set: HashSet<&str> = texts.iter().map(String::as_str).collect();
            for q in queries.iter().chain(&members) {
                prop_assert_eq!(lookup.contains_ip(*q), set.contains(canonical(*q).as_str()));
                let want = proto_name(i32::from(proto))
                    .is_some_and(|n| set.contains(format!("{},{n}:{port}", canonical(*q)).as_str()));
                prop_assert_eq!(lookup.contains_ip_port(*q, proto, port), want);
            }
            for m in &members {
                prop_assert!(lookup.contains_ip(*m));
                prop_assert!(lookup.contains_ip_port(*m, 6, 80));
            }
        }

        #[test]
        fn never_panics(kind in prop_oneof![Just(IpSetKind::Ip), Just(IpSetKind::IpAndPort), Just(IpSetKind::Net)],
                        s in ".{0,40}") {
            let mut set = Members::new(kind);
            let _ = set.add(&s);
            let _ = set.contains(&s);
            set.remove(&s);
            let lookup = IpSetLookup::build(kind, std::slice::from_ref(&s));
            let _ = lookup.contains_key(&s);
        }
    }
}

//! IP protocol numbers and names, and the L4 protocol clause (spec section 5).

use crate::snapshot::Protocol;

pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;
pub const UDPLITE: u8 = 136;

const NAMES: [(&str, i32); 6] = [
    ("icmp", ICMP as i32),
    ("tcp", TCP as i32),
    ("udp", UDP as i32),
    ("icmpv6", ICMPV6 as i32),
    ("sctp", SCTP as i32),
    ("udplite", UDPLITE as i32),
];

/// The number of a protocol name, compared lower-cased (`TCP`, `Udp`, `ICMPv6` all work):
/// `icmp` 1, `tcp` 6, `udp` 17, `icmpv6` 58, `sctp` 132, `udplite` 136; others `None`.
///
/// Lower-casing follows Go's `strings.ToLower` (upstream), which also folds the only two
/// non-ASCII characters that lower-case to ASCII letters: U+0130 to `i` and U+212A to `k`.
pub fn protocol_number(name: &str) -> Option<i32> {
    NAMES
        .iter()
        .find(|(known, _)| eq_lowercased(name, known))
        .map(|&(_, n)| n)
}

/// Whether `name` lower-cased equals `lower` (an ASCII lower-case string).
fn eq_lowercased(name: &str, lower: &str) -> bool {
    let mut expected = lower.chars();
    for c in name.chars() {
        let folded = match c {
            '\u{130}' => 'i',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        };
        if expected.next() != Some(folded) {
            return false;
        }
    }
    expected.next().is_none()
}

/// The name used in IP-set port keys (spec section 3 "Derived keys"): `tcp`, `udp`, `icmp`.
pub fn proto_name(n: i32) -> Option<&'static str> {
    match n {
        1 => Some("icmp"),
        6 => Some("tcp"),
        17 => Some("udp"),
        _ => None,
    }
}

/// Whether a rule's `Protocol` matches protocol number `n`: by number, or by a known name;
/// an unknown name and `Unset` (present with neither member) match nothing.
pub fn protocol_matches(p: &Protocol, n: i32) -> bool {
    match p {
        Protocol::Number(k) => *k == n,
        Protocol::Name(name) => protocol_number(name) == Some(n),
        Protocol::Unset => false,
    }
}

/// The L4 protocol clause: `n` within 1..=255, `protocol` (if set) matches `n`, `not_protocol`
/// (if set) does not.
pub fn l4_clause(protocol: Option<&Protocol>, not_protocol: Option<&Protocol>, n: i32) -> bool {
    if !(1..=255).contains(&n) {
        return false;
    }
    if let Some(p) = protocol {
        if !protocol_matches(p, n) {
            return false;
        }
    }
    if let Some(p) = not_protocol {
        if protocol_matches(p, n) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `Protocol` in protobuf JSON mapping: `null` is unset, `{}` present with no member.
    fn protocol_from_json(v: &serde_json::Value) -> Option<Protocol> {
        if v.is_null() {
            return None;
        }
        if let Some(n) = v.get("number") {
            let n = n
                .as_i64()
                .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
                .expect("number");
            return Some(Protocol::Number(i32::try_from(n).expect("int32")));
        }
        if let Some(name) = v.get("name") {
            return Some(Protocol::Name(name.as_str().expect("name").to_owned()));
        }
        Some(Protocol::Unset)
    }

    #[test]
    fn conformance_l4_protocol() {
        let all: serde_json::Value = serde_json::from_str(
            &crate::testdata::shared_file("conformance/unit_cases.json")
                .expect("shared/conformance/unit_cases.json"),
        )
        .expect("unit_cases.json");
        let cases = all["l4_protocol"].as_array().expect("array");
        assert!(!cases.is_empty());
        for case in cases {
            let protocol = protocol_from_json(&case["protocol"]);
            let not_protocol = protocol_from_json(&case["not_protocol"]);
            let n =
                i32::try_from(case["request_protocol_number"].as_i64().expect("n")).expect("int32");
            let want = case["match"].as_bool().expect("match");
            assert_eq!(
                l4_clause(protocol.as_ref(), not_protocol.as_ref(), n),
                want,
                "case {case}"
            );
        }
    }

    #[test]
    fn names() {
        let table: &[(&str, Option<i32>)] = &[
            ("icmp", Some(1)),
            ("ICMP", Some(1)),
            ("tcp", Some(6)),
            ("TCP", Some(6)),
            ("Udp", Some(17)),
            ("ICMPv6", Some(58)),
            ("icmpv6", Some(58)),
            ("SCTP", Some(132)),
            ("UDPLite", Some(136)),
            ("udplite", Some(136)),
            ("\u{130}CMP", Some(1)),
            ("", None),
            ("tcp ", None),
            (" tcp", None),
            ("tc", None),
            ("tcpp", None),
            ("6", None),
            ("icmp6", None),
            ("protoX", None),
            ("\u{131}cmp", None),
        ];
        for (name, want) in table {
            assert_eq!(protocol_number(name), *want, "protocol_number({name:?})");
        }
        assert_eq!(proto_name(6), Some("tcp"));
        assert_eq!(proto_name(17), Some("udp"));
        assert_eq!(proto_name(1), Some("icmp"));
        assert_eq!(proto_name(58), None);
        assert_eq!(proto_name(0), None);
    }

    #[test]
    fn unset_protocol() {
        // As `protocol`: the clause is false; as `not_protocol`: excludes nothing.
        assert!(!l4_clause(Some(&Protocol::Unset), None, 6));
        assert!(l4_clause(None, Some(&Protocol::Unset), 6));
        assert!(!protocol_matches(&Protocol::Unset, 0));
        // Number 0 never matches: 0 is outside 1..=255.
        assert!(!l4_clause(Some(&Protocol::Number(0)), None, 0));
        assert!(!l4_clause(None, None, i32::MIN));
        assert!(!l4_clause(None, None, i32::MAX));
        assert!(l4_clause(None, None, 255));
        assert!(l4_clause(Some(&Protocol::Number(255)), None, 255));
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn clause_is_conjunction(p in -5i32..300, q in -5i32..300, n in -5i32..300) {
            let want = (1..=255).contains(&n) && p == n && q != n;
            prop_assert_eq!(
                l4_clause(Some(&Protocol::Number(p)), Some(&Protocol::Number(q)), n),
                want
            );
        }

        #[test]
        fn names_never_panic(s in ".{0,12}") {
            let _ = protocol_number(&s);
        }
    }
}

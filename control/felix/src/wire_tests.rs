//! Binary wire checks: field numbers as Felix sends them, unknown fields skipped.

use crate::wire::felix::{
    to_dataplane::Payload, InSync, IpSetRemove, PolicyId, Rule, TierInfo, ToDataplane,
    WorkloadEndpoint, WorkloadEndpointUpdate,
};
use prost::Message;

/// Protobuf key byte(s) for a field number and wire type (varint-encoded).
fn key(field: u32, wire_type: u32) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(field << 3 | wire_type), &mut out);
    out
}

const VARINT: u32 = 0;
const LEN: u32 = 2;

#[test]
fn field_numbers_match_felix() {
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (
            ToDataplane {
                sequence_number: 1,
                payload: None,
            }
            .encode_to_vec(),
            [key(15, VARINT), vec![1]].concat(),
        ),
        (
            ToDataplane {
                sequence_number: 0,
                payload: Some(Payload::InSync(InSync {})),
            }
            .encode_to_vec(),
            [key(1, LEN), vec![0]].concat(),
        ),
        (
            ToDataplane {
                sequence_number: 0,
                payload: Some(Payload::IpsetRemove(IpSetRemove { id: "s".into() })),
            }
            .encode_to_vec(),
            [key(4, LEN), vec![3], key(1, LEN), vec![1, b's']].concat(),
        ),
        (
            Rule {
                rule_id: "r".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            [key(201, LEN), vec![1, b'r']].concat(),
        ),
        (
            PolicyId {
                name: "n".into(),
                namespace: "s".into(),
                kind: "k".into(),
            }
            .encode_to_vec(),
            [
                key(2, LEN),
                vec![1, b'n'],
                key(3, LEN),
                vec![1, b's'],
                key(4, LEN),
                vec![1, b'k'],
            ]
            .concat(),
        ),
        (
            TierInfo {
                default_action: "Pass".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            [key(4, LEN), vec![4], b"Pass".to_vec()].concat(),
        ),
        (
            WorkloadEndpointUpdate {
                id: None,
                endpoint: Some(WorkloadEndpoint {
                    profile_ids: vec!["p".into()],
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            [key(5, LEN), vec![3], key(4, LEN), vec![1, b'p']].concat(),
        ),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn unknown_wire_fields_and_payloads_are_skipped() {
    // route_update (23) with a string field, then sequence_number 9.
    let bytes = [
        key(23, LEN),
        vec![3],
        key(3, LEN),
        vec![1, b'x'],
        key(15, VARINT),
        vec![9],
    ]
    .concat();
    let msg = ToDataplane::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        msg,
        ToDataplane {
            sequence_number: 9,
            payload: None
        }
    );

    // WorkloadEndpoint with ipv4_nat (8) and an unknown high field next to profile_ids.
    let endpoint = [
        key(8, LEN),
        vec![0],
        key(4, LEN),
        vec![1, b'p'],
        key(19, VARINT),
        vec![1],
    ]
    .concat();
    let decoded = WorkloadEndpoint::decode(endpoint.as_slice()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.profile_ids, ["p"]);
}

#[test]
fn json_and_binary_agree() {
    let text = r#"{"sequenceNumber": "12", "activePolicyUpdate": {
        "id": {"name": "p", "namespace": "ns", "kind": "NetworkPolicy"},
        "policy": {"namespace": "ns", "tier": "default", "inboundRules": [
            {"action": "allow", "protocol": {"number": 6}, "dstPorts": [{"first": 80, "last": 80}],
             "httpMatch": {"paths": [{"prefix": "/api"}]}, "ruleId": "x"}]}}}"#;
    let from_json: ToDataplane = crate::json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    let round_trip =
        ToDataplane::decode(from_json.encode_to_vec().as_slice()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(round_trip, from_json);
    // And back through JSON (serialization uses lowerCamelCase).
    let json = serde_json::to_string(&from_json).unwrap_or_else(|e| panic!("{e}"));
    assert!(json.contains("\"activePolicyUpdate\""), "{json}");
    let again: ToDataplane = crate::json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, from_json);
}

//! Policy Sync messages in the protobuf JSON mapping (semantics.md section 1.3).
//!
//! The generated pbjson deserializers already accept lowerCamelCase and original field names,
//! enums by name or number, 64-bit integers as string or number, and skip unknown fields. Two
//! things are added here:
//!
//! * `null` as a field value means "default" (absent). pbjson rejects `null` for scalar and
//!   repeated fields, so `null` object members are dropped before deserializing. This is exact
//!   for this schema: it has no `google.protobuf.Value`, the only type where `null` is a value.
//!   `null` inside a list is still an error, as in the mapping.
//! * Errors carry the path of the offending field (`ipsetUpdate.members[2]: invalid type ...`).

use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

/// A message that is not valid protobuf JSON for its type.
#[derive(Debug, Error)]
pub enum MessageError {
    /// Not JSON at all (serde's message gives line and column).
    #[error("invalid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// JSON, but not this message type; the text starts with the field path.
    #[error("{0}")]
    Schema(#[source] serde_path_to_error::Error<serde_json::Error>),
}

/// Parses one message of type `T` from JSON text.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, MessageError> {
    let value: Value = serde_json::from_str(text).map_err(MessageError::Syntax)?;
    from_value(value)
}

/// Parses one message of type `T` from a JSON value.
pub fn from_value<T: DeserializeOwned>(mut value: Value) -> Result<T, MessageError> {
    drop_null_members(&mut value);
    serde_path_to_error::deserialize(value).map_err(MessageError::Schema)
}

/// Removes every object member whose value is `null`, at any depth; list elements are kept.
fn drop_null_members(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_null_members);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_members),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::felix::{
        http_match::path_match::PathMatch as PathMatchKind, ip_set_update::IpSetType,
        protocol::NumberOrName, to_dataplane::Payload, IpSetUpdate, Protocol, Rule, ToDataplane,
    };

    fn msg(text: &str) -> ToDataplane {
        match from_str::<ToDataplane>(text) {
            Ok(m) => m,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn ipset(text: &str) -> IpSetUpdate {
        match msg(text).payload {
            Some(Payload::IpsetUpdate(u)) => u,
            other => panic!("{text}: not an ipset_update: {other:?}"),
        }
    }

    fn rule(text: &str) -> Rule {
        match from_str::<Rule>(text) {
            Ok(r) => r,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn camel_case_and_original_names() {
        let cases = [
            r#"{"ipsetUpdate": {"id": "s", "members": ["10.0.0.1"]}}"#,
            r#"{"ipset_update": {"id": "s", "members": ["10.0.0.1"]}}"#,
        ];
        for text in cases {
            let u = ipset(text);
            assert_eq!(u.id, "s", "{text}");
            assert_eq!(u.members, ["10.0.0.1"], "{text}");
        }
        let camel = rule(r#"{"dstIpSetIds": ["a"], "notSrcNet": ["10.0.0.0/8"], "ruleId": "r"}"#);
        let original =
            rule(r#"{"dst_ip_set_ids": ["a"], "not_src_net": ["10.0.0.0/8"], "rule_id": "r"}"#);
        assert_eq!(camel, original);
        assert_eq!(camel.dst_ip_set_ids, ["a"]);
        assert_eq!(camel.not_src_net, ["10.0.0.0/8"]);
        assert_eq!(camel.rule_id, "r");
    }

    #[test]
    fn enums_by_name_or_number() {
        let cases = [
            (
                r#"{"ipsetUpdate": {"id": "s", "type": "IP"}}"#,
                IpSetType::Ip,
            ),
            (
                r#"{"ipsetUpdate": {"id": "s", "type": "IP_AND_PORT"}}"#,
                IpSetType::IpAndPort,
            ),
            (
                r#"{"ipsetUpdate": {"id": "s", "type": "NET"}}"#,
                IpSetType::Net,
            ),
            (r#"{"ipsetUpdate": {"id": "s", "type": 0}}"#, IpSetType::Ip),
            (
                r#"{"ipsetUpdate": {"id": "s", "type": 1}}"#,
                IpSetType::IpAndPort,
            ),
            (r#"{"ipsetUpdate": {"id": "s", "type": 2}}"#, IpSetType::Net),
            (r#"{"ipsetUpdate": {"id": "s"}}"#, IpSetType::Ip),
        ];
        for (text, want) in cases {
            assert_eq!(ipset(text).r#type(), want, "{text}");
        }
        assert!(from_str::<ToDataplane>(r#"{"ipsetUpdate": {"type": "BOGUS"}}"#).is_err());
    }

    #[test]
    fn uint64_as_string_or_number() {
        let cases = [
            (r#"{"sequenceNumber": 7, "inSync": {}}"#, 7),
            (r#"{"sequenceNumber": "7", "inSync": {}}"#, 7),
            (r#"{"sequence_number": "18446744073709551615"}"#, u64::MAX),
            (r#"{"sequence_number": 18446744073709551615}"#, u64::MAX),
            (r#"{"inSync": {}}"#, 0),
        ];
        for (text, want) in cases {
            assert_eq!(msg(text).sequence_number, want, "{text}");
        }
        assert!(from_str::<ToDataplane>(r#"{"sequenceNumber": "x"}"#).is_err());
        assert!(from_str::<ToDataplane>(r#"{"sequenceNumber": -1}"#).is_err());
    }

    #[test]
    fn int32_as_string_or_number() {
        let r = rule(r#"{"dstPorts": [{"first": "80", "last": 81}], "protocol": {"number": "6"}}"#);
        assert_eq!((r.dst_ports[0].first, r.dst_ports[0].last), (80, 81));
        assert_eq!(
            r.protocol.and_then(|p| p.number_or_name),
            Some(NumberOrName::Number(6))
        );
    }

    #[test]
    fn null_is_default() {
        let u = ipset(r#"{"ipsetUpdate": {"id": null, "members": null, "type": null}}"#);
        assert_eq!(u, IpSetUpdate::default());
        let m = msg(r#"{"sequenceNumber": null, "ipsetUpdate": {"id": "s"}}"#);
        assert_eq!(m.sequence_number, 0);
        let r = rule(r#"{"action": null, "protocol": null, "httpMatch": null, "srcPorts": null}"#);
        assert_eq!(r, Rule::default());
        // A null payload member is an absent payload.
        assert_eq!(msg(r#"{"inSync": null}"#).payload, None);
        // null inside a list is not a default: it is an error.
        assert!(from_str::<ToDataplane>(r#"{"ipsetUpdate": {"members": [null]}}"#).is_err());
    }

    #[test]
    fn unknown_fields_and_payloads_are_skipped() {
        let u = ipset(r#"{"ipsetUpdate": {"id": "s", "futureField": {"x": [1]}}, "extra": 1}"#);
        assert_eq!(u.id, "s");
        for text in [
            r#"{"routeUpdate": {"dst": "10.0.0.0/8"}}"#,
            r#"{"hostEndpointUpdate": {"id": {"endpointId": "e"}}, "sequenceNumber": 3}"#,
            r#"{}"#,
        ] {
            assert_eq!(msg(text).payload, None, "{text}");
        }
        let m = msg(r#"{"configUpdate": {"config": {"LogSeverityScreen": "Info"}}}"#);
        assert!(matches!(m.payload, Some(Payload::ConfigUpdate(_))));
        // Unknown WorkloadEndpoint fields (NAT, annotations, ...) are skipped.
        let m = msg(
            r#"{"workloadEndpointUpdate": {"endpoint": {"profileIds": ["p"],
                "ipv4Nat": [{"extIp": "1.2.3.4"}], "annotations": {"a": "b"}}}}"#,
        );
        match m.payload {
            Some(Payload::WorkloadEndpointUpdate(u)) => {
                assert_eq!(
                    u.endpoint.map(|e| e.profile_ids),
                    Some(vec!["p".to_string()])
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_presence_is_preserved() {
        let present = rule(r#"{"protocol": {}, "httpMatch": {}, "srcServiceAccountMatch": {}}"#);
        assert_eq!(
            present.protocol,
            Some(Protocol {
                number_or_name: None
            })
        );
        assert!(present.http_match.is_some());
        assert!(present.src_service_account_match.is_some());
        let absent = rule(r#"{}"#);
        assert_eq!(absent.protocol, None);
        assert_eq!(absent.http_match, None);
        assert_eq!(absent.src_service_account_match, None);

        let with = msg(r#"{"workloadEndpointUpdate": {"endpoint": {}}}"#);
        let without = msg(r#"{"workloadEndpointUpdate": {"id": {"workloadId": "w"}}}"#);
        match (with.payload, without.payload) {
            (
                Some(Payload::WorkloadEndpointUpdate(a)),
                Some(Payload::WorkloadEndpointUpdate(b)),
            ) => {
                assert!(a.endpoint.is_some());
                assert!(a.id.is_none());
                assert!(b.endpoint.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            msg(r#"{"inSync": {}}"#).payload,
            Some(Payload::InSync(_))
        ));
    }

    #[test]
    fn oneof_members() {
        let r = rule(
            r#"{"protocol": {"name": "TCP"}, "notProtocol": {"number": 17},
                "httpMatch": {"methods": ["GET"], "paths": [{"exact": "/a"}, {"prefix": "/b"}, {}]}}"#,
        );
        assert_eq!(
            r.protocol.and_then(|p| p.number_or_name),
            Some(NumberOrName::Name("TCP".into()))
        );
        assert_eq!(
            r.not_protocol.and_then(|p| p.number_or_name),
            Some(NumberOrName::Number(17))
        );
        let paths: Vec<_> = r
            .http_match
            .map(|h| h.paths)
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.path_match)
            .collect();
        assert_eq!(
            paths,
            [
                Some(PathMatchKind::Exact("/a".into())),
                Some(PathMatchKind::Prefix("/b".into())),
                None
            ]
        );
        // Two members of one oneof are an error.
        assert!(from_str::<Rule>(r#"{"protocol": {"number": 6, "name": "tcp"}}"#).is_err());
    }

    #[test]
    fn not_evaluated_rule_fields_parse() {
        let r = rule(
            r#"{"ipVersion": "IPV6", "icmpTypeCode": {"type": 3, "code": 1}, "notIcmpType": 8,
                "metadata": {"annotations": {"k": "v"}}, "originalDstService": "svc",
                "originalDstServiceNamespace": "ns", "originalSrcService": "s2",
                "originalSrcServiceNamespace": "ns2", "ruleId": "abc"}"#,
        );
        assert_eq!(r.ip_version, 6);
        assert!(r.icmp.is_some() && r.not_icmp.is_some());
        assert_eq!(r.metadata.map(|m| m.annotations.len()), Some(1));
        assert_eq!(r.original_dst_service_namespace, "ns");
        assert_eq!(r.rule_id, "abc");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"ipsetUpdate": {"members": "10.0.0.1"}}"#,
                "ipsetUpdate.members",
            ),
            (r#"{"ipsetUpdate": {"type": "BOGUS"}}"#, "ipsetUpdate.type"),
            (
                r#"{"activePolicyUpdate": {"policy": {"inboundRules": [{"dstPorts": [{"first": true}]}]}}}"#,
                "activePolicyUpdate.policy.inboundRules[0].dstPorts[0].first",
            ),
            // Two payloads: pbjson reports the oneof as a duplicate field.
            (r#"{"ipsetUpdate": {}, "inSync": {}}"#, "duplicate field"),
            (
                r#"{"ipsetUpdate": {}, "ipset_update": {}}"#,
                "duplicate field",
            ),
        ];
        for (text, path) in cases {
            match from_str::<ToDataplane>(text) {
                Ok(m) => panic!("{text}: parsed as {m:?}"),
                Err(e) => assert!(e.to_string().contains(path), "{text}: {e}"),
            }
        }
        assert!(matches!(
            from_str::<ToDataplane>("{"),
            Err(MessageError::Syntax(_))
        ));
    }
}

//! Store -> [`Snapshot`]: what the filter needs for this workload, and nothing else.
//!
//! Included: the endpoint; the policies its tiers list as `ingress_policies` and the profiles
//! in its `profile_ids`, when the store holds them with a body; the IP sets the inbound rules of
//! those policies and profiles reference, when the store holds them; all service-account and
//! namespace labels (peers may come from anywhere). Referenced entries that are missing stay
//! missing, so the engine sees them as missing (`InconsistentStore` or a skipped profile).
//!
//! Every list is sorted by key, so equal stores give equal snapshots.

use crate::store::{policy_key, Store};
use crate::wire::felix::{
    self as wire, http_match::path_match::PathMatch as WirePathMatch, protocol::NumberOrName,
};
use alp_engine::snapshot::{
    Endpoint, HttpMatch, IpSet, Namespace, PathMatch, Policy, PolicyId, PortRange, Profile,
    Protocol, Rule, RuleSide, ServiceAccount, ServiceAccountMatch, Snapshot, Tier,
};
use std::collections::BTreeSet;

impl Store {
    /// The snapshot of this store (see the module documentation for what it holds).
    pub fn snapshot(&self) -> Snapshot {
        let endpoint = self.endpoint().map(endpoint);

        let policy_ids: BTreeSet<PolicyId> = endpoint
            .iter()
            .flat_map(|e| &e.tiers)
            .flat_map(|t| t.ingress_policies.iter().cloned())
            .collect();
        let policies: Vec<Policy> = policy_ids
            .into_iter()
            .filter_map(|id| {
                let body = self.policies().get(&id)?.as_ref()?;
                Some(Policy {
                    namespace: body.namespace.clone(),
                    inbound_rules: rules(&body.inbound_rules),
                    id,
                })
            })
            .collect();

        let profile_names: BTreeSet<&String> =
            endpoint.iter().flat_map(|e| &e.profile_ids).collect();
        let profiles: Vec<Profile> = profile_names
            .into_iter()
            .filter_map(|name| {
                let body = self.profiles().get(name)?.as_ref()?;
                Some(Profile {
                    name: name.clone(),
                    inbound_rules: rules(&body.inbound_rules),
                })
            })
            .collect();

        let set_ids: BTreeSet<&String> = policies
            .iter()
            .flat_map(|p| &p.inbound_rules)
            .chain(profiles.iter().flat_map(|p| &p.inbound_rules))
            .flat_map(referenced_ip_sets)
            .collect();
        let ip_sets = set_ids
            .into_iter()
            .filter_map(|id| {
                let set = self.ip_sets().get(id)?;
                Some(IpSet {
                    id: id.clone(),
                    kind: set.kind(),
                    members: set.to_strings(),
                })
            })
            .collect();

        let service_accounts = self
            .service_accounts()
            .iter()
            .map(|((namespace, name), labels)| ServiceAccount {
                namespace: namespace.clone(),
                name: name.clone(),
                labels: labels.clone(),
            })
            .collect();
        let namespaces = self
            .namespaces()
            .iter()
            .map(|(name, labels)| Namespace {
                name: name.clone(),
                labels: labels.clone(),
            })
            .collect();

        Snapshot {
            endpoint,
            policies,
            profiles,
            ip_sets,
            service_accounts,
            namespaces,
        }
    }
}

/// Every IP set id a rule references (semantics.md 4.1 step 1), both sides.
fn referenced_ip_sets(rule: &Rule) -> impl Iterator<Item = &String> {
    [&rule.src, &rule.dst].into_iter().flat_map(|side| {
        side.ip_set_ids
            .iter()
            .chain(&side.not_ip_set_ids)
            .chain(&side.named_port_ip_set_ids)
            .chain(&side.not_named_port_ip_set_ids)
            .chain(&side.ip_port_set_ids)
    })
}

fn endpoint(e: &wire::WorkloadEndpoint) -> Endpoint {
    Endpoint {
        tiers: e
            .tiers
            .iter()
            .map(|t| Tier {
                name: t.name.clone(),
                ingress_policies: t.ingress_policies.iter().map(policy_key).collect(),
                default_action: t.default_action.clone(),
            })
            .collect(),
        profile_ids: e.profile_ids.clone(),
    }
}

fn rules(rules: &[wire::Rule]) -> Vec<Rule> {
    rules.iter().map(rule).collect()
}

/// Field-by-field conversion. Not carried (never evaluated): `ip_version`, the ICMP oneofs,
/// `metadata`, `original_*_service*`.
pub fn rule(r: &wire::Rule) -> Rule {
    Rule {
        action: r.action.clone(),
        protocol: r.protocol.as_ref().map(protocol),
        not_protocol: r.not_protocol.as_ref().map(protocol),
        src: RuleSide {
            nets: r.src_net.clone(),
            not_nets: r.not_src_net.clone(),
            ports: ports(&r.src_ports),
            not_ports: ports(&r.not_src_ports),
            ip_set_ids: r.src_ip_set_ids.clone(),
            not_ip_set_ids: r.not_src_ip_set_ids.clone(),
            named_port_ip_set_ids: r.src_named_port_ip_set_ids.clone(),
            not_named_port_ip_set_ids: r.not_src_named_port_ip_set_ids.clone(),
            ip_port_set_ids: Vec::new(),
            original_selector: r.original_src_selector.clone(),
            original_not_selector: r.original_not_src_selector.clone(),
            original_namespace_selector: r.original_src_namespace_selector.clone(),
            service_account_match: r
                .src_service_account_match
                .as_ref()
                .map(service_account_match),
        },
        dst: RuleSide {
            nets: r.dst_net.clone(),
            not_nets: r.not_dst_net.clone(),
            ports: ports(&r.dst_ports),
            not_ports: ports(&r.not_dst_ports),
            ip_set_ids: r.dst_ip_set_ids.clone(),
            not_ip_set_ids: r.not_dst_ip_set_ids.clone(),
            named_port_ip_set_ids: r.dst_named_port_ip_set_ids.clone(),
            not_named_port_ip_set_ids: r.not_dst_named_port_ip_set_ids.clone(),
            ip_port_set_ids: r.dst_ip_port_set_ids.clone(),
            original_selector: r.original_dst_selector.clone(),
            original_not_selector: r.original_not_dst_selector.clone(),
            original_namespace_selector: r.original_dst_namespace_selector.clone(),
            service_account_match: r
                .dst_service_account_match
                .as_ref()
                .map(service_account_match),
        },
        http_match: r.http_match.as_ref().map(http_match),
        rule_id: r.rule_id.clone(),
    }
}

fn protocol(p: &wire::Protocol) -> Protocol {
    match &p.number_or_name {
        Some(NumberOrName::Number(n)) => Protocol::Number(*n),
        Some(NumberOrName::Name(s)) => Protocol::Name(s.clone()),
        None => Protocol::Unset,
    }
}

fn ports(ranges: &[wire::PortRange]) -> Vec<PortRange> {
    ranges
        .iter()
        .map(|r| PortRange {
            first: r.first,
            last: r.last,
        })
        .collect()
}

fn service_account_match(m: &wire::ServiceAccountMatch) -> ServiceAccountMatch {
    ServiceAccountMatch {
        selector: m.selector.clone(),
        names: m.names.clone(),
    }
}

fn http_match(m: &wire::HttpMatch) -> HttpMatch {
    HttpMatch {
        methods: m.methods.clone(),
        paths: m
            .paths
            .iter()
            .map(|p| match &p.path_match {
                Some(WirePathMatch::Exact(s)) => PathMatch::Exact(s.clone()),
                Some(WirePathMatch::Prefix(s)) => PathMatch::Prefix(s.clone()),
                Some(WirePathMatch::Glob(s)) => PathMatch::Glob(s.clone()),
                Some(WirePathMatch::Template(s)) => PathMatch::Template(s.clone()),
                None => PathMatch::Unset,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::msg;
    use alp_engine::snapshot::IpSetKind;

    fn store(messages: &[&str]) -> Store {
        let mut s = Store::new();
        for text in messages {
            s.apply(&msg(text));
        }
        s
    }

    fn pid(name: &str, namespace: &str, kind: &str) -> PolicyId {
        PolicyId {
            name: name.into(),
            namespace: namespace.into(),
            kind: kind.into(),
        }
    }

    const ENDPOINT: &str = r#"{"workloadEndpointUpdate": {"id": {"workloadId": "ns/pod"}, "endpoint": {
        "profileIds": ["prof.b", "prof.a", "prof.missing", "prof.nobody", "prof.a"],
        "tiers": [
            {"name": "t1", "ingressPolicies": [
                {"name": "p2", "namespace": "ns", "kind": "NetworkPolicy"},
                {"name": "p1", "kind": "GlobalNetworkPolicy"}],
             "egressPolicies": [{"name": "egress-only", "kind": "GlobalNetworkPolicy"}],
             "defaultAction": "Pass"},
            {"name": "t2", "ingressPolicies": [
                {"name": "gone", "kind": "GlobalNetworkPolicy"},
                {"name": "nobody", "kind": "GlobalNetworkPolicy"}]}
        ]}}}"#;

    #[test]
    fn includes_only_what_the_endpoint_references() {
        let s = store(&[
            ENDPOINT,
            r#"{"activePolicyUpdate": {"id": {"name": "p1", "kind": "GlobalNetworkPolicy"},
                "policy": {"inboundRules": [{"action": "allow", "srcIpSetIds": ["s1"], "notDstIpSetIds": ["s2"]}],
                           "outboundRules": [{"action": "allow", "dstIpSetIds": ["egress-set"]}]}}}"#,
            r#"{"activePolicyUpdate": {"id": {"name": "p2", "namespace": "ns", "kind": "NetworkPolicy"},
                "policy": {"namespace": "ns", "inboundRules": [{"action": "deny", "dstIpPortSetIds": ["svc"],
                           "srcNamedPortIpSetIds": ["np"], "dstIpSetIds": ["not-in-store"]}]}}}"#,
            r#"{"activePolicyUpdate": {"id": {"name": "nobody", "kind": "GlobalNetworkPolicy"}}}"#,
            r#"{"activePolicyUpdate": {"id": {"name": "egress-only", "kind": "GlobalNetworkPolicy"}, "policy": {}}}"#,
            r#"{"activePolicyUpdate": {"id": {"name": "unreferenced", "kind": "GlobalNetworkPolicy"},
                "policy": {"inboundRules": [{"action": "allow", "srcIpSetIds": ["unused"]}]}}}"#,
            r#"{"activeProfileUpdate": {"id": {"name": "prof.a"}, "profile": {"inboundRules": [{"action": "allow",
                "notSrcNamedPortIpSetIds": ["pa"]}]}}}"#,
            r#"{"activeProfileUpdate": {"id": {"name": "prof.b"}, "profile": {}}}"#,
            r#"{"activeProfileUpdate": {"id": {"name": "prof.nobody"}}}"#,
            r#"{"activeProfileUpdate": {"id": {"name": "prof.unreferenced"}, "profile": {}}}"#,
            r#"{"ipsetUpdate": {"id": "s1", "members": ["10.0.0.2", "10.0.0.1"]}}"#,
            r#"{"ipsetUpdate": {"id": "s2", "type": "NET", "members": ["10.1.2.3/16"]}}"#,
            r#"{"ipsetUpdate": {"id": "svc", "type": "IP_AND_PORT", "members": ["10.9.0.1,tcp:80"]}}"#,
            r#"{"ipsetUpdate": {"id": "np", "type": "IP_AND_PORT"}}"#,
            r#"{"ipsetUpdate": {"id": "pa"}}"#,
            r#"{"ipsetUpdate": {"id": "unused"}}"#,
            r#"{"ipsetUpdate": {"id": "egress-set"}}"#,
            r#"{"serviceAccountUpdate": {"id": {"namespace": "ns", "name": "b"}, "labels": {"k": "v"}}}"#,
            r#"{"serviceAccountUpdate": {"id": {"namespace": "ns", "name": "a"}}}"#,
            r#"{"namespaceUpdate": {"id": {"name": "z"}}}"#,
            r#"{"namespaceUpdate": {"id": {"name": "ns"}, "labels": {"env": "prod"}}}"#,
        ]);
        let snap = s.snapshot();

        let endpoint = snap
            .endpoint
            .as_ref()
            .map(|e| (e.tiers.len(), e.profile_ids.clone()));
        let profile_ids = ["prof.b", "prof.a", "prof.missing", "prof.nobody", "prof.a"];
        assert_eq!(
            endpoint,
            Some((2, profile_ids.iter().map(|s| s.to_string()).collect()))
        );
        let t1 = &snap
            .endpoint
            .as_ref()
            .map(|e| e.tiers[0].clone())
            .unwrap_or_default();
        assert_eq!(t1.name, "t1");
        assert_eq!(t1.default_action, "Pass");
        // Tier order and policy order as sent.
        assert_eq!(
            t1.ingress_policies,
            [
                pid("p2", "ns", "NetworkPolicy"),
                pid("p1", "", "GlobalNetworkPolicy")
            ]
        );

        let policies: Vec<_> = snap
            .policies
            .iter()
            .map(|p| (&p.id, p.namespace.as_str()))
            .collect();
        assert_eq!(
            policies,
            [
                (&pid("p1", "", "GlobalNetworkPolicy"), ""),
                (&pid("p2", "ns", "NetworkPolicy"), "ns")
            ]
        );
        let profiles: Vec<_> = snap.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(profiles, ["prof.a", "prof.b"]);

        let sets: Vec<_> = snap
            .ip_sets
            .iter()
            .map(|s| (s.id.as_str(), s.kind, s.members.clone()))
            .collect();
        assert_eq!(
            sets,
            [
                ("np", IpSetKind::IpAndPort, vec![]),
                ("pa", IpSetKind::Ip, vec![]),
                (
                    "s1",
                    IpSetKind::Ip,
                    vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()]
                ),
                ("s2", IpSetKind::Net, vec!["10.1.0.0/16".to_string()]),
                (
                    "svc",
                    IpSetKind::IpAndPort,
                    vec!["10.9.0.1,tcp:80".to_string()]
                ),
            ]
        );

        let sas: Vec<_> = snap
            .service_accounts
            .iter()
            .map(|s| (s.namespace.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(sas, [("ns", "a"), ("ns", "b")]);
        let namespaces: Vec<_> = snap.namespaces.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(namespaces, ["ns", "z"]);
        assert_eq!(
            snap.namespaces[0].labels.get("env").map(String::as_str),
            Some("prod")
        );
    }

    #[test]
    fn equal_stores_give_equal_snapshots() {
        let a = [
            ENDPOINT,
            r#"{"ipsetUpdate": {"id": "s1", "members": ["10.0.0.2", "10.0.0.1"]}}"#,
            r#"{"activePolicyUpdate": {"id": {"name": "p1", "kind": "GlobalNetworkPolicy"},
                "policy": {"inboundRules": [{"action": "allow", "srcIpSetIds": ["s1"]}]}}}"#,
            r#"{"namespaceUpdate": {"id": {"name": "b"}}}"#,
            r#"{"namespaceUpdate": {"id": {"name": "a"}}}"#,
        ];
        let mut b = a;
        b.reverse();
        let b2 = store(&[r#"{"ipsetUpdate": {"id": "s1", "members": ["10.0.0.1"]}}"#]);
        let mut b_store = b2;
        for text in b {
            b_store.apply(&msg(text));
        }
        assert_eq!(store(&a).snapshot(), b_store.snapshot());
    }

    #[test]
    fn no_endpoint_means_no_policies() {
        let s = store(&[
            r#"{"activePolicyUpdate": {"id": {"name": "p1", "kind": "GlobalNetworkPolicy"}, "policy": {}}}"#,
            r#"{"ipsetUpdate": {"id": "s1"}}"#,
            r#"{"namespaceUpdate": {"id": {"name": "a"}}}"#,
        ]);
        let snap = s.snapshot();
        assert_eq!(snap.endpoint, None);
        assert!(snap.policies.is_empty() && snap.profiles.is_empty() && snap.ip_sets.is_empty());
        assert_eq!(snap.namespaces.len(), 1);
    }

    #[test]
    fn rule_fields_map_to_sides() {
        let r: wire::Rule = crate::json::from_str(
            r#"{"action": "next-tier", "ruleId": "rid", "ipVersion": 4, "icmpType": 8,
                "protocol": {"name": "TCP"}, "notProtocol": {},
                "srcNet": ["10.0.0.0/8"], "notSrcNet": ["10.1.0.0/16"],
                "srcPorts": [{"first": 1, "last": 2}], "notSrcPorts": [{"first": 3, "last": 3}],
                "srcIpSetIds": ["a"], "notSrcIpSetIds": ["b"],
                "srcNamedPortIpSetIds": ["c"], "notSrcNamedPortIpSetIds": ["d"],
                "originalSrcSelector": "role == 'x'", "originalNotSrcSelector": "has(y)",
                "originalSrcNamespaceSelector": "env == 'prod'",
                "srcServiceAccountMatch": {"selector": "app == 'a'", "names": ["sa1"]},
                "dstNet": ["192.168.0.0/16"], "notDstNet": ["192.168.1.0/24"],
                "dstPorts": [{"first": 80, "last": 80}], "notDstPorts": [{"first": 81, "last": 90}],
                "dstIpSetIds": ["e"], "notDstIpSetIds": ["f"],
                "dstNamedPortIpSetIds": ["g"], "notDstNamedPortIpSetIds": ["h"],
                "dstIpPortSetIds": ["i"],
                "originalDstSelector": "s", "originalNotDstSelector": "t",
                "originalDstNamespaceSelector": "u",
                "dstServiceAccountMatch": {},
                "httpMatch": {"methods": ["GET", "*"], "paths": [{"exact": "/a"}, {"prefix": "/b"}, {}]}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let want = Rule {
            action: "next-tier".into(),
            protocol: Some(Protocol::Name("TCP".into())),
            not_protocol: Some(Protocol::Unset),
            src: RuleSide {
                nets: strings(&["10.0.0.0/8"]),
                not_nets: strings(&["10.1.0.0/16"]),
                ports: vec![PortRange { first: 1, last: 2 }],
                not_ports: vec![PortRange { first: 3, last: 3 }],
                ip_set_ids: strings(&["a"]),
                not_ip_set_ids: strings(&["b"]),
                named_port_ip_set_ids: strings(&["c"]),
                not_named_port_ip_set_ids: strings(&["d"]),
                ip_port_set_ids: vec![],
                original_selector: "role == 'x'".into(),
                original_not_selector: "has(y)".into(),
                original_namespace_selector: "env == 'prod'".into(),
                service_account_match: Some(ServiceAccountMatch {
                    selector: "app == 'a'".into(),
                    names: strings(&["sa1"]),
                }),
            },
            dst: RuleSide {
                nets: strings(&["192.168.0.0/16"]),
                not_nets: strings(&["192.168.1.0/24"]),
                ports: vec![PortRange {
                    first: 80,
                    last: 80,
                }],
                not_ports: vec![PortRange {
                    first: 81,
                    last: 90,
                }],
                ip_set_ids: strings(&["e"]),
                not_ip_set_ids: strings(&["f"]),
                named_port_ip_set_ids: strings(&["g"]),
                not_named_port_ip_set_ids: strings(&["h"]),
                ip_port_set_ids: strings(&["i"]),
                original_selector: "s".into(),
                original_not_selector: "t".into(),
                original_namespace_selector: "u".into(),
                service_account_match: Some(ServiceAccountMatch::default()),
            },
            http_match: Some(HttpMatch {
                methods: strings(&["GET", "*"]),
                paths: vec![
                    PathMatch::Exact("/a".into()),
                    PathMatch::Prefix("/b".into()),
                    PathMatch::Unset,
                ],
            }),
            rule_id: "rid".into(),
        };
        assert_eq!(rule(&r), want);
        let ids: Vec<_> = referenced_ip_sets(&want).map(String::as_str).collect();
        assert_eq!(ids, ["a", "b", "c", "d", "e", "f", "g", "h", "i"]);

        let bare = rule(&wire::Rule {
            protocol: Some(wire::Protocol {
                number_or_name: Some(NumberOrName::Number(17)),
            }),
            ..Default::default()
        });
        assert_eq!(bare.protocol, Some(Protocol::Number(17)));
        assert_eq!((bare.not_protocol, bare.http_match), (None, None));
        assert_eq!(
            (
                bare.src.service_account_match,
                bare.dst.service_account_match
            ),
            (None, None)
        );
    }
}

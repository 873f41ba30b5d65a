//! Synthetic but realistic snapshots for benchmarks: an endpoint whose inbound policy is a long
//! list of service-to-service allow rules, as a large mesh produces. Not used on any decision path.

use crate::snapshot::*;

/// Number of distinct client service accounts the rules name.
const CLIENTS: usize = 250;
const RULES_PER_POLICY: usize = 10;

/// The principal of synthetic client `i`.
pub fn client_principal(i: usize) -> String {
    format!(
        "spiffe://cluster.local/ns/ns{}/sa/client{}",
        i % 10,
        i % CLIENTS
    )
}

/// An endpoint with `rules` inbound rules spread over policies of ten rules in two tiers, a mix of
/// service-account names and selectors, methods, path prefixes and exact paths, destination
/// ports, source nets and IP sets. The rule the benchmark request matches comes last, so a
/// decision has to look at every rule that could apply.
pub fn endpoint_with_rules(rules: usize) -> Snapshot {
    let mut policies = Vec::new();
    let mut ids = Vec::new();
    let mut made = 0;
    while made < rules {
        let n = policies.len();
        let mut inbound = Vec::new();
        for k in 0..RULES_PER_POLICY.min(rules - made) {
            let i = made + k;
            let mut rule = Rule {
                action: if i % 7 == 3 {
                    "deny".into()
                } else {
                    "allow".into()
                },
                ..Default::default()
            };
            let client = i % CLIENTS;
            rule.src.service_account_match = Some(if i % 5 == 0 {
                ServiceAccountMatch {
                    selector: format!("app == 'client{client}' && tier in {{'web', 'api'}}"),
                    names: vec![],
                }
            } else {
                ServiceAccountMatch {
                    selector: String::new(),
                    names: vec![format!("client{client}")],
                }
            });
            rule.src.original_namespace_selector = if i % 3 == 0 {
                format!("team == 'team{}'", i % 10)
            } else {
                String::new()
            };
            rule.http_match = Some(HttpMatch {
                methods: match i % 4 {
                    0 => vec!["GET".into()],
                    1 => vec!["GET".into(), "POST".into()],
                    2 => vec!["PUT".into()],
                    _ => vec![],
                },
                paths: vec![
                    PathMatch::Prefix(format!("/api/v{}/items", i % 3)),
                    PathMatch::Exact(format!("/status/{i}")),
                ],
            });
            rule.dst.ports = vec![
                PortRange {
                    first: 8080,
                    last: 8080,
                },
                PortRange {
                    first: 9000,
                    last: 9100,
                },
            ];
            if i % 6 == 0 {
                rule.src.nets = vec![format!("10.{}.0.0/16", i % 250)];
            }
            if i % 8 == 0 {
                rule.src.ip_set_ids = vec!["clients".into()];
            }
            inbound.push(rule);
        }
        made += inbound.len();
        let id = PolicyId {
            name: format!("policy-{n:05}"),
            namespace: String::new(),
            kind: "GlobalNetworkPolicy".into(),
        };
        ids.push(id.clone());
        policies.push(Policy {
            id,
            namespace: String::new(),
            inbound_rules: inbound,
        });
    }
    // The request's own allow rule, last of all.
    if let Some(last) = policies.last_mut().and_then(|p| p.inbound_rules.last_mut()) {
        last.action = "allow".into();
        last.src.service_account_match = Some(ServiceAccountMatch {
            selector: String::new(),
            names: vec!["target".into()],
        });
        last.src.original_namespace_selector = String::new();
        last.src.nets = vec![];
        last.src.ip_set_ids = vec![];
        last.http_match = Some(HttpMatch {
            methods: vec!["GET".into()],
            paths: vec![PathMatch::Prefix("/api/v1/items".into())],
        });
    }
    let half = ids.len() / 2;
    let tiers = vec![
        Tier {
            name: "security".into(),
            ingress_policies: ids[..half].to_vec(),
            default_action: "Pass".into(),
        },
        Tier {
            name: "default".into(),
            ingress_policies: ids[half..].to_vec(),
            default_action: "Deny".into(),
        },
    ];
    Snapshot {
        endpoint: Some(Endpoint {
            tiers,
            profile_ids: vec!["kns.default".into()],
        }),
        policies,
        profiles: vec![Profile {
            name: "kns.default".into(),
            inbound_rules: vec![],
        }],
        ip_sets: vec![IpSet {
            id: "clients".into(),
            kind: IpSetKind::Ip,
            members: (0..1000)
                .map(|i| format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256))
                .collect(),
        }],
        service_accounts: (0..CLIENTS)
            .map(|i| ServiceAccount {
                namespace: format!("ns{}", i % 10),
                name: format!("client{i}"),
                labels: [
                    ("app".to_string(), format!("client{i}")),
                    ("tier".to_string(), "web".to_string()),
                ]
                .into(),
            })
            .chain(std::iter::once(ServiceAccount {
                namespace: "ns0".into(),
                name: "target".into(),
                labels: Labels::new(),
            }))
            .collect(),
        namespaces: (0..10)
            .map(|i| Namespace {
                name: format!("ns{i}"),
                labels: [("team".to_string(), format!("team{i}"))].into(),
            })
            .collect(),
    }
}

/// The request the benchmark decides: allowed by the last rule.
pub const TARGET_PRINCIPAL: &str = "spiffe://cluster.local/ns/ns0/sa/target";

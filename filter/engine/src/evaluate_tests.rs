//! Table tests for every clause and step of evaluation, built directly on snapshots.

use crate::decision::Verdict::{self, *};
use crate::request::{Http, Peer, Request};
use crate::snapshot::*;
use crate::{CompiledPolicy, Engine};
use proptest::prelude::*;

const CUSTOMER: &str = "spiffe://cluster.local/ns/default/sa/customer";
const SUMMARY: &str = "spiffe://cluster.local/ns/default/sa/summary";
const OTHER_NS: &str = "spiffe://cluster.local/ns/prod/sa/customer";

fn pid(name: &str) -> PolicyId {
    PolicyId {
        name: name.into(),
        namespace: String::new(),
        kind: "GlobalNetworkPolicy".into(),
    }
}

fn policy(name: &str, rules: Vec<Rule>) -> Policy {
    Policy {
        id: pid(name),
        namespace: String::new(),
        inbound_rules: rules,
    }
}

fn tier(name: &str, policies: &[&str], default_action: &str) -> Tier {
    Tier {
        name: name.into(),
        ingress_policies: policies.iter().map(|p| pid(p)).collect(),
        default_action: default_action.into(),
    }
}

fn allow() -> Rule {
    Rule {
        action: "allow".into(),
        ..Default::default()
    }
}

fn with(action: &str, f: impl FnOnce(&mut Rule)) -> Rule {
    let mut r = Rule {
        action: action.into(),
        ..Default::default()
    };
    f(&mut r);
    r
}

/// One tier "t" holding one policy "p" with `rules`, default Deny, profile "prof" allowing all.
fn one_policy(rules: Vec<Rule>) -> Snapshot {
    Snapshot {
        endpoint: Some(Endpoint {
            tiers: vec![tier("t", &["p"], "Deny")],
            profile_ids: vec!["prof".into()],
        }),
        policies: vec![policy("p", rules)],
        profiles: vec![Profile {
            name: "prof".into(),
            inbound_rules: vec![allow()],
        }],
        ip_sets: vec![
            IpSet {
                id: "ips".into(),
                kind: IpSetKind::Ip,
                members: vec!["10.0.0.1".into()],
            },
            IpSet {
                id: "nets".into(),
                kind: IpSetKind::Net,
                members: vec!["10.1.0.0/16".into()],
            },
            IpSet {
                id: "named".into(),
                kind: IpSetKind::IpAndPort,
                members: vec!["10.0.0.9,tcp:8080".into()],
            },
        ],
        service_accounts: vec![ServiceAccount {
            namespace: "default".into(),
            name: "customer".into(),
            labels: [("role".to_string(), "frontend".to_string())].into(),
        }],
        namespaces: vec![Namespace {
            name: "default".into(),
            labels: [("env".to_string(), "dev".to_string())].into(),
        }],
    }
}

#[derive(Clone, Copy)]
struct Req {
    src: &'static str,
    src_ip: Option<&'static str>,
    src_port: u16,
    dst_ip: Option<&'static str>,
    dst_port: u16,
    protocol: u8,
    http: Option<(&'static str, &'static str)>,
}

const GET: Req = Req {
    src: CUSTOMER,
    src_ip: Some("10.0.0.1"),
    src_port: 40000,
    dst_ip: Some("10.0.0.9"),
    dst_port: 8080,
    protocol: 6,
    http: Some(("GET", "/accounts/1")),
};

impl Req {
    fn request(&self) -> Request<'static> {
        Request {
            source: Peer {
                principal: self.src,
                address: self.src_ip.and_then(crate::address::parse_ip),
                port: self.src_port,
            },
            destination: Peer {
                principal: SUMMARY,
                address: self.dst_ip.and_then(crate::address::parse_ip),
                port: self.dst_port,
            },
            protocol: self.protocol,
            http: self.http.map(|(method, path)| Http {
                method,
                path,
                host: "summary",
            }),
        }
    }
}

fn decide(snapshot: &Snapshot, req: Req) -> Verdict {
    let compiled = CompiledPolicy::compile(snapshot);
    let indexed = compiled.evaluate(&req.request());
    assert_eq!(
        indexed,
        compiled.evaluate_unindexed(&req.request()),
        "index changed the decision"
    );
    indexed.verdict
}

fn sa(names: &[&str], selector: &str) -> Option<ServiceAccountMatch> {
    Some(ServiceAccountMatch {
        selector: selector.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
    })
}

fn http(methods: &[&str], paths: Vec<PathMatch>) -> Option<HttpMatch> {
    Some(HttpMatch {
        methods: methods.iter().map(|s| s.to_string()).collect(),
        paths,
    })
}

fn ports(first: i32, last: i32) -> Vec<PortRange> {
    vec![PortRange { first, last }]
}

#[test]
fn prechecks() {
    assert_eq!(
        Engine::not_in_sync().decide(&GET.request()).verdict,
        NotInSync
    );
    assert_eq!(decide(&Snapshot::default(), GET), NoEndpoint);
    let s = one_policy(vec![allow()]);
    for bad in [
        "spiffe://td/ns//sa/x",
        "https://td/ns/a/sa/b",
        "spiffe://td/ns/a/sa/b/c",
        "customer",
        "SPIFFE://td/ns/a/sa/b",
    ] {
        assert_eq!(
            decide(&s, Req { src: bad, ..GET }),
            InvalidPeerIdentity,
            "{bad}"
        );
    }
    assert_eq!(decide(&s, Req { src: "", ..GET }), Allow);
}

#[test]
fn rule_clauses() {
    // (name, rule, request, expected); the profile allows, so a rule that does not match lets the
    // tier default (Deny) decide: "no match" shows as PolicyDenied.
    let cases: Vec<(&str, Rule, Req, Verdict)> = vec![
        ("empty rule matches", allow(), GET, Allow),
        (
            "sa name",
            with("allow", |r| {
                r.src.service_account_match = sa(&["customer"], "")
            }),
            GET,
            Allow,
        ),
        (
            "sa name other",
            with("allow", |r| {
                r.src.service_account_match = sa(&["summary"], "")
            }),
            GET,
            PolicyDenied,
        ),
        (
            "sa name plaintext passes",
            with("allow", |r| {
                r.src.service_account_match = sa(&["summary"], "")
            }),
            Req { src: "", ..GET },
            Allow,
        ),
        (
            "sa selector",
            with("allow", |r| {
                r.src.service_account_match = sa(&[], "role == 'frontend'")
            }),
            GET,
            Allow,
        ),
        (
            "sa selector no",
            with("allow", |r| {
                r.src.service_account_match = sa(&[], "role == 'db'")
            }),
            GET,
            PolicyDenied,
        ),
        (
            "sa bad selector",
            with("allow", |r| {
                r.src.service_account_match = sa(&[], "role ==")
            }),
            GET,
            PolicyDenied,
        ),
        (
            "dst sa",
            with("allow", |r| {
                r.dst.service_account_match = sa(&["summary"], "")
            }),
            GET,
            Allow,
        ),
        (
            "ns selector",
            with("allow", |r| {
                r.src.original_namespace_selector = "env == 'dev'".into()
            }),
            GET,
            Allow,
        ),
        (
            "ns selector no",
            with("allow", |r| {
                r.src.original_namespace_selector = "env == 'prod'".into()
            }),
            GET,
            PolicyDenied,
        ),
        (
            "ns selector plaintext",
            with("allow", |r| {
                r.src.original_namespace_selector = "env == 'prod'".into()
            }),
            Req { src: "", ..GET },
            Allow,
        ),
        (
            "ip set",
            with("allow", |r| r.src.ip_set_ids = vec!["ips".into()]),
            GET,
            Allow,
        ),
        (
            "ip set miss",
            with("allow", |r| r.src.ip_set_ids = vec!["ips".into()]),
            Req {
                src_ip: Some("10.0.0.2"),
                ..GET
            },
            PolicyDenied,
        ),
        (
            "ip set no address",
            with("allow", |r| r.src.ip_set_ids = vec!["ips".into()]),
            Req {
                src_ip: None,
                ..GET
            },
            PolicyDenied,
        ),
        (
            "not ip set",
            with("allow", |r| r.src.not_ip_set_ids = vec!["ips".into()]),
            GET,
            PolicyDenied,
        ),
        (
            "not ip set no address",
            with("allow", |r| r.src.not_ip_set_ids = vec!["ips".into()]),
            Req {
                src_ip: None,
                ..GET
            },
            Allow,
        ),
        (
            "net set",
            with("allow", |r| r.src.ip_set_ids = vec!["nets".into()]),
            Req {
                src_ip: Some("10.1.200.3"),
                ..GET
            },
            Allow,
        ),
        (
            "missing ip set fails closed",
            with("allow", |r| r.src.ip_set_ids = vec!["gone".into()]),
            GET,
            InconsistentStore,
        ),
        (
            "missing not ip set fails closed",
            with("deny", |r| {
                r.dst.not_named_port_ip_set_ids = vec!["gone".into()]
            }),
            GET,
            InconsistentStore,
        ),
        (
            "dst ip port set",
            with("allow", |r| r.dst.ip_port_set_ids = vec!["named".into()]),
            GET,
            Allow,
        ),
        (
            "dst ip port set udp",
            with("allow", |r| r.dst.ip_port_set_ids = vec!["named".into()]),
            Req {
                protocol: 17,
                ..GET
            },
            PolicyDenied,
        ),
        (
            "dst port",
            with("allow", |r| r.dst.ports = ports(8000, 8080)),
            GET,
            Allow,
        ),
        (
            "dst port miss",
            with("allow", |r| r.dst.ports = ports(1, 80)),
            GET,
            PolicyDenied,
        ),
        (
            "named port D1",
            with("allow", |r| {
                r.dst.named_port_ip_set_ids = vec!["named".into()]
            }),
            GET,
            Allow,
        ),
        (
            "named port or range",
            with("allow", |r| {
                r.dst.named_port_ip_set_ids = vec!["named".into()];
                r.dst.ports = ports(1, 2)
            }),
            Req { dst_port: 2, ..GET },
            Allow,
        ),
        (
            "not dst port",
            with("allow", |r| r.dst.not_ports = ports(8080, 8080)),
            GET,
            PolicyDenied,
        ),
        (
            "not named port",
            with("allow", |r| {
                r.dst.not_named_port_ip_set_ids = vec!["named".into()]
            }),
            GET,
            PolicyDenied,
        ),
        (
            "src port",
            with("allow", |r| r.src.ports = ports(40000, 40000)),
            GET,
            Allow,
        ),
        (
            "net",
            with("allow", |r| r.src.nets = vec!["10.0.0.0/8".into()]),
            GET,
            Allow,
        ),
        (
            "net other family",
            with("allow", |r| r.src.nets = vec!["::/0".into()]),
            GET,
            PolicyDenied,
        ),
        (
            "net invalid first",
            with("allow", |r| {
                r.src.nets = vec!["10.0.0.1".into(), "10.0.0.0/8".into()]
            }),
            GET,
            PolicyDenied,
        ),
        (
            "net invalid after match",
            with("allow", |r| {
                r.src.nets = vec!["10.0.0.0/8".into(), "junk".into()]
            }),
            GET,
            Allow,
        ),
        (
            "net no address",
            with("allow", |r| r.src.nets = vec!["0.0.0.0/0".into()]),
            Req {
                src_ip: None,
                ..GET
            },
            PolicyDenied,
        ),
        (
            "not net",
            with("allow", |r| r.src.not_nets = vec!["10.0.0.0/8".into()]),
            GET,
            PolicyDenied,
        ),
        (
            "not net invalid",
            with("allow", |r| r.src.not_nets = vec!["bad".into()]),
            GET,
            PolicyDenied,
        ),
        (
            "not net no address",
            with("allow", |r| r.src.not_nets = vec!["10.0.0.0/8".into()]),
            Req {
                src_ip: None,
                ..GET
            },
            Allow,
        ),
        (
            "dst net",
            with("allow", |r| r.dst.nets = vec!["10.0.0.9/32".into()]),
            GET,
            Allow,
        ),
        (
            "http method",
            with("allow", |r| r.http_match = http(&["GET"], vec![])),
            GET,
            Allow,
        ),
        (
            "http method case-sensitive",
            with("allow", |r| r.http_match = http(&["get"], vec![])),
            GET,
            PolicyDenied,
        ),
        (
            "http method star",
            with("allow", |r| r.http_match = http(&["*"], vec![])),
            GET,
            Allow,
        ),
        (
            "http on tcp D4",
            with("allow", |r| r.http_match = http(&[], vec![])),
            Req { http: None, ..GET },
            PolicyDenied,
        ),
        (
            "path prefix",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Prefix("/accounts".into())])
            }),
            GET,
            Allow,
        ),
        (
            "path prefix segment D7",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Prefix("/acc".into())])
            }),
            GET,
            PolicyDenied,
        ),
        (
            "path prefix root",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Prefix("/".into())])
            }),
            GET,
            Allow,
        ),
        (
            "path prefix trailing slash",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Prefix("/accounts/".into())])
            }),
            GET,
            Allow,
        ),
        (
            "path exact",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Exact("/accounts/1".into())])
            }),
            Req {
                http: Some(("GET", "/accounts/./x/../1?q")),
                ..GET
            },
            Allow,
        ),
        (
            "path traversal",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Prefix("/public".into())])
            }),
            Req {
                http: Some(("GET", "/public/%2e%2e/admin")),
                ..GET
            },
            PolicyDenied,
        ),
        (
            "bad path 400",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Prefix("/".into())])
            }),
            Req {
                http: Some(("GET", "/a%252fb")),
                ..GET
            },
            BadRequestPath,
        ),
        (
            "relative path 400",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Prefix("/".into())])
            }),
            Req {
                http: Some(("GET", "\\a")),
                ..GET
            },
            BadRequestPath,
        ),
        (
            "bad path, method excludes first",
            with("allow", |r| {
                r.http_match = http(&["POST"], vec![PathMatch::Prefix("/".into())])
            }),
            Req {
                http: Some(("GET", "/a%252fb")),
                ..GET
            },
            PolicyDenied,
        ),
        (
            "bad path, no paths",
            with("allow", |r| r.http_match = http(&["GET"], vec![])),
            Req {
                http: Some(("GET", "/a%252fb")),
                ..GET
            },
            Allow,
        ),
        (
            "glob",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Glob("/accounts/*".into())])
            }),
            GET,
            Allow,
        ),
        (
            "glob segment-aware",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Glob("/*".into())])
            }),
            GET,
            PolicyDenied,
        ),
        (
            "glob after normalisation",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Glob("/accounts/*".into())])
            }),
            Req {
                http: Some(("GET", "/x/../accounts//7")),
                ..GET
            },
            Allow,
        ),
        (
            "template",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Template("/accounts/{id}".into())])
            }),
            GET,
            Allow,
        ),
        (
            "template no",
            with("allow", |r| {
                r.http_match = http(
                    &[],
                    vec![PathMatch::Template("/accounts/{id}/summary".into())],
                )
            }),
            GET,
            PolicyDenied,
        ),
        (
            "bad glob matches nothing",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Glob("/[".into())])
            }),
            GET,
            PolicyDenied,
        ),
        (
            "unset path entry",
            with("allow", |r| {
                r.http_match = http(&[], vec![PathMatch::Unset])
            }),
            GET,
            PolicyDenied,
        ),
        (
            "protocol",
            with("allow", |r| r.protocol = Some(Protocol::Name("TCP".into()))),
            GET,
            Allow,
        ),
        (
            "protocol udp",
            with("allow", |r| r.protocol = Some(Protocol::Number(17))),
            GET,
            PolicyDenied,
        ),
        (
            "not protocol",
            with("allow", |r| r.not_protocol = Some(Protocol::Number(6))),
            GET,
            PolicyDenied,
        ),
        (
            "protocol unset",
            with("allow", |r| r.protocol = Some(Protocol::Unset)),
            GET,
            PolicyDenied,
        ),
        ("deny", with("deny", |_| {}), GET, PolicyDenied),
        ("action case", with("ALLOW", |_| {}), GET, Allow),
        (
            "invalid action when matched",
            with("permit", |_| {}),
            GET,
            InconsistentStore,
        ),
        (
            "invalid action not matched",
            with("", |r| r.dst.ports = ports(1, 1)),
            GET,
            PolicyDenied,
        ),
        (
            "pass goes to profiles",
            with("next-tier", |_| {}),
            GET,
            Allow,
        ),
    ];
    for (name, rule, req, want) in cases {
        assert_eq!(decide(&one_policy(vec![rule]), req), want, "{name}");
    }
}

#[test]
fn namespace_pinning() {
    let mut s = one_policy(vec![with("allow", |r| {
        r.src.original_selector = "app == 'x'".into()
    })]);
    s.policies[0].namespace = "default".into();
    s.policies[0].id.namespace = "default".into();
    s.policies[0].id.kind = "NetworkPolicy".into();
    s.endpoint.as_mut().unwrap().tiers[0].ingress_policies = vec![s.policies[0].id.clone()];
    assert_eq!(decide(&s, GET), Allow);
    assert_eq!(
        decide(
            &s,
            Req {
                src: OTHER_NS,
                ..GET
            }
        ),
        PolicyDenied
    );
    assert_eq!(decide(&s, Req { src: "", ..GET }), Allow);
    // Without a selector or service-account match there is no pinning.
    s.policies[0].inbound_rules = vec![allow()];
    assert_eq!(
        decide(
            &s,
            Req {
                src: OTHER_NS,
                ..GET
            }
        ),
        Allow
    );
}

#[test]
fn tiers_and_profiles() {
    let base = |tiers: Vec<Tier>, policies: Vec<Policy>, profiles: Vec<&str>| Snapshot {
        endpoint: Some(Endpoint {
            tiers,
            profile_ids: profiles.iter().map(|p| p.to_string()).collect(),
        }),
        policies,
        profiles: vec![
            Profile {
                name: "allow-all".into(),
                inbound_rules: vec![allow()],
            },
            Profile {
                name: "pass".into(),
                inbound_rules: vec![with("pass", |_| {})],
            },
            Profile {
                name: "none".into(),
                inbound_rules: vec![],
            },
        ],
        ..Default::default()
    };
    let deny_port = || with("deny", |r| r.dst.ports = ports(1, 1));
    let cases: Vec<(&str, Snapshot, Verdict)> = vec![
        (
            "no tiers, no profiles",
            base(vec![], vec![], vec![]),
            PolicyDenied,
        ),
        (
            "no tiers, profile allows",
            base(vec![], vec![], vec!["allow-all"]),
            Allow,
        ),
        (
            "missing profile skipped",
            base(vec![], vec![], vec!["gone", "allow-all"]),
            Allow,
        ),
        (
            "pass in profile denies",
            base(vec![], vec![], vec!["pass", "allow-all"]),
            PolicyDenied,
        ),
        (
            "profiles exhausted",
            base(vec![], vec![], vec!["none"]),
            PolicyDenied,
        ),
        (
            "empty tier skipped",
            base(vec![tier("t", &[], "Deny")], vec![], vec!["allow-all"]),
            Allow,
        ),
        (
            "staged-only tier skipped",
            base(
                vec![Tier {
                    ingress_policies: vec![PolicyId {
                        kind: "StagedGlobalNetworkPolicy".into(),
                        ..pid("s")
                    }],
                    ..tier("t", &[], "Deny")
                }],
                vec![],
                vec!["allow-all"],
            ),
            Allow,
        ),
        (
            "staged policy never enforced",
            base(
                vec![Tier {
                    ingress_policies: vec![
                        PolicyId {
                            kind: "StagedNetworkPolicy".into(),
                            ..pid("s")
                        },
                        pid("p"),
                    ],
                    ..tier("t", &[], "Deny")
                }],
                vec![policy("s", vec![allow()]), policy("p", vec![deny_port()])],
                vec!["allow-all"],
            ),
            PolicyDenied,
        ),
        (
            "default deny",
            base(
                vec![tier("t", &["p"], "Deny")],
                vec![policy("p", vec![deny_port()])],
                vec!["allow-all"],
            ),
            PolicyDenied,
        ),
        (
            "default empty is deny",
            base(
                vec![tier("t", &["p"], "")],
                vec![policy("p", vec![deny_port()])],
                vec!["allow-all"],
            ),
            PolicyDenied,
        ),
        (
            "default pass lower-case is deny",
            base(
                vec![tier("t", &["p"], "pass")],
                vec![policy("p", vec![deny_port()])],
                vec!["allow-all"],
            ),
            PolicyDenied,
        ),
        (
            "default Pass",
            base(
                vec![tier("t", &["p"], "Pass")],
                vec![policy("p", vec![deny_port()])],
                vec!["allow-all"],
            ),
            Allow,
        ),
        (
            "default invalid D6",
            base(
                vec![tier("t", &["p"], "Allow")],
                vec![policy("p", vec![allow()])],
                vec!["allow-all"],
            ),
            InconsistentStore,
        ),
        (
            "missing policy reached",
            base(
                vec![tier("t", &["gone", "p"], "Deny")],
                vec![policy("p", vec![allow()])],
                vec![],
            ),
            InconsistentStore,
        ),
        (
            "missing policy not reached",
            base(
                vec![tier("t", &["p", "gone"], "Deny")],
                vec![policy("p", vec![allow()])],
                vec![],
            ),
            Allow,
        ),
        (
            "pass skips rest of tier",
            base(
                vec![tier("t1", &["a", "b"], "Deny"), tier("t2", &["c"], "Deny")],
                vec![
                    policy("a", vec![with("pass", |_| {})]),
                    policy("b", vec![with("deny", |_| {})]),
                    policy("c", vec![allow()]),
                ],
                vec![],
            ),
            Allow,
        ),
        (
            "pass from last tier to profiles",
            base(
                vec![tier("t", &["a"], "Deny")],
                vec![policy("a", vec![with("next-tier", |_| {})])],
                vec!["allow-all"],
            ),
            Allow,
        ),
        (
            "log continues",
            base(
                vec![tier("t", &["a"], "Deny")],
                vec![policy("a", vec![with("log", |_| {}), allow()])],
                vec![],
            ),
            Allow,
        ),
        (
            "first match wins",
            base(
                vec![tier("t", &["a", "b"], "Deny")],
                vec![
                    policy("a", vec![with("deny", |_| {}), allow()]),
                    policy("b", vec![allow()]),
                ],
                vec![],
            ),
            PolicyDenied,
        ),
        (
            "invalid default on entering, before policies",
            base(
                vec![tier("t", &["p"], "bogus")],
                vec![policy("p", vec![allow()])],
                vec![],
            ),
            InconsistentStore,
        ),
    ];
    for (name, snapshot, want) in cases {
        assert_eq!(decide(&snapshot, GET), want, "{name}");
    }
}

#[test]
fn explanation_names_origin() {
    let s = one_policy(vec![deny_first(), allow()]);
    let engine = Engine::from_snapshot(3, &s);
    let e = engine.explain(
        &engine.decide(
            &Req {
                http: Some(("DELETE", "/x")),
                ..GET
            }
            .request(),
        ),
    );
    assert_eq!(
        (e.decision, e.status, e.reason),
        ("deny", Some(403), "policy_denied")
    );
    assert_eq!(e.tier.as_deref(), Some("t"));
    assert_eq!(e.policy.as_ref().map(|p| p.name.as_str()), Some("p"));
    assert_eq!((e.rule, e.rule_id.as_deref()), (Some(0), Some("r0")));
    let e = engine.explain(&engine.decide(&GET.request()));
    assert_eq!((e.decision, e.status, e.rule), ("allow", None, Some(1)));
    let e = Engine::not_in_sync().explain(&Engine::not_in_sync().decide(&GET.request()));
    assert_eq!((e.status, e.reason), (Some(503), "not_in_sync"));
}

fn deny_first() -> Rule {
    with("deny", |r| {
        r.http_match = http(&["DELETE"], vec![]);
        r.rule_id = "r0".into();
    })
}

// The candidate index must never change a decision: random rules and requests, indexed and
// unindexed evaluation agree.
fn arb_rule() -> impl Strategy<Value = Rule> {
    let names = prop::sample::subsequence(vec!["customer", "summary", "db"], 0..=2);
    let methods = prop::sample::subsequence(vec!["GET", "POST", "*"], 0..=2);
    let paths = prop::sample::select(vec![
        vec![],
        vec![PathMatch::Prefix("/accounts".into())],
        vec![
            PathMatch::Prefix("/accounts/1".into()),
            PathMatch::Exact("/other".into()),
        ],
        vec![PathMatch::Exact("/".into())],
        vec![PathMatch::Prefix("/".into())],
        vec![PathMatch::Prefix("/acc".into())],
        vec![PathMatch::Unset],
        vec![
            PathMatch::Exact("/a%zz".into()),
            PathMatch::Exact("/other/x;p".into()),
        ],
    ]);
    (
        prop::sample::select(vec!["allow", "deny", "pass", "log", "bogus"]),
        prop::option::of(names),
        prop::option::of(methods),
        paths,
        prop::option::of(prop::sample::select(vec!["ips", "gone", "nets"])),
        // Destination ports (empty: any), with or without a named port.
        prop::collection::vec((7990..8090i32, 0..60i32), 0..3),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(action, names, methods, paths, set, ports, named)| {
            with(action, |r| {
                r.dst.ports = ports
                    .iter()
                    .map(|&(first, len)| PortRange {
                        first,
                        last: first + len - 10,
                    })
                    .collect();
                if named {
                    r.dst.named_port_ip_set_ids = vec!["ips".into()];
                }
                r.src.service_account_match = names.map(|n| ServiceAccountMatch {
                    selector: String::new(),
                    names: n.iter().map(|s| s.to_string()).collect(),
                });
                r.http_match = methods.map(|m| HttpMatch {
                    methods: m.iter().map(|s| s.to_string()).collect(),
                    paths,
                });
                r.src.ip_set_ids = set.into_iter().map(String::from).collect();
            })
        })
}

proptest! {
    #[test]
    fn index_never_changes_decisions(
        rules in prop::collection::vec(arb_rule(), 0..40),
        src in prop::sample::select(vec!["", CUSTOMER, SUMMARY, "spiffe://x/ns/default/sa/db", "spiffe://x/ns/default/sa/other"]),
        dst_port in 7980..8160u16,
        http in prop::option::of((
            prop::sample::select(vec!["GET", "POST", "PUT"]),
            prop::sample::select(vec!["/accounts/1", "/other", "/%zz", "/", "/accounts", "/acc/x", "/x/../other/x?q", "//accounts//1", "rel", "/other/x"]),
        )),
    ) {
        let split = rules.len() / 2;
        let mut s = one_policy(rules[..split].to_vec());
        s.policies.push(policy("q", rules[split..].to_vec()));
        s.endpoint.as_mut().unwrap().tiers.push(tier("t2", &["q"], "Pass"));
        let compiled = CompiledPolicy::compile(&s);
        let req = Req { src, http, dst_port, ..GET }.request();
        prop_assert_eq!(compiled.evaluate(&req), compiled.evaluate_unindexed(&req));
    }
}

// The staged rehearsal: staged kinds evaluated as if enforced, in a second program.

fn staged_id(name: &str, kind: &str) -> PolicyId {
    PolicyId {
        kind: kind.into(),
        ..pid(name)
    }
}

/// Tier "t": enforced "p" (allow GET), staged "s" (deny DELETE and GET /admin) before it.
fn with_staged(staged: Vec<Rule>) -> Snapshot {
    Snapshot {
        endpoint: Some(Endpoint {
            tiers: vec![Tier {
                name: "t".into(),
                ingress_policies: vec![staged_id("s", "StagedGlobalNetworkPolicy"), pid("p")],
                default_action: "Deny".into(),
            }],
            profile_ids: vec![],
        }),
        policies: vec![
            Policy {
                id: staged_id("s", "StagedGlobalNetworkPolicy"),
                namespace: String::new(),
                inbound_rules: staged,
            },
            policy(
                "p",
                vec![with("allow", |r| r.http_match = http(&["GET"], vec![]))],
            ),
        ],
        ..Default::default()
    }
}

#[test]
fn staged_program_only_when_asked() {
    let s = with_staged(vec![with("deny", |r| {
        r.http_match = http(&["GET"], vec![PathMatch::Prefix("/admin".into())])
    })]);
    let admin = Req {
        http: Some(("GET", "/admin/x")),
        ..GET
    }
    .request();
    // Default: no rehearsal at all.
    let plain = Engine::from_snapshot(1, &s);
    let d = plain.decide(&admin);
    assert_eq!(d.verdict, Allow, "staged policies are never enforced");
    assert_eq!(plain.decide_staged(&admin, &d), None);
    assert!(!plain.staged_requested());

    let engine = Engine::from_snapshot_with(
        1,
        &s,
        &crate::Options {
            staged: true,
            ..Default::default()
        },
    );
    let d = engine.decide(&admin);
    assert_eq!(d.verdict, Allow, "the enforced decision does not change");
    let staged = engine.decide_staged(&admin, &d).unwrap();
    assert_eq!(staged.verdict, PolicyDenied);
    let e = engine.explain_staged(&staged);
    assert_eq!(e.tier.as_deref(), Some("t"));
    let p = e.policy.unwrap();
    assert_eq!(
        (p.name.as_str(), p.kind.as_str()),
        ("s", "StagedGlobalNetworkPolicy")
    );
    // Where the staged policy does not match, the enforced policies decide as before.
    let get = GET.request();
    let d = engine.decide(&get);
    let staged = engine.decide_staged(&get, &d).unwrap();
    assert_eq!(staged.verdict, Allow);
    assert_eq!(
        engine.explain_staged(&staged).policy,
        engine.explain(&d).policy,
        "indices differ, names agree"
    );
    let del = Req {
        http: Some(("DELETE", "/x")),
        ..GET
    }
    .request();
    let d = engine.decide(&del);
    assert_eq!(
        (d.verdict, engine.decide_staged(&del, &d).map(|s| s.verdict)),
        (PolicyDenied, Some(PolicyDenied))
    );
}

#[test]
fn no_staged_policies_means_no_second_program() {
    let s = one_policy(vec![deny_first(), allow()]);
    let engine = Engine::from_snapshot_with(
        1,
        &s,
        &crate::Options {
            staged: true,
            ..Default::default()
        },
    );
    assert!(engine.staged_requested());
    let req = Req {
        http: Some(("DELETE", "/x")),
        ..GET
    }
    .request();
    let d = engine.decide(&req);
    assert_eq!(
        engine.decide_staged(&req, &d),
        Some(d),
        "the enforced decision, not evaluated twice"
    );
    assert!(std::ptr::eq(
        engine.staged_policy().unwrap(),
        engine.policy().unwrap()
    ));
}

#[test]
fn staged_program_semantics() {
    let deny_all = || vec![with("deny", |_| {})];
    let staged_tier = |ids: Vec<PolicyId>, default: &str| Tier {
        name: "t".into(),
        ingress_policies: ids,
        default_action: default.into(),
    };
    let snapshot = |tiers: Vec<Tier>, policies: Vec<Policy>| Snapshot {
        endpoint: Some(Endpoint {
            tiers,
            profile_ids: vec!["allow-all".into()],
        }),
        policies,
        profiles: vec![Profile {
            name: "allow-all".into(),
            inbound_rules: vec![allow()],
        }],
        ..Default::default()
    };
    let body = |id: PolicyId, rules: Vec<Rule>| Policy {
        id,
        namespace: String::new(),
        inbound_rules: rules,
    };
    let cases: Vec<(&str, Snapshot, Verdict, Verdict)> = vec![
        (
            "a staged-only tier applies its default action",
            snapshot(
                vec![staged_tier(
                    vec![staged_id("s", "StagedGlobalNetworkPolicy")],
                    "Deny",
                )],
                vec![body(
                    staged_id("s", "StagedGlobalNetworkPolicy"),
                    vec![with("allow", |r| r.dst.ports = ports(1, 1))],
                )],
            ),
            Allow,
            PolicyDenied,
        ),
        (
            "a staged policy replaces the enforced one it stages",
            snapshot(
                vec![staged_tier(
                    vec![pid("p"), staged_id("p", "StagedGlobalNetworkPolicy")],
                    "Deny",
                )],
                vec![
                    policy("p", deny_all()),
                    body(staged_id("p", "StagedGlobalNetworkPolicy"), vec![allow()]),
                ],
            ),
            PolicyDenied,
            Allow,
        ),
        (
            "a staged namespaced policy does not replace a global one of the same name",
            snapshot(
                vec![staged_tier(
                    vec![pid("p"), staged_id("p", "StagedNetworkPolicy")],
                    "Deny",
                )],
                vec![
                    policy("p", deny_all()),
                    body(staged_id("p", "StagedNetworkPolicy"), vec![allow()]),
                ],
            ),
            PolicyDenied,
            PolicyDenied,
        ),
        (
            "a staged policy the store lacks fails closed only in the rehearsal",
            snapshot(
                vec![staged_tier(
                    vec![staged_id("gone", "StagedKubernetesNetworkPolicy"), pid("p")],
                    "Deny",
                )],
                vec![policy("p", vec![allow()])],
            ),
            Allow,
            InconsistentStore,
        ),
    ];
    for (name, s, enforced, staged) in cases {
        let engine = Engine::from_snapshot_with(
            1,
            &s,
            &crate::Options {
                staged: true,
                ..Default::default()
            },
        );
        let req = GET.request();
        let d = engine.decide(&req);
        assert_eq!(d.verdict, enforced, "{name}: enforced");
        assert_eq!(
            engine.decide_staged(&req, &d).map(|d| d.verdict),
            Some(staged),
            "{name}: staged"
        );
        let program = CompiledPolicy::compile_program(&s, crate::Program::StagedAsEnforced);
        assert_eq!(
            program.evaluate(&req),
            program.evaluate_unindexed(&req),
            "{name}: index"
        );
    }
}

/// The path-confusion attacks of D10, both ways round (`/public/<trick>/admin` and
/// `/admin/<trick>/public`): "allow prefix /public, default Deny" never allows a path that some
/// server reads under `/admin`, and deny globs and templates catch every form of their paths.
#[test]
fn path_attacks_both_directions() {
    let public_only = one_policy(vec![with("allow", |r| {
        r.http_match = http(&["GET"], vec![PathMatch::Prefix("/public".into())])
    })]);
    let tricks = [
        "..%3B",
        "..%3Bx",
        "%2e%2e%3B",
        "..%2F",
        "..%5C",
        "%2e%2e",
        "..",
        "..;",
        "..;x",
        ".%3B",
        "%252e%252e",
        "..%2f..",
        "%2E%2E%5C",
    ];
    for trick in tricks {
        for (from, to) in [("public", "admin"), ("admin", "public")] {
            let path: &'static str = Box::leak(format!("/{from}/{trick}/{to}").into_boxed_str());
            let got = decide(
                &public_only,
                Req {
                    http: Some(("GET", path)),
                    ..GET
                },
            );
            let normalised = crate::path::normalize(path);
            match normalised.as_deref() {
                Ok(b"/public") => assert_eq!(got, Allow, "{path}"),
                Ok(other) => {
                    assert!(
                        !other.starts_with(b"/public"),
                        "{path} normalised to {:?}",
                        String::from_utf8_lossy(other)
                    );
                    assert_eq!(got, PolicyDenied, "{path}");
                }
                Err(_) => assert_eq!(got, BadRequestPath, "{path}"),
            }
        }
    }
    // Backslashes and empty or parameter-only segments.
    for (path, want) in [
        ("/admin\\..\\public", Allow),
        ("/public\\..\\admin", PolicyDenied),
        ("/admin//..//public", Allow),
        ("/public//..//admin", PolicyDenied),
        ("/;x/public", Allow),
        ("/public/;x/../../admin", PolicyDenied),
        ("/public%2F..%2Fadmin", BadRequestPath),
    ] {
        assert_eq!(
            decide(
                &public_only,
                Req {
                    http: Some(("GET", path)),
                    ..GET
                }
            ),
            want,
            "{path}"
        );
    }

    let deny_first = one_policy(vec![
        with("deny", |r| {
            r.http_match = http(&[], vec![PathMatch::Glob("/admin/**".into())])
        }),
        with("deny", |r| {
            r.http_match = http(&[], vec![PathMatch::Template("/secret/{*rest}".into())])
        }),
        with("allow", |r| {
            r.http_match = http(&[], vec![PathMatch::Prefix("/".into())])
        }),
    ]);
    for (path, want) in [
        ("/admin", PolicyDenied),
        ("/admin/", PolicyDenied),
        ("/admin/x/y", PolicyDenied),
        ("/admin/%ff", PolicyDenied),
        ("/adm%69n/%c0%80", PolicyDenied),
        ("/public/../admin", PolicyDenied),
        ("/secret", PolicyDenied),
        ("/secret/", PolicyDenied),
        ("/secret/%c0", PolicyDenied),
        ("/secret;x/a", PolicyDenied),
        ("/administrator", Allow),
        ("/secrets", Allow),
        ("/public/%ff", Allow),
    ] {
        assert_eq!(
            decide(
                &deny_first,
                Req {
                    http: Some(("GET", path)),
                    ..GET
                }
            ),
            want,
            "{path}"
        );
    }
}

/// D12: with trust domains configured a principal from elsewhere is an invalid peer identity,
/// after the endpoint check, as any other invalid principal.
#[test]
fn trust_domains_pin_the_peer() {
    let s = one_policy(vec![with("allow", |r| {
        r.src.service_account_match = sa(&["customer"], "")
    })]);
    let evil = "spiffe://evil.example/ns/default/sa/customer";
    let options = crate::Options {
        trust_domains: crate::TrustDomains::new(["cluster.local"]),
        ..Default::default()
    };
    let any = Engine::from_snapshot(1, &s);
    let pinned = Engine::from_snapshot_with(1, &s, &options);
    let req = Req { src: evil, ..GET };
    assert_eq!(
        any.decide(&req.request()).verdict,
        Allow,
        "any trust domain, as upstream"
    );
    assert_eq!(pinned.decide(&req.request()).verdict, InvalidPeerIdentity);
    assert_eq!(pinned.decide(&GET.request()).verdict, Allow);
    assert_eq!(
        pinned.decide(&Req { src: "", ..GET }.request()).verdict,
        Allow,
        "plaintext passes the clause"
    );
    let no_endpoint = Snapshot {
        endpoint: None,
        ..s
    };
    let pinned = Engine::from_snapshot_with(1, &no_endpoint, &options);
    assert_eq!(pinned.decide(&req.request()).verdict, NoEndpoint);
}

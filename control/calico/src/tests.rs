//! Conversion, validation and round-trip tests.

use crate::{compile, load_texts};
use alp_engine::RequestSpec;
use alp_felix::wire::felix::{self as w, to_dataplane::Payload, ToDataplane};

const YAOBANK_WORKLOADS: &str = include_str!("../tests/data/yaobank-workloads.yaml");

fn wep(ns: &str, name: &str, labels: &str, sa: &str, ip: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {labels}\nspec:\n  serviceAccountName: {sa}\n  ipNetworks: [{ip}/32]\n  ports:\n    - {{name: http, protocol: TCP, port: 8080}}\n    - {{name: dns, protocol: UDP, port: 53}}\n---\n"
    )
}

/// Three workloads: prod/web (app=web, sa web), prod/api (app=api, sa api), dev/web.
fn inventory() -> String {
    [
        wep("prod", "web", "{app: web}", "web", "10.0.0.1"),
        wep("prod", "api", "{app: api}", "api", "10.0.0.2"),
        wep("dev", "web", "{app: web}", "web", "10.0.1.1"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels: {env: prod}\n---\n".into(),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n  namespace: prod\n  labels: {role: frontend}\n---\n".into(),
    ]
    .concat()
}

fn compile_for(policy: &str, workload: &str) -> Vec<ToDataplane> {
    let inv = inventory();
    let set =
        load_texts(&[("policy.yaml", policy), ("inventory.yaml", &inv)]).unwrap_or_else(|p| {
            panic!(
                "problems: {}",
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
    let (ns, name) = workload.split_once('/').unwrap();
    compile(&set, ns, name).unwrap()
}

fn endpoint(msgs: &[ToDataplane]) -> w::WorkloadEndpoint {
    msgs.iter()
        .find_map(|m| match &m.payload {
            Some(Payload::WorkloadEndpointUpdate(u)) => u.endpoint.clone(),
            _ => None,
        })
        .unwrap()
}

fn policy(msgs: &[ToDataplane], name: &str) -> w::Policy {
    msgs.iter()
        .find_map(|m| match &m.payload {
            Some(Payload::ActivePolicyUpdate(u)) if u.id.as_ref().unwrap().name == name => {
                u.policy.clone()
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no policy {name}"))
}

fn ipset(msgs: &[ToDataplane], id: &str) -> (i32, Vec<String>) {
    msgs.iter()
        .find_map(|m| match &m.payload {
            Some(Payload::IpsetUpdate(u)) if u.id == id => Some((u.r#type, u.members.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ip set {id}"))
}

/// `tier: [kind/ns/name ...]` of the endpoint's ingress lists.
fn tiers(msgs: &[ToDataplane]) -> Vec<String> {
    endpoint(msgs)
        .tiers
        .iter()
        .map(|t| {
            let ids: Vec<String> = t
                .ingress_policies
                .iter()
                .map(|p| format!("{}/{}/{}", p.kind, p.namespace, p.name))
                .collect();
            format!("{}({}): {}", t.name, t.default_action, ids.join(" "))
        })
        .collect()
}

fn gnp(name: &str, spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n{spec}---\n")
}

fn np(ns: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}---\n")
}

fn decide(msgs: &[ToDataplane], request: &str) -> String {
    let engine = alp_felix::engine_from_updates(msgs);
    let spec: RequestSpec = serde_json::from_str(request).unwrap();
    let d = engine.decide(&spec.request());
    let e = engine.explain(&d);
    format!(
        "{} {}",
        e.reason,
        e.policy.map(|p| p.name).unwrap_or_default()
    )
}

#[test]
fn tiers_and_ordering() {
    let yaml = [
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n---\n".to_string(),
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: late}\nspec: {defaultAction: Pass}\n---\n".into(),
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: early}\nspec: {order: 100}\n---\n".into(),
        gnp("b", "  tier: security\n  order: 10\n  selector: all()\n  ingress: [{action: Log}]\n"),
        gnp("a", "  tier: security\n  order: 10\n  selector: all()\n  ingress: [{action: Log}]\n"),
        gnp("z", "  tier: security\n  order: 1\n  selector: all()\n  ingress: [{action: Log}]\n"),
        gnp("noorder", "  tier: security\n  selector: all()\n  ingress: [{action: Log}]\n"),
        gnp("e", "  tier: early\n  selector: all()\n  types: [Egress]\n  egress: [{action: Allow}]\n"),
        gnp("l", "  tier: late\n  selector: all()\n"),
        gnp("d", "  selector: app == 'web'\n"),
        np("prod", "d", "  order: 5\n  selector: app == 'web'\n"),
    ]
    .concat();
    let msgs = compile_for(&yaml, "prod/web");
    assert_eq!(
        tiers(&msgs),
        vec![
            "early(Deny): ",
            "security(Deny): GlobalNetworkPolicy//z GlobalNetworkPolicy//a GlobalNetworkPolicy//b GlobalNetworkPolicy//noorder",
            "default(Deny): NetworkPolicy/prod/d GlobalNetworkPolicy//d",
            "late(Pass): GlobalNetworkPolicy//l",
        ]
    );
    assert_eq!(endpoint(&msgs).tiers[0].egress_policies.len(), 1);
    assert_eq!(
        endpoint(&msgs).profile_ids,
        vec!["kns.prod", "ksa.prod.web"]
    );
    // dev/web: the namespaced policy of prod does not select it.
    let msgs = compile_for(&yaml, "dev/web");
    assert_eq!(tiers(&msgs)[2], "default(Deny): GlobalNetworkPolicy//d");
}

#[test]
fn namespaced_policies_pin_selectors_to_their_namespace() {
    let yaml = np("prod", "p", "  selector: app == 'api'\n  ingress:\n    - action: Allow\n      source: {selector: app == 'web'}\n    - action: Allow\n      source: {namespaceSelector: env == 'prod'}\n    - action: Allow\n      source: {notSelector: app == 'web'}\n    - action: Deny\n      source: {nets: [10.9.0.7/32]}\n");
    let msgs = compile_for(&yaml, "prod/api");
    let p = policy(&msgs, "p");
    assert_eq!(p.namespace, "prod");
    assert!(
        p.original_selector
            .contains("projectcalico.org/namespace == 'prod'"),
        "{}",
        p.original_selector
    );
    let r = &p.inbound_rules;
    assert_eq!(r[0].original_src_selector, "app == 'web'");
    assert_eq!(
        ipset(&msgs, &r[0].src_ip_set_ids[0]).1,
        vec!["10.0.0.1"],
        "prod/web only, not dev/web"
    );
    assert_eq!(r[1].original_src_namespace_selector, "env == 'prod'");
    assert_eq!(
        ipset(&msgs, &r[1].src_ip_set_ids[0]).1,
        vec!["10.0.0.1", "10.0.0.2"]
    );
    // notSelector alone: the namespace becomes the positive selector, absorbing the negation.
    assert!(r[2].not_src_ip_set_ids.is_empty());
    assert_eq!(r[2].original_not_src_selector, "app == 'web'");
    assert_eq!(ipset(&msgs, &r[2].src_ip_set_ids[0]).1, vec!["10.0.0.2"]);
    assert_eq!(r[3].src_net, vec!["10.9.0.7/32"]);
    assert!(
        r[3].src_ip_set_ids.is_empty(),
        "nets alone: no namespace IP set"
    );
    // The same rules in a global policy are not pinned.
    let msgs = compile_for(&gnp("g", "  selector: app == 'api'\n  ingress:\n    - action: Allow\n      source: {selector: app == 'web', notSelector: has(x)}\n    - action: Allow\n      source: {notSelector: app == 'web'}\n"), "prod/api");
    let r = policy(&msgs, "g").inbound_rules;
    assert_eq!(
        ipset(&msgs, &r[0].src_ip_set_ids[0]).1,
        vec!["10.0.0.1", "10.0.1.1"]
    );
    assert_eq!(
        ipset(&msgs, &r[1].not_src_ip_set_ids[0]).1,
        vec!["10.0.0.1", "10.0.1.1"]
    );
    assert!(r[1].src_ip_set_ids.is_empty());
}

#[test]
fn selectors_that_select_nothing() {
    let yaml = [
        gnp("none", "  selector: app == 'nothing'\n  ingress: [{action: Allow}]\n"),
        gnp("all", "  selector: all()\n  ingress:\n    - action: Allow\n      source: {selector: app == 'nothing'}\n"),
        gnp("nssel", "  namespaceSelector: env == 'dev'\n  ingress: [{action: Allow}]\n"),
    ]
    .concat();
    let msgs = compile_for(&yaml, "prod/web");
    assert_eq!(
        tiers(&msgs),
        vec!["default(Deny): GlobalNetworkPolicy//all"]
    );
    let r = &policy(&msgs, "all").inbound_rules[0];
    assert_eq!(ipset(&msgs, &r.src_ip_set_ids[0]), (0, vec![]));
    let req = r#"{"source":{"address":"10.0.0.2"},"http":{"method":"GET","path":"/"}}"#;
    assert_eq!(decide(&msgs, req), "policy_denied ");
    // No policy at all: the namespace profile allows.
    let msgs = compile_for(&gnp("none", "  selector: app == 'nothing'\n"), "prod/web");
    assert!(endpoint(&msgs).tiers.is_empty());
    assert_eq!(decide(&msgs, req), "allow ");
}

#[test]
fn named_ports_become_ip_and_port_sets() {
    let yaml = gnp("p", "  selector: all()\n  ingress:\n    - action: Allow\n      protocol: TCP\n      destination: {ports: [http]}\n    - action: Allow\n      protocol: UDP\n      source: {selector: app == 'web', ports: [dns, 1000]}\n    - action: Allow\n      protocol: TCP\n      destination: {notPorts: [http, '2000:2010']}\n");
    let msgs = compile_for(&yaml, "prod/api");
    let r = policy(&msgs, "p").inbound_rules;
    assert!(
        r[0].dst_ip_set_ids.is_empty(),
        "named ports only: the selector goes into the named-port set"
    );
    assert_eq!(
        ipset(&msgs, &r[0].dst_named_port_ip_set_ids[0]),
        (
            1,
            vec![
                "10.0.0.1,tcp:8080".into(),
                "10.0.0.2,tcp:8080".into(),
                "10.0.1.1,tcp:8080".into()
            ]
        )
    );
    assert_eq!(
        ipset(&msgs, &r[1].src_named_port_ip_set_ids[0]).1,
        vec!["10.0.0.1,udp:53", "10.0.1.1,udp:53"]
    );
    assert_eq!(
        r[1].src_ports,
        vec![w::PortRange {
            first: 1000,
            last: 1000
        }]
    );
    assert_eq!(
        r[1].src_ip_set_ids.len(),
        1,
        "numeric ports too: the selector set stays"
    );
    assert_eq!(
        r[2].not_dst_ports,
        vec![w::PortRange {
            first: 2000,
            last: 2010
        }]
    );
    assert_eq!(r[2].not_dst_named_port_ip_set_ids.len(), 1);
    let req = |port: u16| {
        format!(
            r#"{{"destination":{{"address":"10.0.0.2","port":{port}}},"http":{{"method":"GET","path":"/"}}}}"#
        )
    };
    assert_eq!(decide(&msgs, &req(8080)), "allow p");
}

#[test]
fn pass_goes_to_the_next_tier_and_staged_policies_are_listed() {
    let yaml = [
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: first}\nspec: {order: 1}\n---\n".to_string(),
        gnp("first.pass", "  tier: first\n  selector: all()\n  ingress:\n    - action: Pass\n      notProtocol: UDP\n    - action: Deny\n"),
        gnp("allow-get", "  selector: all()\n  ingress:\n    - action: Allow\n      http: {methods: [GET], paths: [{prefix: /public}, {exact: /}]}\n"),
        "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: staged}\nspec:\n  selector: all()\n  ingress: [{action: Deny}]\n---\n".into(),
        "apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {name: staged-ns, namespace: prod}\nspec:\n  selector: all()\n  ingress: [{action: Deny}]\n".into(),
    ]
    .concat();
    let msgs = compile_for(&yaml, "prod/web");
    assert_eq!(
        policy(&msgs, "first.pass").inbound_rules[0].action,
        "next-tier"
    );
    assert_eq!(policy(&msgs, "first.pass").inbound_rules[1].action, "deny");
    assert_eq!(
        tiers(&msgs)[1],
        "default(Deny): GlobalNetworkPolicy//allow-get StagedGlobalNetworkPolicy//staged StagedNetworkPolicy/prod/staged-ns"
    );
    let get = |path: &str| format!(r#"{{"http":{{"method":"GET","path":"{path}"}}}}"#);
    assert_eq!(decide(&msgs, &get("/public/x")), "allow allow-get");
    assert_eq!(decide(&msgs, &get("/private")), "policy_denied ");
    // Everything TCP passes to the next tier (Calico allows HTTP matches on Allow rules
    // only), where nothing allows a POST.
    assert_eq!(
        decide(&msgs, r#"{"http":{"method":"POST","path":"/"}}"#),
        "policy_denied "
    );
}

#[test]
fn service_accounts_protocols_and_http() {
    let yaml = np("prod", "p", "  selector: all()\n  serviceAccountSelector: role == 'frontend'\n  ingress:\n    - action: Allow\n      protocol: 6\n      notProtocol: UDP\n      source:\n        serviceAccounts: {names: [api], selector: has(x)}\n      http: {methods: [GET, PUT]}\n    - action: Allow\n      protocol: ICMP\n      icmp: {type: 8, code: 0}\n      notICMP: {type: 3}\n");
    let msgs = compile_for(&yaml, "prod/web");
    let r = policy(&msgs, "p").inbound_rules;
    assert_eq!(
        r[0].src_service_account_match,
        Some(w::ServiceAccountMatch {
            selector: "has(x)".into(),
            names: vec!["api".into()]
        })
    );
    assert_eq!(
        ipset(&msgs, &r[0].src_ip_set_ids[0]).1,
        Vec::<String>::new(),
        "api has no label x"
    );
    assert_eq!(
        r[0].protocol.as_ref().unwrap().number_or_name,
        Some(w::protocol::NumberOrName::Number(6))
    );
    assert_eq!(
        r[0].not_protocol.as_ref().unwrap().number_or_name,
        Some(w::protocol::NumberOrName::Name("udp".into()))
    );
    assert_eq!(
        r[0].http_match.as_ref().unwrap().methods,
        vec!["GET", "PUT"]
    );
    assert!(r[1].icmp.is_some() && r[1].not_icmp.is_some());
    // serviceAccountSelector: prod/api's account has no role label.
    assert!(endpoint(&compile_for(&yaml, "prod/api")).tiers.is_empty());
}

#[test]
fn glob_and_template_paths_extension() {
    let yaml = gnp("paths", "  selector: all()\n  ingress:\n    - action: Allow\n      http:\n        paths:\n          - glob: /api/*/items/**\n          - template: /accounts/{id}/summary\n");
    let msgs = compile_for(&yaml, "prod/web");
    let request = |path: &str| format!(r#"{{"http":{{"method":"GET","path":"{path}"}}}}"#);
    for (path, want) in [
        ("/api/v1/items/7/x", "allow paths"),
        ("/api/v1/extra/items/7", "policy_denied "),
        ("/accounts/42/summary?x=1", "allow paths"),
        ("/accounts/42/../43/summary", "allow paths"),
        ("/accounts/42/detail", "policy_denied "),
    ] {
        assert_eq!(decide(&msgs, &request(path)), want, "{path}");
    }
}

#[test]
fn validation_errors_name_file_line_resource_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "# comment\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: bad\nspec:\n  selector: app == 'x' &&\n",
            "f.yaml:8: GlobalNetworkPolicy bad: spec.selector: bad selector \"app == 'x' &&\" at position",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: typo\nspec:\n  ingress:\n    - action: Allow\n      sorce: {}\n",
            "f.yaml:8: GlobalNetworkPolicy typo: spec.ingress[0].sorce: unknown field",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: eg\n  namespace: prod\nspec:\n  egress:\n    - action: Allow\n      http:\n        methods: [GET]\n",
            "f.yaml:9: NetworkPolicy prod/eg: spec.egress[0].http: not allowed in egress rules",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      http:\n        paths:\n          - exact: foo\n",
            "f.yaml:10: GlobalNetworkPolicy p: spec.ingress[0].http.paths[0].exact: Invalid path \"foo\" (must start with `/`",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      http:\n        paths:\n          - glob: /api/[v\n",
            "f.yaml:10: GlobalNetworkPolicy p: spec.ingress[0].http.paths[0].glob: bad glob \"/api/[v\"",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      http:\n        paths:\n          - template: /accounts/{id\n",
            "f.yaml:10: GlobalNetworkPolicy p: spec.ingress[0].http.paths[0].template: bad route template \"/accounts/{id\"",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      http:\n        paths:\n          - {glob: /a/*, prefix: /a}\n",
            "f.yaml:10: GlobalNetworkPolicy p: spec.ingress[0].http.paths[0]: Invalid path match: exactly one of exact, prefix",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      http:\n        methods: [GET, POST, GET]\n",
            "GlobalNetworkPolicy p: spec.ingress[0].http.methods[2]: Invalid methods (duplicates): \"GET\"",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: allow\n",
            "f.yaml:7: GlobalNetworkPolicy p: spec.ingress[0].action: must be Allow, Deny, Log or Pass, not \"allow\"",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  tier: missing\n",
            "GlobalNetworkPolicy p: spec.tier: tier \"missing\" is not defined",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      destination: {ports: [80]}\n",
            "f.yaml:8: GlobalNetworkPolicy p: spec.ingress[0].destination.ports: rules with numeric port or port range must set protocol to TCP or UDP or SCTP",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      source: {nets: [10.0.0.0/33]}\n",
            "f.yaml:8: GlobalNetworkPolicy p: spec.ingress[0].source.nets[0]: invalid CIDR \"10.0.0.0/33\"",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h\n",
            "f.yaml:2: HostEndpoint h: kind: unsupported projectcalico.org/v3 kind",
        ),
        ("a: [1\n", "f.yaml:2: not valid YAML"),
        (
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: w\nspec:\n  ipNetworks: [nope]\n",
            "f.yaml:6: WorkloadEndpoint default/w: spec.ipNetworks[0]: \"nope\" is not an IP address or CIDR",
        ),
    ];
    for (yaml, want) in cases {
        let problems = load_texts(&[("f.yaml", yaml)]).expect_err(yaml);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t.contains(want)),
            "want {want:?}\ngot {text:#?}"
        );
    }
}

/// D10: a path value (exact, prefix, glob, template) that fails normalisation or is ambiguous
/// would match no request: it is a problem at its own line naming the value and why (stricter
/// than calicoctl, which accepts such exact and prefix values).
#[test]
fn path_values_that_do_not_normalise_are_errors() {
    let head = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      http:\n        paths:\n";
    // (entry at line 10, expected note, expected problem)
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("exact: /admin/..%3B", None, Some("f.yaml:10: GlobalNetworkPolicy p: spec.ingress[0].http.paths[0].exact: path \"/admin/..%3B\" does not normalise: segment 1 is ambiguous")),
        ("prefix: /a%252f", None, Some("f.yaml:10: GlobalNetworkPolicy p: spec.ingress[0].http.paths[0].prefix: path \"/a%252f\" does not normalise: double percent-encoding")),
        ("prefix: /x/..%2Fy", None, Some("spec.ingress[0].http.paths[0].prefix: path \"/x/..%2Fy\" does not normalise: segment 1 is ambiguous")),
        ("exact: /public%2F..%2Fadmin", None, Some("paths[0].exact: path \"/public%2F..%2Fadmin\" does not normalise: segment 0 is ambiguous")),
        ("exact: '/a/..%5c'", None, Some("paths[0].exact: path \"/a/..%5c\" does not normalise: segment 1 is ambiguous")),
        ("exact: /a%zz", None, Some("paths[0].exact: path \"/a%zz\" does not normalise: bad percent-encoding at byte 2")),
        ("prefix: /a%00b", None, Some("paths[0].prefix: path \"/a%00b\" does not normalise: NUL byte in path")),
        ("glob: /admin/..%3B/**", None, Some("f.yaml:10: GlobalNetworkPolicy p: spec.ingress[0].http.paths[0].glob: pattern \"/admin/..%3B/**\" does not normalise: segment 1 is ambiguous")),
        ("glob: /a%252f/*", None, Some("paths[0].glob: pattern \"/a%252f/*\" does not normalise: double percent-encoding")),
        ("template: /x/..%2F{id}", None, Some("paths[0].template: pattern \"/x/..%2F{id}\" does not normalise: segment 1 is ambiguous")),
        ("exact: foo", None, Some("f.yaml:10: GlobalNetworkPolicy p: spec.ingress[0].http.paths[0].exact: Invalid path \"foo\" (must start with `/`")),
        ("exact: /a b", None, Some("paths[0].exact: Invalid path \"/a b\"")),
        // Valid: escapes that stay encoded, dot segments that resolve, parameters, a trailing `/`.
        ("exact: /a%2Fb", None, None),
        ("prefix: /public/../admin", None, None),
        ("exact: /public/..;x/admin", None, None),
        ("prefix: /foo/", None, None),
        ("exact: /%70ublic", None, None),
        ("glob: /api/./v1/**", Some("glob paths are this project's extension"), None),
        ("template: /accounts/{id}/summary", Some("template paths are this project's extension"), None),
    ];
    for (entry, note, problem) in cases {
        let yaml = format!("{head}          - {entry}\n");
        match (load_texts(&[("f.yaml", &yaml)]), problem) {
            (Ok(set), None) => {
                let notes: Vec<String> = set.notes.iter().map(ToString::to_string).collect();
                match note {
                    None => assert!(notes.is_empty(), "{entry}: {notes:#?}"),
                    Some(want) => assert!(
                        notes.len() == 1 && notes[0].contains(want),
                        "{entry}: want {want:?}\ngot {notes:#?}"
                    ),
                }
            }
            (Err(problems), Some(want)) => {
                let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
                assert_eq!(text.len(), 1, "{entry}: {text:#?}");
                assert!(
                    text[0].contains(want),
                    "{entry}: want {want:?}\ngot {text:#?}"
                );
            }
            (result, _) => panic!("{entry}: {result:#?}"),
        }
    }
    // Each entry is reported at its own line, in a document that is not the file's first.
    let yaml = format!("# policies\n---\n{head}          - exact: /ok\n          - prefix: /x/..%2Fy\n          - exact: /admin/..%3B\n");
    let problems = load_texts(&[("f.yaml", &yaml)]).unwrap_err();
    let found: Vec<(usize, Option<&str>)> = problems
        .iter()
        .map(|p| (p.line, p.field.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (13, Some("spec.ingress[0].http.paths[1].prefix")),
            (14, Some("spec.ingress[0].http.paths[2].exact"))
        ]
    );
}

#[test]
fn every_problem_is_reported() {
    let yaml = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\nspec:\n  selector: '!!'\n  ingress: [{action: Nope}]\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {defaultAction: Allow}\n";
    let problems = load_texts(&[("f.yaml", yaml)]).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_eq!(problems[2].line, 11);
}

/// The tutorial's own YAML, verbatim, with the inventory: the same decisions as the hand-written
/// Felix updates in envoy/yaobank/*.jsonl, on a grid of requests.
#[test]
fn yaobank_round_trip_matches_hand_written_updates() {
    let apps = alp_engine::testdata::shared_file("examples/yaobank/10-yaobank.yaml")
        .expect("yaobank apps");
    let policy = alp_engine::testdata::shared_file("examples/yaobank/30-policy.yaml")
        .expect("yaobank policy");
    let set = load_texts(&[
        ("10-yaobank.yaml", &apps),
        ("30-policy.yaml", &policy),
        ("workloads.yaml", YAOBANK_WORKLOADS),
    ])
    .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(set.policies.len(), 3);
    assert_eq!(set.service_accounts.len(), 3);
    let peers = [
        ("customer", "127.0.10.1"),
        ("summary", "127.0.10.2"),
        ("database", "127.0.10.3"),
        ("", "127.0.10.1"),
        ("", "127.0.10.2"),
        ("", "10.1.1.1"),
        ("", ""),
    ];
    let mut compared = 0;
    for app in ["customer", "summary", "database"] {
        let hand = alp_felix::updates::parse_updates(
            &std::fs::read_to_string(format!(
                "{}/../../envoy/yaobank/{app}.jsonl",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let ours = compile(&set, "default", app).unwrap();
        let (hand, ours) = (
            alp_felix::engine_from_updates(&hand),
            alp_felix::engine_from_updates(&ours),
        );
        for (sa, addr) in peers {
            for method in ["GET", "POST"] {
                for http in [true, false] {
                    let principal = if sa.is_empty() {
                        String::new()
                    } else {
                        format!("spiffe://cluster.local/ns/default/sa/{sa}")
                    };
                    let mut req = serde_json::json!({"source": {"principal": principal}});
                    if !addr.is_empty() {
                        req["source"]["address"] = addr.into();
                    }
                    if http {
                        req["http"] = serde_json::json!({"method": method, "path": "/"});
                    }
                    let spec: RequestSpec = serde_json::from_value(req.clone()).unwrap();
                    let a = hand.explain(&hand.decide(&spec.request()));
                    let b = ours.explain(&ours.decide(&spec.request()));
                    assert_eq!(
                        (a.reason, a.tier, a.policy.map(|p| p.name), a.rule),
                        (b.reason, b.tier, b.policy.map(|p| p.name), b.rule),
                        "{app} {req}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 3 * 7 * 4);
}

/// `-` is standard input; a caller that reloads passes the text it read once.
#[test]
fn standard_input_is_a_path() {
    let yaml = gnp("from-stdin", "  selector: all()\n");
    let set = crate::load_paths_with(&[std::path::PathBuf::from("-")], Some(&yaml)).unwrap();
    assert_eq!(set.policies[0].name, "from-stdin");
    let problems =
        crate::load_paths_with(&[std::path::PathBuf::from("-")], Some("kind: [\n")).unwrap_err();
    assert_eq!(problems[0].file, "<stdin>");
}

//! Calico's verdict, case by case: the shared conformance cases (Calico's own validator, CRD and
//! CEL tests turned into YAML), every policy file of Calico's repository and documentation in
//! the shared examples, and this crate's own ports of Calico's rules. Each goes through
//! `load_texts_all`, what `control validate` runs on the files it reads. The shared data is read
//! at run time.

use alp_calico::{load_texts_all, Problem};
use alp_engine::testdata::shared_file;
use serde_json::Value;

fn shared_json(path: &str) -> Value {
    let text = shared_file(path).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn problems(name: &str, yaml: &str) -> Vec<Problem> {
    load_texts_all(&[(name, yaml)]).1
}

fn show(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_shared_case_gets_calicos_verdict() {
    let cases = shared_json("conformance/calico_validation.json");
    let cases = cases.as_array().expect("a list of cases");
    assert!(cases.len() >= 149, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for case in cases {
        let id = case["id"].as_str().expect("id");
        let yaml = case["yaml"].as_str().expect("yaml");
        let expect = case["expect"].as_str().expect("expect");
        let found = problems(&format!("{id}.yaml"), yaml);
        let got = if found.is_empty() { "valid" } else { "invalid" };
        if got != expect {
            wrong.push(format!(
                "{id} ({}): Calico says {expect}, we say {got}\n{}",
                case["description"].as_str().unwrap_or_default(),
                show(&found)
            ));
        }
        for p in &found {
            // FILE:LINE, the resource and the field are named.
            assert!(
                p.line > 0 && p.resource.is_some() && !p.message.is_empty(),
                "{id}: {p}"
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} disagreements:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_calico_example_validates() {
    let index = shared_json("examples/calico-docs/INDEX.json");
    let index = index.as_array().expect("a list of files");
    assert_eq!(index.len(), 72);
    for entry in index {
        let file = entry["file"].as_str().expect("file");
        let text =
            shared_file(&format!("examples/calico-docs/{file}")).unwrap_or_else(|e| panic!("{e}"));
        let (set, found) = load_texts_all(&[(file, &text)]);
        assert!(found.is_empty(), "{file}:\n{}", show(&found));
        assert!(
            !set.policies.is_empty() || !set.tiers.is_empty(),
            "{file}: nothing loaded"
        );
    }
}

/// A GlobalNetworkPolicy with one ingress rule whose body is `rule` (indented under `- `).
fn gnp_rule(rule: &str) -> String {
    let body: String = rule
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("  - {l}\n")
            } else {
                format!("    {l}\n")
            }
        })
        .collect();
    format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n{body}")
}

fn gnp_spec(spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n{spec}")
}

fn np_spec(spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: ns\nspec:\n{spec}")
}

fn resource(kind: &str, metadata: &str, spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata:\n{metadata}spec:\n{spec}")
}

/// This crate's ports of Calico's tables (libcalico-go `validator_test.go`, the CRD/CEL
/// envtests, numorstring, calicoctl's decoding): `(what, yaml, valid, a fragment of the
/// problem when invalid)`.
#[test]
fn ported_rules() {
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, String, bool, &str)> = vec![
        // Namespaces: a Kubernetes namespace name (DNS-1123 label).
        ("namespace ok", resource("NetworkPolicy", "  name: p\n  namespace: team-a1\n", "  selector: all()\n"), true, ""),
        ("namespace upper case", resource("NetworkPolicy", "  name: p\n  namespace: Team\n", "  selector: all()\n"), false, "namespace \"Team\" must be"),
        ("namespace with a dot", resource("NetworkPolicy", "  name: p\n  namespace: a.b\n", "  selector: all()\n"), false, "metadata.namespace"),
        ("namespace too long", resource("NetworkPolicy", &format!("  name: p\n  namespace: {}\n", long(64)), "  selector: all()\n"), false, "at most 63"),
        // Actions.
        ("deny", gnp_rule("action: Deny"), true, ""),
        ("log", gnp_rule("action: Log"), true, ""),
        ("lower-case allow", gnp_rule("action: allow"), false, "must be Allow, Deny, Log or Pass"),
        ("no action", gnp_rule("protocol: TCP"), false, "action: is required"),
        // IP version.
        ("ipVersion 6", gnp_rule("action: Allow\nipVersion: 6"), true, ""),
        ("ipVersion 0", gnp_rule("action: Allow\nipVersion: 0"), false, "must be 4 or 6"),
        ("ipVersion string", gnp_rule("action: Allow\nipVersion: '4'"), false, "must be an integer"),
        // Protocols.
        ("UDPLite", gnp_rule("action: Allow\nprotocol: UDPLite"), true, ""),
        ("255", gnp_rule("action: Allow\nprotocol: 255"), true, ""),
        ("'255'", gnp_rule("action: Allow\nprotocol: '255'"), true, ""),
        ("0", gnp_rule("action: Allow\nprotocol: 0"), false, "protocol number invalid"),
        ("256", gnp_rule("action: Allow\nprotocol: 256"), false, "out of range"),
        ("'256'", gnp_rule("action: Allow\nprotocol: '256'"), false, "protocol name invalid"),
        ("tcpfoo", gnp_rule("action: Allow\nprotocol: tcpfoo"), false, "protocol name invalid"),
        ("icmpv6 lower", gnp_rule("action: Allow\nnotProtocol: icmpv6"), false, "protocol name invalid"),
        // Ports against protocols.
        ("ports with 6", gnp_rule("action: Allow\nprotocol: 6\nsource: {ports: [1]}"), true, ""),
        ("ports with '17'", gnp_rule("action: Allow\nprotocol: '17'\ndestination: {ports: ['1:2']}"), true, ""),
        ("ports with 132", gnp_rule("action: Allow\nprotocol: 132\ndestination: {notPorts: [5]}"), true, ""),
        ("named with 6", gnp_rule("action: Allow\nprotocol: 6\nsource: {ports: [foo]}"), true, ""),
        ("named with UDP", gnp_rule("action: Allow\nprotocol: UDP\nsource: {ports: [foo]}"), true, ""),
        ("named without protocol", gnp_rule("action: Allow\ndestination: {ports: [http]}"), true, ""),
        ("not named without protocol", gnp_rule("action: Allow\nsource: {notPorts: [http]}"), true, ""),
        ("empty ports with 7", gnp_rule("action: Allow\nprotocol: 7\nsource: {ports: []}"), true, ""),
        ("ports with 7", gnp_rule("action: Allow\nprotocol: 7\nsource: {ports: [1]}"), false, "must set protocol to TCP or UDP or SCTP"),
        ("named with ICMP", gnp_rule("action: Allow\nprotocol: ICMP\ndestination: {ports: [http]}"), false, "rules that specify ports must set protocol"),
        ("named with unknown", gnp_rule("action: Allow\nprotocol: unknown\ndestination: {notPorts: [foo]}"), false, "rules that specify ports must set protocol"),
        ("mixed without protocol", gnp_rule("action: Allow\ndestination: {ports: [http, 80]}"), false, "numeric port or port range must set protocol"),
        ("range from 0", gnp_rule("action: Allow\nprotocol: TCP\ndestination: {ports: ['0:100']}"), false, "port number must be between 1 and 65535"),
        ("port -1", gnp_rule("action: Allow\nprotocol: TCP\ndestination: {ports: [-1]}"), false, "out of range"),
        ("port 80.5", gnp_rule("action: Allow\nprotocol: TCP\ndestination: {ports: [80.5]}"), false, "must be a port number"),
        ("range to 65536", gnp_rule("action: Allow\nprotocol: TCP\ndestination: {ports: ['1:65536']}"), false, "invalid maximum port number"),
        ("port name upper case", gnp_rule("action: Allow\nprotocol: TCP\ndestination: {ports: [Http]}"), false, "invalid port name"),
        ("port name digits", gnp_rule("action: Allow\nprotocol: TCP\ndestination: {ports: ['1000-2000']}"), false, "at least one letter"),
        ("port name too long", gnp_rule("action: Allow\nprotocol: TCP\ndestination: {ports: [abcdefghijklmnop]}"), false, "no more than 15"),
        ("port name bad character", gnp_rule("action: Allow\nprotocol: TCP\ndestination: {ports: ['a b']}"), false, "invalid name for named port"),
        ("51 ports", gnp_rule(&format!("action: Allow\nprotocol: TCP\ndestination: {{ports: [{}]}}", (1..=51).map(|n| n.to_string()).collect::<Vec<_>>().join(", "))), false, "at most 50 items"),
        // ICMP.
        ("ICMP type 254", gnp_rule("action: Allow\nprotocol: ICMP\nicmp: {type: 254}"), true, ""),
        ("ICMP type 255", gnp_rule("action: Allow\nprotocol: ICMP\nicmp: {type: 255}"), false, "between 0 and 254"),
        ("ICMP code 255", gnp_rule("action: Allow\nprotocol: ICMP\nicmp: {type: 3, code: 255}"), true, ""),
        ("ICMP code without type", gnp_rule("action: Allow\nprotocol: ICMP\nicmp: {code: 3}"), false, "ICMP code specified without an ICMP type"),
        ("notICMP code without type", gnp_rule("action: Allow\nnotICMP: {code: 3}"), false, "ICMP code specified without an ICMP type"),
        ("ICMP by number 58", gnp_rule("action: Allow\nprotocol: 58\nicmp: {type: 128}"), true, ""),
        ("ICMP without protocol", gnp_rule("action: Allow\nicmp: {type: 8}"), false, "ICMP fields require protocol to be ICMP or ICMPv6"),
        ("ICMP with TCP", gnp_rule("action: Allow\nprotocol: TCP\nicmp: {type: 8}"), false, "ICMP fields require protocol"),
        ("ICMP with ipVersion 6", gnp_rule("action: Allow\nprotocol: ICMP\nipVersion: 6"), false, "protocol ICMP requires ipVersion 4"),
        ("protocol 1 with ipVersion 6", gnp_rule("action: Allow\nprotocol: 1\nipVersion: 6"), false, "protocol ICMP requires ipVersion 4"),
        ("ICMPv6 with ipVersion 6", gnp_rule("action: Allow\nprotocol: ICMPv6\nipVersion: 6\nicmp: {type: 128, code: 0}"), true, ""),
        ("notProtocol ICMPv6 with ipVersion 4", gnp_rule("action: Allow\nnotProtocol: ICMPv6\nipVersion: 4"), false, "protocol ICMPv6 requires ipVersion 6"),
        // Nets.
        ("v6 nets", gnp_rule("action: Allow\nsource: {nets: ['aabb:aabb::/32']}\ndestination: {notNets: ['aabb::/16']}"), true, ""),
        ("host bits", gnp_rule("action: Allow\nsource: {nets: [10.0.0.1/8]}"), false, "host bits set"),
        ("bad net", gnp_rule("action: Allow\nsource: {nets: [10.0.0.0/33]}"), false, "invalid CIDR"),
        ("mixed in one list", gnp_rule("action: Allow\nsource: {nets: [10.0.0.0/8, 'fd00::/8']}"), false, "both IPv4 and IPv6"),
        ("v6 src, v4 dst", gnp_rule("action: Allow\nsource: {nets: ['fd00::/8']}\ndestination: {notNets: [10.0.0.0/8]}"), false, "both IPv4 and IPv6"),
        ("ipVersion 6 with v4 dst", gnp_rule("action: Allow\nipVersion: 6\ndestination: {nets: [10.0.0.0/8]}"), false, "rule IP version doesn't match CIDR version"),
        ("ipVersion 4 with v4", gnp_rule("action: Allow\nipVersion: 4\ndestination: {nets: [10.0.0.0/8]}"), true, ""),
        ("catch-all v6 notNets", gnp_rule("action: Allow\nsource: {notNets: ['::/0']}"), false, "catch-all CIDR in negation"),
        ("catch-all v6 notNets, long form", gnp_rule("action: Allow\nsource: {notNets: ['0:0:0::/0']}"), false, "catch-all CIDR in negation"),
        ("global() and a name selector in two rules", gnp_spec("  ingress:\n  - action: Allow\n    source: {namespaceSelector: global()}\n  - action: Allow\n    source: {namespaceSelector: \"projectcalico.org/name == 'test'\"}\n"), true, ""),
        ("global() or'd in namespaceSelector", gnp_rule("action: Allow\nsource: {namespaceSelector: 'global() || all()'}"), false, "global() cannot be combined"),
        ("catch-all in nets", gnp_rule("action: Allow\nsource: {nets: [0.0.0.0/0]}"), true, ""),
        ("duplicate nets", gnp_rule("action: Allow\nsource: {nets: [10.0.0.0/8, 10.0.0.0/8]}"), false, "duplicate value"),
        // Selectors.
        ("bad entity selector", gnp_rule("action: Allow\nsource: {selector: 'thing=hello &'}"), false, "bad selector"),
        ("global() in notSelector", gnp_rule("action: Allow\nsource: {notSelector: global()}"), true, ""),
        ("global() combined in namespaceSelector", gnp_rule("action: Allow\nsource: {namespaceSelector: 'global() && a == \"b\"'}"), false, "global() cannot be combined with other selectors"),
        ("negated global() namespaceSelector", gnp_rule("action: Allow\nsource: {namespaceSelector: '!global()'}"), false, "global() cannot be combined"),
        ("global( ) namespaceSelector", gnp_rule("action: Allow\nsource: {namespaceSelector: 'global( )'}"), true, ""),
        ("global( in a string", gnp_rule("action: Allow\nsource: {selector: 'a == \"global(\"'}"), false, "global() can only be used"),
        ("selector of 1025", gnp_spec(&format!("  selector: a == '{}'\n", long(1018))), false, "longer than 1024"),
        ("selector of 1024", gnp_spec(&format!("  selector: a == '{}'\n", long(1017))), true, ""),
        ("all( ) selector", gnp_spec("  selector: 'all( )'\n"), true, ""),
        ("spec selector global()", gnp_spec("  selector: global()\n"), false, "global() can only be used"),
        // HTTP.
        ("http with TCP by number", gnp_rule("action: Allow\nprotocol: 6\nhttp: {methods: [GET]}"), true, ""),
        ("http with Pass", gnp_rule("action: Pass\nhttp: {methods: [GET]}"), false, "HTTP match is only valid on Allow rules"),
        ("http with UDP", gnp_rule("action: Allow\nprotocol: UDP\nhttp: {paths: [{prefix: /}]}"), false, "rules with HTTP match must have protocol TCP or unset"),
        ("http exact and prefix", gnp_rule("action: Allow\nhttp: {paths: [{exact: /a, prefix: /b}]}"), false, "Invalid path match"),
        ("http empty path", gnp_rule("action: Allow\nhttp: {paths: [{}]}"), false, "Either 'exact' or 'prefix' must be set"),
        ("http path with space", gnp_rule("action: Allow\nhttp: {paths: [{prefix: '/a b'}]}"), false, "Invalid path"),
        ("http path without /", gnp_rule("action: Allow\nhttp: {paths: [{exact: a}]}"), false, "must start with"),
        ("duplicate methods", gnp_rule("action: Allow\nhttp: {methods: [GET, GET]}"), false, "Invalid methods (duplicates)"),
        ("21 methods", gnp_rule(&format!("action: Allow\nhttp: {{methods: [{}]}}", (0..21).map(|n| format!("M{n}")).collect::<Vec<_>>().join(", "))), false, "at most 20 items"),
        ("http path of 1025", gnp_rule(&format!("action: Allow\nhttp: {{paths: [{{prefix: /{}}}]}}", long(1024))), false, "longer than 1024"),
        // Rule metadata.
        ("rule annotation key ...", gnp_rule("action: Allow\nmetadata: {annotations: {'...': bar}}"), false, "annotation key"),
        ("rule annotation upper case", gnp_rule("action: Allow\nmetadata: {annotations: {Foo/Bar: x}}"), true, ""),
        // Service matches.
        ("service needs a name", np_spec("  egress:\n  - action: Allow\n    destination:\n      services: {namespace: default}\n"), false, "services must specify a service name"),
        ("service with selector", np_spec("  egress:\n  - action: Allow\n    destination:\n      selector: a == 'b'\n      services: {name: s}\n"), false, "cannot specify Selector/NotSelector and Services"),
        ("service with dst ports", np_spec("  egress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [80]\n      services: {name: s}\n"), false, "ports and notPorts cannot be specified with services"),
        ("service in egress source", np_spec("  egress:\n  - action: Allow\n    source:\n      services: {name: s}\n"), false, "not allowed in egress rule source"),
        ("GNP service without namespace", gnp_spec("  egress:\n  - action: Allow\n    destination:\n      services: {name: s}\n"), false, "must specify a namespace"),
        ("NP service without namespace", np_spec("  ingress:\n  - action: Allow\n    source:\n      services: {name: s}\n"), true, ""),
        ("service bad name", np_spec("  ingress:\n  - action: Allow\n    source:\n      services: {name: S_1}\n"), false, "lower case alphanumeric"),
        // Spec fields.
        ("types repeated", gnp_spec("  types: [Ingress, Ingress]\n"), false, "'Ingress' type specified more than once"),
        ("types bad", gnp_spec("  types: [ingress]\n"), false, "must be Ingress or Egress"),
        ("types three", gnp_spec("  types: [Ingress, Egress, Egress]\n"), false, "at most 2 items"),
        ("egress only defaults to Egress", gnp_spec("  preDNAT: true\n  applyOnForward: true\n  ingress: [{action: Allow}]\n"), true, ""),
        ("doNotTrack without applyOnForward", gnp_spec("  doNotTrack: true\n"), false, "applyOnForward must be true"),
        ("preDNAT with Egress type", gnp_spec("  preDNAT: true\n  applyOnForward: true\n  types: [Egress]\n"), false, "preDNAT policy cannot have 'Egress' type"),
        ("applyOnForward alone", gnp_spec("  applyOnForward: true\n"), true, ""),
        ("duplicate hints", gnp_spec("  performanceHints: [AssumeNeededOnEveryNode, AssumeNeededOnEveryNode]\n"), false, "duplicate value"),
        ("hint", np_spec("  performanceHints: [AssumeNeededOnEveryNode]\n"), true, ""),
        ("order as a string", gnp_spec("  order: '10'\n"), false, "must be a number"),
        ("order float", gnp_spec("  order: 10.5\n"), true, ""),
        ("preDNAT on a NetworkPolicy", np_spec("  preDNAT: true\n"), false, "unknown field"),
        ("stagedAction on a GNP", gnp_spec("  stagedAction: Set\n"), false, "unknown field"),
        ("tier with upper case", gnp_spec("  tier: Sec\n"), false, "tier name"),
        // Decoding.
        ("unknown top-level field", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nstatus: {}\n".into(), false, "status: unknown field"),
        ("unknown metadata field", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p, lables: {}}\n".into(), false, "metadata.lables: unknown field"),
        ("kubectl metadata", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\n  uid: 0a\n  resourceVersion: '1'\n  generation: 2\n  creationTimestamp: '2024-01-01T00:00:00Z'\n  annotations: {a/b: c}\n  finalizers: [x]\n  managedFields: []\n".into(), true, ""),
        ("field case ignored as Go does", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  Selector: all()\n  INGRESS: [{ACTION: Allow}]\n".into(), true, ""),
        ("boolean as a string", gnp_spec("  applyOnForward: 'true'\n"), false, "must be a boolean"),
        ("number label value", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\n  labels: {version: 1}\n".into(), true, ""),
        ("duplicate keys", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  order: 1\n  order: 2\n".into(), false, "duplicate"),
        // Names, labels, annotations.
        ("GNP name with one dot", gnp_spec("").replace("name: p", "name: tier.p"), true, ""),
        ("GNP name with two dots", gnp_spec("").replace("name: p", "name: a.b.c"), false, "at most one '.'"),
        ("GNP name upper case", gnp_spec("").replace("name: p", "name: P"), false, "lower case"),
        ("GNP name 254", gnp_spec("").replace("name: p", &format!("name: {}", long(254))), false, "too long by 1 bytes"),
        ("NP name two dots", np_spec("").replace("name: p", "name: a.b.c"), false, "at most one '.'"),
        ("NP knp.default", np_spec("").replace("name: p", "name: knp.default.a.b"), true, ""),
        ("NP name 254", np_spec("").replace("name: p", &format!("name: {}", long(254))), false, "too long"),
        ("label value 64", resource("GlobalNetworkPolicy", &format!("  name: p\n  labels: {{a: {}}}\n", long(64)), ""), false, "no more than 63"),
        ("label key upper-case domain", resource("GlobalNetworkPolicy", "  name: p\n  labels: {Projectcalico.org/a: b}\n", ""), false, "label key"),
        ("annotation key upper-case domain", resource("GlobalNetworkPolicy", "  name: p\n  annotations: {Projectcalico.org/a: b}\n", ""), true, ""),
        ("annotation key bad", resource("GlobalNetworkPolicy", "  name: p\n  annotations: {'a/b/c': b}\n", ""), false, "annotation key"),
        ("annotations over 256 KiB", resource("GlobalNetworkPolicy", &format!("  name: p\n  annotations: {{key: {}}}\n", long(256 * 1024)), ""), false, "too large by 3 bytes"),
        ("namespace on a GNP", resource("GlobalNetworkPolicy", "  name: p\n  namespace: x\n", ""), false, "namespace should not be specified"),
        // Tiers.
        ("tier name with a dot", resource("Tier", "  name: a.b\n", "  order: 1\n"), false, "regex"),
        ("tier name 64", resource("Tier", &format!("  name: {}\n", long(64)), "  order: 1\n"), false, "too long by 1 bytes"),
        ("default tier", resource("Tier", "  name: default\n", "  order: 1000000\n"), true, ""),
        ("default tier without order", resource("Tier", "  name: default\n", "  defaultAction: Deny\n"), false, "default tier order must be 1000000"),
        ("default tier Pass", resource("Tier", "  name: default\n", "  order: 1000000\n  defaultAction: Pass\n"), false, "must have default action 'Deny'"),
        ("kube-admin default Deny", resource("Tier", "  name: kube-admin\n", "  order: 1000\n"), false, "must have default action 'Pass'"),
        ("kube-admin", resource("Tier", "  name: kube-admin\n", "  order: 1000\n  defaultAction: Pass\n"), true, ""),
        ("tier without order", resource("Tier", "  name: t\n", ""), true, ""),
        // Staged.
        ("staged Delete", resource("StagedGlobalNetworkPolicy", "  name: p\n", "  stagedAction: Delete\n  types: [Ingress]\n"), true, ""),
        ("staged Delete with empty rules", resource("StagedGlobalNetworkPolicy", "  name: p\n", "  stagedAction: Delete\n  ingress: []\n"), false, "zero-value if stagedAction is Delete"),
        ("staged Delete with order", resource("StagedNetworkPolicy", "  name: p\n  namespace: n\n", "  stagedAction: Delete\n  order: 1\n"), false, "zero-value"),
        ("staged Delete, k8s name", resource("StagedNetworkPolicy", "  name: knp.default.thing\n  namespace: n\n", "  stagedAction: Delete\n"), true, ""),
        ("staged Delete, mixed case name", resource("StagedNetworkPolicy", "  name: tHiNg\n  namespace: n\n", "  stagedAction: Delete\n"), false, "lower case"),
        ("staged Delete, tier only", resource("Tier", "  name: eng\n", "  order: 1\n") + "---\n" + &resource("StagedNetworkPolicy", "  name: eng.thing\n  namespace: n\n", "  stagedAction: Delete\n  tier: eng\n  selector: ''\n"), true, ""),
        ("staged Ignore", resource("StagedNetworkPolicy", "  name: p\n  namespace: n\n", "  stagedAction: Ignore\n  selector: all()\n"), true, ""),
        ("staged lower-case set", resource("StagedNetworkPolicy", "  name: p\n  namespace: n\n", "  stagedAction: set\n"), false, "must be Set, Delete, Learn or Ignore"),
        ("staged GNP preDNAT", resource("StagedGlobalNetworkPolicy", "  name: p\n", "  preDNAT: true\n"), false, "applyOnForward must be true"),
    ];
    let mut wrong = Vec::new();
    for (what, yaml, valid, fragment) in &cases {
        let found = problems("case.yaml", yaml);
        let text = show(&found);
        let ok = if *valid {
            found.is_empty()
        } else {
            !found.is_empty() && text.contains(fragment)
        };
        if !ok {
            wrong.push(format!(
                "{what}: want {}{fragment}\n{yaml}\ngot:\n{text}",
                if *valid { "valid" } else { "invalid: " }
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}

/// `List` documents, as `calicoctl get -o yaml` and `kubectl get -o yaml` print them, and YAML
/// sequences of resources: each item is a resource, its problems at its own lines.
#[test]
fn lists_of_resources() {
    let yaml = "\
apiVersion: projectcalico.org/v3
items:
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkPolicy
  metadata:
    name: a
    resourceVersion: '7'
  spec:
    selector: all()
    types: [Ingress]
- metadata:
    name: b
  spec:
    ingress:
    - action: Allow
      protocol: TCP
      destination:
        ports: [0]
kind: GlobalNetworkPolicyList
metadata:
  resourceVersion: '8'
---
apiVersion: v1
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: Tier
  metadata: {name: t}
  spec: {order: 5}
- apiVersion: v1
  kind: Namespace
  metadata: {name: ns, labels: {team: a}}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d}
metadata:
  resourceVersion: ''
---
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata: {name: c, namespace: ns}
  spec: {tier: t}
";
    let (set, found) = load_texts_all(&[("l.yaml", yaml)]);
    assert_eq!(found.len(), 1, "{}", show(&found));
    assert_eq!(
        found[0].to_string(),
        "l.yaml:18: GlobalNetworkPolicy b: spec.ingress[0].destination.ports[0]: port range invalid, port number must be between 1 and 65535"
    );
    let names: Vec<String> = set.policies.iter().map(|p| p.qualified_name()).collect();
    assert_eq!(names, ["a", "b", "ns/c"]);
    assert!(set.tiers.contains_key("t"));
    assert_eq!(set.namespaces["ns"]["team"], "a");
    assert_eq!(set.skipped.len(), 1, "{:?}", set.skipped);
    assert!(
        set.skipped[0].starts_with("l.yaml:33 apps/v1 Deployment d"),
        "{:?}",
        set.skipped
    );
    // A typed list holds its own kind only.
    let yaml = "apiVersion: projectcalico.org/v3\nkind: TierList\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkPolicy\n  metadata: {name: x}\n";
    let found = problems("l.yaml", yaml);
    assert!(
        show(&found)
            .contains("l.yaml:5: GlobalNetworkPolicy x: kind: a TierList holds Tier resources"),
        "{}",
        show(&found)
    );
}

//! `control check --policy` and `control validate` end to end on Calico's YAO bank tutorial
//! YAML, verbatim, with the inventory of its three workloads.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const YAOBANK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/examples/yaobank");
const INVENTORY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/calico/tests/data/yaobank-workloads.yaml"
);

fn control(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_control"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("control starts");
    // control may exit on a usage error before reading: a broken pipe is fine.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("control runs")
}

fn request(from: &str, method: &str) -> String {
    let ip = match from {
        "customer" => "127.0.10.1",
        "summary" => "127.0.10.2",
        _ => "127.0.10.3",
    };
    format!(
        r#"{{"source":{{"principal":"spiffe://cluster.local/ns/default/sa/{from}","address":"{ip}"}},"http":{{"method":"{method}","path":"/"}}}}"#
    )
}

#[test]
fn yaobank_six_directions() {
    // (from, to, method, decision, policy)
    let cases = [
        ("customer", "summary", "GET", "allow", "summary"),
        ("summary", "database", "GET", "allow", "database"),
        ("customer", "database", "GET", "deny", ""),
        ("database", "summary", "GET", "deny", ""),
        ("summary", "customer", "GET", "allow", "customer"),
        ("database", "customer", "POST", "deny", ""),
    ];
    for (from, to, method, decision, policy) in cases {
        let workload = format!("default/{to}");
        let out = control(
            &[
                "check",
                "--policy",
                YAOBANK,
                "--policy",
                INVENTORY,
                "--workload",
                &workload,
                "--request",
                "-",
            ],
            &request(from, method),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(line["decision"], decision, "{from} -> {to}: {line}");
        if decision == "allow" {
            assert_eq!(line["policy"]["name"], policy, "{line}");
            assert_eq!(line["tier"], "default");
        } else {
            assert_eq!(
                (line["status"].as_u64(), line["reason"].as_str()),
                (Some(403), Some("policy_denied")),
                "{line}"
            );
        }
    }
}

#[test]
fn check_needs_exactly_one_source_and_a_known_workload() {
    let out = control(
        &[
            "check",
            "--policy",
            YAOBANK,
            "--updates",
            INVENTORY,
            "--workload",
            "default/x",
            "--request",
            "-",
        ],
        "{}",
    );
    assert!(!out.status.success());
    let out = control(&["check", "--policy", YAOBANK, "--request", "-"], "{}");
    assert!(!out.status.success(), "--policy requires --workload");
    let out = control(
        &[
            "check",
            "--policy",
            YAOBANK,
            "--policy",
            INVENTORY,
            "--workload",
            "default/nope",
            "--request",
            "-",
        ],
        "{}",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("no WorkloadEndpoint default/nope")
            && err.contains("default/summary"),
        "{err}"
    );
}

#[test]
fn validate_exit_codes_and_messages() {
    let out = control(&["validate", YAOBANK, INVENTORY], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 3 policies"));

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: app = 'x'\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: q\nspec:\n  egress:\n    - action: Allow\n      http: {paths: [{prefix: x}]}\n",
    )
    .expect("write");
    let out = control(&["validate", bad.to_str().expect("utf-8")], "");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bad.yaml:6: GlobalNetworkPolicy p: spec.selector: bad selector \"app = 'x'\" at position 4"), "{text}");
    assert!(
        text.contains(
            "bad.yaml:15: GlobalNetworkPolicy q: spec.egress[0].http: not allowed in egress rules"
        ),
        "{text}"
    );
    assert!(
        text.contains("prefix: Invalid path \"x\" (must start with `/`"),
        "{text}"
    );

    // D10: an ambiguous path value is an error at its line, naming the value and why.
    std::fs::write(
        &bad,
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      http:\n        paths:\n          - prefix: /admin\n          - exact: /admin/..%3B\n",
    )
    .expect("write");
    let out = control(&["validate", bad.to_str().expect("utf-8")], "");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.yaml:11: GlobalNetworkPolicy p: spec.ingress[0].http.paths[1].exact: path \"/admin/..%3B\" does not normalise: segment 1 is ambiguous"),
        "{text}"
    );
}

/// What `calicoctl get -o yaml` prints (a `GlobalNetworkPolicyList`), read from standard input,
/// with one JSON object per problem.
const LIST: &str = "apiVersion: projectcalico.org/v3\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkPolicy\n  metadata:\n    name: ok\n    resourceVersion: '1'\n  spec:\n    selector: all()\n    types: [Ingress]\n- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkPolicy\n  metadata:\n    name: bad\n  spec:\n    ingress:\n    - action: Allow\n      protocol: 6\n      http: {methods: [GET]}\n    - action: Deny\n      destination: {ports: [80]}\nkind: GlobalNetworkPolicyList\nmetadata:\n  resourceVersion: '2'\n";

#[test]
fn validate_reads_standard_input_and_prints_json() {
    let out = control(&["validate", "-o", "json", "-"], LIST);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let p = &lines[0];
    assert_eq!(p["level"], "error");
    assert_eq!(p["file"], "<stdin>");
    assert_eq!(p["line"], 21);
    assert_eq!(p["resource"], "GlobalNetworkPolicy bad");
    assert_eq!(p["field"], "spec.ingress[1].destination.ports");
    assert_eq!(
        p["message"],
        "rules with numeric port or port range must set protocol to TCP or UDP or SCTP"
    );

    let fixed = LIST.replace("    - action: Deny\n      destination: {ports: [80]}\n", "");
    let out = control(&["validate", "-o", "json", "-"], &fixed);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ok: 2 policies"));
}

/// `--policy -`: the policy from standard input (the requests from a file), the inventory
/// from another path.
#[test]
fn check_reads_policy_from_standard_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let requests = dir.path().join("request.json");
    std::fs::write(&requests, request("customer", "GET")).expect("write");
    let policy = std::fs::read_to_string(format!("{YAOBANK}/30-policy.yaml")).expect("policy");
    let out = control(
        &[
            "check",
            "--policy",
            "-",
            "--policy",
            INVENTORY,
            "--workload",
            "default/summary",
            "--request",
            requests.to_str().expect("utf-8"),
        ],
        &policy,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(line["decision"], "allow", "{line}");
    assert_eq!(line["policy"]["name"], "summary", "{line}");
}

#[test]
fn standard_input_holds_the_policy_or_the_requests_not_both() {
    let out = control(
        &[
            "check",
            "--policy",
            "-",
            "--workload",
            "ns/w",
            "--request",
            "-",
        ],
        LIST,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("standard input can hold the policy or the requests, not both"),
        "{err}"
    );
}

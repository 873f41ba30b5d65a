//! `control check` end to end: every public authz conformance case through the binary, both
//! updates layouts, both output formats, standard input, and errors that name the input.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};


fn control(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_control"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("control starts");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("control runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path.display().to_string()
}

#[test]
fn every_conformance_case_decides_as_expected() {
    let cases: Vec<Value> = serde_json::from_str(&alp_engine::testdata::shared_file("conformance/authz_cases.json").expect("shared/conformance/authz_cases.json")).expect("cases parse");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let id = case["id"].as_str().unwrap_or("?");
        let updates = case["updates"].as_array().expect("updates list");
        // Alternate the two layouts the updates file may have.
        let text = if n % 2 == 0 {
            serde_json::to_string_pretty(updates).expect("array")
        } else {
            updates.iter().map(|u| u.to_string() + "\n").collect()
        };
        let updates_path = write(dir.path(), "updates.json", &text);
        let request_path = write(dir.path(), "request.json", &serde_json::to_string_pretty(&case["request"]).expect("req"));
        let out = control(&["check", "--updates", &updates_path, "--request", &request_path], None);
        if !out.status.success() {
            failures.push(format!("{id}: exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
            continue;
        }
        let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        if line["decision"] != case["expect"] {
            failures.push(format!("{id}: got {line}, expected {}", case["expect"]));
        }
        // A deny always carries its status; an allow never does.
        let status_ok = match line["decision"].as_str() {
            Some("allow") => line["status"].is_null(),
            _ => [403, 503, 400].contains(&line["status"].as_u64().unwrap_or(0)),
        };
        if !status_ok || line["reason"].as_str().is_none() {
            failures.push(format!("{id}: bad explanation {line}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

const UPDATES: &str = r#"{"workloadEndpointUpdate":{"id":{"workloadId":"default/summary"},"endpoint":{"tiers":[{"name":"default","ingressPolicies":[{"name":"summary","kind":"GlobalNetworkPolicy"}]}]}}}
{"activePolicyUpdate":{"id":{"name":"summary","kind":"GlobalNetworkPolicy"},"policy":{"inboundRules":[{"action":"Allow","srcServiceAccountMatch":{"names":["customer"]},"ruleId":"r-customer"}]}}}
{"inSync":{}}
"#;

#[test]
fn json_lines_requests_from_stdin_and_text_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let updates = write(dir.path(), "updates.jsonl", UPDATES);
    let requests = concat!(
        r#"{"source":{"principal":"spiffe://cluster.local/ns/default/sa/customer"},"http":{"method":"GET","path":"/"}}"#,
        "\n",
        r#"{"source":{"principal":"spiffe://cluster.local/ns/default/sa/database"},"http":{"method":"GET","path":"/"}}"#,
        "\n",
        r#"{"source":{"principal":"not-spiffe"},"http":null}"#,
        "\n"
    );
    let out = control(&["check", "--updates", &updates, "--request", "-"], Some(requests));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["tier"], "default");
    assert_eq!(lines[0]["policy"]["name"], "summary");
    assert_eq!(lines[0]["rule"], 0);
    assert_eq!(lines[0]["rule_id"], "r-customer");
    assert_eq!((lines[1]["decision"].as_str(), lines[1]["status"].as_u64()), (Some("deny"), Some(403)));
    assert_eq!(lines[1]["reason"], "policy_denied");
    assert_eq!(lines[2]["reason"], "invalid_peer_identity");

    let out = control(&["check", "--updates", &updates, "--request", "-", "--format", "text"], Some(requests));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().is_some_and(|l| l.starts_with("ALLOW") && l.contains("policy=summary")), "{text}");
}

#[test]
fn not_in_sync_without_in_sync_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let updates = write(dir.path(), "u.jsonl", UPDATES.lines().take(2).collect::<Vec<_>>().join("\n").as_str());
    let out = control(&["check", "--updates", &updates, "--request", "-"], Some("{}"));
    let line: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((line["status"].as_u64(), line["reason"].as_str()), (Some(503), Some("not_in_sync")));
}

#[test]
fn bad_input_names_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_updates = write(dir.path(), "bad.jsonl", "{\"inSync\":{}}\n{\"ipsetUpdate\":{\"id\":\"s\",\"members\":7}}\n");
    let request = write(dir.path(), "r.json", "{}");
    let out = control(&["check", "--updates", &bad_updates, "--request", &request], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.jsonl") && err.contains("line 2") && err.contains("members"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let good = write(dir.path(), "good.jsonl", UPDATES);
    let bad_request = write(dir.path(), "req.jsonl", "{}\n{\"source\":{\"port\":\"x\"}}\n");
    let out = control(&["check", "--updates", &good, "--request", &bad_request], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("req.jsonl:2") && err.contains("port"), "{err}");

    let out = control(&["check", "--updates", "/nonexistent/file", "--request", &request], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file"));
}

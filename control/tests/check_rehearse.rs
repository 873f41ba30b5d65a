//! `control check --dry-run` and `--staged`: the same decisions as without them, plus what a
//! dry run would let through and what the staged policies would decide if enforced.

use serde_json::{json, Value};
use std::process::Command;

/// Tier `default`: staged `lockdown` (deny GET /admin), enforced `web` (allow GET), default Deny.
fn updates() -> String {
    let staged_id = json!({"name": "lockdown", "kind": "StagedGlobalNetworkPolicy"});
    let web_id = json!({"name": "web", "kind": "GlobalNetworkPolicy"});
    [
        json!({"activePolicyUpdate": {"id": staged_id, "policy": {"tier": "default",
            "inboundRules": [{"action": "deny", "httpMatch": {"paths": [{"prefix": "/admin"}]}, "ruleId": "lockdown-0"}]}}}),
        json!({"activePolicyUpdate": {"id": web_id, "policy": {"tier": "default",
            "inboundRules": [{"action": "allow", "httpMatch": {"methods": ["GET"]}, "ruleId": "web-0"}]}}}),
        json!({"workloadEndpointUpdate": {"id": {"orchestratorId": "k8s", "workloadId": "default/app", "endpointId": "eth0"},
            "endpoint": {"profileIds": [], "tiers": [{"name": "default", "ingressPolicies": [staged_id, web_id], "defaultAction": "Deny"}]}}}),
        json!({"inSync": {}}),
    ]
    .iter()
    .map(|m| format!("{m}\n"))
    .collect()
}

const REQUESTS: &str = r#"{"http": {"method": "GET", "path": "/admin/users"}}
{"http": {"method": "GET", "path": "/index.html"}}
{"http": {"method": "DELETE", "path": "/index.html"}}
"#;

fn check(extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (u, r) = (
        dir.path().join("updates.jsonl"),
        dir.path().join("requests.jsonl"),
    );
    std::fs::write(&u, updates()).unwrap();
    std::fs::write(&r, REQUESTS).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_control"))
        .args(["check", "--updates"])
        .arg(&u)
        .arg("--request")
        .arg(&r)
        .args(extra)
        .output()
        .expect("control runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    if extra.contains(&"text") {
        return text.lines().map(|l| Value::String(l.to_string())).collect();
    }
    text.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn plain_output_has_no_rehearsal_keys() {
    let lines = check(&[]);
    let decisions: Vec<_> = lines
        .iter()
        .map(|l| l["decision"].as_str().unwrap())
        .collect();
    assert_eq!(
        decisions,
        ["allow", "allow", "deny"],
        "staged policies are not enforced"
    );
    for l in &lines {
        for key in ["enforced", "would_block", "staged"] {
            assert!(l.get(key).is_none(), "{key} in {l}");
        }
    }
}

#[test]
fn dry_run_keeps_the_decision_and_says_nothing_is_blocked() {
    let lines = check(&["--dry-run"]);
    let deny = &lines[2];
    assert_eq!(
        (deny["decision"].as_str(), deny["status"].as_u64()),
        (Some("deny"), Some(403))
    );
    assert_eq!(deny["reason"], "policy_denied");
    assert_eq!(
        (deny["enforced"].as_bool(), deny["would_block"].as_bool()),
        (Some(false), Some(true))
    );
    let allow = &lines[1];
    assert_eq!(
        (allow["enforced"].as_bool(), allow["would_block"].as_bool()),
        (Some(false), Some(false))
    );
}

#[test]
fn staged_adds_the_rehearsal_per_request() {
    let lines = check(&["--staged"]);
    let admin = &lines[0];
    assert_eq!(admin["decision"], "allow");
    assert_eq!(admin["policy"]["name"], "web");
    let staged = &admin["staged"];
    assert_eq!(
        (staged["decision"].as_str(), staged["status"].as_u64()),
        (Some("deny"), Some(403))
    );
    assert_eq!(staged["policy"]["name"], "lockdown");
    assert_eq!(staged["policy"]["kind"], "StagedGlobalNetworkPolicy");
    assert_eq!(staged["rule_id"], "lockdown-0");
    assert_eq!(staged["differs"], true);
    let index = &lines[1]["staged"];
    assert_eq!(
        (index["decision"].as_str(), index["differs"].as_bool()),
        (Some("allow"), Some(false))
    );
    assert_eq!(index["policy"]["name"], "web");
    assert_eq!(lines[2]["staged"]["differs"], false);
    assert!(lines.iter().all(|l| l.get("would_block").is_none()));
}

#[test]
fn text_format_shows_both() {
    let lines = check(&["--staged", "--dry-run", "--format", "text"]);
    let first = lines[0].as_str().unwrap();
    assert!(first.starts_with("ALLOW"), "{first}");
    assert!(
        first.contains(
            "[dry run: would not block] | staged (DIFFERS): DENY (status 403, policy_denied)"
        ),
        "{first}"
    );
    assert!(
        first.contains("policy=lockdown kind=StagedGlobalNetworkPolicy"),
        "{first}"
    );
    assert!(
        lines[2]
            .as_str()
            .unwrap()
            .contains("[dry run: would block] | staged: DENY"),
        "{}",
        lines[2]
    );
}

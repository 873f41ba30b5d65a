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
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
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
    let cases: Vec<Value> = serde_json::from_str(
        &alp_engine::testdata::shared_file("conformance/authz_cases.json")
            .expect("shared/conformance/authz_cases.json"),
    )
    .expect("cases parse");
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
        let request_path = write(
            dir.path(),
            "request.json",
            &serde_json::to_string_pretty(&case["request"]).expect("req"),
        );
        let out = control(
            &[
                "check",
                "--updates",
                &updates_path,
                "--request",
                &request_path,
            ],
            None,
        );
        if !out.status.success() {
            failures.push(format!(
                "{id}: exit {:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
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
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
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
    let out = control(
        &["check", "--updates", &updates, "--request", "-"],
        Some(requests),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["tier"], "default");
    assert_eq!(lines[0]["policy"]["name"], "summary");
    assert_eq!(lines[0]["rule"], 0);
    assert_eq!(lines[0]["rule_id"], "r-customer");
    assert_eq!(
        (lines[1]["decision"].as_str(), lines[1]["status"].as_u64()),
        (Some("deny"), Some(403))
    );
    assert_eq!(lines[1]["reason"], "policy_denied");
    assert_eq!(lines[2]["reason"], "invalid_peer_identity");

    let out = control(
        &[
            "check",
            "--updates",
            &updates,
            "--request",
            "-",
            "--format",
            "text",
        ],
        Some(requests),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.starts_with("ALLOW") && l.contains("policy=summary")),
        "{text}"
    );
}

#[test]
fn not_in_sync_without_in_sync_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let updates = write(
        dir.path(),
        "u.jsonl",
        UPDATES
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    );
    let out = control(
        &["check", "--updates", &updates, "--request", "-"],
        Some("{}"),
    );
    let line: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (line["status"].as_u64(), line["reason"].as_str()),
        (Some(503), Some("not_in_sync"))
    );
}

#[test]
fn bad_input_names_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_updates = write(
        dir.path(),
        "bad.jsonl",
        "{\"inSync\":{}}\n{\"ipsetUpdate\":{\"id\":\"s\",\"members\":7}}\n",
    );
    let request = write(dir.path(), "r.json", "{}");
    let out = control(
        &["check", "--updates", &bad_updates, "--request", &request],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.jsonl") && err.contains("line 2") && err.contains("members"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let good = write(dir.path(), "good.jsonl", UPDATES);
    let bad_request = write(
        dir.path(),
        "req.jsonl",
        "{}\n{\"source\":{\"port\":\"x\"}}\n",
    );
    let out = control(
        &["check", "--updates", &good, "--request", &bad_request],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("req.jsonl:2") && err.contains("port"), "{err}");

    let out = control(
        &[
            "check",
            "--updates",
            "/nonexistent/file",
            "--request",
            &request,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file"));
}

/// Allows GET on prefix `/public` (from anyone), default Deny.
const PATH_UPDATES: &str = r#"{"workloadEndpointUpdate":{"id":{"workloadId":"default/summary"},"endpoint":{"tiers":[{"name":"default","ingressPolicies":[{"name":"public","kind":"GlobalNetworkPolicy"}]}]}}}
{"activePolicyUpdate":{"id":{"name":"public","kind":"GlobalNetworkPolicy"},"policy":{"inboundRules":[{"action":"Allow","httpMatch":{"methods":["GET"],"paths":[{"prefix":"/public"}]},"ruleId":"r-public"}]}}}
{"inSync":{}}
"#;

fn get(path: &str) -> String {
    serde_json::json!({"source": {"principal": "spiffe://cluster.local/ns/default/sa/customer"}, "http": {"method": "GET", "path": path}}).to_string() + "\n"
}

fn check_lines(args: &[&str], requests: &str) -> Vec<Value> {
    let out = control(args, Some(requests));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// D10: the default mode decides on the canonical path the filter forwards and reports it;
/// `--non-canonical-path reject` refuses a non-canonical path.
#[test]
fn non_canonical_paths_rewritten_or_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let updates = write(dir.path(), "u.jsonl", PATH_UPDATES);
    // (path, decision in rewrite mode, canonical_path when non-canonical)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("/public/a", "allow", None),
        ("/public/", "allow", None),
        ("/admin", "deny", None),
        ("/admin/../public/x?q=1", "allow", Some("/public/x?q=1")),
        ("/public/./a//b;v=1", "allow", Some("/public/a/b;v=1")),
        ("/public/../admin", "deny", Some("/admin")),
        ("/public\\a", "allow", Some("/public/a")),
        ("/admin/..%3B/public", "deny", None),
    ];
    let requests: String =
        cases.iter().map(|(p, _, _)| get(p)).collect::<String>() + "{\"http\":null}\n";
    let rewrite = check_lines(
        &["check", "--updates", &updates, "--request", "-"],
        &requests,
    );
    let reject = check_lines(
        &[
            "check",
            "--updates",
            &updates,
            "--request",
            "-",
            "--non-canonical-path",
            "reject",
        ],
        &requests,
    );
    assert_eq!(
        (rewrite.len(), reject.len()),
        (cases.len() + 1, cases.len() + 1)
    );
    for (n, (path, decision, canonical)) in cases.iter().enumerate() {
        let (w, j) = (&rewrite[n], &reject[n]);
        assert_eq!(w["decision"], *decision, "{path}: {w}");
        assert_eq!(w["canonical_path"].as_str(), *canonical, "{path}: {w}");
        assert_eq!(w["rewritten"], canonical.is_some(), "{path}: {w}");
        assert_eq!(
            j["canonical_path"].as_str(),
            *canonical,
            "{path} (reject): {j}"
        );
        assert_eq!(j["rewritten"], false, "{path} (reject): {j}");
        if canonical.is_some() {
            assert_eq!(
                (j["status"].as_u64(), j["reason"].as_str()),
                (Some(400), Some("bad_request_path")),
                "{path}: {j}"
            );
            assert!(
                j["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("not canonical")),
                "{j}"
            );
        } else {
            assert_eq!(
                j, w,
                "{path}: a canonical path decides the same in both modes"
            );
        }
    }
    assert_eq!(rewrite[4]["rule_id"], "r-public");
    assert_eq!(
        (rewrite[7]["status"].as_u64(), rewrite[7]["reason"].as_str()),
        (Some(400), Some("bad_request_path")),
        "ambiguous: {}",
        rewrite[7]
    );
    // No HTTP: neither field.
    let tcp = &rewrite[cases.len()];
    assert!(
        tcp.get("rewritten").is_none() && tcp.get("canonical_path").is_none(),
        "{tcp}"
    );

    let text = |args: &[&str]| {
        let out = control(args, Some(&get("/admin/../public")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let t = text(&[
        "check",
        "--updates",
        &updates,
        "--request",
        "-",
        "--format",
        "text",
    ]);
    assert!(
        t.starts_with("ALLOW") && t.contains("[path rewritten to /public]"),
        "{t}"
    );
    let t = text(&[
        "check",
        "--updates",
        &updates,
        "--request",
        "-",
        "--format",
        "text",
        "--non-canonical-path",
        "reject",
    ]);
    assert!(
        t.starts_with("DENY (status 400")
            && t.contains("[non-canonical path refused; canonical: /public]"),
        "{t}"
    );

    let out = control(
        &[
            "check",
            "--updates",
            &updates,
            "--request",
            "-",
            "--non-canonical-path",
            "keep",
        ],
        None,
    );
    assert!(!out.status.success());
}

/// D12: `--trust-domain` (repeatable) pins principals to those trust domains.
#[test]
fn trust_domains_pin_principals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let updates = write(dir.path(), "u.jsonl", UPDATES);
    let from = |td: &str| {
        serde_json::json!({"source": {"principal": format!("spiffe://{td}/ns/default/sa/customer")}, "http": {"method": "GET", "path": "/"}}).to_string() + "\n"
    };
    let requests = from("cluster.local") + &from("evil.example") + &from("prod.example");
    let reasons = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["check", "--updates", &updates, "--request", "-"];
        args.extend_from_slice(extra);
        check_lines(&args, &requests)
            .iter()
            .map(|l| l["reason"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert_eq!(
        reasons(&[]),
        ["allow", "allow", "allow"],
        "any trust domain without the flag"
    );
    assert_eq!(
        reasons(&["--trust-domain", "cluster.local"]),
        ["allow", "invalid_peer_identity", "invalid_peer_identity"]
    );
    assert_eq!(
        reasons(&[
            "--trust-domain",
            "cluster.local",
            "--trust-domain",
            "prod.example",
            "--staged"
        ]),
        ["allow", "invalid_peer_identity", "allow"]
    );
    let out = control(
        &[
            "check",
            "--updates",
            &updates,
            "--request",
            "-",
            "--trust-domain",
            "spiffe://cluster.local",
        ],
        None,
    );
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("trust domain"));
}

/// Every `normalize_http_path` vector of the shared unit cases through `control check`: a
/// non-canonical path is reported with its canonical (forwarded) path and rewritten; a path that
/// does not normalise (or does not start with `/`) is decided as given, `bad_request_path` where
/// a path rule is reached.
#[test]
fn every_path_vector_reports_its_canonical_path() {
    let units: Value = serde_json::from_str(
        &alp_engine::testdata::shared_file("conformance/unit_cases.json")
            .expect("shared/conformance/unit_cases.json"),
    )
    .expect("unit cases parse");
    let vectors = units["normalize_http_path"]
        .as_array()
        .expect("normalize_http_path vectors");
    let dir = tempfile::tempdir().expect("tempdir");
    // Allows every path (a path rule: paths are normalised).
    let updates = write(
        dir.path(),
        "u.jsonl",
        &PATH_UPDATES.replace(r#"{"prefix":"/public"}"#, r#"{"prefix":"/"}"#),
    );
    let requests: String = vectors
        .iter()
        .map(|v| get(v["input"].as_str().expect("input")))
        .collect();
    let lines = check_lines(
        &["check", "--updates", &updates, "--request", "-"],
        &requests,
    );
    assert_eq!(lines.len(), vectors.len());
    let mut failures = Vec::new();
    for (v, line) in vectors.iter().zip(&lines) {
        let input = v["input"].as_str().unwrap_or("");
        let rewritten = v["ok"] == true && v["non_canonical"] == true && input.starts_with('/');
        // The forwarded path keeps the query (not a fragment).
        let before_fragment = input.split('#').next().unwrap_or("");
        let query = before_fragment
            .find('?')
            .map_or("", |i| &before_fragment[i..]);
        let want_canonical =
            rewritten.then(|| format!("{}{query}", v["canonical"].as_str().unwrap_or("?")));
        let want_reason = if v["ok"] == true && input.starts_with('/') {
            "allow"
        } else {
            "bad_request_path"
        };
        if line["rewritten"] != rewritten
            || line["canonical_path"].as_str() != want_canonical.as_deref()
            || line["reason"] != want_reason
        {
            failures.push(format!("{input:?}: got {line}, want rewritten {rewritten}, canonical_path {want_canonical:?}, reason {want_reason}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

/// `--fail-on-deny`: exit 3 after every answer when any request is not allowed (0 when all
/// are; 2 for bad input, as without the flag); without the flag a denial exits 0.
#[test]
fn fail_on_deny_sets_the_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let updates = write(dir.path(), "u.jsonl", UPDATES);
    let customer = r#"{"source":{"principal":"spiffe://cluster.local/ns/default/sa/customer"},"http":{"method":"GET","path":"/"}}"#;
    let database = r#"{"source":{"principal":"spiffe://cluster.local/ns/default/sa/database"},"http":{"method":"GET","path":"/"}}"#;
    let run = |extra: &[&str], requests: &str| {
        let mut args = vec!["check", "--updates", &updates, "--request", "-"];
        args.extend_from_slice(extra);
        control(&args, Some(requests))
    };
    let mixed = format!("{customer}\n{database}\n{customer}\n");
    let out = run(&["--fail-on-deny"], &mixed);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // Every answer is printed before the status says "not all allowed".
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let out = run(&["--fail-on-deny"], &format!("{customer}\n{customer}\n"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(run(&[], &mixed).status.code(), Some(0), "no flag: 0");
    // Text output and the dry run count the same decision; the staged one does not count.
    assert_eq!(
        run(&["--fail-on-deny", "-o", "text"], &mixed).status.code(),
        Some(3)
    );
    let out = run(&["--fail-on-deny", "--dry-run"], &mixed);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""would_block":true"#));
    assert_eq!(
        run(&["--fail-on-deny", "--staged"], customer).status.code(),
        Some(0)
    );
    // Not in sync (503) is "not allowed" too.
    let unsynced = write(
        dir.path(),
        "unsynced.jsonl",
        UPDATES.lines().next().expect("first line"),
    );
    let out = control(
        &[
            "check",
            "--updates",
            &unsynced,
            "--request",
            "-",
            "--fail-on-deny",
        ],
        Some(customer),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // Bad input stays 2, with or without the flag.
    let out = run(&["--fail-on-deny"], "{\"source\":{\"port\":\"x\"}}\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("port"));
    // The exit statuses are in --help.
    let help = control(&["check", "--help"], None);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--fail-on-deny") && help.contains("3  check --fail-on-deny"),
        "{help}"
    );
}

/// Each answer echoes its request's `id` (a string or a number), in JSON Lines and in text;
/// requests without one get answers without one. `-o` and `--format` are the same flag.
#[test]
fn answers_echo_the_request_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let updates = write(dir.path(), "u.jsonl", UPDATES);
    let requests = concat!(
        r#"{"id":"r-1","source":{"principal":"spiffe://cluster.local/ns/default/sa/customer"},"http":{"method":"GET","path":"/"}}"#,
        "\n",
        r#"{"source":{"principal":"spiffe://cluster.local/ns/default/sa/database"},"http":{"method":"GET","path":"/"}}"#,
        "\n",
        r#"{"id":42,"http":null}"#,
        "\n"
    );
    let lines = check_lines(
        &["check", "--updates", &updates, "--request", "-"],
        requests,
    );
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (&lines[0]["id"], &lines[0]["decision"]),
        (&Value::from("r-1"), &Value::from("allow"))
    );
    assert!(lines[1].get("id").is_none(), "{}", lines[1]);
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[2]["id"], 42);
    // The id comes first, so a line can be read as "id: answer".
    let raw = control(
        &["check", "--updates", &updates, "--request", "-"],
        Some(requests),
    );
    assert!(String::from_utf8_lossy(&raw.stdout).starts_with(r#"{"id":"r-1","decision""#));

    for flag in ["-o", "--output", "--format"] {
        let out = control(
            &[
                "check",
                "--updates",
                &updates,
                "--request",
                "-",
                flag,
                "text",
            ],
            Some(requests),
        );
        assert!(out.status.success(), "{flag}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let text: Vec<&str> = text.lines().collect();
        assert_eq!(text.len(), 3, "{flag}: {text:?}");
        assert!(text[0].starts_with("id=r-1 ALLOW"), "{flag}: {text:?}");
        assert!(text[1].starts_with("DENY"), "{flag}: {text:?}");
        assert!(text[2].starts_with("id=42 "), "{flag}: {text:?}");
    }

    // A single request object spread over lines keeps its id.
    let one = write(
        dir.path(),
        "one.json",
        "{\n  \"id\": \"only\",\n  \"http\": {\"method\": \"GET\", \"path\": \"/\"}\n}\n",
    );
    let out = control(&["check", "--updates", &updates, "--request", &one], None);
    let line: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(line["id"], "only");

    // An id that is neither a string nor a number is bad input, named with its line.
    let out = control(
        &["check", "--updates", &updates, "--request", "-"],
        Some("{}\n{\"id\":{\"a\":1}}\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-:2") && err.contains("`id`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

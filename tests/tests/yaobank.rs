//! The YAO bank tutorial through real Envoy over mTLS: customer (GET from anyone), summary (only
//! service account customer), database (only service account summary), each its own listener,
//! vm_id and control; the same policy at L4 on each workload's raw TCP listener; plus what the
//! TLS layer and the identity rules refuse. Its policy sources (the project's Calico YAML, the
//! Felix messages, the tutorial's YAML when present) decide alike, and the compose demo's
//! client script prints what local-stack prints.

use alp_e2e::certs::{spiffe_id, Ca};
use alp_e2e::demo::run_yaobank;
use alp_e2e::demo_tcp::run_yaobank_tcp;
use alp_e2e::stack::{
    yaobank_ip, yaobank_options, yaobank_tutorial_options, yaobank_yaml_options, YAOBANK,
};
use alp_e2e::{artifacts, compose, Outcome, Request, Stack};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// What `./local-stack.sh` runs: control compiling the project's own Calico YAML
/// (`envoy/yaobank/policy.yaml`) with its inventory (`envoy/yaobank/workloads.yaml`) for each
/// workload. Then the compose demo's client script (`compose::demo_script`) against the same
/// stack, from the same source addresses: it must print the very lines local-stack prints.
#[test]
fn yaobank_from_the_projects_calico_yaml() {
    let stack =
        Stack::start(yaobank_yaml_options()).expect("start the YAO bank stack on the YAML source");
    let lines = assert_every_case_as_expected(&stack);
    compose_demo_script_prints_the_same_lines(&stack, &lines);
}

/// The same demonstration on the tutorial's own Calico YAML (`../shared/examples/yaobank`, test
/// material beside the project, with the project's inventory): the project's copy of the policy
/// decides as the tutorial's does.
#[test]
fn yaobank_from_the_tutorials_calico_yaml() {
    let Some(opts) = yaobank_tutorial_options() else {
        eprintln!("no ../shared/examples/yaobank beside the project: skipped");
        return;
    };
    let stack = Stack::start(opts).expect("start the YAO bank stack on the tutorial's YAML");
    assert_every_case_as_expected(&stack);
}
#[test]
fn yaobank_decisions_over_mtls() {
    let stack = Stack::start(yaobank_options()).expect("start the YAO bank stack");
    assert_every_case_as_expected(&stack);

    // The allowed requests reached the right backend through the router.
    let ok = stack
        .send(
            "database",
            &Request::get("/v2/keys")
                .from_ip(yaobank_ip("summary"))
                .transport(stack.mtls("summary").unwrap()),
        )
        .unwrap();
    let r = ok.response().unwrap();
    assert_eq!(
        (r.status, r.header("x-alp-backend")),
        (200, Some("database")),
        "{r:?}"
    );

    // Source IP and identity are both required: summary's certificate from customer's pod IP
    // is not in the database rule's IP set; customer's certificate from summary's IP fails the
    // service-account match.
    for (sa, ip) in [("summary", "customer"), ("customer", "summary")] {
        let o = stack
            .send(
                "database",
                &Request::get("/")
                    .from_ip(yaobank_ip(ip))
                    .transport(stack.mtls(sa).unwrap()),
            )
            .unwrap();
        assert_eq!(
            o.summary(),
            "403 denied by policy",
            "cert {sa} from {ip}'s IP"
        );
    }
}

/// Runs the demonstration's cases (HTTP requests, then raw TCP connections), prints each with
/// its outcome, and fails if any outcome was not the expected one. Returns each case's caller
/// (`Caller::key`) and the line local-stack prints for it.
fn assert_every_case_as_expected(stack: &Stack) -> Vec<(&'static str, String)> {
    let mut report = vec![];
    let mut lines = vec![];
    let line = |ok: bool, text: &str| format!("{} {text}", if ok { "ok  " } else { "FAIL" });
    let mut unexpected = run_yaobank(stack, |case, outcome, ok| {
        let text = case.describe(outcome);
        report.push(line(ok, &text));
        lines.push((case.caller.key(), text));
    })
    .unwrap();
    unexpected += run_yaobank_tcp(stack, |case, outcome, ok| {
        let text = case.describe(outcome);
        report.push(line(ok, &text));
        lines.push((case.caller.key(), text));
    })
    .unwrap();
    println!("{}", report.join("\n"));
    assert_eq!(
        unexpected,
        0,
        "unexpected outcomes:\n{}\n{}",
        report.join("\n"),
        stack.diagnostics("database")
    );
    lines
}

/// Runs the compose clients' script (`envoy/compose/demo.sh`, as `local-stack prepare-compose`
/// writes it) once per client against `stack`, each bound to the source address the local
/// stack's own clients use (in compose, each container has its address instead), and compares
/// what it prints with local-stack's lines for that client.
fn compose_demo_script_prints_the_same_lines(stack: &Stack, lines: &[(&str, String)]) {
    if artifacts::find_on_path("openssl").is_none() {
        eprintln!(
            "the compose demo script needs the openssl command (apt-get install -y openssl): \
             its run against the local stack is skipped"
        );
        return;
    }
    let script = stack.run_dir().join("demo.sh");
    std::fs::write(&script, compose::demo_script()).unwrap();
    for sa in YAOBANK {
        stack.identity(sa).unwrap();
    }
    let certs = stack.ca.cert_file.parent().unwrap();
    for client in compose::CLIENTS {
        let bind = match client {
            "outsider" => "127.0.0.1".to_string(),
            sa => yaobank_ip(sa).to_string(),
        };
        let mut cmd = Command::new("sh");
        cmd.arg(&script)
            .arg(client)
            .env("ENVOY", "127.0.0.1")
            .env("CERTS", certs)
            .env("BIND", &bind);
        for w in &stack.workloads {
            let upper = w.name.to_ascii_uppercase();
            cmd.env(format!("PORT_{upper}"), w.addr.port().to_string())
                .env(format!("TCP_PORT_{upper}"), w.tcp_addr.port().to_string());
        }
        let out = cmd.output().expect("run sh demo.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "demo.sh {client}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .collect();
        let want: Vec<&str> = lines
            .iter()
            .filter(|(key, _)| *key == client)
            .map(|(_, l)| l.as_str())
            .collect();
        assert!(!want.is_empty(), "client {client} has cases");
        assert_eq!(printed, want, "demo.sh {client} printed:\n{stdout}");
    }
}

/// One `control check` over JSON Lines requests with `source` (control's arguments); the answers
/// without what names a rule's text (`rule_id`, `detail`), which the policy sources spell
/// differently.
fn check(source: &[OsString], requests: &[Value]) -> Vec<Value> {
    let control = artifacts::control().expect("the control binary is required");
    let mut child = Command::new(control)
        .arg("check")
        .args(source)
        .args(["--request", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = requests.iter().map(|r| format!("{r}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "control check {source:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("rule_id");
            o.remove("detail");
            v
        })
        .collect()
}

fn policy_source(policy: &Path, workload: &str) -> Vec<OsString> {
    vec![
        "--policy".into(),
        policy.into(),
        "--policy".into(),
        artifacts::yaobank_inventory().into(),
        "--workload".into(),
        format!("default/{workload}").into(),
    ]
}

/// The YAO bank's policy sources decide every request alike: the project's Calico YAML
/// (`envoy/yaobank/policy.yaml` with `workloads.yaml`), the Felix messages of
/// `envoy/yaobank/<workload>.jsonl` (`local-stack --felix-updates`) and, when it is beside the
/// project, the tutorial's own YAML. Requests from every identity (and none) at every pod
/// address (and an outsider's), HTTP GET and POST and raw TCP, to each workload.
#[test]
fn yaobank_policy_sources_decide_alike() {
    let tutorial = artifacts::yaobank_tutorial();
    if tutorial.is_none() {
        eprintln!("no ../shared/examples/yaobank beside the project: compared with the Felix updates only");
    }
    for to in YAOBANK {
        let port = if to == "database" { 2379 } else { 80 };
        let mut requests = vec![];
        for principal in YAOBANK
            .iter()
            .map(|sa| spiffe_id(sa))
            .chain([String::new()])
        {
            for address in YAOBANK
                .iter()
                .map(|w| yaobank_ip(w).to_string())
                .chain(["127.0.0.1".to_string()])
            {
                for http in [
                    json!({"method": "GET", "path": "/", "host": to}),
                    json!({"method": "POST", "path": "/", "host": to}),
                    Value::Null,
                ] {
                    requests.push(json!({
                        "id": requests.len(),
                        "source": {"principal": principal, "address": address, "port": 40000},
                        "destination": {"principal": spiffe_id(to), "address": yaobank_ip(to).to_string(), "port": port, "protocol": "TCP"},
                        "http": http,
                    }));
                }
            }
        }
        let ours = check(&policy_source(&artifacts::yaobank_policy(), to), &requests);
        assert_eq!(ours.len(), requests.len());
        let allowed = ours.iter().filter(|a| a["decision"] == "allow").count();
        assert!(
            allowed > 0 && allowed < requests.len(),
            "{to}: {allowed} of {} allowed",
            requests.len()
        );
        let felix = check(
            &["--updates".into(), artifacts::yaobank_updates(to).into()],
            &requests,
        );
        for ((req, a), b) in requests.iter().zip(&ours).zip(&felix) {
            assert_eq!(a, b, "{to}: policy.yaml and {to}.jsonl differ on {req}");
        }
        if let Some(tutorial) = &tutorial {
            let theirs = check(&policy_source(tutorial, to), &requests);
            for ((req, a), b) in requests.iter().zip(&ours).zip(&theirs) {
                assert_eq!(
                    a, b,
                    "{to}: policy.yaml and the tutorial's YAML differ on {req}"
                );
            }
        }
    }
}

/// docs/yaobank.md's offline example runs on the repository's own files and prints what the page
/// shows: its `request.json` lines through its `control check` command, with the inventory
/// `envoy/yaobank/kubernetes-workloads.yaml`.
#[test]
fn the_tutorials_offline_check_prints_what_the_page_shows() {
    let root = artifacts::workspace_root();
    let page = std::fs::read_to_string(root.join("docs/yaobank.md")).unwrap();
    let requests: Vec<Value> = page
        .lines()
        .filter(|l| l.starts_with("{\"id\":"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shown: Vec<&str> = page.lines().filter(|l| l.starts_with("id=")).collect();
    assert!(
        requests.len() >= 2 && requests.len() == shown.len(),
        "docs/yaobank.md: {} requests, {} answers",
        requests.len(),
        shown.len()
    );
    let command = "control check --policy envoy/kubernetes/yaobank --policy envoy/yaobank/kubernetes-workloads.yaml \\\n    --workload yaobank/database --request request.json -o text";
    assert!(page.contains(command), "docs/yaobank.md shows {command:?}");
    let dir = alp_e2e::stack::RunDir::create("alp-yaobank-offline").unwrap();
    let file = dir.path.join("request.json");
    let text: String = requests.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let out = Command::new(artifacts::control().expect("the control binary is required"))
        .current_dir(&root)
        .args([
            "check",
            "--policy",
            "envoy/kubernetes/yaobank",
            "--policy",
            "envoy/yaobank/kubernetes-workloads.yaml",
            "--workload",
            "yaobank/database",
            "--request",
        ])
        .arg(&file)
        .args(["-o", "text"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), shown);
}

#[test]
fn tls_layer_and_malformed_identities() {
    let stack = Stack::start(yaobank_options()).expect("start the YAO bank stack");
    let customer_ip = yaobank_ip("customer");

    // TLS without a client certificate: the handshake is refused by Envoy.
    let o = stack
        .send(
            "customer",
            &Request::get("/")
                .from_ip(customer_ip)
                .transport(stack.tls_with(None)),
        )
        .unwrap();
    assert!(
        matches!(o, Outcome::Failed(_)),
        "TLS without client certificate must fail, got {}",
        o.summary()
    );

    // A certificate from another CA claiming service account summary: refused.
    let rogue = Ca::create(&stack.run_dir().join("rogue-ca")).unwrap();
    let forged = rogue.issue("forged-summary", "summary", false).unwrap();
    let o = stack
        .send(
            "database",
            &Request::get("/")
                .from_ip(yaobank_ip("summary"))
                .transport(stack.tls_with(Some(forged))),
        )
        .unwrap();
    assert!(
        matches!(o, Outcome::Failed(_)),
        "a foreign CA must be refused, got {}",
        o.summary()
    );

    // A URI SAN outside the trust domain: refused by the listener's SAN matcher.
    let other_td = stack
        .ca
        .issue_with_uri(
            "other-td",
            "spiffe://evil.example/ns/default/sa/summary",
            false,
        )
        .unwrap();
    let o = stack
        .send(
            "database",
            &Request::get("/")
                .from_ip(yaobank_ip("summary"))
                .transport(stack.tls_with(Some(other_td))),
        )
        .unwrap();
    assert!(
        matches!(o, Outcome::Failed(_)),
        "another trust domain must be refused, got {}",
        o.summary()
    );

    // A trust-domain SPIFFE id that is not ns/<ns>/sa/<sa>: the filter refuses it (D2), even on
    // customer, which allows GET from anyone.
    for (stem, uri) in [
        ("bad-shape", "spiffe://cluster.local/workload/customer"),
        ("empty-sa", "spiffe://cluster.local/ns/default/sa/"),
        (
            "extra-segment",
            "spiffe://cluster.local/ns/default/sa/customer/x",
        ),
    ] {
        let cert = stack.ca.issue_with_uri(stem, uri, false).unwrap();
        let o = stack
            .send(
                "customer",
                &Request::get("/")
                    .from_ip(customer_ip)
                    .transport(stack.tls_with(Some(cert))),
            )
            .unwrap();
        assert_eq!(o.summary(), "403 invalid peer identity", "{uri}");
    }

    // HTTP/2 over mTLS (curl negotiates h2 by ALPN) decides the same as HTTP/1.1.
    let o = stack
        .send(
            "summary",
            &Request::get("/")
                .from_ip(customer_ip)
                .transport(stack.mtls("customer").unwrap()),
        )
        .unwrap();
    let r = o.response().unwrap();
    assert_eq!(
        (r.version.as_str(), o.summary().as_str()),
        ("HTTP/2", "200 summary: ok")
    );
    let o = stack
        .send(
            "summary",
            &Request::get("/")
                .from_ip(yaobank_ip("database"))
                .transport(stack.mtls("database").unwrap()),
        )
        .unwrap();
    let r = o.response().unwrap();
    assert_eq!(
        (r.version.as_str(), o.summary().as_str()),
        ("HTTP/2", "403 denied by policy")
    );
}

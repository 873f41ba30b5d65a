//! Seeing and rehearsing decisions through real Envoy: the filter's stats in the admin `/stats`
//! (labels in the names, Istio's encoding) and `/stats/prometheus` (with the bootstrap's
//! `stats_tags`: families and labels), decision-log lines in Envoy's log (JSON, no header
//! values, `ts`, the request's `x-request-id`), the decision in the access log (filter state
//! `wasm.alp_decision`), a dry run that lets denied requests through and counts them, and the
//! staged rehearsal counting where staged policies would decide otherwise.

use alp_e2e::decision_log::{
    access_log_decision, access_log_field, access_log_lines, decision_lines, ts_unix_ms,
};
use alp_e2e::filter_stats::{prom_value, prometheus_mismatches, read_both, settled, stats_until};
use alp_e2e::policy::{default_profiles, in_sync, policy, single_policy};
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::{Request, Stack};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

const APP_IP: &str = "127.0.40.1";
const SECRET: &str = "Sup3rSecretHeaderValue";

/// Policy `p`: allow GET under /public; everything else falls to the tier's default Deny.
fn rules() -> Value {
    json!([{"action": "allow", "httpMatch": {"methods": ["GET"], "paths": [{"prefix": "/public"}]}, "ruleId": "p-public"}])
}

fn stack(msgs: Vec<Value>, plugin_options: &str) -> Stack {
    Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new("app", Updates::Messages(msgs))],
        plugin_options: plugin_options.into(),
        ..StackOptions::default()
    })
    .expect("start the stack")
}

/// Sends `method path` to the app with secrets in its headers, and `x-request-id: id` if given.
fn send_id(stack: &Stack, method: &str, path: &str, id: Option<&str>) -> String {
    let mut req = Request::get(path)
        .method(method)
        .header("authorization", &format!("Bearer {SECRET}"))
        .header("x-api-key", SECRET)
        .header("cookie", &format!("session={SECRET}"));
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    let req = req.transport(stack.mtls("client").unwrap());
    stack.send("app", &req).unwrap().summary()
}

fn send(stack: &Stack, method: &str, path: &str) -> String {
    send_id(stack, method, path, None)
}

/// A request id of this run's own. Never 36 characters long: Envoy takes an id of a UUID's
/// length for a UUID and may rewrite its 15th character (the trace reason it packs there).
fn request_id(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let id = format!("obs-{what}-{}-{nanos}", std::process::id());
    if id.len() == 36 {
        id + "-"
    } else {
        id
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

const REQUESTS: &str = "alp_requests_total";
const BY_POLICY: &str = "alp_policy_requests_total";

#[test]
fn counters_and_decision_logs_with_the_default_settings() {
    let stack = stack(single_policy("app", APP_IP, vec![], rules()), "");
    // The harness's readiness probes were decided too: measure from here.
    let before = settled(&stack);
    assert_eq!(before.metric("alp_dry_run", &[]), 0);
    let started_ms = now_ms();
    let (allowed_id, denied_id) = (request_id("allowed"), request_id("denied"));
    assert_eq!(
        send_id(&stack, "GET", "/public/a", Some(&allowed_id)),
        "200 app: ok"
    );
    assert_eq!(
        send(&stack, "GET", "/public/b?token=SECRETQUERY"),
        "200 app: ok"
    );
    assert_eq!(
        send_id(
            &stack,
            "GET",
            "/private/x?token=SECRETQUERY",
            Some(&denied_id)
        ),
        "403 denied by policy"
    );
    assert_eq!(send(&stack, "POST", "/public/a"), "403 denied by policy");
    assert_eq!(send(&stack, "DELETE", "/public/a"), "403 denied by policy");

    let allowed = [("alp_decision", "allowed")];
    let denied = [("alp_decision", "denied")];
    let after = stats_until(&stack, "counted", |s| {
        s.delta(&before, REQUESTS, &allowed) >= 2 && s.delta(&before, REQUESTS, &denied) >= 3
    });
    let delta = |family: &str, labels: &[(&str, &str)]| after.delta(&before, family, labels);
    let counts = [
        (REQUESTS, &allowed[..], 2),
        (REQUESTS, &denied[..], 3),
        (REQUESTS, &[("alp_decision", "would_deny")][..], 0),
        (
            REQUESTS,
            &[("alp_decision", "allowed"), ("alp_reason", "allow")][..],
            2,
        ),
        (
            REQUESTS,
            &[("alp_decision", "denied"), ("alp_reason", "policy_denied")][..],
            3,
        ),
        (REQUESTS, &[("alp_reason", "not_in_sync")][..], 0),
        (
            BY_POLICY,
            &[
                ("alp_tier", "default"),
                ("alp_policy", "p"),
                ("alp_action", "allow"),
            ][..],
            2,
        ),
        (
            BY_POLICY,
            &[
                ("alp_tier", "default"),
                ("alp_policy", "_default"),
                ("alp_action", "deny"),
            ][..],
            3,
        ),
        (BY_POLICY, &[("alp_action", "deny")][..], 3),
        ("alp_staged_requests_total", &[][..], 0),
        ("alp_noncanonical_paths_total", &[][..], 0),
        ("alp_connections_total", &[][..], 0),
        ("alp_decision_log_suppressed_total", &[][..], 0),
    ];
    let wrong: Vec<String> = counts
        .iter()
        .filter(|(f, l, want)| delta(f, l) != *want)
        .map(|(f, l, want)| format!("{f}{l:?}: {} (want {want})", delta(f, l)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\nall stats: {:#?}", after.0);
    // Every request counts once under its decision; the label splits add up to the total.
    assert_eq!(
        after.metric(REQUESTS, &[]),
        after.metric(REQUESTS, &allowed) + after.metric(REQUESTS, &denied)
    );
    assert!(after.metric("alp_snapshot_reloads_total", &[]) >= 1);
    assert_eq!(after.metric("alp_snapshot_refusals_total", &[]), 0);
    assert!(after.has("alp_snapshot_age_seconds", &[]));
    let version = after.metric("alp_snapshot_version", &[]);
    assert!(
        version > 1_600_000_000_000_000,
        "control's versions are Unix microseconds: {version}"
    );
    // Every stat is a family of the filter's with labels; none carries a request value.
    for (family, labels, _) in after.series() {
        assert!(
            alp_e2e::filter_stats::FAMILIES.contains(&family.as_str()),
            "{family}"
        );
        for (label, value) in &labels {
            assert!(
                alp_e2e::filter_stats::LABELS.contains(&label.as_str()),
                "{family}: label {label}"
            );
            assert!(
                !value.contains("public") && !value.contains("private") && !value.contains(SECRET),
                "{family}: {label}={value}"
            );
        }
    }

    // Prometheus: the bootstrap's stats_tags cut every label out of the names, so each stat is
    // its family with its labels, and has the value /stats shows. (Envoy exports the stats of
    // the `wasmcustom` namespace without `envoy_` and the namespace.)
    let (now, prom) = read_both(&stack.envoy);
    let wrong = prometheus_mismatches(&now, &prom);
    assert!(wrong.is_empty(), "{wrong:#?}\n{prom:#?}");
    for (family, labels) in [
        (
            REQUESTS,
            &[("alp_decision", "denied"), ("alp_reason", "policy_denied")][..],
        ),
        (
            REQUESTS,
            &[("alp_decision", "allowed"), ("alp_reason", "allow")][..],
        ),
        (
            BY_POLICY,
            &[
                ("alp_tier", "default"),
                ("alp_policy", "p"),
                ("alp_action", "allow"),
            ][..],
        ),
        (
            BY_POLICY,
            &[
                ("alp_tier", "default"),
                ("alp_policy", "_default"),
                ("alp_action", "deny"),
            ][..],
        ),
        ("alp_snapshot_version", &[][..]),
        ("alp_dry_run", &[][..]),
    ] {
        assert_eq!(
            prom_value(&prom, family, labels),
            Some(now.metric(family, labels) as f64),
            "{family}{labels:?} in {prom:#?}"
        );
    }

    // Decision logs: the three denials (default `deny`), JSON, without any header value.
    let ours = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|v| {
                v["source"]["principal"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/sa/client"))
            })
            .cloned()
            .collect()
    };
    let lines = decision_lines(&stack, |l| ours(l).len() >= 3);
    let log = std::fs::read_to_string(&stack.envoy.proc.log).unwrap();
    assert!(!log.contains(SECRET), "a header value reached Envoy's log");
    assert!(
        !log.contains("SECRETQUERY"),
        "a query string reached Envoy's log"
    );
    let ours = ours(&lines);
    assert_eq!(ours.len(), 3, "denials only: {ours:#?}");
    let private = ours
        .iter()
        .find(|v| v["path"] == "/private/x")
        .expect("the GET /private/x denial");
    assert_eq!(private["kind"], "http");
    assert_eq!(private["decision"], "deny");
    assert_eq!(private["status"], 403);
    assert_eq!(private["reason"], "policy_denied");
    assert_eq!(private["tier"], "default");
    assert_eq!(private["method"], "GET");
    assert_eq!(
        (private["enforced"].as_bool(), private["blocked"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(
        private["source"]["principal"],
        "spiffe://cluster.local/ns/default/sa/client"
    );
    assert_eq!(private["source"]["address"], "127.0.0.1");
    assert_eq!(
        private["destination"]["principal"],
        "spiffe://cluster.local/ns/default/sa/app"
    );
    assert_eq!(private["version"], version);
    // The request id the client sent (Envoy keeps it: the client is on an internal address),
    // and when it was decided: RFC 3339 UTC with milliseconds, between sending and now.
    assert_eq!(private["request_id"], denied_id.as_str(), "{private}");
    let ts = private["ts"].as_str().unwrap_or_default();
    let at = ts_unix_ms(ts).unwrap_or_else(|| panic!("ts {ts:?} is not RFC 3339 UTC ms"));
    assert!(
        (started_ms.saturating_sub(1000)..=now_ms() + 1000).contains(&at),
        "ts {ts} is not when the request was decided"
    );
    for v in &ours {
        assert_eq!(v["kind"], "http", "{v}");
        assert!(v["ts"].as_str().and_then(ts_unix_ms).is_some(), "{v}");
        // Envoy gives every request an id; the others got one of Envoy's.
        assert!(
            v["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{v}"
        );
    }
    assert!(
        ours.iter().any(|v| v["method"] == "POST") && ours.iter().any(|v| v["method"] == "DELETE")
    );

    // The access log: each request's line carries its id and the filter's decision, allowed
    // requests too (the decision log has only denials by default).
    let by_id = |lines: &[String], id: &str| -> Option<String> {
        lines
            .iter()
            .find(|l| access_log_field(l, "id") == Some(id))
            .cloned()
    };
    let lines = access_log_lines(&stack, |l| {
        by_id(l, &allowed_id).is_some() && by_id(l, &denied_id).is_some()
    });
    let allowed_line = by_id(&lines, &allowed_id)
        .unwrap_or_else(|| panic!("no access log line with id={allowed_id}: {lines:#?}"));
    let denied_line = by_id(&lines, &denied_id)
        .unwrap_or_else(|| panic!("no access log line with id={denied_id}: {lines:#?}"));
    assert_eq!(
        access_log_decision(&allowed_line),
        Some("allow reason=allow tier=default policy=p kind=GlobalNetworkPolicy rule=0 rule_id=p-public"),
        "{allowed_line}"
    );
    assert!(
        allowed_line.contains("\"GET /public/a\" 200 "),
        "{allowed_line}"
    );
    let denial = access_log_decision(&denied_line).unwrap_or_default();
    assert!(
        denial.starts_with("deny reason=policy_denied tier=default"),
        "{denied_line}"
    );
    assert!(denied_line.contains(" 403 "), "{denied_line}");
    let access_log = lines.join("\n");
    assert!(
        !access_log.contains(SECRET),
        "a header value reached the access log"
    );
}

#[test]
fn dry_run_and_staged_rehearsal() {
    // Tier default: staged `lockdown` (deny anything under /public/admin), then `p`.
    let staged_id = json!({"name": "lockdown", "kind": "StagedGlobalNetworkPolicy"});
    let mut msgs = default_profiles("app");
    msgs.push(policy("p", rules()));
    msgs.push(json!({"activePolicyUpdate": {"id": staged_id, "policy": {"tier": "default",
        "inboundRules": [{"action": "deny", "httpMatch": {"paths": [{"prefix": "/public/admin"}]}, "ruleId": "lockdown-0"}]}}}));
    msgs.push(json!({"workloadEndpointUpdate": {
        "id": {"orchestratorId": "k8s", "workloadId": "default/app", "endpointId": "eth0"},
        "endpoint": {"profileIds": ["kns.default", "ksa.default.app"], "ipv4Nets": [format!("{APP_IP}/32")],
            "tiers": [{"name": "default", "ingressPolicies": [staged_id, {"name": "p", "kind": "GlobalNetworkPolicy"}], "defaultAction": "Deny"}]}}}));
    msgs.push(in_sync());
    let stack = stack(
        msgs,
        r#""enforce":false,"staged":true,"decision_log":"deny""#,
    );
    let before = settled(&stack);
    assert_eq!(before.metric("alp_dry_run", &[]), 1);

    // A dry run never refuses: the denial reaches the backend, and is counted and logged.
    assert_eq!(send(&stack, "DELETE", "/public/a"), "200 app: ok");
    assert_eq!(send(&stack, "GET", "/public/a"), "200 app: ok");
    // Allowed now, denied once `lockdown` is promoted.
    assert_eq!(send(&stack, "GET", "/public/admin/users"), "200 app: ok");

    const STAGED: &str = "alp_staged_requests_total";
    let would_deny = [("alp_decision", "would_deny")];
    let allowed = [("alp_decision", "allowed")];
    let after = stats_until(&stack, "counted", |s| {
        s.delta(&before, REQUESTS, &would_deny) >= 1
            && s.delta(&before, REQUESTS, &allowed) >= 2
            && s.delta(&before, STAGED, &[]) >= 1
    });
    let delta = |family: &str, labels: &[(&str, &str)]| after.delta(&before, family, labels);
    let counts = [
        (REQUESTS, &would_deny[..], 1),
        // Nothing is refused in a dry run: no series says `denied`.
        (REQUESTS, &[("alp_decision", "denied")][..], 0),
        (REQUESTS, &allowed[..], 2),
        (
            REQUESTS,
            &[
                ("alp_decision", "would_deny"),
                ("alp_reason", "policy_denied"),
            ][..],
            1,
        ),
        (
            BY_POLICY,
            &[
                ("alp_tier", "default"),
                ("alp_policy", "_default"),
                ("alp_action", "deny"),
            ][..],
            1,
        ),
        // Every staged difference, and of them the one denied where allowed now.
        (STAGED, &[][..], 1),
        (STAGED, &[("alp_staged", "would_deny")][..], 1),
        (STAGED, &[("alp_staged", "would_allow")][..], 0),
        (STAGED, &[("alp_staged", "other_denial")][..], 0),
        (
            "alp_staged_policy_requests_total",
            &[
                ("alp_tier", "default"),
                ("alp_policy", "lockdown"),
                ("alp_action", "deny"),
            ][..],
            1,
        ),
    ];
    let wrong: Vec<String> = counts
        .iter()
        .filter(|(f, l, want)| delta(f, l) != *want)
        .map(|(f, l, want)| format!("{f}{l:?}: {} (want {want})", delta(f, l)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\nall stats: {:#?}", after.0);
    assert!(
        !after.has(REQUESTS, &[("alp_decision", "denied")]),
        "a dry run defines no `denied` series: {:#?}",
        after.0
    );

    let lines = decision_lines(&stack, |l| {
        l.iter()
            .filter(|v| v["path"].as_str().is_some_and(|p| p.starts_with("/public")))
            .count()
            >= 2
    });
    let log = std::fs::read_to_string(&stack.envoy.proc.log).unwrap();
    assert!(!log.contains(SECRET));
    let dry = lines
        .iter()
        .find(|v| v["method"] == "DELETE")
        .expect("the dry-run denial is logged");
    assert_eq!(
        (dry["decision"].as_str(), dry["status"].as_u64()),
        (Some("deny"), Some(403))
    );
    assert_eq!(
        (dry["enforced"].as_bool(), dry["blocked"].as_bool()),
        (Some(false), Some(false))
    );
    let staged = lines
        .iter()
        .find(|v| v["path"] == "/public/admin/users")
        .expect("the staged difference is logged");
    assert_eq!(staged["decision"], "allow");
    assert_eq!(staged["staged"]["decision"], "deny");
    assert_eq!(staged["staged"]["differs"], true);
    assert_eq!(staged["staged"]["policy"]["name"], "lockdown");
    assert_eq!(staged["staged"]["rule_id"], "lockdown-0");
    assert!(
        lines
            .iter()
            .all(|v| v["path"] != "/public/a" || v["method"] != "GET"),
        "agreeing allows are not logged in deny mode"
    );

    let (now, prom) = read_both(&stack.envoy);
    let wrong = prometheus_mismatches(&now, &prom);
    assert!(wrong.is_empty(), "{wrong:#?}");
    for (family, labels) in [
        (
            "alp_staged_policy_requests_total",
            &[
                ("alp_tier", "default"),
                ("alp_policy", "lockdown"),
                ("alp_action", "deny"),
            ][..],
        ),
        (
            "alp_staged_requests_total",
            &[("alp_staged", "would_deny")][..],
        ),
        (
            REQUESTS,
            &[
                ("alp_decision", "would_deny"),
                ("alp_reason", "policy_denied"),
            ][..],
        ),
    ] {
        assert!(
            prom_value(&prom, family, labels).is_some_and(|v| v >= 1.0),
            "no {family}{labels:?} in {prom:#?}"
        );
    }
    assert_eq!(prom_value(&prom, "alp_dry_run", &[]), Some(1.0));
}

/// The cost of metrics and decision logs at their defaults against both off: two stacks up at
/// once (one Envoy worker each, both on CPU 0, answering themselves), wrk on CPU 1 against one
/// then the other, alternating the order each round. Reported: throughput, and Envoy's CPU time
/// per request (all its threads, from `/proc/<pid>/task/*/schedstat`), which other load on the
/// machine disturbs far less than throughput; the cost is the median of the paired differences.
/// Slow; run on demand (`ALP_COST_SECONDS`, `ALP_COST_ROUNDS`):
/// `cargo test -p alp-e2e --test observability -- --ignored --nocapture cost`.
#[test]
#[ignore]
fn cost_of_metrics_and_decision_logs() {
    assert!(
        alp_e2e::artifacts::find_on_path("wrk").is_some(),
        "apt-get install -y wrk"
    );
    let env = |name: &str, default: u32| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (seconds, rounds) = (
        env("ALP_COST_SECONDS", 3),
        env("ALP_COST_ROUNDS", 10) as usize,
    );
    let variants = [
        ("defaults (metrics on, decision_log deny)", ""),
        (
            "metrics and decision logs off",
            r#""metrics":false,"decision_log":"off""#,
        ),
    ];
    let stacks: Vec<Stack> = variants
        .iter()
        .map(|(_, options)| {
            Stack::start(StackOptions {
                workloads: vec![WorkloadSpec::new(
                    "app",
                    Updates::Messages(single_policy("app", APP_IP, vec![], rules())),
                )],
                concurrency: 1,
                envoy_wrapper: vec!["taskset".into(), "-c".into(), "0".into()],
                access_log: Some("/dev/null".into()),
                direct_response: true,
                plugin_options: (*options).into(),
                ..StackOptions::default()
            })
            .expect("start the stack")
        })
        .collect();
    let paths = [
        ("allowed GET /public/x", "/public/x"),
        (
            "denied GET /private/x (logged up to 1000/s by default)",
            "/private/x",
        ),
    ];
    let median = |xs: &[f64]| {
        let mut xs = xs.to_vec();
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    // One measurement: (requests per second, Envoy CPU microseconds per request).
    let measure = |i: usize, url: &str| {
        let pid = stacks[i].envoy.proc.pid();
        let before = cpu_ns(pid);
        let (rps, requests) = wrk(url, seconds);
        (
            rps,
            (cpu_ns(pid) - before) as f64 / 1000.0 / requests as f64,
        )
    };
    for (path_label, path) in paths {
        let urls: Vec<String> = stacks
            .iter()
            .map(|s| format!("http://{}{path}", s.addr("app")))
            .collect();
        urls.iter().for_each(|u| {
            wrk(u, 1);
        });
        let mut runs: [Vec<(f64, f64)>; 2] = [vec![], vec![]];
        for round in 0..rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                runs[i].push(measure(i, &urls[i]));
            }
        }
        let pct = |on: f64, off: f64| (on - off) / off * 100.0;
        let cpu_cost: Vec<f64> = runs[0]
            .iter()
            .zip(&runs[1])
            .map(|(a, b)| pct(a.1, b.1))
            .collect();
        let rps_cost: Vec<f64> = runs[0]
            .iter()
            .zip(&runs[1])
            .map(|(a, b)| -pct(a.0, b.0))
            .collect();
        for (i, (label, _)) in variants.iter().enumerate() {
            let rps: Vec<f64> = runs[i].iter().map(|r| r.0).collect();
            let cpu: Vec<f64> = runs[i].iter().map(|r| r.1).collect();
            alp_e2e::report(format!(
                "cost: {path_label}: {label}: {:.0} req/s, {:.2} us Envoy CPU per request (medians of {rounds} x {seconds} s)",
                median(&rps),
                median(&cpu)
            ));
        }
        alp_e2e::report(format!(
            "cost: {path_label}: defaults cost {:.1} % more CPU per request, {:.1} % of throughput \
             (medians of paired differences; CPU {:?})",
            median(&cpu_cost),
            median(&rps_cost),
            cpu_cost.iter().map(|c| (c * 10.0).round() / 10.0).collect::<Vec<_>>()
        ));
    }
}

/// CPU time of every thread of process `pid` so far, nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("Envoy's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `wrk -t1 -c16` on CPU 1: (requests per second, requests completed).
fn wrk(url: &str, seconds: u32) -> (f64, u64) {
    let out = std::process::Command::new("taskset")
        .args([
            "-c",
            "1",
            "wrk",
            "-t1",
            "-c16",
            &format!("-d{seconds}s"),
            url,
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok());
    // "  123456 requests in 3.00s, 12.34MB read"
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    match (rps, requests) {
        (Some(rps), Some(requests)) => (rps, requests),
        _ => panic!("wrk printed no Requests/sec or request count: {text}"),
    }
}

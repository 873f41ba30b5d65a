//! Seeing and rehearsing decisions through real Envoy: the filter's stats in the admin `/stats`
//! and `/stats/prometheus` (with the bootstrap's `stats_tags`), decision-log lines in Envoy's log
//! (JSON, no header values), a dry run that lets denied requests through and counts them, and
//! the staged rehearsal counting where staged policies would decide otherwise.

use alp_e2e::policy::{default_profiles, in_sync, policy, single_policy};
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::{Request, Stack};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

/// Every `wasmcustom.alp.*` stat from the admin `/stats?filter=alp`.
fn alp_stats(stack: &Stack) -> BTreeMap<String, u64> {
    let r = stack.envoy.admin_get("/stats?filter=alp").unwrap();
    r.body
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.starts_with("wasmcustom.alp."))
        .filter_map(|(n, v)| Some((n.to_string(), v.trim().parse().ok()?)))
        .collect()
}

fn stat(stats: &BTreeMap<String, u64>, name: &str) -> u64 {
    stats
        .get(&format!("wasmcustom.{name}"))
        .copied()
        .unwrap_or(0)
}

/// Waits (bounded) until the stats satisfy `done` (the filter flushes on its 100 ms tick).
fn stats_until(
    stack: &Stack,
    what: &str,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = alp_stats(stack);
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: stats never got there: {stats:#?}\n{}",
            stack.diagnostics("app")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stats once the policy is in and every VM has flushed what it counted so far (two reads
/// three ticks apart agree): the baseline the harness's own readiness probes leave behind.
fn settled(stack: &Stack) -> BTreeMap<String, u64> {
    let mut last = stats_until(stack, "first snapshot", |s| {
        stat(s, "alp.snapshot.version") > 0
    });
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = alp_stats(stack);
        let counters = |s: &BTreeMap<String, u64>| {
            s.iter()
                .filter(|(k, _)| !k.contains(".snapshot.age"))
                .map(|(k, v)| (k.clone(), *v))
                .collect::<Vec<_>>()
        };
        if counters(&now) == counters(&last) {
            return now;
        }
        last = now;
    }
}

/// The decision lines of Envoy's log (the JSON object after Envoy's own prefix), parsed, once
/// `done` holds for them (bounded wait: Envoy writes its log asynchronously).
fn decision_lines(stack: &Stack, done: impl Fn(&[Value]) -> bool) -> (Vec<Value>, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&stack.envoy.proc.log).unwrap_or_default();
        let lines: Vec<Value> = log
            .lines()
            .filter_map(|l| l.find("{\"event\":\"alp.decision\"").map(|i| &l[i..]))
            .map(|json| {
                serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
            })
            .collect();
        if done(&lines) || Instant::now() >= deadline {
            return (lines, log);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send(stack: &Stack, method: &str, path: &str) -> String {
    let req = Request::get(path)
        .method(method)
        .header("authorization", &format!("Bearer {SECRET}"))
        .header("x-api-key", SECRET)
        .header("cookie", &format!("session={SECRET}"))
        .transport(stack.mtls("client").unwrap());
    stack.send("app", &req).unwrap().summary()
}

#[test]
fn counters_and_decision_logs_with_the_default_settings() {
    let stack = stack(single_policy("app", APP_IP, vec![], rules()), "");
    // The harness's readiness probes were decided too: measure from here.
    let before = settled(&stack);
    assert_eq!(stat(&before, "alp.dry_run"), 0);
    assert_eq!(send(&stack, "GET", "/public/a"), "200 app: ok");
    assert_eq!(
        send(&stack, "GET", "/public/b?token=SECRETQUERY"),
        "200 app: ok"
    );
    assert_eq!(
        send(&stack, "GET", "/private/x?token=SECRETQUERY"),
        "403 denied by policy"
    );
    assert_eq!(send(&stack, "POST", "/public/a"), "403 denied by policy");
    assert_eq!(send(&stack, "DELETE", "/public/a"), "403 denied by policy");

    let delta = |s: &BTreeMap<String, u64>, name: &str| stat(s, name) - stat(&before, name);
    let after = stats_until(&stack, "counted", |s| {
        delta(s, "alp.requests.allowed") >= 2 && delta(s, "alp.requests.denied") >= 3
    });
    assert_eq!(delta(&after, "alp.requests.allowed"), 2, "{after:#?}");
    assert_eq!(delta(&after, "alp.requests.denied"), 3);
    assert_eq!(stat(&after, "alp.requests.would_deny"), 0);
    assert_eq!(delta(&after, "alp.decision.reason.allow"), 2);
    assert_eq!(delta(&after, "alp.decision.reason.policy_denied"), 3);
    assert_eq!(delta(&after, "alp.policy.default.p.allow"), 2);
    assert_eq!(delta(&after, "alp.policy.default._default.deny"), 3);
    assert!(stat(&after, "alp.snapshot.reloads") >= 1);
    assert_eq!(stat(&after, "alp.snapshot.refusals"), 0);
    assert!(after.contains_key("wasmcustom.alp.snapshot.age_seconds"));
    assert!(
        stat(&after, "alp.snapshot.version") > 1_600_000_000_000_000,
        "control's versions are Unix microseconds"
    );
    // No stat name carries a request value.
    assert!(after
        .keys()
        .all(|k| !k.contains("public") && !k.contains("private") && !k.contains(SECRET)));

    // Prometheus: the bootstrap's stats_tags turn reason, tier and policy into labels.
    let prom = stack.envoy.admin_get("/stats/prometheus").unwrap().body;
    // Envoy exports stats of the `wasmcustom` namespace without `envoy_` and the namespace.
    let series: Vec<&str> = prom.lines().filter(|l| l.starts_with("alp_")).collect();
    let has = |needle: &str| series.iter().any(|l| l.contains(needle));
    assert!(
        has("alp_decision_reason{alp_reason=\"policy_denied\"}"),
        "{series:#?}"
    );
    assert!(
        has("alp_policy_allow{alp_tier=\"default\",alp_policy=\"p\"}"),
        "{series:#?}"
    );
    assert!(
        has("alp_policy_deny{alp_tier=\"default\",alp_policy=\"_default\"}"),
        "{series:#?}"
    );
    assert!(has("alp_requests_denied"), "{series:#?}");

    // Decision logs: the three denials (default `deny`), JSON, without any header value.
    let (lines, log) = decision_lines(&stack, |l| {
        l.iter()
            .filter(|v| {
                v["source"]["principal"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/sa/client"))
            })
            .count()
            >= 3
    });
    assert!(!log.contains(SECRET), "a header value reached Envoy's log");
    assert!(
        !log.contains("SECRETQUERY"),
        "a query string reached Envoy's log"
    );
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|v| {
            v["source"]["principal"]
                .as_str()
                .is_some_and(|p| p.ends_with("/sa/client"))
        })
        .collect();
    assert_eq!(ours.len(), 3, "denials only: {ours:#?}");
    let private = ours
        .iter()
        .find(|v| v["path"] == "/private/x")
        .expect("the GET /private/x denial");
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
    assert_eq!(private["version"], stat(&after, "alp.snapshot.version"));
    assert!(
        ours.iter().any(|v| v["method"] == "POST") && ours.iter().any(|v| v["method"] == "DELETE")
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
    assert_eq!(stat(&before, "alp.dry_run"), 1);

    // A dry run never refuses: the denial reaches the backend, and is counted and logged.
    assert_eq!(send(&stack, "DELETE", "/public/a"), "200 app: ok");
    assert_eq!(send(&stack, "GET", "/public/a"), "200 app: ok");
    // Allowed now, denied once `lockdown` is promoted.
    assert_eq!(send(&stack, "GET", "/public/admin/users"), "200 app: ok");

    let delta = |s: &BTreeMap<String, u64>, name: &str| stat(s, name) - stat(&before, name);
    let after = stats_until(&stack, "counted", |s| {
        delta(s, "alp.requests.would_deny") >= 1
            && delta(s, "alp.requests.allowed") >= 2
            && delta(s, "alp.staged.differs") >= 1
    });
    assert_eq!(delta(&after, "alp.requests.would_deny"), 1, "{after:#?}");
    assert_eq!(
        stat(&after, "alp.requests.denied"),
        0,
        "nothing refused in a dry run"
    );
    assert_eq!(delta(&after, "alp.requests.allowed"), 2);
    assert_eq!(delta(&after, "alp.decision.reason.policy_denied"), 1);
    assert_eq!(delta(&after, "alp.policy.default._default.deny"), 1);
    assert_eq!(delta(&after, "alp.staged.differs"), 1);
    assert_eq!(delta(&after, "alp.staged.would_deny"), 1);
    assert_eq!(stat(&after, "alp.staged.would_allow"), 0);
    assert_eq!(delta(&after, "alp.staged.policy.default.lockdown.deny"), 1);

    let (lines, log) = decision_lines(&stack, |l| {
        l.iter()
            .filter(|v| v["path"].as_str().is_some_and(|p| p.starts_with("/public")))
            .count()
            >= 2
    });
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

    let prom = stack.envoy.admin_get("/stats/prometheus").unwrap().body;
    assert!(
        prom.lines()
            .any(|l| l
                .contains("alp_staged_policy_deny{alp_tier=\"default\",alp_policy=\"lockdown\"}")),
        "{}",
        prom.lines()
            .filter(|l| l.starts_with("alp_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
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

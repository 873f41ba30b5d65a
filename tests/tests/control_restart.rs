//! Control is killed and restarted while requests flow: the last snapshot stays in force during
//! the gap (no request the policy denies is ever allowed, allowed ones keep working), and a
//! policy written while control was down is enforced once it is back.

use alp_e2e::load::{DecisionLoad, LoadOptions};
use alp_e2e::policy::single_policy;
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::{report, Request, Stack};
use serde_json::{json, Value};
use std::time::Duration;

fn policy(extra_allowed: Option<&str>) -> Vec<Value> {
    let mut paths = vec![json!({"prefix": "/allowed"})];
    if let Some(p) = extra_allowed {
        paths.push(json!({"prefix": p}));
    }
    single_policy(
        "app",
        "127.0.33.1",
        vec![],
        json!([
            {"action": "deny", "httpMatch": {"paths": [{"prefix": "/denied"}]}},
            {"action": "allow", "httpMatch": {"paths": paths}},
        ]),
    )
}

#[test]
fn no_denied_request_is_allowed_while_control_is_down() {
    let mut stack = Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new("app", Updates::Messages(policy(None)))],
        ..StackOptions::default()
    })
    .expect("start the stack");
    let addr = stack.addr("app");

    let load = DecisionLoad::start(
        addr,
        LoadOptions {
            threads: 3,
            pace: None,
            connect_failure_is_violation: false,
        },
    );

    std::thread::sleep(Duration::from_millis(500));
    // Crash, stay down long enough for several failed polls and retries, come back unchanged.
    stack.kill_control("app");
    std::thread::sleep(Duration::from_secs(3));
    stack.start_control("app", Duration::from_secs(30)).unwrap();
    stack
        .control("app")
        .unwrap()
        .wait_ready(Duration::from_secs(30))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));

    // Crash again; the policy changes while control is down; control comes back with it.
    stack.kill_control("app");
    stack.write_updates("app", &policy(Some("/new"))).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let before = stack.send("app", &Request::get("/new")).unwrap();
    assert_eq!(
        before.summary(),
        "403 denied by policy",
        "nothing can change while control is down"
    );
    stack.start_control("app", Duration::from_secs(30)).unwrap();
    let after = stack
        .eventually("app", &Request::get("/new"), Duration::from_secs(20), |o| {
            o.status() == Some(200)
        })
        .unwrap();
    assert_eq!(
        after.summary(),
        "200 app: ok",
        "the new policy must be enforced after the restart; {}",
        stack.diagnostics("app")
    );
    std::thread::sleep(Duration::from_millis(500));

    let t = load.stop();
    report(format!("control restarts under load: {} denied requests refused, {} allowed requests served, {} violations", t.denied_ok, t.allowed_ok, t.violations.len()));
    assert!(
        t.denied_ok > 100 && t.allowed_ok > 100,
        "too little load to mean anything"
    );
    assert!(
        t.violations.is_empty(),
        "during control restarts: {:?}",
        &t.violations[..t.violations.len().min(20)]
    );
}

/// A new Envoy (empty shared data, fresh VMs) gets the current snapshot from the running
/// control at once: no 503 window beyond its first fetch and no waiting for a policy change.
#[test]
fn restarted_envoy_enforces_the_current_snapshot_at_once() {
    let mut stack = Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new("app", Updates::Messages(policy(None)))],
        ..StackOptions::default()
    })
    .expect("start the stack");
    stack.write_updates("app", &policy(Some("/new"))).unwrap();
    let o = stack
        .eventually("app", &Request::get("/new"), Duration::from_secs(20), |o| {
            o.status() == Some(200)
        })
        .unwrap();
    assert_eq!(o.summary(), "200 app: ok");

    stack.restart_envoy().unwrap();
    let ready = std::time::Instant::now();
    let first = stack
        .eventually("app", &Request::get("/new"), Duration::from_secs(20), |o| {
            o.status() != Some(503)
        })
        .unwrap();
    let waited = ready.elapsed();
    assert_eq!(
        first.summary(),
        "200 app: ok",
        "the new Envoy must enforce the current policy"
    );
    assert_eq!(
        stack
            .send("app", &Request::get("/denied"))
            .unwrap()
            .summary(),
        "403 denied by policy"
    );
    report(format!(
        "Envoy restart: current snapshot enforced {waited:?} after the new Envoy was ready"
    ));
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
}

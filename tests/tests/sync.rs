//! Before its first snapshot the filter answers every request with 503: when control has not
//! reached `inSync`, and when there is no control at all. Once policy arrives it is enforced.

use alp_e2e::policy::{in_sync, single_policy, write_in_place};
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::{Request, Stack};
use serde_json::json;
use std::time::Duration;

#[test]
fn unsynchronised_until_policy_arrives() {
    let rules = json!([{"action": "allow", "httpMatch": {"paths": [{"prefix": "/ok"}]}}]);
    let mut pending = single_policy("nosync", "127.0.31.1", vec![], rules.clone());
    assert_eq!(pending.pop(), Some(in_sync()));
    let mut no_control = WorkloadSpec::new(
        "nocontrol",
        Updates::Messages(single_policy("nocontrol", "127.0.31.2", vec![], rules)),
    );
    no_control.start_control = false;
    let mut stack = Stack::start(StackOptions {
        workloads: vec![
            WorkloadSpec::new("nosync", Updates::Messages(pending.clone())),
            no_control,
        ],
        wait_synced: false,
        ..StackOptions::default()
    })
    .expect("start the stack");

    // Give the filters time to poll (and to fail to connect) a few times first.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !stack.control("nosync").unwrap().ready(),
        "control without inSync must not be ready"
    );
    for w in ["nosync", "nocontrol"] {
        for path in ["/ok", "/other", "/ok/../../x"] {
            let plain = stack.send(w, &Request::get(path)).unwrap();
            assert_eq!(
                plain.summary(),
                "503 policy not synchronised",
                "{w} {path} plaintext"
            );
            let mtls = stack
                .send(
                    w,
                    &Request::get(path).transport(stack.mtls("client").unwrap()),
                )
                .unwrap();
            assert_eq!(
                mtls.summary(),
                "503 policy not synchronised",
                "{w} {path} mTLS"
            );
        }
    }

    // inSync arrives (appended in place): the policy is enforced.
    pending.push(in_sync());
    write_in_place(&stack.workload("nosync").updates, &pending).unwrap();
    stack
        .control("nosync")
        .unwrap()
        .wait_ready(Duration::from_secs(30))
        .unwrap();
    assert_enforced(&stack, "nosync", "200 nosync: ok");

    // Control starts late: the filter has kept retrying and picks the policy up.
    stack
        .start_control("nocontrol", Duration::from_secs(30))
        .unwrap();
    assert_enforced(&stack, "nocontrol", "200 nocontrol: ok");
}

/// Once workload `w`'s filter stops answering 503 (within 20 s), its policy is enforced: `/ok`
/// answers `ok` and `/other` is denied.
fn assert_enforced(stack: &Stack, w: &str, ok: &str) {
    let o = stack
        .eventually(w, &Request::get("/ok"), Duration::from_secs(20), |o| {
            o.status() != Some(503)
        })
        .unwrap();
    assert_eq!(o.summary(), ok, "{}", stack.diagnostics(w));
    assert_eq!(
        stack.send(w, &Request::get("/other")).unwrap().summary(),
        "403 denied by policy"
    );
}

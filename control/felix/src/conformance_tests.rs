//! The shared conformance cases: every `updates` list parses and applies without a malformed
//! message, and the engine built from it gives each case's expected result.

use crate::store::Applied;
use crate::sync::SyncState;
use crate::updates::parse_values;
use alp_engine::RequestSpec;
use serde_json::Value;

fn cases() -> Vec<Value> {
    let cases: Vec<Value> = serde_json::from_str(
        &alp_engine::testdata::shared_file("conformance/authz_cases.json")
            .expect("shared/conformance/authz_cases.json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cases.len(), 105);
    cases
}

fn case_id(case: &Value) -> String {
    case["id"].as_str().unwrap_or("?").to_string()
}

/// The case's updates applied to a fresh state, asserting none is malformed.
fn applied(case: &Value) -> SyncState {
    let id = case_id(case);
    let raw = match &case["updates"] {
        Value::Array(items) => items.clone(),
        other => panic!("{id}: updates is not a list: {other}"),
    };
    let msgs = parse_values(raw).unwrap_or_else(|e| panic!("{id}: {e}"));
    let mut state = SyncState::new();
    for (i, m) in msgs.iter().enumerate() {
        let r = state.apply(m);
        assert!(
            !matches!(r.applied, Applied::Malformed(_)),
            "{id}: update {i}: {r:?}"
        );
    }
    state
}

#[test]
fn authz_case_updates_parse_and_apply() {
    for case in cases() {
        let id = case_id(&case);
        let has_in_sync = case["updates"]
            .as_array()
            .is_some_and(|u| u.iter().any(|m| m.get("inSync").is_some()));
        let state = applied(&case);
        assert_eq!(state.in_sync(), has_in_sync, "{id}");
        assert_eq!(state.current().is_some(), has_in_sync, "{id}");
        if let Some(store) = state.current() {
            assert_eq!(
                store.snapshot(),
                store.snapshot(),
                "{id}: snapshot not deterministic"
            );
        }
    }
}

#[test]
fn authz_cases_decide_as_expected() {
    let mut failures = Vec::new();
    for case in cases() {
        let id = case_id(&case);
        let spec: RequestSpec = serde_json::from_value(case["request"].clone())
            .unwrap_or_else(|e| panic!("{id}: request: {e}"));
        let decision = applied(&case).engine().decide(&spec.request());
        let got = if decision.verdict.is_allowed() {
            "allow"
        } else {
            "deny"
        };
        if Some(got) != case["expect"].as_str() {
            failures.push(format!("{id}: got {got} ({:?})", decision.verdict));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

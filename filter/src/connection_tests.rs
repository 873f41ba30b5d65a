//! The connection gate against the fake host: when each kind of connection is decided, what a
//! denial does, and that nothing undecided flows.

use super::*;
use crate::cache::tests::publish;
use crate::config::DecisionLog;
use crate::decide::tests::{decision_lines, one_policy};
use crate::decision_log::DecisionLogger;
use crate::host::fake::FakeHost;
use crate::metrics::{Metrics, Subject};
use crate::vm_state::Settings;
use alp_engine::envelope;
use alp_engine::snapshot::{HttpMatch, PortRange, Rule, RuleSide, ServiceAccountMatch, Snapshot};
use std::rc::Rc;

const SUMMARY: &str = "spiffe://cluster.local/ns/default/sa/summary";
const CUSTOMER: &str = "spiffe://cluster.local/ns/default/sa/customer";

fn allow(rule: Rule) -> Rule {
    Rule {
        action: "allow".into(),
        ..rule
    }
}

/// Allows service account `summary` to port 5432.
fn summary_to_5432() -> Snapshot {
    one_policy(vec![allow(Rule {
        src: RuleSide {
            service_account_match: Some(ServiceAccountMatch {
                names: vec!["summary".into()],
                selector: String::new(),
            }),
            ..Default::default()
        },
        dst: RuleSide {
            ports: vec![PortRange {
                first: 5432,
                last: 5432,
            }],
            ..Default::default()
        },
        ..Default::default()
    })])
}

fn vm(host: &FakeHost, dry_run: bool) -> VmState {
    VmState {
        metrics: Arc::new(Metrics::define(host, dry_run, Subject::Connection)),
        settings: Rc::new(Settings {
            dry_run,
            log: DecisionLogger::new(DecisionLog::All, 1.0, 0, 5),
            subject: Subject::Connection,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn plaintext(port: u16) -> FakeHost {
    let host = FakeHost::new();
    host.set_property("source.address", "10.0.0.1:40000");
    host.set_property("destination.address", &format!("10.0.0.2:{port}"));
    host
}

/// A TLS connection whose handshake has not completed: no peer certificate yet.
fn tls_handshaking(port: u16) -> FakeHost {
    let host = plaintext(port);
    host.set_property("connection.tls_version", "TLSv1.3");
    host.set_property_bytes("connection.mtls", &[0]);
    host
}

/// The handshake completes with the peer's certificate `principal`.
fn complete_handshake(host: &FakeHost, principal: &str) {
    host.set_property_bytes("connection.mtls", &[1]);
    host.set_property("connection.uri_san_peer_certificate", principal);
}

fn with_policy(host: &FakeHost, snapshot: &Snapshot) {
    publish(host, 1, &envelope::encode(1, snapshot).unwrap());
}

#[test]
fn plaintext_is_decided_on_the_new_connection() {
    let host = plaintext(5432);
    with_policy(&host, &summary_to_5432());
    let f = vm(&host, false);
    let mut gate = ConnectionGate::new();
    // A plaintext peer passes service-account clauses (spec section 9).
    assert_eq!(gate.on_new_connection(&f, &host), Flow::Continue);
    assert!(gate.is_allowed());
    assert_eq!(
        gate.on_downstream_data(&f, &host, 10, false),
        Flow::Continue
    );
    assert_eq!(gate.on_upstream_data(&f, &host), Flow::Continue);
    assert_eq!(host.closes.get(), 0);

    let host = plaintext(5433);
    with_policy(&host, &summary_to_5432());
    let f = vm(&host, false);
    let mut gate = ConnectionGate::new();
    assert_eq!(
        gate.on_new_connection(&f, &host),
        Flow::Pause,
        "tcp_proxy never sees it"
    );
    assert!(gate.is_closed());
    assert_eq!(host.closes.get(), 1);
    assert_eq!(gate.on_downstream_data(&f, &host, 10, false), Flow::Pause);
    assert_eq!(gate.on_upstream_data(&f, &host), Flow::Pause);
    assert_eq!(host.closes.get(), 1, "closed once");
}

#[test]
fn tls_waits_for_the_handshake_then_decides_on_the_identity() {
    for (principal, allowed) in [(SUMMARY, true), (CUSTOMER, false)] {
        let host = tls_handshaking(5432);
        with_policy(&host, &summary_to_5432());
        let f = vm(&host, false);
        let mut gate = ConnectionGate::new();
        assert_eq!(gate.on_new_connection(&f, &host), Flow::Continue);
        assert!(!gate.is_allowed() && !gate.is_closed(), "undecided");
        complete_handshake(&host, principal);
        let flow = gate.on_downstream_data(&f, &host, 5, false);
        assert_eq!(flow == Flow::Continue, allowed, "{principal}");
        assert_eq!(gate.is_allowed(), allowed);
        assert_eq!(host.closes.get(), usize::from(!allowed));
    }
}

#[test]
fn upstream_bytes_before_the_handshake_are_held_and_decide_after_it() {
    // A server-first protocol: the greeting is the first event.
    let host = tls_handshaking(5432);
    with_policy(&host, &summary_to_5432());
    let f = vm(&host, false);
    let mut gate = ConnectionGate::new();
    gate.on_new_connection(&f, &host);
    assert_eq!(gate.on_upstream_data(&f, &host), Flow::Pause, "held");
    assert_eq!(gate.on_upstream_data(&f, &host), Flow::Pause, "still held");
    assert!(decision_lines(&host).is_empty(), "not decided");
    f.metrics.flush(&host, None);
    assert_eq!(host.counter("alp_connections_held_total"), 1);
    // With ON_DOWNSTREAM_TLS_HANDSHAKE the greeting comes after the handshake.
    complete_handshake(&host, CUSTOMER);
    assert_eq!(gate.on_upstream_data(&f, &host), Flow::Pause);
    assert!(gate.is_closed());
    assert_eq!(host.closes.get(), 1);

    let host = tls_handshaking(5432);
    with_policy(&host, &summary_to_5432());
    let f = vm(&host, false);
    let mut gate = ConnectionGate::new();
    gate.on_new_connection(&f, &host);
    complete_handshake(&host, SUMMARY);
    assert_eq!(gate.on_upstream_data(&f, &host), Flow::Continue);
    assert!(gate.is_allowed());
}

#[test]
fn a_client_leaving_during_the_handshake_is_closed_undecided() {
    let host = tls_handshaking(5432);
    with_policy(&host, &summary_to_5432());
    let f = vm(&host, false);
    let mut gate = ConnectionGate::new();
    gate.on_new_connection(&f, &host);
    assert_eq!(gate.on_downstream_data(&f, &host, 0, true), Flow::Pause);
    assert!(gate.is_closed());
    assert!(decision_lines(&host).is_empty());
}

#[test]
fn no_policy_closes_at_once_tls_or_not() {
    for host in [plaintext(5432), tls_handshaking(5432)] {
        let f = vm(&host, false);
        let mut gate = ConnectionGate::new();
        assert_eq!(gate.on_new_connection(&f, &host), Flow::Pause);
        assert!(gate.is_closed());
        f.metrics.flush(&host, None);
        assert_eq!(
            host.metric("alp_connections_total", &[("alp_reason", "not_in_sync")]),
            1
        );
        assert_eq!(
            host.metric("alp_connections_total", &[("alp_decision", "denied")]),
            1
        );
    }
}

#[test]
fn an_http_rule_never_matches_a_connection() {
    let host = plaintext(8080);
    with_policy(
        &host,
        &one_policy(vec![allow(Rule {
            http_match: Some(HttpMatch {
                methods: vec!["GET".into()],
                paths: vec![],
            }),
            ..Default::default()
        })]),
    );
    let f = vm(&host, false);
    let mut gate = ConnectionGate::new();
    assert_eq!(gate.on_new_connection(&f, &host), Flow::Pause);
    assert!(gate.is_closed());
}

#[test]
fn unreadable_attributes_close_the_connection() {
    for failing in [
        "connection.tls_version",
        "source.address",
        "destination.address",
    ] {
        let host = plaintext(5432);
        with_policy(&host, &summary_to_5432());
        host.failing_properties.borrow_mut().push(failing.into());
        let f = vm(&host, false);
        let mut gate = ConnectionGate::new();
        assert_eq!(gate.on_new_connection(&f, &host), Flow::Pause, "{failing}");
        f.metrics.flush(&host, None);
        assert_eq!(
            host.metric(
                "alp_connections_total",
                &[("alp_reason", "attributes_unavailable")]
            ),
            1,
            "{failing}"
        );
    }
    for failing in ["connection.mtls", "connection.uri_san_peer_certificate"] {
        let host = tls_handshaking(5432);
        with_policy(&host, &summary_to_5432());
        let f = vm(&host, false);
        let mut gate = ConnectionGate::new();
        gate.on_new_connection(&f, &host);
        complete_handshake(&host, SUMMARY);
        host.failing_properties.borrow_mut().push(failing.into());
        assert_eq!(gate.on_upstream_data(&f, &host), Flow::Pause, "{failing}");
        assert!(gate.is_closed(), "{failing}");
    }
}

#[test]
fn dry_run_lets_a_denied_connection_through_and_counts_it() {
    let host = plaintext(22);
    with_policy(&host, &summary_to_5432());
    let f = vm(&host, true);
    let mut gate = ConnectionGate::new();
    assert_eq!(gate.on_new_connection(&f, &host), Flow::Continue);
    assert!(gate.is_allowed());
    assert_eq!(host.closes.get(), 0);
    f.metrics.flush(&host, None);
    assert_eq!(
        host.metric("alp_connections_total", &[("alp_decision", "would_deny")]),
        1
    );
    assert_eq!(
        host.metric("alp_connections_total", &[("alp_decision", "denied")]),
        0
    );
    let line = &decision_lines(&host)[0];
    assert_eq!(line["blocked"], false);
    assert_eq!(line["enforced"], false);
}

#[test]
fn decisions_are_counted_and_logged_as_connections() {
    let host = tls_handshaking(5432);
    with_policy(&host, &summary_to_5432());
    let f = vm(&host, false);
    let mut gate = ConnectionGate::new();
    gate.on_new_connection(&f, &host);
    complete_handshake(&host, CUSTOMER);
    gate.on_downstream_data(&f, &host, 3, false);
    f.metrics.flush(&host, None);
    assert_eq!(
        host.metric("alp_connections_total", &[("alp_decision", "denied")]),
        1
    );
    assert_eq!(
        host.metric("alp_connections_total", &[("alp_reason", "policy_denied")]),
        1
    );
    assert_eq!(
        host.metric(
            "alp_policy_connections_total",
            &[
                ("alp_tier", "t"),
                ("alp_policy", "_default"),
                ("alp_action", "deny")
            ]
        ),
        1
    );
    assert_eq!(
        host.metric("alp_requests_total", &[("alp_decision", "denied")]),
        0,
        "not a request"
    );
    let lines = decision_lines(&host);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["kind"], "connection");
    assert_eq!(l["decision"], "deny");
    assert_eq!(
        l["status"],
        serde_json::Value::Null,
        "no reply to a connection"
    );
    assert_eq!(l["source"]["principal"], CUSTOMER);
    assert_eq!(l["destination"]["port"], 5432);
    for http_field in ["method", "path", "path_rewritten", "forwarded_path"] {
        assert!(l.get(http_field).is_none(), "{http_field}: {l}");
    }
}

#[test]
fn a_policy_change_applies_to_new_connections() {
    let host = plaintext(5432);
    with_policy(&host, &summary_to_5432());
    let f = vm(&host, false);
    let mut open = ConnectionGate::new();
    assert_eq!(open.on_new_connection(&f, &host), Flow::Continue);
    // Version 2 allows nothing.
    publish(&host, 2, &envelope::encode(2, &one_policy(vec![])).unwrap());
    host.now.set(host.now.get() + 10_000);
    let mut next = ConnectionGate::new();
    assert_eq!(next.on_new_connection(&f, &host), Flow::Pause);
    assert_eq!(
        open.on_downstream_data(&f, &host, 1, false),
        Flow::Continue,
        "an open connection is not decided again"
    );
}

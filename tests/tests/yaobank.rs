//! The YAO bank tutorial through real Envoy over mTLS: customer (GET from anyone), summary (only
//! service account customer), database (only service account summary), each its own listener,
//! vm_id and control; the same policy at L4 on each workload's raw TCP listener; plus what the
//! TLS layer and the identity rules refuse.

use alp_e2e::certs::Ca;
use alp_e2e::demo::run_yaobank;
use alp_e2e::demo_tcp::run_yaobank_tcp;
use alp_e2e::stack::{yaobank_ip, yaobank_options, yaobank_yaml_options};
use alp_e2e::{Outcome, Request, Stack};

/// The same demonstration with control compiling the tutorial's own Calico YAML
/// (`../shared/examples/yaobank/30-policy.yaml`) for each workload: what the README's first
/// command runs.
#[test]
fn yaobank_from_the_tutorials_calico_yaml() {
    let opts = yaobank_yaml_options()
        .expect("../shared/examples/yaobank (the tutorial's YAML) must be beside the project");
    let stack = Stack::start(opts).expect("start the YAO bank stack on the YAML source");
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
/// its outcome, and fails if any outcome was not the expected one.
fn assert_every_case_as_expected(stack: &Stack) {
    let mut report = vec![];
    let line = |ok: bool, text: String| format!("{} {text}", if ok { "ok  " } else { "FAIL" });
    let mut unexpected = run_yaobank(stack, |case, outcome, ok| {
        report.push(line(ok, case.describe(outcome)));
    })
    .unwrap();
    unexpected += run_yaobank_tcp(stack, |case, outcome, ok| {
        report.push(line(ok, case.describe(outcome)));
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

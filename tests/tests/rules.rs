//! Rule clauses that depend on what Envoy reports about the connection, exercised through real
//! Envoy: source IP (clients bound to other 127.x addresses), destination port, HTTP paths under
//! normalisation attacks, and headers a client can forge.

use alp_e2e::policy::{ipset, single_policy};
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::{Outcome, PathMode, Request, Stack, Transport};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

const APP_IP: &str = "127.0.30.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn app_stack(msgs: Vec<Value>, path_mode: PathMode) -> Stack {
    Stack::start(StackOptions {
        workloads: vec![WorkloadSpec::new("app", Updates::Messages(msgs))],
        path_mode,
        ..StackOptions::default()
    })
    .expect("start the stack")
}

/// Rewrites the policy and waits until `probe` answers `want` (bounded): each step of a test
/// flips the decision, so a step is only checked once its policy is enforced.
fn set_policy(stack: &Stack, rules: Value, extra: Vec<Value>, probe: &Request, want: &str) {
    stack
        .write_updates("app", &single_policy("app", APP_IP, extra, rules))
        .unwrap();
    let o = stack
        .eventually("app", probe, Duration::from_secs(20), |o| {
            o.summary() == want
        })
        .unwrap();
    assert_eq!(
        o.summary(),
        want,
        "policy change not enforced; {}",
        stack.diagnostics("app")
    );
}

fn both_transports(stack: &Stack, sa: &str) -> Vec<(&'static str, Transport)> {
    vec![
        ("plaintext", Transport::Plaintext),
        ("mTLS", stack.mtls(sa).unwrap()),
    ]
}

#[test]
fn source_ip_rules_use_the_connection_address() {
    let rules = json!([
        {"action": "deny", "srcNet": ["127.0.20.128/25"]},
        {"action": "allow", "srcNet": ["127.0.20.0/24"]},
        {"action": "allow", "srcIpSetIds": ["s:net"]},
    ]);
    let extra = vec![ipset("s:net", "NET", &["127.0.21.0/30"])];
    let stack = app_stack(
        single_policy("app", APP_IP, extra, rules),
        PathMode::EnvoyNormalises,
    );
    for (label, transport) in both_transports(&stack, "client") {
        let cases = [
            ("127.0.20.5", None, "200 app: ok"),
            ("127.0.20.127", None, "200 app: ok"),
            ("127.0.20.200", None, "403 denied by policy"), // the deny rule's /25
            ("127.0.21.3", None, "200 app: ok"),            // NET IP set
            ("127.0.21.4", None, "403 denied by policy"),   // just outside the /30
            ("127.0.0.1", None, "403 denied by policy"),    // default deny
            // Forged headers: Envoy uses the connection's address (use_remote_address: true).
            ("127.0.0.1", Some("127.0.20.5"), "403 denied by policy"),
            (
                "127.0.0.1",
                Some("127.0.20.5, 127.0.21.3"),
                "403 denied by policy",
            ),
            ("127.0.20.200", Some("127.0.20.5"), "403 denied by policy"),
        ];
        for (src, xff, want) in cases {
            let mut req = Request::get("/")
                .from_ip(ip(src))
                .transport(transport.clone());
            if let Some(x) = xff {
                req = req
                    .header("x-forwarded-for", x)
                    .header("x-real-ip", x)
                    .header("x-envoy-external-address", x);
            }
            let o = stack.send("app", &req).unwrap();
            assert_eq!(o.summary(), want, "{label} from {src} xff {xff:?}");
        }
    }
}

#[test]
fn destination_port_rules_use_the_listener_port() {
    let stack = app_stack(
        single_policy("app", APP_IP, vec![], json!([])),
        PathMode::EnvoyNormalises,
    );
    let port = stack.addr("app").port() as i64;
    let probe = Request::get("/").from_ip(ip("127.0.0.1"));
    let steps = [
        (
            json!([{"action": "allow", "dstPorts": [{"first": port, "last": port}]}]),
            "200 app: ok",
        ),
        (
            json!([{"action": "allow", "dstPorts": [{"first": port + 1, "last": port + 1}]}]),
            "403 denied by policy",
        ),
        (
            json!([{"action": "allow", "dstPorts": [{"first": port - 1, "last": port + 1}]}]),
            "200 app: ok",
        ),
        (
            json!([{"action": "allow", "notDstPorts": [{"first": port, "last": port}]}]),
            "403 denied by policy",
        ),
        (
            json!([{"action": "allow", "notDstPorts": [{"first": port + 1, "last": port + 1}], "dstNet": ["127.0.0.1/32"]}]),
            "200 app: ok",
        ),
        (
            json!([{"action": "allow", "dstNet": ["127.0.0.2/32"]}]),
            "403 denied by policy",
        ),
        (
            json!([{"action": "allow", "protocol": {"name": "TCP"}, "dstPorts": [{"first": port, "last": port}]}]),
            "200 app: ok",
        ),
        (
            json!([{"action": "allow", "protocol": {"name": "UDP"}}]),
            "403 denied by policy",
        ),
    ];
    for (rules, want) in steps {
        set_policy(&stack, rules.clone(), vec![], &probe, want);
        // Every transport agrees once the policy is in force.
        for (label, transport) in both_transports(&stack, "client") {
            let o = stack
                .send("app", &probe.clone().transport(transport))
                .unwrap();
            assert_eq!(o.summary(), want, "{label} with rules {rules}");
        }
    }
}

/// Paths that must never reach the backend under a policy that denies `/admin` and allows only
/// `/public` (each would be `/admin` or outside `/public` once normalised).
const ATTACKS: &[&str] = &[
    "/admin",
    "/admin/",
    "/admin;x",
    "/admin/;x/y",
    "//admin",
    "/./admin",
    "/public/../admin",
    "/public/../../admin",
    "/public/./../admin",
    "/public/..;x/admin",
    "/public/..;/admin",
    "/public;x/../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public/%2e./admin",
    "/public/%2e%2e%2fadmin",
    "/public%2F..%2Fadmin",
    "/public%2f..%2fadmin",
    "/public/..%2Fadmin",
    "/public/..%2fadmin",
    "/public%5C..%5Cadmin",
    "/public\\..\\admin",
    "/public/%252e%252e/admin",
    "/public%252f..%252fadmin",
    "/public/%2e%2e%00/admin",
    "/public/..%00/admin",
    "/%61dmin",
    "/publicadmin",
    "/public/x/../../admin?/public",
    "/public/%",
    "/public/%zz",
];

/// Paths the same policy allows.
const ALLOWED: &[&str] = &[
    "/public",
    "/public/",
    "/public/x",
    "/public/x/../y",
    "/public//x",
    "/public/x;v=1",
    "/public?q=/admin",
    "/public/%78",
];

fn path_attacks(mode: PathMode) {
    let rules = json!([
        {"action": "deny", "httpMatch": {"paths": [{"prefix": "/admin"}]}},
        {"action": "allow", "httpMatch": {"methods": ["GET"], "paths": [{"prefix": "/public"}]}},
    ]);
    let stack = app_stack(single_policy("app", APP_IP, vec![], rules), mode);
    let mut report = vec![];
    let mut bypasses = vec![];
    for (label, transport) in both_transports(&stack, "client") {
        for path in ATTACKS {
            let o = stack
                .send("app", &Request::get(path).transport(transport.clone()))
                .unwrap();
            report.push(format!("{mode:?} {label:9} {path:32} -> {}", o.summary()));
            match &o {
                Outcome::Response(r) if r.status == 200 => bypasses.push(format!(
                    "{label} {path} reached the backend as {:?}",
                    r.header("x-alp-upstream-path")
                )),
                Outcome::Response(r) if ![400, 403, 404].contains(&r.status) => {
                    bypasses.push(format!("{label} {path}: unexpected {}", o.summary()))
                }
                Outcome::Response(_) => {}
                Outcome::Failed(e) => bypasses.push(format!("{label} {path}: client error {e}")),
            }
        }
        for path in ALLOWED {
            let o = stack
                .send("app", &Request::get(path).transport(transport.clone()))
                .unwrap();
            report.push(format!("{mode:?} {label:9} {path:32} -> {}", o.summary()));
            let r = o.response().unwrap();
            assert_eq!(
                r.status,
                200,
                "{label} {path} must be allowed: {}",
                o.summary()
            );
            if mode == PathMode::EnvoyNormalises {
                // The backend got the path the policy saw.
                let upstream = r.header("x-alp-upstream-path").unwrap_or("");
                assert!(
                    upstream.starts_with("/public"),
                    "{label} {path} reached the backend as {upstream}"
                );
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        bypasses.is_empty(),
        "path policy bypassed:\n{}",
        bypasses.join("\n")
    );
}

#[test]
fn path_attacks_with_envoy_normalisation() {
    path_attacks(PathMode::EnvoyNormalises);
}

#[test]
fn path_attacks_reaching_the_filter_raw() {
    path_attacks(PathMode::Raw);
}

#[test]
fn forged_identity_headers_change_nothing() {
    // Only service account "trusted" from 127.0.40.1 may call; everything else is denied.
    let rules = json!([{"action": "allow", "srcServiceAccountMatch": {"names": ["trusted"]}, "srcIpSetIds": ["s:trusted"]}]);
    let extra = vec![ipset("s:trusted", "IP", &["127.0.40.1"])];
    let stack = app_stack(
        single_policy("app", APP_IP, extra, rules),
        PathMode::EnvoyNormalises,
    );
    let trusted_xfcc = "By=spiffe://cluster.local/ns/default/sa/app;Hash=00;URI=spiffe://cluster.local/ns/default/sa/trusted";
    let forged = [
        ("x-forwarded-client-cert", trusted_xfcc),
        ("x-forwarded-for", "127.0.40.1"),
        ("x-envoy-external-address", "127.0.40.1"),
        ("x-envoy-peer-metadata-id", "sidecar~127.0.40.1~trusted"),
        ("forwarded", "for=127.0.40.1"),
        ("x-real-ip", "127.0.40.1"),
        ("x-client-ip", "127.0.40.1"),
    ];
    let with_forgeries = |req: Request| forged.iter().fold(req, |r, (n, v)| r.header(n, v));

    // The genuine caller is allowed, with or without the noise.
    let genuine = Request::get("/")
        .from_ip(ip("127.0.40.1"))
        .transport(stack.mtls("trusted").unwrap());
    assert_eq!(
        stack.send("app", &genuine).unwrap().summary(),
        "200 app: ok"
    );
    assert_eq!(
        stack
            .send("app", &with_forgeries(genuine))
            .unwrap()
            .summary(),
        "200 app: ok"
    );

    // Everyone else stays denied whatever they claim.
    let impostors = [
        (
            "plaintext from 127.0.0.1",
            Request::get("/").from_ip(ip("127.0.0.1")),
        ),
        (
            "plaintext from 127.0.40.2",
            Request::get("/").from_ip(ip("127.0.40.2")),
        ),
        (
            "mTLS as other from 127.0.40.1",
            Request::get("/")
                .from_ip(ip("127.0.40.1"))
                .transport(stack.mtls("other").unwrap()),
        ),
        (
            "mTLS as trusted from 127.0.0.1",
            Request::get("/")
                .from_ip(ip("127.0.0.1"))
                .transport(stack.mtls("trusted").unwrap()),
        ),
    ];
    for (label, req) in impostors {
        let plain = stack.send("app", &req).unwrap().summary();
        let spoofed = stack.send("app", &with_forgeries(req)).unwrap().summary();
        assert_eq!(plain, "403 denied by policy", "{label}");
        assert_eq!(
            spoofed, plain,
            "{label}: forged headers changed the decision"
        );
    }
}

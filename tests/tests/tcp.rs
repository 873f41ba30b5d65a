//! Raw TCP connections through real Envoy: every workload's `tcp_W` listener runs the network
//! filter (the same module, vm_id and control as its HTTP filter) before tcp_proxy, to the
//! harness's recording backend (`TcpBackend`: server-first with a greeting, or client-first,
//! then echo). Every case is checked from both ends (`alp_e2e::tcp_cases`): an allowed
//! connection gets the backend's greeting and its own bytes back; a denied one is closed before a
//! single byte reaches the client, the backend never receives the client's bytes, and a
//! plaintext one (decided when it is accepted) never becomes an upstream connection at all.

use alp_e2e::decision_log::{
    access_log_decision, access_log_lines, decision_lines, logged_decisions, ts_unix_ms, Logged,
};
use alp_e2e::filter_stats::{
    connections_by_policy, prom_value, prometheus_mismatches, read_both, read_prometheus, settled,
    stats_until,
};
use alp_e2e::policy::{
    default_profiles, in_sync, ipset, namespace, policy, service_account, single_policy,
    write_in_place,
};
use alp_e2e::stack::{StackOptions, Updates, WorkloadSpec};
use alp_e2e::stats::{percentile, sorted, tenths};
use alp_e2e::tcp_cases::{
    assert_no_failures, run_cases, set_policy, table, token, Case, Speak, ENFORCED_WITHIN, TIMEOUT,
};
use alp_e2e::tcp_client::{self, TcpTransport};
use alp_e2e::tcp_load::ConnectionLoad;
use alp_e2e::{report, Request, Stack};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What the server-first backends send on accept (MySQL and SMTP servers speak first).
const GREETING: &str = "220 backend ready\r\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn start(workloads: Vec<WorkloadSpec>, plugin_options: &str) -> Stack {
    Stack::start(StackOptions {
        workloads,
        echo_backend: true,
        plugin_options: plugin_options.into(),
        ..StackOptions::default()
    })
    .expect("start the stack")
}

fn workload(name: &str, ip: &str, extra: Vec<Value>, rules: Value) -> WorkloadSpec {
    WorkloadSpec::new(
        name,
        Updates::Messages(single_policy(name, ip, extra, rules)),
    )
}

/// Sources, nets, not-nets, IP sets and protocols, over plaintext and mTLS, against a backend
/// that speaks first.
#[test]
fn connections_by_address_and_protocol() {
    let rules = json!([
        {"action": "deny", "srcNet": ["127.0.50.128/25"]},
        {"action": "allow", "srcNet": ["127.0.50.0/24"]},
        {"action": "allow", "srcIpSetIds": ["s:ips"]},
        {"action": "allow", "srcIpSetIds": ["s:nets"]},
        {"action": "allow", "srcNet": ["127.0.53.0/24"], "notSrcNet": ["127.0.53.0/26"]},
        {"action": "allow", "srcNet": ["127.0.54.0/24"], "notSrcIpSetIds": ["s:blocked"]},
        {"action": "allow", "protocol": {"name": "udp"}, "srcNet": ["127.0.55.0/24"]},
        {"action": "allow", "protocol": {"name": "tcp"}, "srcNet": ["127.0.56.0/24"]},
        {"action": "allow", "notProtocol": {"name": "tcp"}, "srcNet": ["127.0.57.0/24"]},
        {"action": "allow", "protocol": {"number": 6}, "srcNet": ["127.0.58.0/24"]},
        {"action": "allow", "dstNet": ["127.0.0.2/32"], "srcNet": ["127.0.59.0/24"]},
        {"action": "allow", "notDstNet": ["127.0.0.1/32"], "srcNet": ["127.0.60.0/24"]},
    ]);
    let extra = vec![
        ipset("s:ips", "IP", &["127.0.51.7"]),
        ipset("s:nets", "NET", &["127.0.52.0/30"]),
        ipset("s:blocked", "IP", &["127.0.54.9"]),
    ];
    let stack = start(
        vec![workload("net", "127.0.49.1", extra, rules).server_first(GREETING)],
        "",
    );
    let rows = [
        ("srcNet", "127.0.50.5", true),
        ("the deny rule's /25 comes first", "127.0.50.200", false),
        ("IP set member", "127.0.51.7", true),
        ("not an IP set member", "127.0.51.8", false),
        ("in the NET set's /30", "127.0.52.3", true),
        ("just outside the /30", "127.0.52.4", false),
        ("srcNet outside notSrcNet", "127.0.53.100", true),
        ("in notSrcNet", "127.0.53.10", false),
        ("in notSrcIpSetIds", "127.0.54.9", false),
        ("srcNet, not in notSrcIpSetIds", "127.0.54.10", true),
        ("protocol udp never matches TCP", "127.0.55.1", false),
        ("protocol tcp", "127.0.56.1", true),
        ("notProtocol tcp", "127.0.57.1", false),
        ("protocol 6", "127.0.58.1", true),
        ("dstNet is another address", "127.0.59.1", false),
        ("notDstNet is the listener's", "127.0.60.1", false),
        ("no rule: the tier's default deny", "127.0.0.1", false),
    ];
    let mtls = stack.tcp_mtls("client").unwrap();
    let plaintext = TcpTransport::Plaintext;
    let mut failures = vec![];
    failures.extend(run_cases(
        &stack,
        "net",
        Speak::AtOnce,
        &table(&rows, &plaintext),
    ));
    failures.extend(run_cases(
        &stack,
        "net",
        Speak::AtOnce,
        &table(&rows, &mtls),
    ));
    failures.extend(run_cases(
        &stack,
        "net",
        Speak::AfterGreeting,
        &table(&rows, &mtls),
    ));
    // A plaintext client that waits for the greeting sends nothing, so Envoy's tls_inspector
    // lets it through as plaintext only after the listener's 0.5 s filter timeout: a few cases.
    failures.extend(run_cases(
        &stack,
        "net",
        Speak::AfterGreeting,
        &table(&rows[..4], &plaintext),
    ));
    assert_no_failures(&stack, "net", failures);
}

/// Destination ports (ranges, not-ports, IP-and-port sets) are the TCP listener's own.
#[test]
fn connections_by_destination_port() {
    const IP: &str = "127.0.64.1";
    let stack = start(vec![workload("ports", IP, vec![], json!([]))], "");
    let port = stack.tcp_addr("ports").port() as i64;
    let http_port = stack.addr("ports").port() as i64;
    let range = |first: i64, last: i64| json!([{"first": first, "last": last}]);
    let ip_port = |member: String| vec![ipset("s:svc", "IP_AND_PORT", &[member.as_str()])];
    let steps = [
        (
            "dstPorts: the port",
            json!([{"action": "allow", "dstPorts": range(port, port)}]),
            vec![],
            true,
        ),
        (
            "dstPorts: the HTTP listener's port",
            json!([{"action": "allow", "dstPorts": range(http_port, http_port)}]),
            vec![],
            false,
        ),
        (
            "dstPorts: a range around it",
            json!([{"action": "allow", "dstPorts": range(port - 1, port + 1)}]),
            vec![],
            true,
        ),
        (
            "notDstPorts: the port",
            json!([{"action": "allow", "notDstPorts": range(port, port)}]),
            vec![],
            false,
        ),
        (
            "notDstPorts: another port",
            json!([{"action": "allow", "notDstPorts": range(port + 1, port + 1)}]),
            vec![],
            true,
        ),
        (
            "IP-and-port set, tcp",
            json!([{"action": "allow", "dstIpPortSetIds": ["s:svc"]}]),
            ip_port(format!("127.0.0.1,tcp:{port}")),
            true,
        ),
        (
            "IP-and-port set, udp",
            json!([{"action": "allow", "dstIpPortSetIds": ["s:svc"]}]),
            ip_port(format!("127.0.0.1,udp:{port}")),
            false,
        ),
        (
            "named-port set",
            json!([{"action": "allow", "dstNamedPortIpSetIds": ["s:svc"]}]),
            ip_port(format!("127.0.0.1,tcp:{port}")),
            true,
        ),
    ];
    let mtls = stack.tcp_mtls("client").unwrap();
    let mut failures = vec![];
    for (label, rules, extra, allowed) in steps {
        set_policy(
            &stack,
            "ports",
            &single_policy("ports", IP, extra, rules),
            allowed,
        );
        let cases = [
            Case::new(label, "127.0.0.1", &TcpTransport::Plaintext, allowed),
            Case::new(label, "127.0.0.1", &mtls, allowed),
        ];
        failures.extend(run_cases(&stack, "ports", Speak::AtOnce, &cases));
    }
    assert_no_failures(&stack, "ports", failures);
}

/// Rules with an HTTP clause never match a connection (D4), and an HTTP request sent to the TCP
/// listener is decided as a connection: what the HTTP listener decides on method and path does
/// not apply to it, either way.
#[test]
fn http_rules_never_match_connections() {
    let rules = json!([
        {"action": "deny", "httpMatch": {"paths": [{"prefix": "/admin"}]}},
        {"action": "allow", "httpMatch": {"methods": ["GET"]}},
        {"action": "allow", "srcNet": ["127.0.72.0/24"]},
    ]);
    let stack = start(vec![workload("web", "127.0.70.1", vec![], rules)], "");
    let mtls = stack.tcp_mtls("client").unwrap();
    let mut cases = vec![];
    for t in [&TcpTransport::Plaintext, &mtls] {
        cases.extend([
            Case::new("only an HTTP rule allows GET", "127.0.71.1", t, false),
            Case::new(
                "an HTTP GET, decided as a connection",
                "127.0.71.1",
                t,
                false,
            )
            .http("/public"),
            Case::new("a rule without an HTTP clause", "127.0.72.1", t, true),
            Case::new("GET /admin passes as bytes", "127.0.72.1", t, true).http("/admin"),
        ]);
    }
    let failures = run_cases(&stack, "web", Speak::AtOnce, &cases);
    assert_no_failures(&stack, "web", failures);

    // The HTTP listener decides the same requests on method and path.
    for (path, from, want) in [
        ("/public", "127.0.71.1", 200),
        ("/admin", "127.0.72.1", 403),
    ] {
        for transport in [alp_e2e::Transport::Plaintext, stack.mtls("client").unwrap()] {
            let req = Request::get(path).from_ip(ip(from)).transport(transport);
            let o = stack.send("web", &req).unwrap();
            assert_eq!(
                o.status(),
                Some(want),
                "HTTP GET {path} from {from}: {}",
                o.summary()
            );
        }
    }
}

/// Service accounts (names, selector) and namespaces (selector) of the peer's certificate, with
/// clients that speak first and with a backend that does.
#[test]
fn mtls_connections_by_identity_with_stats_and_decision_logs() {
    let rules = json!([
        {"action": "allow", "srcServiceAccountMatch": {"names": ["alice"]}, "srcNet": ["127.0.61.0/24"], "ruleId": "by-name"},
        {"action": "allow", "srcServiceAccountMatch": {"selector": "role == 'db-client'"}, "srcNet": ["127.0.61.0/24"]},
        {"action": "allow", "originalSrcNamespaceSelector": "team == 'data'", "srcNet": ["127.0.62.0/24"]},
    ]);
    let extra = vec![
        service_account("alice", json!({})),
        service_account("bob", json!({"role": "db-client"})),
        service_account("carol", json!({"role": "web"})),
        namespace(
            "data",
            json!({"team": "data", "kubernetes.io/metadata.name": "data"}),
        ),
        namespace(
            "web",
            json!({"team": "web", "kubernetes.io/metadata.name": "web"}),
        ),
    ];
    let stack = start(
        vec![
            workload("ids", "127.0.61.200", extra.clone(), rules.clone()),
            workload("idsfirst", "127.0.61.201", extra, rules).server_first(GREETING),
        ],
        "",
    );
    let as_uri = |stem: &str, uri: &str| {
        let cert = stack.ca.issue_with_uri(stem, uri, false).unwrap();
        stack.tcp_tls_with(&cert).unwrap()
    };
    let alice = stack.tcp_mtls("alice").unwrap();
    let bob = stack.tcp_mtls("bob").unwrap();
    let carol = stack.tcp_mtls("carol").unwrap();
    let dave = as_uri("dave", "spiffe://cluster.local/ns/data/sa/dave");
    let erin = as_uri("erin", "spiffe://cluster.local/ns/web/sa/erin");
    let malformed = as_uri("malformed", "spiffe://cluster.local/workload/alice");
    let plain = TcpTransport::Plaintext;
    let cases = [
        Case::new("service account in names", "127.0.61.1", &alice, true),
        Case::new(
            "service account selected by labels",
            "127.0.61.2",
            &bob,
            true,
        ),
        Case::new(
            "service account neither named nor selected",
            "127.0.61.3",
            &carol,
            false,
        ),
        Case::new(
            "named, but outside the rule's net",
            "127.0.63.1",
            &alice,
            false,
        ),
        Case::new("namespace selected by labels", "127.0.62.1", &dave, true),
        Case::new("namespace not selected", "127.0.62.2", &erin, false),
        Case::new(
            "namespace default has no team label",
            "127.0.62.3",
            &alice,
            false,
        ),
        Case::new(
            "malformed SPIFFE id: invalid peer identity",
            "127.0.61.4",
            &malformed,
            false,
        ),
        // Calico's semantics: a plaintext peer passes identity clauses; only the net holds it.
        Case::new(
            "plaintext passes service-account clauses",
            "127.0.61.5",
            &plain,
            true,
        ),
        Case::new("plaintext outside every net", "127.0.63.2", &plain, false),
    ];
    let before = settled(&stack);
    let runs = [
        ("ids", Speak::AtOnce),
        ("idsfirst", Speak::AfterGreeting),
        ("idsfirst", Speak::AtOnce),
    ];
    let mut failures = vec![];
    for (w, speak) in runs {
        failures.extend(run_cases(&stack, w, speak, &cases));
    }
    assert_no_failures(&stack, "ids", failures);

    // Every connection was decided once, and counted under the connection names only. One
    // denied case per run is the malformed identity; the others fall to the default deny.
    let n = runs.len() as u64;
    let allowed = n * cases.iter().filter(|c| c.allowed).count() as u64;
    let denied = n * cases.len() as u64 - allowed;
    const CONNECTIONS: &str = "alp_connections_total";
    const BY_POLICY: &str = "alp_policy_connections_total";
    let (allowed_, denied_) = ([("alp_decision", "allowed")], [("alp_decision", "denied")]);
    let after = stats_until(&stack, "connections counted", |s| {
        s.delta(&before, CONNECTIONS, &allowed_) >= allowed
            && s.delta(&before, CONNECTIONS, &denied_) >= denied
    });
    let delta = |family: &str, labels: &[(&str, &str)]| after.delta(&before, family, labels);
    let counts = [
        (CONNECTIONS, &allowed_[..], allowed),
        (CONNECTIONS, &denied_[..], denied),
        (CONNECTIONS, &[("alp_decision", "would_deny")][..], 0),
        // tcp_proxy connects upstream only after the handshake, so a greeting never arrives
        // before the peer certificate does: nothing had to be held.
        ("alp_connections_held_total", &[][..], 0),
        (
            CONNECTIONS,
            &[("alp_decision", "allowed"), ("alp_reason", "allow")][..],
            allowed,
        ),
        (
            CONNECTIONS,
            &[("alp_decision", "denied"), ("alp_reason", "policy_denied")][..],
            denied - n,
        ),
        (
            CONNECTIONS,
            &[
                ("alp_decision", "denied"),
                ("alp_reason", "invalid_peer_identity"),
            ][..],
            n,
        ),
        (
            BY_POLICY,
            &[
                ("alp_tier", "default"),
                ("alp_policy", "p"),
                ("alp_action", "allow"),
            ][..],
            allowed,
        ),
        (
            BY_POLICY,
            &[
                ("alp_tier", "default"),
                ("alp_policy", "_default"),
                ("alp_action", "deny"),
            ][..],
            denied - n,
        ),
        // Connections count under the connection families only.
        ("alp_requests_total", &[][..], 0),
        ("alp_policy_requests_total", &[][..], 0),
    ];
    let wrong: Vec<String> = counts
        .iter()
        .map(|(f, l, want)| (f, l, counted(f, *want)))
        .filter(|(f, l, want)| delta(f, l) != *want)
        .map(|(f, l, want)| format!("{f}{l:?}: {} (want {want})", delta(f, l)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\nall stats: {:#?}", after.0);

    // Prometheus: the bootstrap's stats_tags give connection stats the HTTP stats' labels.
    let (now, prom) = read_both(&stack.envoy);
    let wrong = prometheus_mismatches(&now, &prom);
    assert!(wrong.is_empty(), "{wrong:#?}");
    for (family, labels) in [
        (
            CONNECTIONS,
            &[("alp_decision", "denied"), ("alp_reason", "policy_denied")][..],
        ),
        (
            CONNECTIONS,
            &[
                ("alp_decision", "denied"),
                ("alp_reason", "invalid_peer_identity"),
            ][..],
        ),
        (
            CONNECTIONS,
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
    ] {
        if counted(family, 1) == 0 {
            assert_eq!(
                prom_value(&prom, family, labels),
                None,
                "{family}: not counted"
            );
            continue;
        }
        assert_eq!(
            prom_value(&prom, family, labels),
            Some(now.metric(family, labels) as f64),
            "{family}{labels:?} in {prom:#?}"
        );
    }

    // The access log: each connection's tcp_proxy line carries the filter's decision.
    let of = |lines: &[String], from: &str| -> Vec<String> {
        let needle = format!(" tcp_ids {from}:");
        lines
            .iter()
            .filter(|l| l.contains(&needle))
            .cloned()
            .collect()
    };
    let lines = access_log_lines(&stack, |l| {
        ["127.0.61.1", "127.0.61.3", "127.0.61.4"]
            .iter()
            .all(|from| !of(l, from).is_empty())
    });
    for (from, want) in [
        (
            "127.0.61.1",
            "allow reason=allow tier=default policy=p kind=GlobalNetworkPolicy rule=0 rule_id=by-name",
        ),
        ("127.0.61.3", "deny reason=policy_denied tier=default"),
        ("127.0.61.4", "deny reason=invalid_peer_identity"),
    ] {
        let got = of(&lines, from);
        assert_eq!(got.len(), 1, "one connection from {from} to ids: {got:#?}");
        let decision = access_log_decision(&got[0]).unwrap_or_default();
        assert!(decision.starts_with(want), "{from}: {}", got[0]);
    }

    // Decision logs (default: denials only): one line per denied connection, kind
    // "connection", none of the HTTP fields.
    let connection_lines = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|v| v["kind"] == "connection")
            .cloned()
            .collect()
    };
    let lines = decision_lines(&stack, |l| connection_lines(l).len() as u64 >= denied);
    let lines = connection_lines(&lines);
    assert_eq!(lines.len() as u64, denied, "{lines:#?}");
    for v in &lines {
        // No HTTP field, and no request id (a connection has none); when, as for requests.
        for http_field in [
            "method",
            "path",
            "path_rewritten",
            "forwarded_path",
            "request_id",
        ] {
            assert!(v.get(http_field).is_none(), "{http_field} in {v}");
        }
        assert!(v["ts"].as_str().and_then(ts_unix_ms).is_some(), "ts: {v}");
        assert_eq!(
            (v["decision"].as_str(), v["status"].is_null()),
            (Some("deny"), true),
            "{v}"
        );
        assert_eq!(
            (v["enforced"].as_bool(), v["blocked"].as_bool()),
            (Some(true), Some(true))
        );
    }
    let carol_line = lines
        .iter()
        .find(|v| v["source"]["principal"] == "spiffe://cluster.local/ns/default/sa/carol")
        .expect("carol's denial is logged");
    assert_eq!(carol_line["reason"], "policy_denied");
    assert_eq!(carol_line["tier"], "default");
    assert_eq!(carol_line["source"]["address"], "127.0.61.3");
    assert!(carol_line["destination"]["principal"]
        .as_str()
        .is_some_and(|p| p.starts_with("spiffe://cluster.local/ns/default/sa/ids")));
    let to = carol_line["destination"]["principal"]
        .as_str()
        .and_then(|p| p.strip_prefix("spiffe://cluster.local/ns/default/sa/"))
        .expect("the destination is one of the workloads");
    assert_eq!(
        carol_line["destination"]["port"].as_u64(),
        Some(u64::from(stack.tcp_addr(to).port())),
        "the destination port is the TCP listener's"
    );
    assert!(lines.iter().any(|v| v["reason"] == "invalid_peer_identity"
        && v["source"]["principal"] == "spiffe://cluster.local/workload/alice"));
    assert!(lines
        .iter()
        .any(|v| v["source"]["principal"] == "" && v["source"]["address"] == "127.0.63.2"));
}

/// Before the first snapshot (control not in sync, or no control at all) every connection is
/// closed, plaintext before any upstream connection; once policy arrives it is enforced.
#[test]
fn closed_until_policy_is_in_sync() {
    let rules = json!([{"action": "allow", "srcNet": ["127.0.0.0/8"]}]);
    let mut pending = single_policy("nosync", "127.0.66.1", vec![], rules.clone());
    assert_eq!(pending.pop(), Some(in_sync()));
    let mut no_control = workload("nocontrol", "127.0.66.2", vec![], rules);
    no_control.start_control = false;
    let mut stack = start(
        vec![
            WorkloadSpec::new("nosync", Updates::Messages(pending.clone())).server_first(GREETING),
            no_control,
        ],
        "",
    );
    // Give the filters time to poll (and to fail to connect) a few times first.
    std::thread::sleep(Duration::from_millis(1000));
    let mtls = stack.tcp_mtls("client").unwrap();
    let closed = |t: &TcpTransport| Case::new("not in sync", "127.0.0.1", t, false);
    let mut failures = vec![];
    for w in ["nosync", "nocontrol"] {
        failures.extend(run_cases(
            &stack,
            w,
            Speak::AtOnce,
            &[closed(&TcpTransport::Plaintext)],
        ));
        failures.extend(run_cases(&stack, w, Speak::AtOnce, &[closed(&mtls)]));
    }
    failures.extend(run_cases(
        &stack,
        "nosync",
        Speak::AfterGreeting,
        &[closed(&mtls)],
    ));
    assert_no_failures(&stack, "nosync", failures);
    // Five connections were closed, each counted once, as not in sync.
    const CONNECTIONS: &str = "alp_connections_total";
    let not_in_sync = [("alp_decision", "denied"), ("alp_reason", "not_in_sync")];
    let stats = stats_until(&stack, "not_in_sync counted", |s| {
        s.metric(CONNECTIONS, &not_in_sync) >= 5
    });
    assert_eq!(
        (
            stats.metric(CONNECTIONS, &not_in_sync),
            stats.metric(CONNECTIONS, &[("alp_decision", "denied")]),
            stats.metric(CONNECTIONS, &[("alp_decision", "allowed")]),
        ),
        (5, 5, 0),
        "{:#?}",
        stats.0
    );

    // inSync arrives (appended in place), and control starts late: both now enforce.
    pending.push(in_sync());
    write_in_place(&stack.workload("nosync").updates, &pending).unwrap();
    stack
        .start_control("nocontrol", Duration::from_secs(30))
        .unwrap();
    for w in ["nosync", "nocontrol"] {
        let deadline = Instant::now() + ENFORCED_WITHIN;
        loop {
            let failures = run_cases(
                &stack,
                w,
                Speak::AtOnce,
                &[Case::new(
                    "in sync",
                    "127.0.0.1",
                    &TcpTransport::Plaintext,
                    true,
                )],
            );
            if failures.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{failures:?}; {}",
                stack.diagnostics(w)
            );
        }
        assert_no_failures(
            &stack,
            w,
            run_cases(
                &stack,
                w,
                Speak::AtOnce,
                &[Case::new("in sync", "127.0.0.1", &mtls, true)],
            ),
        );
    }
}

/// Dry run (`"enforce":false`) with the staged rehearsal: nothing is closed; would-be denials and
/// staged differences are counted and logged as connections.
#[test]
fn dry_run_lets_connections_through_and_counts_them() {
    const IP: &str = "127.0.80.1";
    let staged_id = json!({"name": "lockdown", "kind": "StagedGlobalNetworkPolicy"});
    let mut msgs = default_profiles("dry");
    msgs.push(policy(
        "p",
        json!([{"action": "allow", "srcNet": ["127.0.80.0/24"]}]),
    ));
    msgs.push(json!({"activePolicyUpdate": {"id": staged_id, "policy": {"tier": "default",
        "inboundRules": [{"action": "deny", "srcNet": ["127.0.80.128/25"], "ruleId": "lockdown-0"}]}}}));
    msgs.push(json!({"workloadEndpointUpdate": {
        "id": {"orchestratorId": "k8s", "workloadId": "default/dry", "endpointId": "eth0"},
        "endpoint": {"profileIds": ["kns.default", "ksa.default.dry"], "ipv4Nets": [format!("{IP}/32")],
            "tiers": [{"name": "default", "ingressPolicies": [staged_id, {"name": "p", "kind": "GlobalNetworkPolicy"}], "defaultAction": "Deny"}]}}}));
    msgs.push(in_sync());
    let stack = start(
        vec![WorkloadSpec::new("dry", Updates::Messages(msgs)).server_first(GREETING)],
        r#""enforce":false,"staged":true,"decision_log":"all""#,
    );
    let before = settled(&stack);
    assert_eq!(before.metric("alp_dry_run", &[]), 1);
    let mtls = stack.tcp_mtls("client").unwrap();
    let plain = TcpTransport::Plaintext;
    // Every case passes in a dry run, the would-be denials included.
    let cases = [
        Case::new("would be denied", "127.0.81.1", &plain, true),
        Case::new("would be denied", "127.0.81.1", &mtls, true),
        Case::new(
            "allowed, staged lockdown would deny",
            "127.0.80.200",
            &plain,
            true,
        ),
        Case::new("allowed, staged agrees", "127.0.80.5", &plain, true),
    ];
    assert_no_failures(
        &stack,
        "dry",
        run_cases(&stack, "dry", Speak::AtOnce, &cases),
    );

    const CONNECTIONS: &str = "alp_connections_total";
    const STAGED: &str = "alp_staged_connections_total";
    let would_deny = [("alp_decision", "would_deny")];
    let allowed = [("alp_decision", "allowed")];
    let after = stats_until(&stack, "dry run counted", |s| {
        s.delta(&before, CONNECTIONS, &would_deny) >= 2
            && s.delta(&before, CONNECTIONS, &allowed) >= 2
            && s.delta(&before, STAGED, &[]) >= 1
    });
    let delta = |family: &str, labels: &[(&str, &str)]| after.delta(&before, family, labels);
    let counts = [
        (CONNECTIONS, &would_deny[..], 2),
        (CONNECTIONS, &[("alp_decision", "denied")][..], 0),
        (CONNECTIONS, &allowed[..], 2),
        (CONNECTIONS, &[("alp_reason", "policy_denied")][..], 2),
        (CONNECTIONS, &[("alp_reason", "allow")][..], 2),
        (STAGED, &[][..], 1),
        (STAGED, &[("alp_staged", "would_deny")][..], 1),
        (STAGED, &[("alp_staged", "would_allow")][..], 0),
        (
            "alp_staged_policy_connections_total",
            &[
                ("alp_tier", "default"),
                ("alp_policy", "lockdown"),
                ("alp_action", "deny"),
            ][..],
            1,
        ),
        (
            "alp_requests_total",
            &[("alp_decision", "would_deny")][..],
            0,
        ),
        ("alp_staged_requests_total", &[][..], 0),
    ];
    let wrong: Vec<String> = counts
        .iter()
        .map(|(f, l, want)| (f, l, counted(f, *want)))
        .filter(|(f, l, want)| delta(f, l) != *want)
        .map(|(f, l, want)| format!("{f}{l:?}: {} (want {want})", delta(f, l)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\nall stats: {:#?}", after.0);

    let prom = read_prometheus(&stack.envoy);
    let labels = [
        ("alp_tier", "default"),
        ("alp_policy", "lockdown"),
        ("alp_action", "deny"),
    ];
    assert_eq!(
        prom_value(&prom, "alp_staged_policy_connections_total", &labels).is_some_and(|v| v >= 1.0),
        counted("alp_staged_policy_connections_total", 1) == 1,
        "alp_staged_policy_connections_total{labels:?} in {prom:#?}"
    );
    assert!(
        prom_value(&prom, STAGED, &[("alp_staged", "would_deny")]).is_some_and(|v| v >= 1.0),
        "{prom:#?}"
    );

    let from = |v: &Value, addr: &str| v["kind"] == "connection" && v["source"]["address"] == addr;
    let lines = decision_lines(&stack, |l| {
        l.iter().filter(|v| from(v, "127.0.81.1")).count() >= 2
            && l.iter().any(|v| from(v, "127.0.80.200"))
    });
    let dry = lines
        .iter()
        .find(|v| from(v, "127.0.81.1"))
        .expect("the would-be denial");
    assert_eq!(
        (
            dry["decision"].as_str(),
            dry["enforced"].as_bool(),
            dry["blocked"].as_bool()
        ),
        (Some("deny"), Some(false), Some(false)),
        "{dry}"
    );
    let staged = lines
        .iter()
        .find(|v| from(v, "127.0.80.200"))
        .expect("the staged difference");
    assert_eq!(staged["decision"], "allow", "{staged}");
    assert_eq!(staged["staged"]["decision"], "deny");
    assert_eq!(staged["staged"]["differs"], true);
    assert_eq!(staged["staged"]["policy"]["name"], "lockdown");
    assert_eq!(staged["staged"]["rule_id"], "lockdown-0");
}

/// New connections, not requests, carry a TCP decision: while connections are opened back to
/// back, each policy change reaches the new connections of every Envoy worker (which worker
/// decided a connection: the thread id of its decision-log line), and no connection ever sees
/// part of an answer.
#[test]
fn policy_changes_reach_new_connections_on_every_worker_under_load() {
    const IP: &str = "127.0.90.1";
    const CHANGES: usize = 8;
    const STREAK: usize = 16;
    let msgs = |allow: bool| {
        let action = if allow { "allow" } else { "deny" };
        single_policy(
            "flip",
            IP,
            vec![],
            json!([{"action": action, "srcNet": ["127.0.0.0/8"]}]),
        )
    };
    let stack = start(
        vec![WorkloadSpec::new("flip", Updates::Messages(msgs(true)))],
        r#""decision_log":"all","decision_log_max_per_second":100000"#,
    );
    assert_eq!(stack.concurrency, 2);
    let load = ConnectionLoad::start(stack.tcp_addr("flip"), ip("127.0.91.1"));

    let mut latencies = vec![];
    let mut allow = true;
    for change in 0..CHANGES {
        allow = !allow;
        std::thread::sleep(alp_e2e::probe::stagger(change));
        let start = Instant::now();
        stack.write_updates("flip", &msgs(allow)).unwrap();
        // Probe until STREAK new connections in a row are decided the new way and they were
        // decided by every worker; the latency is the time to the first of them.
        let mut streak: Vec<(Duration, u16)> = vec![];
        loop {
            let (new_way, port) = probe(&stack, allow);
            if new_way {
                streak.push((start.elapsed(), port));
            } else {
                streak.clear();
            }
            if streak.len() >= STREAK {
                let ports: Vec<u16> = streak.iter().map(|(_, p)| *p).collect();
                if deciding_threads(&stack, &ports).len() == stack.concurrency as usize {
                    break;
                }
            }
            assert!(
                start.elapsed() < ENFORCED_WITHIN && streak.len() < 200,
                "change {change}: not enforced on every worker (streak {}); {}",
                streak.len(),
                stack.diagnostics("flip")
            );
        }
        latencies.push(streak[0].0.as_secs_f64() * 1000.0);
    }
    let (served, violations) = load.stop();
    assert!(violations.is_empty(), "load connections: {violations:#?}");
    assert!(served > 0, "the load made no connection");
    let s = sorted(&latencies);
    report(format!(
        "TCP policy change to new connections on every worker ({CHANGES} changes, --concurrency {}): \
         p50 {:.1} ms, max {:.1} ms; samples {:?}; {served} load connections meanwhile, each whole or closed",
        stack.concurrency,
        percentile(&s, 50.0),
        percentile(&s, 100.0),
        tenths(&latencies)
    ));
}

/// One plaintext probe of workload `flip` from 127.0.0.1: whether it was decided `allow`
/// (echoed) or not (closed without a byte; anything else panics), and its source port.
fn probe(stack: &Stack, allow: bool) -> (bool, u16) {
    let payload = token("probe");
    let mut conn = tcp_client::connect(
        stack.tcp_addr("flip"),
        Some(ip("127.0.0.1")),
        &TcpTransport::Plaintext,
        TIMEOUT,
    )
    .unwrap();
    let port = conn.local_addr().port();
    let o = conn.exchange_eager(0, &payload);
    let passed = o.passed(&payload);
    assert!(passed || o.closed_silently(), "probe: {}", o.summary());
    (passed == allow, port)
}

/// The Envoy threads (workers) whose filter logged the decisions of the connections from
/// 127.0.0.1 with these source ports (waits until every one is logged).
fn deciding_threads(stack: &Stack, ports: &[u16]) -> BTreeSet<String> {
    let of_probe = |d: &Logged| {
        d.decision["kind"] == "connection"
            && d.decision["source"]["address"] == "127.0.0.1"
            && d.decision["source"]["port"]
                .as_u64()
                .is_some_and(|p| ports.contains(&(p as u16)))
    };
    logged_decisions(stack, |l| {
        l.iter().filter(|d| of_probe(d)).count() >= ports.len()
    })
    .into_iter()
    .filter(of_probe)
    .map(|d| d.thread)
    .collect()
}

/// What a family should have counted: `want`, but nothing for the per-policy connection
/// families when the native module runs (its network filter has no per-policy series:
/// `filter_stats::connections_by_policy`).
fn counted(family: &str, want: u64) -> u64 {
    if family.ends_with("policy_connections_total") && !connections_by_policy() {
        0
    } else {
        want
    }
}

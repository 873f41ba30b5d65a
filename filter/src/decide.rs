//! One HTTP request: follow shared data, read the attributes, ask the engine (and the staged
//! rehearsal, when configured), count and log the decision, then let the request continue or
//! answer it locally with the status and body of spec section 7 (D9). A dry run
//! (`enforce: false`) always continues.

use crate::attributes::{engine_request, Connection, HttpAttributes};
use crate::config::NonCanonicalPath;
use crate::decision_log::{self, Entry};
use crate::host::{Host, Level};
use crate::metrics::{PathOutcome, Subject};
use crate::vm_state::VmState;
use alp_engine::{path, Decision, Engine, Request, Verdict};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

/// What the HTTP context tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// A local reply was sent; the request stops here.
    Replied,
}

/// A recorded decision: its verdict, and whether it is to be enforced.
pub(crate) struct Judged {
    pub verdict: Verdict,
    /// A denial outside a dry run.
    pub refuse: bool,
}

/// What was read for one request, or why it could not be.
struct Read {
    connection: Option<Rc<Connection>>,
    http: Option<HttpAttributes>,
    /// Set when the decision is made before the engine is asked.
    verdict: Option<Verdict>,
}

impl VmState {
    /// Decides the current request from its headers and answers it if it is denied (unless
    /// this is a dry run). Counts and logs the decision; no host call beyond reading the
    /// request (`connection.id`, `:method`, `:path`; the clock, and `alp.version` at most once
    /// per `cache::RECHECK_MS`), the reply or log line, and for a non-canonical path its
    /// rewrite (D10).
    pub fn on_request_headers(&self, host: &dyn Host) -> Action {
        let engine = self.current_engine(host);
        // Before the first snapshot nothing else needs reading.
        let read = match engine.version() {
            Some(_) => self.read(host),
            None => Read {
                connection: None,
                http: None,
                verdict: None,
            },
        };
        #[cfg(feature = "chaos")]
        if let Some(http) = &read.http {
            crate::config::chaos::abort_if(&http.path);
        }
        // `read` holds both the connection and the request, or neither.
        let request = engine_request(
            read.connection.as_deref(),
            read.http.as_ref().map(HttpAttributes::http),
        );
        let judged = self.judge(
            host,
            &engine,
            &request,
            read.verdict,
            read.connection.as_deref(),
            read.http.as_ref(),
        );
        if judged.refuse {
            return respond(host, judged.verdict);
        }
        // What was decided is what the upstream receives.
        if let Some(http) = read.http.as_ref().filter(|h| h.original_path.is_some()) {
            if host.set_request_header(":path", &http.path).is_err() {
                host.log(
                    Level::Error,
                    "could not rewrite :path to its canonical form; request refused",
                );
                return respond(host, Verdict::AttributesUnavailable);
            }
            host.clear_route_cache();
        }
        Action::Continue
    }

    /// The engine in force: the process's (native module), or this VM's copy following shared
    /// data (an engine that is not in sync while the cache is busy).
    pub(crate) fn current_engine(&self, host: &dyn Host) -> Arc<Engine> {
        if let Some(process) = &self.process {
            return process.current();
        }
        match self.cache.try_borrow_mut() {
            Ok(mut cache) => {
                cache.refresh_on_request(host);
                cache.engine()
            }
            Err(_) => Arc::new(Engine::not_in_sync()),
        }
    }

    /// Decides `request` with `engine` (or takes `precheck`, a verdict reached before the
    /// engine), with the staged rehearsal when configured; counts and logs the decision.
    /// `refuse`: it is a denial and this is not a dry run.
    pub(crate) fn judge(
        &self,
        host: &dyn Host,
        engine: &Arc<Engine>,
        request: &Request<'_>,
        precheck: Option<Verdict>,
        connection: Option<&Connection>,
        http: Option<&HttpAttributes>,
    ) -> Judged {
        let (decision, staged) = match precheck {
            Some(verdict) => (Decision::precheck(verdict), None),
            None => {
                let decision = engine.decide(request);
                let staged = engine.decide_staged(request, &decision);
                (decision, staged)
            }
        };
        let allowed = decision.verdict.is_allowed();
        let refuse = !allowed && !self.settings.dry_run;
        self.metrics.count(engine, &decision, staged.as_ref());
        let differs = staged.is_some_and(|s| s.verdict != decision.verdict);
        if self.settings.filter_state {
            host.set_filter_state(FILTER_STATE, access_log_value(engine, &decision).as_bytes());
        }
        if host.log_enabled(Level::Info) && self.settings.log.wants(allowed, differs) {
            let request_id = match self.settings.subject {
                Subject::Request => host.request_header("x-request-id"),
                Subject::Connection => None,
            };
            host.log(
                Level::Info,
                &decision_log::line(&Entry {
                    subject: self.settings.subject,
                    now_ms: host.now_ms(),
                    request_id: request_id.as_deref(),
                    engine,
                    decision: &decision,
                    staged: staged.as_ref(),
                    enforced: !self.settings.dry_run,
                    blocked: refuse,
                    connection,
                    http,
                }),
            );
        }
        if host.log_enabled(Level::Debug) {
            host.log(Level::Debug, &describe(engine, &decision, connection));
        }
        Judged {
            verdict: decision.verdict,
            refuse,
        }
    }

    /// The connection and request attributes (D11: a host error decides
    /// `AttributesUnavailable`), with a non-canonical path rewritten or refused (D10).
    fn read(&self, host: &dyn Host) -> Read {
        let connection = match self.connections.try_borrow_mut() {
            Ok(mut connections) => connections.get(host),
            Err(_) => Connection::read(host).map(Rc::new),
        };
        let (Ok(connection), Ok(mut http)) = (connection, HttpAttributes::read(host)) else {
            return Read {
                connection: None,
                http: None,
                verdict: Some(Verdict::AttributesUnavailable),
            };
        };
        let mut verdict = None;
        // A path that does not normalise is left to the engine (BadRequestPath where a path
        // rule is reached).
        if let Ok(Some(canonical)) = path::forwarded_path(&http.path) {
            match self.settings.non_canonical_path {
                NonCanonicalPath::Rewrite => {
                    self.metrics.count_path(PathOutcome::Rewritten);
                    http.rewrite(canonical);
                }
                NonCanonicalPath::Reject => {
                    self.metrics.count_path(PathOutcome::Rejected);
                    verdict = Some(Verdict::BadRequestPath);
                }
            }
        }
        Read {
            connection: Some(connection),
            http: Some(http),
            verdict,
        }
    }
}

/// Continue, or the local reply of spec section 7.
pub fn respond(host: &dyn Host, verdict: Verdict) -> Action {
    match verdict.status() {
        None => Action::Continue,
        Some(status) => {
            host.send_local_reply(status, &[("content-type", "text/plain")], verdict.body());
            Action::Replied
        }
    }
}

/// The filter state the decision is written to, for access logs:
/// `%FILTER_STATE(wasm.alp_decision:PLAIN)%`.
pub const FILTER_STATE: &str = "alp_decision";

/// `deny reason=policy_denied tier=default policy=database rule=0 rule_id=…`: the decision as
/// an access log shows it (the `control check --format text` fields; never request values).
pub fn access_log_value(engine: &Engine, decision: &Decision) -> String {
    let e = engine.explain(decision);
    format!("{} reason={}{}", e.decision, e.reason, e.origin_fields())
}

/// One debug line: verdict, version, where it came from (the engine's
/// `Explanation::origin_fields`, as in `control check --format text`) and the connection; never
/// header values.
fn describe(engine: &Engine, decision: &Decision, connection: Option<&Connection>) -> String {
    let e = engine.explain(decision);
    let mut line = format!("{} reason={}", e.decision, e.reason);
    let _ = match e.status {
        Some(s) => write!(line, " status={s}"),
        None => Ok(()),
    };
    let _ = match engine.version() {
        Some(v) => write!(line, " version={v}"),
        None => Ok(()),
    };
    let _ = write!(line, "{}", e.origin_fields());
    if let Some(c) = connection {
        let addr = |a: Option<(std::net::IpAddr, u16)>| match a {
            Some((std::net::IpAddr::V6(ip), port)) => format!("[{ip}]:{port}"),
            Some((ip, port)) => format!("{ip}:{port}"),
            None => "-".to_string(),
        };
        let principal = |p: &str| {
            if p.is_empty() {
                "-".to_string()
            } else {
                p.to_string()
            }
        };
        let _ = write!(
            line,
            " src={} src_principal={} dst={} dst_principal={}",
            addr(c.source),
            principal(&c.source_principal),
            addr(c.destination),
            principal(&c.destination_principal)
        );
    }
    line
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cache::tests::publish;
    use crate::cache::{SnapshotCache, SNAPSHOT_KEY};
    use crate::config::DecisionLog;
    use crate::decision_log::DecisionLogger;
    use crate::host::fake::{FakeHost, Reply};
    use crate::metrics::{Metrics, Subject};
    use crate::vm_state::Settings;
    use alp_engine::envelope;
    use alp_engine::snapshot::{Endpoint, HttpMatch, Policy, PolicyId, Rule, Snapshot, Tier};

    /// Tier `t` with policy `p`: allow GET, default Deny.
    fn get_only() -> Snapshot {
        one_policy(vec![Rule {
            action: "allow".into(),
            http_match: Some(HttpMatch {
                methods: vec!["GET".into()],
                paths: vec![],
            }),
            ..Default::default()
        }])
    }

    /// Tier `t` with global policy `p` holding `rules`, default Deny.
    pub(crate) fn one_policy(rules: Vec<Rule>) -> Snapshot {
        let id = PolicyId {
            name: "p".into(),
            namespace: String::new(),
            kind: "GlobalNetworkPolicy".into(),
        };
        Snapshot {
            endpoint: Some(Endpoint {
                tiers: vec![Tier {
                    name: "t".into(),
                    ingress_policies: vec![id.clone()],
                    default_action: "Deny".into(),
                }],
                profile_ids: vec![],
            }),
            policies: vec![Policy {
                id,
                namespace: String::new(),
                inbound_rules: rules,
            }],
            ..Default::default()
        }
    }

    fn host_with(method: &str, principal: &str) -> FakeHost {
        let host = FakeHost::new();
        host.set_property("connection.uri_san_peer_certificate", principal);
        host.set_property("connection.tls_version", "TLSv1.3");
        host.set_property("source.address", "10.0.0.1:40000");
        host.set_property("destination.address", "10.0.0.2:8080");
        host.set_header(":method", method);
        host.set_header(":path", "/");
        host
    }

    fn filter(host: &FakeHost) -> VmState {
        VmState {
            metrics: Arc::new(Metrics::define(host, false, Subject::Request)),
            ..Default::default()
        }
    }

    #[test]
    fn the_default_settings_enforce_and_log_denials() {
        let host = host_with("DELETE", PRINCIPAL);
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        let f = filter(&host);
        assert_eq!(f.on_request_headers(&host), Action::Replied);
        assert_eq!(decision_lines(&host).len(), 1);
    }

    /// What a request costs in host calls once its connection and the version are known: the
    /// clock (whether to read `alp.version` again), the connection id (its attributes are
    /// cached), the header map (`:method` and `:path` in one read). A denial adds its reply;
    /// filter state, a decision line and a canonical path rewrite add theirs.
    #[test]
    fn a_request_on_a_known_connection_makes_three_host_calls() {
        let host = host_with("GET", PRINCIPAL);
        host.set_property_bytes("connection.id", &7u64.to_le_bytes());
        host.log_level.set(Some(Level::Info)); // Envoy's default
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        let f = filter(&host);
        assert_eq!(f.on_request_headers(&host), Action::Continue);
        host.host_calls.borrow_mut().clear();
        assert_eq!(f.on_request_headers(&host), Action::Continue);
        assert_eq!(
            *host.host_calls.borrow(),
            ["now_ms", "property", "request_method_and_path"]
        );
        host.host_calls.borrow_mut().clear();
        host.set_header(":method", "DELETE");
        assert_eq!(f.on_request_headers(&host), Action::Replied);
        assert_eq!(
            *host.host_calls.borrow(),
            [
                "now_ms",
                "property",
                "request_method_and_path",
                "request_header",
                "now_ms",
                "log",
                "send_local_reply"
            ],
            "a denial is logged (the default) and answered"
        );
    }

    /// The native module's engine source: one program for the process.
    #[derive(Debug)]
    struct Process(std::sync::Mutex<Arc<Engine>>);

    impl crate::vm_state::ProcessEngine for Process {
        fn current(&self) -> Arc<Engine> {
            Arc::clone(&self.0.lock().unwrap())
        }
    }

    /// With a process engine, requests are decided with it and shared data is never read: the
    /// native module's workers all follow the one program, swapped under them.
    #[test]
    fn a_process_engine_decides_without_shared_data() {
        let host = host_with("GET", PRINCIPAL);
        host.set_property_bytes("connection.id", &7u64.to_le_bytes());
        let process = Arc::new(Process(std::sync::Mutex::new(Arc::new(
            Engine::not_in_sync(),
        ))));
        let f = VmState {
            process: Some(process.clone()),
            ..filter(&host)
        };
        assert_eq!(f.on_request_headers(&host), Action::Replied);
        assert_eq!(reply(&host).map(|r| r.status), Some(503), "not in sync");
        *process.0.lock().unwrap() = Arc::new(Engine::from_snapshot(4, &get_only()));
        assert_eq!(f.on_request_headers(&host), Action::Continue);
        host.set_header(":method", "DELETE");
        assert_eq!(f.on_request_headers(&host), Action::Replied);
        assert_eq!(reply(&host).map(|r| r.status), Some(403));
        assert!(
            !host.host_calls.borrow().contains(&"shared_data"),
            "{:?}",
            host.host_calls.borrow()
        );
    }

    fn reply(host: &FakeHost) -> Option<Reply> {
        host.replies.borrow().last().cloned()
    }

    const PRINCIPAL: &str = "spiffe://cluster.local/ns/default/sa/client";

    #[test]
    fn not_synchronised_before_any_snapshot() {
        let host = host_with("GET", PRINCIPAL);
        let f = filter(&host);
        assert_eq!(f.on_request_headers(&host), Action::Replied);
        let r = reply(&host).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "policy not synchronised");
        assert_eq!(
            r.headers,
            vec![("content-type".to_string(), "text/plain".to_string())]
        );
        assert_eq!(
            host.property_reads(),
            0,
            "no attributes read without a policy"
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_reason", "not_in_sync")]),
            0,
            "counted on the next tick"
        );
        f.metrics.flush(&host, None);
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_reason", "not_in_sync")]),
            1
        );
    }

    #[test]
    fn allow_continues_and_deny_replies_403() {
        let host = host_with("GET", PRINCIPAL);
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        let f = filter(&host);
        assert_eq!(f.on_request_headers(&host), Action::Continue);
        assert!(host.replies.borrow().is_empty());

        host.set_header(":method", "DELETE");
        assert_eq!(f.on_request_headers(&host), Action::Replied);
        let r = reply(&host).unwrap();
        assert_eq!((r.status, r.body.as_str()), (403, "denied by policy"));
        f.on_request_headers(&host);
        f.metrics.flush(&host, None);
        f.metrics.flush(&host, None);
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_reason", "policy_denied")]),
            2
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_reason", "allow")]),
            1
        );
        let line = host
            .logs
            .borrow()
            .iter()
            .rev()
            .find(|(l, _)| *l == Level::Debug)
            .unwrap()
            .1
            .clone();
        assert!(
            line.contains("deny reason=policy_denied status=403 version=1 tier=t"),
            "{line}"
        );
        assert!(line.contains("src=10.0.0.1:40000"), "{line}");
        assert!(
            !line.contains("DELETE") && !line.contains(" /"),
            "no header values: {line}"
        );
    }

    #[test]
    fn malformed_identity_is_403_invalid_peer_identity() {
        let host = host_with("GET", "spiffe://cluster.local/default/client");
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        filter(&host).on_request_headers(&host);
        let r = reply(&host).unwrap();
        assert_eq!((r.status, r.body.as_str()), (403, "invalid peer identity"));
    }

    #[test]
    fn every_verdict_maps_to_its_response() {
        for verdict in Verdict::ALL {
            let host = FakeHost::new();
            let action = respond(&host, verdict);
            match verdict.status() {
                None => assert_eq!(action, Action::Continue),
                Some(status) => {
                    assert_eq!(action, Action::Replied);
                    let r = reply(&host).unwrap();
                    assert_eq!((r.status, r.body.as_str()), (status, verdict.body()));
                }
            }
        }
    }

    #[test]
    fn second_vm_serves_the_published_snapshot_at_once() {
        let a = host_with("GET", PRINCIPAL);
        let mut fetcher = SnapshotCache::new();
        fetcher
            .accept(&a, &envelope::encode(3, &get_only()).unwrap())
            .unwrap();
        // A new worker VM: nothing cached yet, first request compiles from shared data.
        let b = a.sibling();
        for (k, v) in a.properties.borrow().iter() {
            b.set_property_bytes(k, v);
        }
        b.set_header(":method", "GET");
        b.set_header(":path", "/");
        let f = filter(&b);
        assert_eq!(f.on_request_headers(&b), Action::Continue);
        assert_eq!(f.cache.borrow().version(), Some(3));
    }

    #[test]
    fn corrupt_update_keeps_serving_the_old_snapshot() {
        let host = host_with("DELETE", PRINCIPAL);
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        let f = filter(&host);
        f.on_request_headers(&host);
        // A damaged version 2 lands in shared data.
        let mut bad = envelope::encode(2, &Snapshot::default()).unwrap();
        bad[0] = b'X';
        publish(&host, 2, &bad);
        assert_eq!(f.on_request_headers(&host), Action::Replied);
        assert_eq!(
            reply(&host).unwrap().status,
            403,
            "still version 1 (an empty snapshot would say 503)"
        );
        assert_eq!(f.cache.borrow().version(), Some(1));
        assert!(host.shared_value(SNAPSHOT_KEY).is_some());
    }

    // Metrics, decision logs, dry run and the staged rehearsal.

    fn configured(host: &FakeHost, dry_run: bool, log: DecisionLog, staged: bool) -> VmState {
        let f = VmState {
            metrics: Arc::new(Metrics::define(host, dry_run, Subject::Request)),
            settings: Rc::new(Settings {
                dry_run,
                log: DecisionLogger::new(log, 1.0, 0, 3),
                ..Default::default()
            }),
            ..Default::default()
        };
        f.cache.borrow_mut().set_options(alp_engine::Options {
            staged,
            ..Default::default()
        });
        f
    }

    /// The decision lines logged at info, parsed.
    /// The decision-log lines `host` was given, parsed.
    pub(crate) fn decision_lines(host: &FakeHost) -> Vec<serde_json::Value> {
        host.logs
            .borrow()
            .iter()
            .filter(|(l, m)| *l == Level::Info && m.starts_with("{\"event\":\"alp.decision\""))
            .map(|(_, m)| serde_json::from_str(m).unwrap())
            .collect()
    }

    #[test]
    fn counters_move_on_the_tick_without_host_calls_per_request() {
        let host = host_with("GET", PRINCIPAL);
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        let f = configured(&host, false, DecisionLog::All, false);
        let before = host.metric_calls.get();
        f.on_request_headers(&host);
        host.set_header(":method", "DELETE");
        f.on_request_headers(&host);
        f.on_request_headers(&host);
        assert_eq!(
            host.metric_calls.get(),
            before,
            "no metric host call per request"
        );
        let mut cache = f.cache.borrow_mut();
        f.metrics.flush(&host, Some(&mut cache));
        assert_eq!(
            host.counter("wasmcustom.alp_requests_total"),
            0,
            "Envoy adds wasmcustom."
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_decision", "allowed")]),
            1
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_decision", "denied")]),
            2
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_decision", "would_deny")]),
            0
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_reason", "policy_denied")]),
            2
        );
        assert_eq!(
            host.metric(
                "alp_policy_requests_total",
                &[
                    ("alp_tier", "t"),
                    ("alp_policy", "p"),
                    ("alp_action", "allow")
                ]
            ),
            1
        );
        assert_eq!(
            host.metric(
                "alp_policy_requests_total",
                &[
                    ("alp_tier", "t"),
                    ("alp_policy", "_default"),
                    ("alp_action", "deny")
                ]
            ),
            2
        );
        assert_eq!(host.gauge("alp_snapshot_version"), Some(1));
        assert_eq!(host.gauge("alp_snapshot_age_seconds"), Some(0));
        assert_eq!(host.gauge("alp_dry_run"), Some(0));
    }

    #[test]
    fn snapshot_gauges_and_reloads() {
        let host = host_with("GET", PRINCIPAL);
        let f = configured(&host, false, DecisionLog::Off, false);
        {
            let mut cache = f.cache.borrow_mut();
            cache
                .accept(&host, &envelope::encode(42, &get_only()).unwrap())
                .unwrap();
            assert!(cache.accept(&host, b"junk").is_err());
        }
        host.advance(7_500);
        f.metrics.flush(&host, Some(&mut f.cache.borrow_mut()));
        assert_eq!(host.gauge("alp_snapshot_version"), Some(42));
        assert_eq!(host.gauge("alp_snapshot_age_seconds"), Some(7));
        assert_eq!(host.counter("alp_snapshot_reloads_total"), 1);
        assert_eq!(host.counter("alp_snapshot_refusals_total"), 1);
    }

    #[test]
    fn decision_lines_carry_time_and_request_id_and_the_access_log_gets_the_decision() {
        let host = host_with("DELETE", PRINCIPAL);
        host.set_header("x-request-id", "a1b2-c3");
        host.now.set(1_796_135_712_345);
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        let mut f = configured(&host, false, DecisionLog::All, false);
        f.settings = Rc::new(Settings {
            filter_state: true,
            log: DecisionLogger::new(DecisionLog::All, 1.0, 0, 3),
            ..Default::default()
        });
        f.on_request_headers(&host);
        let l = &decision_lines(&host)[0];
        assert_eq!(l["ts"], "2026-12-01T14:35:12.345Z");
        assert_eq!(l["request_id"], "a1b2-c3");
        assert_eq!(l["kind"], "http");
        let state = host.filter_state.borrow().get(FILTER_STATE).cloned();
        assert_eq!(
            String::from_utf8(state.unwrap()).unwrap(),
            "deny reason=policy_denied tier=t"
        );
        // Off: no filter state, no host call for it.
        let host = host_with("GET", PRINCIPAL);
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        configured(&host, false, DecisionLog::Off, false).on_request_headers(&host);
        assert!(host.filter_state.borrow().is_empty());
    }

    #[test]
    fn decision_lines_are_json_without_header_values() {
        let host = host_with("DELETE", PRINCIPAL);
        host.set_header("authorization", "Bearer SECRET-TOKEN");
        host.set_header("cookie", "session=SECRET-COOKIE");
        host.set_header(":authority", "SECRET-HOST");
        host.set_header(
            ":path",
            "/accounts/\"quoted\"\n\u{7}x/..;y?token=SECRET-QUERY",
        );
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        let f = configured(&host, false, DecisionLog::Deny, false);
        assert_eq!(f.on_request_headers(&host), Action::Replied);
        host.set_header(":method", "GET");
        assert_eq!(f.on_request_headers(&host), Action::Continue);
        for (_, line) in host.logs.borrow().iter() {
            assert!(!line.contains("SECRET"), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
        let lines = decision_lines(&host);
        assert_eq!(lines.len(), 1, "deny mode logs the denial only");
        let l = &lines[0];
        assert_eq!(l["decision"], "deny");
        assert_eq!(l["status"], 403);
        assert_eq!(l["reason"], "policy_denied");
        assert_eq!(l["tier"], "t");
        assert_eq!(
            l["detail"],
            "no policy in the tier matched; the tier's default action is Deny"
        );
        assert_eq!(
            (l["enforced"].as_bool(), l["blocked"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(l["version"], 1);
        assert_eq!(l["source"]["principal"], PRINCIPAL);
        assert_eq!(l["source"]["address"], "10.0.0.1");
        assert_eq!(l["source"]["port"], 40000);
        assert_eq!(l["destination"]["port"], 8080);
        assert_eq!(l["method"], "DELETE");
        assert_eq!(
            l["path"], "/accounts/\"quoted\"\n\u{7}x/..;y",
            "as received, escaped, no query"
        );
        assert!(l.get("staged").is_none());

        let all = configured(&host, false, DecisionLog::All, false);
        all.on_request_headers(&host);
        assert_eq!(decision_lines(&host).len(), 2);
        assert_eq!(decision_lines(&host)[1]["decision"], "allow");
    }

    #[test]
    fn long_paths_are_capped() {
        let host = host_with("DELETE", PRINCIPAL);
        host.set_header(":path", &format!("/{}", "a".repeat(5000)));
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        configured(&host, false, DecisionLog::Deny, false).on_request_headers(&host);
        let l = &decision_lines(&host)[0];
        assert_eq!(
            l["path"].as_str().unwrap().len(),
            crate::decision_log::MAX_PATH
        );
        assert_eq!(l["path_truncated"], true);
    }

    #[test]
    fn logging_off_logs_nothing() {
        let host = host_with("DELETE", PRINCIPAL);
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        configured(&host, false, DecisionLog::Off, false).on_request_headers(&host);
        assert!(decision_lines(&host).is_empty());
    }

    #[test]
    fn dry_run_lets_a_denied_request_through_and_counts_it() {
        let host = host_with("DELETE", PRINCIPAL);
        publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
        let f = configured(&host, true, DecisionLog::Deny, false);
        assert_eq!(f.on_request_headers(&host), Action::Continue);
        assert!(host.replies.borrow().is_empty(), "no local reply");
        f.metrics.flush(&host, None);
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_decision", "would_deny")]),
            1
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_decision", "denied")]),
            0
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_reason", "policy_denied")]),
            1
        );
        assert_eq!(
            host.metric(
                "alp_policy_requests_total",
                &[
                    ("alp_tier", "t"),
                    ("alp_policy", "_default"),
                    ("alp_action", "deny")
                ]
            ),
            1
        );
        assert_eq!(host.gauge("alp_dry_run"), Some(1));
        let l = &decision_lines(&host)[0];
        assert_eq!(
            (l["decision"].as_str(), l["status"].as_u64()),
            (Some("deny"), Some(403))
        );
        assert_eq!(
            (l["enforced"].as_bool(), l["blocked"].as_bool()),
            (Some(false), Some(false))
        );
        // Not in sync is let through too: a dry run never blocks.
        let fresh = FakeHost::new();
        let f = configured(&fresh, true, DecisionLog::Deny, false);
        assert_eq!(f.on_request_headers(&fresh), Action::Continue);
    }

    /// `get_only` plus staged policy `s` (first in the tier) denying GET /admin.
    fn with_staged() -> Snapshot {
        let mut s = get_only();
        let id = PolicyId {
            name: "s".into(),
            namespace: "prod".into(),
            kind: "StagedNetworkPolicy".into(),
        };
        if let Some(e) = s.endpoint.as_mut() {
            e.tiers[0].ingress_policies.insert(0, id.clone());
        }
        s.policies.push(Policy {
            id,
            namespace: "prod".into(),
            inbound_rules: vec![Rule {
                action: "deny".into(),
                http_match: Some(HttpMatch {
                    methods: vec![],
                    paths: vec![alp_engine::snapshot::PathMatch::Prefix("/admin".into())],
                }),
                ..Default::default()
            }],
        });
        s
    }

    #[test]
    fn staged_differences_are_counted_and_logged() {
        let host = host_with("GET", PRINCIPAL);
        publish(&host, 1, &envelope::encode(1, &with_staged()).unwrap());
        let f = configured(&host, false, DecisionLog::Deny, true);
        host.set_header(":path", "/admin/users");
        assert_eq!(
            f.on_request_headers(&host),
            Action::Continue,
            "staged never enforced"
        );
        host.set_header(":path", "/public");
        assert_eq!(f.on_request_headers(&host), Action::Continue);
        f.metrics.flush(&host, None);
        assert_eq!(host.metric("alp_staged_requests_total", &[]), 1);
        assert_eq!(
            host.metric("alp_staged_requests_total", &[("alp_staged", "would_deny")]),
            1
        );
        assert_eq!(
            host.metric(
                "alp_staged_requests_total",
                &[("alp_staged", "would_allow")]
            ),
            0
        );
        assert_eq!(
            host.metric(
                "alp_staged_policy_requests_total",
                &[
                    ("alp_tier", "t"),
                    ("alp_policy", "prod/s"),
                    ("alp_action", "deny")
                ]
            ),
            1
        );
        assert_eq!(
            host.metric("alp_requests_total", &[("alp_decision", "allowed")]),
            2
        );
        assert_eq!(
            host.metric(
                "alp_policy_requests_total",
                &[
                    ("alp_tier", "t"),
                    ("alp_policy", "p"),
                    ("alp_action", "allow")
                ]
            ),
            2
        );
        let lines = decision_lines(&host);
        assert_eq!(lines.len(), 1, "the difference is logged in deny mode");
        let l = &lines[0];
        assert_eq!(l["decision"], "allow");
        assert_eq!(l["staged"]["decision"], "deny");
        assert_eq!(l["staged"]["differs"], true);
        assert_eq!(l["staged"]["policy"]["name"], "s");
        assert_eq!(l["staged"]["policy"]["namespace"], "prod");
        assert_eq!(l["staged"]["policy"]["kind"], "StagedNetworkPolicy");
        assert_eq!(l["path"], "/admin/users");

        // Without `staged`, the same snapshot costs nothing extra and counts nothing staged.
        let plain_host = host_with("GET", PRINCIPAL);
        plain_host.set_header(":path", "/admin/users");
        publish(
            &plain_host,
            1,
            &envelope::encode(1, &with_staged()).unwrap(),
        );
        let plain = configured(&plain_host, false, DecisionLog::All, false);
        plain.on_request_headers(&plain_host);
        plain.metrics.flush(&plain_host, None);
        assert_eq!(plain_host.metric("alp_staged_requests_total", &[]), 0);
        assert!(decision_lines(&plain_host)[0].get("staged").is_none());
    }

    // D10 paths, D11 host errors, D12 trust domains.

    /// Tier `t`, policy `p`: allow GET under `/public`, default Deny.
    fn public_only() -> Snapshot {
        let mut s = get_only();
        if let Some(m) = s.policies[0].inbound_rules[0].http_match.as_mut() {
            m.paths = vec![alp_engine::snapshot::PathMatch::Prefix("/public".into())];
        }
        s
    }

    fn with_path_mode(host: &FakeHost, mode: NonCanonicalPath) -> VmState {
        VmState {
            metrics: Arc::new(Metrics::define(host, false, Subject::Request)),
            settings: Rc::new(Settings {
                log: DecisionLogger::new(DecisionLog::All, 1.0, 0, 3),
                non_canonical_path: mode,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn non_canonical_paths_are_decided_and_forwarded_in_canonical_form() {
        // (request path, allowed, the :path forwarded when it was rewritten)
        let table: &[(&str, bool, Option<&str>)] = &[
            ("/public/a", true, None),
            ("/public/%61;v=1/", true, None),
            ("/admin/../public/x?q=1", true, Some("/public/x?q=1")),
            ("/admin//..//public", true, Some("/public")),
            ("/admin/..;/public", true, Some("/public")),
            ("/admin\\..\\public", true, Some("/public")),
            ("/;x/public", true, Some("/public")),
            ("/public/../admin", false, None),
            ("/public//..//admin", false, None),
            ("/public/./../admin", false, None),
            ("/admin/..%3B/public", false, None),
            ("/admin/..%2Fpublic", false, None),
            ("/admin/%2e%2e%3B/public", false, None),
        ];
        for (path, allowed, forwarded) in table {
            let host = host_with("GET", PRINCIPAL);
            host.set_header(":path", path);
            publish(&host, 1, &envelope::encode(1, &public_only()).unwrap());
            let f = with_path_mode(&host, NonCanonicalPath::Rewrite);
            let action = f.on_request_headers(&host);
            assert_eq!(action == Action::Continue, *allowed, "{path}");
            let writes = host.header_writes.borrow().clone();
            match forwarded {
                Some(p) => {
                    assert_eq!(writes, vec![(":path".to_string(), p.to_string())], "{path}");
                    assert_eq!(
                        host.route_cache_clears.get(),
                        1,
                        "{path}: the route is chosen again"
                    );
                    let line = &decision_lines(&host)[0];
                    assert_eq!(line["path_rewritten"], true, "{path}");
                    assert_eq!(line["forwarded_path"], p.split('?').next().unwrap());
                    assert_eq!(
                        line["path"],
                        path.split('?').next().unwrap(),
                        "the path as received"
                    );
                }
                None => assert!(writes.is_empty(), "{path}: {writes:?}"),
            }
            f.metrics.flush(&host, None);
            // Every non-canonical path is rewritten before it is decided, allowed or not.
            let non_canonical = alp_engine::path::forwarded_path(path).is_ok_and(|p| p.is_some());
            assert_eq!(
                host.metric(
                    "alp_noncanonical_paths_total",
                    &[("alp_outcome", "rewritten")]
                ),
                u64::from(non_canonical),
                "{path}"
            );
            if !allowed {
                let r = reply(&host).unwrap();
                let ambiguous = alp_engine::path::normalize(path).is_err();
                assert_eq!(r.status, if ambiguous { 400 } else { 403 }, "{path}");
            }
        }
    }

    #[test]
    fn reject_mode_refuses_non_canonical_paths() {
        for (path, want) in [
            ("/public/a", None),
            ("/public/", None),
            ("/admin/../public", Some(400)),
            ("/public//a", Some(400)),
            ("/other", Some(403)),
        ] {
            let host = host_with("GET", PRINCIPAL);
            host.set_header(":path", path);
            publish(&host, 1, &envelope::encode(1, &public_only()).unwrap());
            let f = with_path_mode(&host, NonCanonicalPath::Reject);
            let action = f.on_request_headers(&host);
            assert!(
                host.header_writes.borrow().is_empty(),
                "{path}: reject mode never rewrites"
            );
            match want {
                None => assert_eq!(action, Action::Continue, "{path}"),
                Some(status) => {
                    let r = reply(&host).unwrap();
                    assert_eq!(r.status, status, "{path}");
                    if status == 400 {
                        assert_eq!(r.body, "invalid request path");
                    }
                }
            }
            f.metrics.flush(&host, None);
            assert_eq!(
                host.metric(
                    "alp_noncanonical_paths_total",
                    &[("alp_outcome", "rejected")]
                ),
                u64::from(want == Some(400)),
                "{path}"
            );
        }
    }

    #[test]
    fn a_dry_run_still_forwards_the_canonical_path() {
        let host = host_with("GET", PRINCIPAL);
        host.set_header(":path", "/public/../admin");
        publish(&host, 1, &envelope::encode(1, &public_only()).unwrap());
        let f = configured(&host, true, DecisionLog::All, false);
        assert_eq!(f.on_request_headers(&host), Action::Continue);
        assert_eq!(
            host.header_writes.borrow().as_slice(),
            [(":path".to_string(), "/admin".to_string())]
        );
    }

    #[test]
    fn host_errors_fail_closed_with_503() {
        for failing in [
            "connection.uri_san_peer_certificate",
            "connection.tls_version",
            "source.address",
            "destination.address",
            ":headers",
        ] {
            let host = host_with("GET", PRINCIPAL);
            host.set_property("connection.uri_san_peer_certificate", "");
            publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
            if failing == ":headers" {
                host.fail_headers.set(true);
            } else {
                host.fail_property(failing);
            }
            let f = filter(&host);
            assert_eq!(f.on_request_headers(&host), Action::Replied, "{failing}");
            let r = reply(&host).unwrap();
            assert_eq!(
                (r.status, r.body.as_str()),
                (503, "request attributes unavailable"),
                "{failing}"
            );
            f.metrics.flush(&host, None);
            assert_eq!(
                host.metric(
                    "alp_requests_total",
                    &[("alp_reason", "attributes_unavailable")]
                ),
                1,
                "{failing}"
            );
            assert_eq!(
                host.metric("alp_requests_total", &[("alp_reason", "allow")]),
                0,
                "{failing}"
            );
        }
    }

    #[test]
    fn trust_domains_setting_pins_the_peer() {
        let evil = "spiffe://evil.example/ns/default/sa/client";
        for (domains, principal, want) in [
            (vec![], evil, Action::Continue),
            (vec!["cluster.local"], evil, Action::Replied),
            (vec!["cluster.local"], PRINCIPAL, Action::Continue),
            (vec!["cluster.local"], "", Action::Continue),
        ] {
            let host = host_with("GET", principal);
            publish(&host, 1, &envelope::encode(1, &get_only()).unwrap());
            let f = filter(&host);
            f.cache.borrow_mut().set_options(alp_engine::Options {
                trust_domains: alp_engine::TrustDomains::new(domains.clone()),
                ..Default::default()
            });
            assert_eq!(f.on_request_headers(&host), want, "{domains:?} {principal}");
            if want == Action::Replied {
                assert_eq!(reply(&host).unwrap().body, "invalid peer identity");
            }
        }
    }
}

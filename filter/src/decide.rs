//! One HTTP request: follow shared data, read the attributes, ask the engine (and the staged
//! rehearsal, when configured), count and log the decision, then let the request continue or
//! answer it locally with the status and body of spec section 7 (D9). A dry run
//! (`enforce: false`) always continues.

use crate::attributes::{Connection, ConnectionCache, HttpAttributes, TCP};
use crate::cache::SnapshotCache;
use crate::decision_log::{self, DecisionLogger, Entry};
use crate::host::{Host, Level};
use crate::metrics::Metrics;
use alp_engine::{Decision, Engine, Peer, Request, Verdict};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

/// What the HTTP context tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// A local reply was sent; the request stops here.
    Replied,
}

/// How decisions are acted on and logged (from the plugin configuration).
#[derive(Debug, Default)]
pub struct Settings {
    /// `enforce: false`: nothing is refused.
    pub dry_run: bool,
    pub log: DecisionLogger,
}

/// The per-VM state HTTP contexts share with the root context.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub cache: Rc<RefCell<SnapshotCache>>,
    pub connections: Rc<RefCell<ConnectionCache>>,
    pub metrics: Rc<Metrics>,
    pub settings: Rc<Settings>,
}

impl Filter {
    /// Decides the current request from its headers and answers it if it is denied (unless
    /// this is a dry run). Counts and logs the decision; no host call beyond reading the
    /// request (`connection.id`, `:method`, `:path`; the clock, and `alp.version` at most once
    /// per `cache::RECHECK_MS`), and the reply or log line.
    pub fn on_request_headers(&self, host: &dyn Host) -> Action {
        let engine = match self.cache.try_borrow_mut() {
            Ok(mut cache) => {
                cache.refresh_on_request(host);
                cache.engine()
            }
            Err(_) => Rc::new(Engine::not_in_sync()),
        };
        // Before the first snapshot nothing else needs reading.
        let connection = match engine.version() {
            Some(_) => match self.connections.try_borrow_mut() {
                Ok(mut connections) => Some(connections.get(host)),
                Err(_) => Some(Rc::new(Connection::read(host))),
            },
            None => None,
        };
        let http = connection.as_ref().map(|_| HttpAttributes::read(host));
        let request = match (&connection, &http) {
            (Some(connection), Some(http)) => Request {
                source: connection.source(),
                destination: connection.destination(),
                protocol: TCP,
                http: Some(http.http()),
            },
            _ => Request {
                source: Peer::default(),
                destination: Peer::default(),
                protocol: TCP,
                http: None,
            },
        };
        let decision = engine.decide(&request);
        let staged = engine.decide_staged(&request, &decision);
        let allowed = decision.verdict.is_allowed();
        let refuse = !allowed && !self.settings.dry_run;
        self.metrics
            .count(&engine, &decision, staged.as_ref(), refuse);
        let differs = staged.is_some_and(|s| s.verdict != decision.verdict);
        if host.log_enabled(Level::Info) && self.settings.log.wants(allowed, differs) {
            host.log(
                Level::Info,
                &decision_log::line(&Entry {
                    engine: &engine,
                    decision: &decision,
                    staged: staged.as_ref(),
                    enforced: !self.settings.dry_run,
                    blocked: refuse,
                    connection: connection.as_deref(),
                    http: http.as_ref(),
                }),
            );
        }
        if host.log_enabled(Level::Debug) {
            host.log(
                Level::Debug,
                &describe(&engine, &decision, connection.as_deref()),
            );
        }
        if refuse {
            respond(host, decision.verdict)
        } else {
            Action::Continue
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

/// One debug line: verdict, where it came from, and the connection; never header values.
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
    if let Some(tier) = &e.tier {
        let _ = write!(line, " tier={tier}");
    }
    if let Some(p) = &e.policy {
        if p.namespace.is_empty() {
            let _ = write!(line, " policy={}", p.name);
        } else {
            let _ = write!(line, " policy={}/{}", p.namespace, p.name);
        }
    }
    if let Some(profile) = &e.profile {
        let _ = write!(line, " profile={profile}");
    }
    if let Some(rule) = e.rule {
        let _ = write!(line, " rule={rule}");
    }
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
mod tests {
    use super::*;
    use crate::cache::tests::publish;
    use crate::cache::SNAPSHOT_KEY;
    use crate::config::DecisionLog;
    use crate::host::fake::{FakeHost, Reply};
    use alp_engine::envelope;
    use alp_engine::snapshot::{Endpoint, HttpMatch, Policy, PolicyId, Rule, Snapshot, Tier};

    /// Tier `t` with policy `p`: allow GET, default Deny.
    fn get_only() -> Snapshot {
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
                inbound_rules: vec![Rule {
                    action: "allow".into(),
                    http_match: Some(HttpMatch {
                        methods: vec!["GET".into()],
                        paths: vec![],
                    }),
                    ..Default::default()
                }],
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

    fn filter(host: &FakeHost) -> Filter {
        Filter {
            metrics: Rc::new(Metrics::define(host, false)),
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
            host.property_reads.get(),
            0,
            "no attributes read without a policy"
        );
        assert_eq!(
            host.counter("alp.decision.reason.not_in_sync"),
            0,
            "counted on the next tick"
        );
        f.metrics.flush(&host, None);
        assert_eq!(host.counter("alp.decision.reason.not_in_sync"), 1);
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
        assert_eq!(host.counter("alp.decision.reason.policy_denied"), 2);
        assert_eq!(host.counter("alp.decision.reason.allow"), 1);
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

    fn configured(host: &FakeHost, dry_run: bool, log: DecisionLog, staged: bool) -> Filter {
        let f = Filter {
            metrics: Rc::new(Metrics::define(host, dry_run)),
            settings: Rc::new(Settings {
                dry_run,
                log: DecisionLogger::new(log, 1.0, 0, 3),
            }),
            ..Default::default()
        };
        f.cache.borrow_mut().set_options(alp_engine::Options { staged, ..Default::default() });
        f
    }

    /// The decision lines logged at info, parsed.
    fn decision_lines(host: &FakeHost) -> Vec<serde_json::Value> {
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
            host.counter("wasmcustom.alp.requests.allowed"),
            0,
            "Envoy adds wasmcustom."
        );
        assert_eq!(host.counter("alp.requests.allowed"), 1);
        assert_eq!(host.counter("alp.requests.denied"), 2);
        assert_eq!(host.counter("alp.requests.would_deny"), 0);
        assert_eq!(host.counter("alp.decision.reason.policy_denied"), 2);
        assert_eq!(host.counter("alp.policy.t.p.allow"), 1);
        assert_eq!(host.counter("alp.policy.t._default.deny"), 2);
        assert_eq!(host.gauge("alp.snapshot.version"), Some(1));
        assert_eq!(host.gauge("alp.snapshot.age_seconds"), Some(0));
        assert_eq!(host.gauge("alp.dry_run"), Some(0));
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
        assert_eq!(host.gauge("alp.snapshot.version"), Some(42));
        assert_eq!(host.gauge("alp.snapshot.age_seconds"), Some(7));
        assert_eq!(host.counter("alp.snapshot.reloads"), 1);
        assert_eq!(host.counter("alp.snapshot.refusals"), 1);
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
        assert_eq!(host.counter("alp.requests.would_deny"), 1);
        assert_eq!(host.counter("alp.requests.denied"), 0);
        assert_eq!(host.counter("alp.decision.reason.policy_denied"), 1);
        assert_eq!(host.counter("alp.policy.t._default.deny"), 1);
        assert_eq!(host.gauge("alp.dry_run"), Some(1));
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
        assert_eq!(host.counter("alp.staged.differs"), 1);
        assert_eq!(host.counter("alp.staged.would_deny"), 1);
        assert_eq!(host.counter("alp.staged.would_allow"), 0);
        assert_eq!(host.counter("alp.staged.policy.t.prod/s.deny"), 1);
        assert_eq!(host.counter("alp.requests.allowed"), 2);
        assert_eq!(host.counter("alp.policy.t.p.allow"), 2);
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
        assert_eq!(plain_host.counter("alp.staged.differs"), 0);
        assert!(decision_lines(&plain_host)[0].get("staged").is_none());
    }
}

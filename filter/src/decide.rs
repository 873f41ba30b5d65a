//! One HTTP request: follow shared data, read the attributes, ask the engine, then let the
//! request continue or answer it locally with the status and body of spec section 7 (D9).

use crate::attributes::{Connection, ConnectionCache, HttpAttributes, TCP};
use crate::cache::SnapshotCache;
use crate::host::{Host, Level};
use alp_engine::{Decision, Engine, Peer, Request, Verdict};
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;

/// What the HTTP context tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// A local reply was sent; the request stops here.
    Replied,
}

/// Envoy counters `alp.decision.<reason>`, one per verdict. Requests count in the VM and the
/// root context adds the counts to Envoy's counters on each tick: no host call per request.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: [Option<u32>; Verdict::ALL.len()],
    pending: [Cell<u64>; Verdict::ALL.len()],
}

impl Metrics {
    pub fn define(host: &dyn Host) -> Self {
        let mut ids = [None; Verdict::ALL.len()];
        for (id, verdict) in ids.iter_mut().zip(Verdict::ALL) {
            *id = host.define_counter(&format!("alp.decision.{}", verdict.reason()));
        }
        Metrics {
            ids,
            pending: Default::default(),
        }
    }

    fn count(&self, verdict: Verdict) {
        if let Some(cell) = Verdict::ALL
            .iter()
            .position(|v| *v == verdict)
            .and_then(|i| self.pending.get(i))
        {
            cell.set(cell.get() + 1);
        }
    }

    /// Adds the counts since the last flush to Envoy's counters.
    pub fn flush(&self, host: &dyn Host) {
        for (id, pending) in self.ids.iter().zip(&self.pending) {
            let n = pending.take();
            if let (Some(id), true) = (id, n > 0) {
                host.increment_counter(*id, n);
            }
        }
    }
}

/// The per-VM state HTTP contexts share with the root context.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub cache: Rc<RefCell<SnapshotCache>>,
    pub connections: Rc<RefCell<ConnectionCache>>,
    pub metrics: Rc<Metrics>,
}

impl Filter {
    /// Decides the current request from its headers and answers it if it is denied.
    pub fn on_request_headers(&self, host: &dyn Host) -> Action {
        let engine = match self.cache.try_borrow_mut() {
            Ok(mut cache) => {
                cache.refresh(host);
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
        let decision = match &connection {
            Some(connection) => {
                let http = HttpAttributes::read(host);
                engine.decide(&Request {
                    source: connection.source(),
                    destination: connection.destination(),
                    protocol: TCP,
                    http: Some(http.http()),
                })
            }
            None => engine.decide(&Request {
                source: Peer::default(),
                destination: Peer::default(),
                protocol: TCP,
                http: None,
            }),
        };
        self.metrics.count(decision.verdict);
        if host.log_enabled(Level::Debug) {
            host.log(
                Level::Debug,
                &describe(&engine, &decision, connection.as_deref()),
            );
        }
        respond(host, decision.verdict)
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
            metrics: Rc::new(Metrics::define(host)),
            ..Default::default()
        }
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
            host.counter("alp.decision.not_in_sync"),
            0,
            "counted on the next tick"
        );
        f.metrics.flush(&host);
        assert_eq!(host.counter("alp.decision.not_in_sync"), 1);
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
        f.metrics.flush(&host);
        f.metrics.flush(&host);
        assert_eq!(host.counter("alp.decision.policy_denied"), 2);
        assert_eq!(host.counter("alp.decision.allow"), 1);
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
}

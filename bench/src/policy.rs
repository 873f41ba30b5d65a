//! The benchmark's policy, in the three forms the configurations need:
//!
//! * a [`Snapshot`] (the engine's model), from `alp_engine::synthetic`'s mesh-like endpoint with
//!   N inbound rules, adapted to the benchmark's listeners and request (see [`bench_snapshot`];
//!   for raw TCP connections its L4 form, [`tcp_snapshot`]);
//! * Felix `ToDataplane` JSON Lines, for `control serve` (our filter) and `control ext-authz`,
//!   checked by replaying them through the real store ([`check_round_trip`]);
//! * the closest native RBAC equivalent ([`rbac_filters`]).
//!
//! The request every configuration is measured with: `GET /orders/42` on the listener. In the
//! snapshot it is allowed only by the very last rule (every earlier rule has other paths), so a
//! decision has to consider every rule that could apply: from the mTLS client
//! (`spiffe://cluster.local/ns/bench/sa/bench-client`) and from a plaintext client, which Calico
//! treats as passing every service-account and namespace clause (no identity to check).
//!
//! The connection every configuration is measured with on the TCP listeners: from 127.0.0.1 (and
//! on mTLS from `bench-client`) to the TCP listener's port, allowed only by the last rule of
//! [`tcp_snapshot`], whose other rules are for other ports.

use crate::config::Layer;
use alp_engine::selector::Selector;
use alp_engine::snapshot::*;
use alp_engine::synthetic::endpoint_with_rules;
use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const TRUST_DOMAIN: &str = "cluster.local";
pub const CLIENT_NAMESPACE: &str = "bench";
pub const CLIENT_SA: &str = "bench-client";
/// The benchmark's request target.
pub const REQUEST_PATH: &str = "/orders/42";
/// A request every policy configuration must deny (checked before measuring).
pub const DENIED_PATH: &str = "/admin/1";
const ALLOWED_PREFIX: &str = "/orders";
/// The source net of [`tcp_snapshot`]'s allowing rule: connections from elsewhere on loopback
/// (plaintext's denied probe connects from [`TCP_DENIED_SOURCE`]) are refused.
pub const TCP_ALLOWED_NET: &str = "127.0.0.1/32";
pub const TCP_DENIED_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// A service account no rule names: mTLS's denied probe presents it.
pub const TCP_DENIED_SA: &str = "bench-other";
/// The ports of [`tcp_snapshot`]'s other rules (none is a listener's: those are ephemeral).
const TCP_OTHER_PORTS: PortRange = PortRange {
    first: 9000,
    last: 9100,
};

pub fn client_principal() -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/{CLIENT_NAMESPACE}/sa/{CLIENT_SA}")
}

/// The synthetic endpoint with `rules` rules, destination ports set to the benchmark's listener
/// ports (plus a range, as the synthetic rules have), and the last rule replaced by the one that
/// allows the benchmark's request: service account `bench-client`, `GET`, path prefix `/orders`.
pub fn bench_snapshot(rules: usize, ports: &[u16]) -> Snapshot {
    let mut snap = endpoint_with_rules(rules.max(1));
    let dst_ports: Vec<PortRange> = ports
        .iter()
        .map(|&p| PortRange {
            first: i32::from(p),
            last: i32::from(p),
        })
        .chain(std::iter::once(PortRange {
            first: 9000,
            last: 9100,
        }))
        .collect();
    let mut n = 0usize;
    for policy in &mut snap.policies {
        for (k, rule) in policy.inbound_rules.iter_mut().enumerate() {
            rule.dst.ports = dst_ports.clone();
            rule.rule_id = format!("{}:ingress:{k}", policy.id.name);
            n += 1;
        }
    }
    if let Some(last) = snap
        .policies
        .last_mut()
        .and_then(|p| p.inbound_rules.last_mut())
    {
        last.action = "allow".into();
        last.src = RuleSide {
            service_account_match: Some(ServiceAccountMatch {
                selector: String::new(),
                names: vec![CLIENT_SA.into()],
            }),
            ..Default::default()
        };
        last.http_match = Some(HttpMatch {
            methods: vec!["GET".into()],
            paths: vec![PathMatch::Prefix(ALLOWED_PREFIX.into())],
        });
    }
    debug_assert_eq!(n, rules.max(1));
    // As Felix's snapshot: only the IP sets some rule references.
    let referenced: std::collections::BTreeSet<String> = snap
        .policies
        .iter()
        .flat_map(|p| &p.inbound_rules)
        .flat_map(|r| r.src.ip_set_ids.iter().cloned())
        .collect();
    snap.ip_sets.retain(|s| referenced.contains(&s.id));
    snap.service_accounts.push(ServiceAccount {
        namespace: CLIENT_NAMESPACE.into(),
        name: CLIENT_SA.into(),
        labels: [("app".to_string(), CLIENT_SA.to_string())].into(),
    });
    snap.namespaces.push(Namespace {
        name: CLIENT_NAMESPACE.into(),
        labels: [("team".to_string(), "bench".to_string())].into(),
    });
    snap
}

/// The policy for raw TCP connections: [`bench_snapshot`]'s rules without their HTTP clauses (a
/// connection never matches a rule with one, D4, so a policy for a TCP port has none) and for
/// other ports ([`TCP_OTHER_PORTS`]) but the last, which allows `bench-client` from
/// [`TCP_ALLOWED_NET`] to the TCP listeners' `ports`. The same identity, net, IP-set, deny and
/// tier structure as for HTTP, and the measured connection is allowed by the last rule only: a
/// plaintext peer passes every identity clause, so every rule is considered for it (each one
/// refused by its ports), as every rule is for the HTTP request (refused by its paths).
pub fn tcp_snapshot(rules: usize, ports: &[u16]) -> Snapshot {
    let mut snap = bench_snapshot(rules, &[]);
    for rule in snap.policies.iter_mut().flat_map(|p| &mut p.inbound_rules) {
        rule.http_match = None;
        rule.dst.ports = vec![TCP_OTHER_PORTS];
    }
    if let Some(last) = snap
        .policies
        .last_mut()
        .and_then(|p| p.inbound_rules.last_mut())
    {
        last.src.nets = vec![TCP_ALLOWED_NET.into()];
        last.dst.ports = ports
            .iter()
            .map(|&p| PortRange {
                first: i32::from(p),
                last: i32::from(p),
            })
            .collect();
    }
    snap
}

// ---------------------------------------------------------------------------------------------
// Felix ToDataplane JSON Lines

fn side_json(out: &mut Map<String, Value>, prefix: &str, side: &RuleSide) {
    let mut put = |key: &str, v: Value| {
        let empty = match &v {
            Value::Array(a) => a.is_empty(),
            Value::String(s) => s.is_empty(),
            Value::Null => true,
            _ => false,
        };
        if !empty {
            out.insert(key.to_string(), v);
        }
    };
    let ports = |r: &[PortRange]| {
        Value::Array(
            r.iter()
                .map(|p| json!({"first": p.first, "last": p.last}))
                .collect(),
        )
    };
    put(&format!("{prefix}Net"), json!(side.nets));
    put(&format!("not{}Net", capital(prefix)), json!(side.not_nets));
    put(&format!("{prefix}Ports"), ports(&side.ports));
    put(
        &format!("not{}Ports", capital(prefix)),
        ports(&side.not_ports),
    );
    put(&format!("{prefix}IpSetIds"), json!(side.ip_set_ids));
    put(
        &format!("not{}IpSetIds", capital(prefix)),
        json!(side.not_ip_set_ids),
    );
    put(
        &format!("{prefix}NamedPortIpSetIds"),
        json!(side.named_port_ip_set_ids),
    );
    put(
        &format!("not{}NamedPortIpSetIds", capital(prefix)),
        json!(side.not_named_port_ip_set_ids),
    );
    if prefix == "dst" {
        put("dstIpPortSetIds", json!(side.ip_port_set_ids));
    }
    put(
        &format!("original{}Selector", capital(prefix)),
        json!(side.original_selector),
    );
    put(
        &format!("originalNot{}Selector", capital(prefix)),
        json!(side.original_not_selector),
    );
    put(
        &format!("original{}NamespaceSelector", capital(prefix)),
        json!(side.original_namespace_selector),
    );
    if let Some(sa) = &side.service_account_match {
        out.insert(
            format!("{prefix}ServiceAccountMatch"),
            json!({"selector": sa.selector, "names": sa.names}),
        );
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn protocol_json(p: &Protocol) -> Value {
    match p {
        Protocol::Number(n) => json!({"number": n}),
        Protocol::Name(s) => json!({"name": s}),
        Protocol::Unset => json!({}),
    }
}

fn rule_json(rule: &Rule) -> Result<Value> {
    let mut out = Map::new();
    out.insert("action".into(), json!(rule.action));
    if let Some(p) = &rule.protocol {
        out.insert("protocol".into(), protocol_json(p));
    }
    if let Some(p) = &rule.not_protocol {
        out.insert("notProtocol".into(), protocol_json(p));
    }
    side_json(&mut out, "src", &rule.src);
    side_json(&mut out, "dst", &rule.dst);
    if let Some(http) = &rule.http_match {
        let paths = http
            .paths
            .iter()
            .map(|p| match p {
                PathMatch::Exact(v) => Ok(json!({"exact": v})),
                PathMatch::Prefix(v) => Ok(json!({"prefix": v})),
                PathMatch::Unset => Ok(json!({})),
                other => bail!("the benchmark does not generate {other:?}"),
            })
            .collect::<Result<Vec<_>>>()?;
        out.insert(
            "httpMatch".into(),
            json!({"methods": http.methods, "paths": paths}),
        );
    }
    if !rule.rule_id.is_empty() {
        out.insert("ruleId".into(), json!(rule.rule_id));
    }
    Ok(Value::Object(out))
}

fn policy_id_json(id: &PolicyId) -> Value {
    json!({"name": id.name, "namespace": id.namespace, "kind": id.kind})
}

/// The `ToDataplane` stream Felix would send for this snapshot, ending with `inSync`.
pub fn to_dataplane(snap: &Snapshot) -> Result<Vec<Value>> {
    let mut msgs = Vec::new();
    for set in &snap.ip_sets {
        let kind = match set.kind {
            IpSetKind::Ip => "IP",
            IpSetKind::IpAndPort => "IP_AND_PORT",
            IpSetKind::Net => "NET",
        };
        msgs.push(json!({"ipsetUpdate": {"id": set.id, "type": kind, "members": set.members}}));
    }
    for ns in &snap.namespaces {
        msgs.push(json!({"namespaceUpdate": {"id": {"name": ns.name}, "labels": ns.labels}}));
    }
    for sa in &snap.service_accounts {
        msgs.push(json!({"serviceAccountUpdate": {"id": {"namespace": sa.namespace, "name": sa.name}, "labels": sa.labels}}));
    }
    for profile in &snap.profiles {
        let rules = profile
            .inbound_rules
            .iter()
            .map(rule_json)
            .collect::<Result<Vec<_>>>()?;
        msgs.push(json!({"activeProfileUpdate": {"id": {"name": profile.name}, "profile": {"inboundRules": rules}}}));
    }
    let endpoint = snap
        .endpoint
        .as_ref()
        .context("the benchmark snapshot has an endpoint")?;
    let tier_of: BTreeMap<&PolicyId, &str> = endpoint
        .tiers
        .iter()
        .flat_map(|t| {
            t.ingress_policies
                .iter()
                .map(move |id| (id, t.name.as_str()))
        })
        .collect();
    for policy in &snap.policies {
        let rules = policy
            .inbound_rules
            .iter()
            .map(rule_json)
            .collect::<Result<Vec<_>>>()?;
        msgs.push(json!({"activePolicyUpdate": {
            "id": policy_id_json(&policy.id),
            "policy": {"namespace": policy.namespace, "tier": tier_of.get(&policy.id).copied().unwrap_or(""), "inboundRules": rules}
        }}));
    }
    let tiers: Vec<Value> = endpoint
        .tiers
        .iter()
        .map(|t| {
            json!({"name": t.name, "ingressPolicies": t.ingress_policies.iter().map(policy_id_json).collect::<Vec<_>>(),
                   "defaultAction": t.default_action})
        })
        .collect();
    msgs.push(json!({"workloadEndpointUpdate": {
        "id": {"orchestratorId": "k8s", "workloadId": "bench/server", "endpointId": "eth0"},
        "endpoint": {"state": "active", "name": "cali-bench", "profileIds": endpoint.profile_ids, "ipv4Nets": ["127.0.0.1/32"], "tiers": tiers}
    }}));
    msgs.push(json!({"inSync": {}}));
    Ok(msgs)
}

/// Replays `jsonl` through the real Felix store (as control does) and checks that the snapshot
/// it yields is `expected` (lists compared in key order), so the filter, ext_authz and the RBAC
/// translation all enforce the same policy.
pub fn check_round_trip(jsonl: &str, expected: &Snapshot) -> Result<()> {
    use alp_felix::sync::SyncState;
    let messages = alp_felix::updates::parse_updates(jsonl)
        .map_err(|e| anyhow::anyhow!("generated updates do not parse: {e}"))?;
    let mut sync = SyncState::new();
    if let Some((i, why)) = sync.replay(&messages).malformed.first() {
        bail!("generated update {} is malformed: {why}", i + 1);
    }
    let got = sync
        .current()
        .context("generated updates never reach inSync")?
        .snapshot();
    let (mut got, mut want) = (got, expected.clone());
    for s in [&mut got, &mut want] {
        s.policies.sort_by(|a, b| a.id.cmp(&b.id));
        s.profiles.sort_by(|a, b| a.name.cmp(&b.name));
        s.ip_sets.sort_by(|a, b| a.id.cmp(&b.id));
        for set in &mut s.ip_sets {
            set.members.sort();
        }
        s.service_accounts
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        s.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if got.endpoint != want.endpoint {
        bail!("the replayed endpoint differs from the generated one");
    }
    if got.policies != want.policies {
        let i = got
            .policies
            .iter()
            .zip(&want.policies)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        bail!(
            "replayed policy #{i} differs:\n got  {:?}\n want {:?}",
            got.policies.get(i),
            want.policies.get(i)
        );
    }
    if got.profiles != want.profiles {
        bail!(
            "replayed profiles differ: {:?} vs {:?}",
            got.profiles,
            want.profiles
        );
    }
    if got.ip_sets != want.ip_sets {
        bail!("replayed IP sets differ");
    }
    if got.service_accounts != want.service_accounts || got.namespaces != want.namespaces {
        bail!(
            "replayed labels differ: {:?} {:?}",
            got.service_accounts
                .iter()
                .zip(&want.service_accounts)
                .find(|(a, b)| a != b),
            got.namespaces
                .iter()
                .zip(&want.namespaces)
                .find(|(a, b)| a != b)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Native RBAC

/// The closest native RBAC equivalent: Envoy's `envoy.filters.http.rbac` filters (as JSON; for
/// [`Layer::Tcp`] the network filter `envoy.filters.network.rbac`, whose rules have no HTTP
/// clause: [`tcp_snapshot`]), one policy per Calico rule, named in rule order so Envoy (which evaluates policies in name
/// order, stopping at the first match) visits them in the same order:
///
/// * a `DENY` filter with the deny rules, then an `ALLOW` filter with the allow rules. Calico
///   decides by the first matching rule, RBAC by "any deny, else any allow": the same on the
///   benchmark's requests (no deny rule matches them), and the same amount of matching work;
/// * permissions: methods (`:method` exact), paths (`url_path`, the segment-aware prefix as
///   exact-or-`prefix/`), destination ports;
/// * principals: source nets and IP sets (`direct_remote_ip`; IP sets aggregated to CIDRs), and
///   the identity clauses: a plaintext peer passes them (`not_id: authenticated`), an mTLS peer
///   must be one of the service accounts the clauses select (resolved against the store's
///   labels: names as `/sa/NAME` suffixes, selectors and namespace selectors as the exact
///   principals they select).
pub fn rbac_filters(snap: &Snapshot, layer: Layer) -> Result<Vec<Value>> {
    let sets: BTreeMap<&str, &IpSet> = snap.ip_sets.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut allow = Map::new();
    let mut deny = Map::new();
    let mut n = 0usize;
    let endpoint = snap.endpoint.as_ref().context("endpoint")?;
    let by_id: BTreeMap<&PolicyId, &Policy> = snap.policies.iter().map(|p| (&p.id, p)).collect();
    for tier in &endpoint.tiers {
        for id in &tier.ingress_policies {
            let policy = by_id
                .get(id)
                .with_context(|| format!("policy {} missing", id.name))?;
            for rule in &policy.inbound_rules {
                let name = format!("r{n:06}");
                n += 1;
                if layer == Layer::Tcp && rule.http_match.is_some() {
                    bail!("the network RBAC filter has no HTTP clauses (use tcp_snapshot)");
                }
                let entry = json!({"permissions": [permission(rule)?], "principals": [principal(rule, snap, &sets)?]});
                match rule.action.to_ascii_lowercase().as_str() {
                    "allow" => allow.insert(name, entry),
                    "deny" => deny.insert(name, entry),
                    other => bail!("the RBAC translation has no equivalent of action {other:?}"),
                };
            }
        }
    }
    let kind = match layer {
        Layer::Http => "http",
        Layer::Tcp => "network",
    };
    let filter = |name: &str, action: &str, policies: Map<String, Value>| {
        let mut config = json!({
            "@type": format!("type.googleapis.com/envoy.extensions.filters.{kind}.rbac.v3.RBAC"),
            "rules": {"action": action, "policies": policies}
        });
        if layer == Layer::Tcp {
            config["stat_prefix"] = json!(format!("bench_{}", action.to_ascii_lowercase()));
        }
        json!({"name": name, "typed_config": config})
    };
    let mut filters = Vec::new();
    if !deny.is_empty() {
        filters.push(filter(
            &format!("envoy.filters.{kind}.rbac.deny"),
            "DENY",
            deny,
        ));
    }
    filters.push(filter(
        &format!("envoy.filters.{kind}.rbac"),
        "ALLOW",
        allow,
    ));
    Ok(filters)
}

fn any_of(key: &str, items: Vec<Value>) -> Option<Value> {
    match items.len() {
        0 => None,
        1 => items.into_iter().next(),
        _ => {
            let inner = if key == "or_ids" { "ids" } else { "rules" };
            Some(json!({ key: { inner: items } }))
        }
    }
}

fn permission(rule: &Rule) -> Result<Value> {
    if rule.protocol.is_some()
        || rule.not_protocol.is_some()
        || !rule.dst.nets.is_empty()
        || !rule.dst.not_ports.is_empty()
    {
        bail!("the RBAC translation covers the benchmark's clauses only");
    }
    let mut all = Vec::new();
    if let Some(http) = &rule.http_match {
        let methods = http
            .methods
            .iter()
            .map(|m| json!({"header": {"name": ":method", "string_match": {"exact": m}}}))
            .collect();
        all.extend(any_of("or_rules", methods));
        let mut paths = Vec::new();
        for p in &http.paths {
            match p {
                PathMatch::Exact(v) => paths.push(json!({"url_path": {"path": {"exact": v}}})),
                PathMatch::Prefix(v) if v == "/" => paths.push(json!({"any": true})),
                PathMatch::Prefix(v) => {
                    paths.push(json!({"url_path": {"path": {"exact": v}}}));
                    paths.push(json!({"url_path": {"path": {"prefix": format!("{}/", v.trim_end_matches('/'))}}}));
                }
                _ => bail!("unsupported path match"),
            }
        }
        all.extend(any_of("or_rules", paths));
    }
    let ports = rule
        .dst
        .ports
        .iter()
        .map(|r| {
            if r.first == r.last {
                json!({"destination_port": r.first})
            } else {
                json!({"destination_port_range": {"start": r.first, "end": r.last + 1}})
            }
        })
        .collect();
    all.extend(any_of("or_rules", ports));
    Ok(match all.len() {
        0 => json!({"any": true}),
        1 => all.remove(0),
        _ => json!({"and_rules": {"rules": all}}),
    })
}

fn principal(rule: &Rule, snap: &Snapshot, sets: &BTreeMap<&str, &IpSet>) -> Result<Value> {
    let src = &rule.src;
    if !src.not_nets.is_empty()
        || !src.not_ip_set_ids.is_empty()
        || !src.ports.is_empty()
        || !src.original_selector.is_empty()
    {
        bail!("the RBAC translation covers the benchmark's clauses only");
    }
    let mut all = Vec::new();
    if let Some(identity) = identity(src, snap)? {
        all.push(identity);
    }
    let cidr = |ip: Ipv4Addr, len: u8| json!({"direct_remote_ip": {"address_prefix": ip.to_string(), "prefix_len": len}});
    let nets = src
        .nets
        .iter()
        .map(|n| {
            let (ip, len) = n.split_once('/').unwrap_or((n, "32"));
            Ok(cidr(
                ip.parse().with_context(|| format!("net {n}"))?,
                len.parse()?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    all.extend(any_of("or_ids", nets));
    for id in &src.ip_set_ids {
        let set = sets
            .get(id.as_str())
            .with_context(|| format!("IP set {id} missing"))?;
        let ips = set
            .members
            .iter()
            .map(|m| m.parse::<Ipv4Addr>().with_context(|| format!("member {m}")))
            .collect::<Result<Vec<_>>>()?;
        let blocks = aggregate(ips)
            .into_iter()
            .map(|(ip, len)| cidr(ip, len))
            .collect();
        all.push(any_of("or_ids", blocks).unwrap_or_else(|| json!({"not_id": {"any": true}})));
    }
    Ok(match all.len() {
        0 => json!({"any": true}),
        1 => all.remove(0),
        _ => json!({"and_ids": {"ids": all}}),
    })
}

/// The identity clauses (service account, namespace selector) as an RBAC principal; `None`
/// when the rule has none. Plaintext peers pass them (Calico: no identity to check).
fn identity(src: &RuleSide, snap: &Snapshot) -> Result<Option<Value>> {
    let sa = src.service_account_match.as_ref();
    let ns_selector = Some(src.original_namespace_selector.as_str()).filter(|s| !s.is_empty());
    if sa.is_none() && ns_selector.is_none() {
        return Ok(None);
    }
    let parse = |s: &str| Selector::parse(s).map_err(|e| anyhow::anyhow!("selector {s:?}: {e}"));
    let sa_selector = match sa
        .map(|m| m.selector.as_str())
        .filter(|s| !s.trim().is_empty())
    {
        Some(s) => Some(parse(s)?),
        None => None,
    };
    let ns_selector = match ns_selector {
        Some(s) => Some(parse(s)?),
        None => None,
    };
    let names: &[String] = sa.map_or(&[], |m| &m.names);
    let ns_labels: BTreeMap<&str, &Labels> = snap
        .namespaces
        .iter()
        .map(|n| (n.name.as_str(), &n.labels))
        .collect();
    let empty = Labels::new();
    let principal = |matcher: Value| json!({"authenticated": {"principal_name": matcher}});
    let mut ids = vec![json!({"not_id": {"authenticated": {}}})];
    if sa_selector.is_none() && ns_selector.as_ref().is_none_or(|s| !s.matches(&empty)) {
        // Names only (or no service-account clause): suffixes, and the namespaces selected.
        let by_name: Vec<Value> = names
            .iter()
            .map(|n| principal(json!({"suffix": format!("/sa/{n}")})))
            .collect();
        let namespaces: Vec<Value> = match &ns_selector {
            None => vec![],
            Some(sel) => snap
                .namespaces
                .iter()
                .filter(|n| sel.matches(&n.labels))
                .map(|n| {
                    principal(json!({"prefix": format!("spiffe://{TRUST_DOMAIN}/ns/{}/", n.name)}))
                })
                .collect(),
        };
        match (by_name.is_empty(), ns_selector.is_some()) {
            (true, false) => return Ok(None),
            (false, false) => ids.extend(by_name),
            (true, true) => ids.push(
                any_of("or_ids", namespaces).unwrap_or_else(|| json!({"not_id": {"any": true}})),
            ),
            (false, true) => {
                let mut both = vec![any_of("or_ids", by_name).unwrap_or(json!({"any": true}))];
                both.push(
                    any_of("or_ids", namespaces)
                        .unwrap_or_else(|| json!({"not_id": {"any": true}})),
                );
                ids.push(json!({"and_ids": {"ids": both}}));
            }
        }
    } else {
        // A selector: the exact principals of the service accounts it selects.
        for account in &snap.service_accounts {
            let name_ok = names.is_empty() || names.contains(&account.name);
            let sa_ok = sa_selector
                .as_ref()
                .is_none_or(|s| s.matches(&account.labels));
            let ns_ok = ns_selector.as_ref().is_none_or(|s| {
                s.matches(*ns_labels.get(account.namespace.as_str()).unwrap_or(&&empty))
            });
            if name_ok && sa_ok && ns_ok {
                ids.push(principal(
                    json!({"exact": format!("spiffe://{TRUST_DOMAIN}/ns/{}/sa/{}", account.namespace, account.name)}),
                ));
            }
        }
    }
    Ok(any_of("or_ids", ids))
}

/// IPv4 addresses as the fewest aligned CIDR blocks that cover exactly them.
pub fn aggregate(mut ips: Vec<Ipv4Addr>) -> Vec<(Ipv4Addr, u8)> {
    ips.sort();
    ips.dedup();
    let values: Vec<u64> = ips.iter().map(|ip| u64::from(u32::from(*ip))).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < values.len() {
        // The run of consecutive addresses starting here.
        let mut end = i;
        while end + 1 < values.len() && values[end + 1] == values[end] + 1 {
            end += 1;
        }
        let (mut start, last) = (values[i], values[end]);
        while start <= last {
            let mut size = if start == 0 {
                1u64 << 32
            } else {
                1u64 << start.trailing_zeros().min(32)
            };
            while start + size - 1 > last {
                size >>= 1;
            }
            let len = 32 - size.trailing_zeros() as u8;
            out.push((Ipv4Addr::from(start as u32), len));
            start += size;
        }
        i = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alp_engine::{Engine, Http, Peer, Request, Verdict};

    fn decide(snap: &Snapshot, principal: &str, path: &str) -> Verdict {
        let engine = Engine::from_snapshot(1, snap);
        engine
            .decide(&Request {
                source: Peer {
                    principal,
                    address: Some("127.0.0.1".parse().unwrap()),
                    port: 40000,
                },
                destination: Peer {
                    principal: "",
                    address: Some("127.0.0.1".parse().unwrap()),
                    port: 18080,
                },
                protocol: 6,
                http: Some(Http {
                    method: "GET",
                    path,
                    host: "",
                }),
            })
            .verdict
    }

    /// A connection (no HTTP) from `source` to `port`.
    fn decide_tcp(snap: &Snapshot, principal: &str, source: Ipv4Addr, port: u16) -> Verdict {
        let engine = Engine::from_snapshot(1, snap);
        engine
            .decide(&Request {
                source: Peer {
                    principal,
                    address: Some(source.into()),
                    port: 40000,
                },
                destination: Peer {
                    principal: "",
                    address: Some("127.0.0.1".parse().unwrap()),
                    port,
                },
                protocol: 6,
                http: None,
            })
            .verdict
    }

    #[test]
    fn the_connection_is_allowed_by_the_last_rule_only() {
        let local = Ipv4Addr::LOCALHOST;
        for rules in [1, 100, 1000] {
            let snap = tcp_snapshot(rules, &[18081, 18444]);
            let principal = client_principal();
            let other = format!("spiffe://{TRUST_DOMAIN}/ns/{CLIENT_NAMESPACE}/sa/{TCP_DENIED_SA}");
            for port in [18081, 18444] {
                assert_eq!(
                    decide_tcp(&snap, "", local, port),
                    Verdict::Allow,
                    "{rules}"
                );
                assert_eq!(decide_tcp(&snap, &principal, local, port), Verdict::Allow);
                assert_eq!(
                    decide_tcp(&snap, "", TCP_DENIED_SOURCE, port),
                    Verdict::PolicyDenied
                );
                assert_eq!(
                    decide_tcp(&snap, &other, local, port),
                    Verdict::PolicyDenied
                );
            }
            assert_eq!(decide_tcp(&snap, "", local, 18080), Verdict::PolicyDenied);
            // Without the last rule nothing allows it.
            let mut without = snap.clone();
            let last = without
                .policies
                .last_mut()
                .unwrap()
                .inbound_rules
                .last_mut()
                .unwrap();
            last.dst.ports = vec![TCP_OTHER_PORTS];
            for p in [principal.as_str(), ""] {
                assert_eq!(
                    decide_tcp(&without, p, local, 18081),
                    Verdict::PolicyDenied,
                    "{rules}"
                );
            }
            let jsonl: String = to_dataplane(&snap)
                .unwrap()
                .iter()
                .map(|m| format!("{m}\n"))
                .collect();
            check_round_trip(&jsonl, &snap).unwrap();
        }
    }

    #[test]
    fn network_rbac_has_one_policy_per_rule_and_no_http() {
        let snap = tcp_snapshot(100, &[18081, 18444]);
        let filters = rbac_filters(&snap, Layer::Tcp).unwrap();
        assert_eq!(filters.len(), 2);
        let count = |f: &Value| {
            f["typed_config"]["rules"]["policies"]
                .as_object()
                .unwrap()
                .len()
        };
        assert_eq!(count(&filters[0]) + count(&filters[1]), 100);
        assert_eq!(filters[1]["name"], "envoy.filters.network.rbac");
        let text = serde_json::to_string(&filters).unwrap();
        assert!(!text.contains("url_path") && !text.contains(":method"));
        let last = filters[1]["typed_config"]["rules"]["policies"]["r000099"].to_string();
        assert!(
            last.contains("/sa/bench-client")
                && last.contains("18444")
                && last.contains("127.0.0.1"),
            "{last}"
        );
        assert!(rbac_filters(&bench_snapshot(10, &[1]), Layer::Tcp).is_err());
    }

    #[test]
    fn the_request_is_allowed_by_the_last_rule_only() {
        for rules in [1, 100, 1000] {
            let snap = bench_snapshot(rules, &[18080, 18443]);
            let principal = client_principal();
            assert_eq!(
                decide(&snap, "", REQUEST_PATH),
                Verdict::Allow,
                "{rules} plaintext"
            );
            assert_eq!(
                decide(&snap, &principal, REQUEST_PATH),
                Verdict::Allow,
                "{rules} mTLS"
            );
            assert_eq!(
                decide(&snap, "", DENIED_PATH),
                Verdict::PolicyDenied,
                "{rules}"
            );
            assert_eq!(
                decide(&snap, &principal, DENIED_PATH),
                Verdict::PolicyDenied,
                "{rules}"
            );
            // Without the last rule nothing allows it.
            let mut without = snap.clone();
            without
                .policies
                .last_mut()
                .unwrap()
                .inbound_rules
                .last_mut()
                .unwrap()
                .http_match = Some(HttpMatch {
                methods: vec!["PATCH".into()],
                paths: vec![],
            });
            assert_eq!(
                decide(&without, "", REQUEST_PATH),
                Verdict::PolicyDenied,
                "{rules}"
            );
            assert_eq!(
                decide(&without, &principal, REQUEST_PATH),
                Verdict::PolicyDenied,
                "{rules}"
            );
        }
    }

    #[test]
    fn updates_replay_to_the_same_snapshot() {
        for rules in [1, 100] {
            let snap = bench_snapshot(rules, &[18080, 18443]);
            let jsonl: String = to_dataplane(&snap)
                .unwrap()
                .iter()
                .map(|m| format!("{m}\n"))
                .collect();
            check_round_trip(&jsonl, &snap).unwrap();
        }
    }

    #[test]
    fn rbac_has_one_policy_per_rule() {
        let snap = bench_snapshot(100, &[18080, 18443]);
        let filters = rbac_filters(&snap, Layer::Http).unwrap();
        assert_eq!(filters.len(), 2);
        let count = |f: &Value| {
            f["typed_config"]["rules"]["policies"]
                .as_object()
                .unwrap()
                .len()
        };
        assert_eq!(count(&filters[0]) + count(&filters[1]), 100);
        let last = &filters[1]["typed_config"]["rules"]["policies"]["r000099"];
        let text = last.to_string();
        assert!(
            text.contains("/sa/bench-client") && text.contains("/orders/"),
            "{text}"
        );
    }

    #[test]
    fn aggregates_ip_ranges() {
        let ips = |r: std::ops::Range<u32>| {
            r.map(|i| Ipv4Addr::from(0x0a00_0000 + i))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            aggregate(ips(0..256)),
            vec![("10.0.0.0".parse().unwrap(), 24)]
        );
        let blocks = aggregate(ips(0..1000));
        assert_eq!(
            blocks.iter().map(|(_, l)| 1u32 << (32 - l)).sum::<u32>(),
            1000
        );
        assert_eq!(blocks.len(), 6);
        assert_eq!(
            aggregate(ips(1..3)),
            vec![
                ("10.0.0.1".parse().unwrap(), 32),
                ("10.0.0.2".parse().unwrap(), 32)
            ]
        );
    }
}

//! For one workload, the `ToDataplane` messages Felix would send over Policy Sync: IP sets of
//! the active rules, the active policies and profiles, service-account and namespace labels,
//! the endpoint with its tiers, then `inSync`.
//!
//! Conversion as Calico does it (libcalico-go `updateprocessors/rules.go`, felix
//! `calc/rule_scanner.go`, `calc/rule_convert.go`, `calc/policy_resolver.go`):
//! * an entity rule's `serviceAccounts` and `selector` are AND-ed; a namespaced policy, or a
//!   `namespaceSelector`, limits them to its namespace(s) as soon as any selector field is used
//!   (`notSelector` included); a positive selector absorbs the `notSelector`;
//! * the positive selector becomes one IP set (`src_ip_set_ids`), unless only named ports are
//!   given: then each named port becomes an `IP_AND_PORT` set filtered by that selector;
//! * `Pass` becomes `next-tier`, other actions are lower-cased;
//! * tiers by `order` (absent = last), then name; policies likewise. The `default` tier has
//!   order 1000000 unless a `Tier` resource says otherwise; a tier's default action is `Deny`
//!   unless it says `Pass`;
//! * profiles `kns.<namespace>` (allow everything) and `ksa.<namespace>.<serviceaccount>` (no
//!   rules), unless the endpoint lists `spec.profiles`.
//!
//! IP set ids are `s:` / `n:` plus a 64-bit FNV-1a hash (hex) of a canonical description of the
//! selector (and named port): deterministic, equal for equal selectors.

use crate::load::{Policy, PolicySet, Workload, DEFAULT_TIER};
use crate::model::{EntityRule, NumOrString, Rule};
use alp_engine::selector::{LabelSource, Selector};
use alp_felix::wire::felix::{
    self as w, http_match::path_match::PathMatch as Pm, http_match::PathMatch, ip_set_update::IpSetType,
    protocol::NumberOrName, to_dataplane::Payload, ToDataplane,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

const NS_LABEL: &str = "projectcalico.org/namespace";
const SA_LABEL: &str = "projectcalico.org/serviceaccount";
const ORCH_LABEL: &str = "projectcalico.org/orchestrator";
const NAME_LABEL: &str = "projectcalico.org/name";
const NS_PREFIX: &str = "pcns.";
const SA_PREFIX: &str = "pcsa.";
const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// The Calico name of a protocol (`tcp`, `udp`, ...) or its number in decimal.
pub fn protocol(p: &NumOrString) -> Option<String> {
    match p {
        NumOrString::Num(n) if (1..=255).contains(n) => Some(n.to_string()),
        NumOrString::Num(_) => None,
        NumOrString::Str(s) => match s.to_ascii_lowercase().as_str() {
            name @ ("tcp" | "udp" | "icmp" | "icmpv6" | "sctp" | "udplite") => Some(name.to_string()),
            n => n.parse::<i64>().ok().and_then(|n| protocol(&NumOrString::Num(n))),
        },
    }
}

fn wire_protocol(p: &NumOrString) -> Option<w::Protocol> {
    let text = protocol(p)?;
    Some(w::Protocol {
        number_or_name: Some(match text.parse::<i32>() {
            Ok(n) => NumberOrName::Number(n),
            Err(_) => NumberOrName::Name(text),
        }),
    })
}

/// A rule port: a numeric range or a named port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    Range(i32, i32),
    Named(String),
}

/// Parses `80`, `"80"`, `"1000:2000"` or a port name.
pub fn port(p: &NumOrString) -> Result<Port, String> {
    let num = |s: &str| s.trim().parse::<u32>().ok().filter(|n| *n <= 65535).map(|n| n as i32);
    match p {
        NumOrString::Num(n) if (0..=65535).contains(n) => Ok(Port::Range(*n as i32, *n as i32)),
        NumOrString::Num(n) => Err(format!("port {n} is out of range 0-65535")),
        NumOrString::Str(s) => {
            if let Some((a, b)) = s.split_once(':') {
                match (num(a), num(b)) {
                    (Some(a), Some(b)) if a <= b => Ok(Port::Range(a, b)),
                    _ => Err(format!("port range {s:?} must be FIRST:LAST with 0 <= FIRST <= LAST <= 65535")),
                }
            } else if let Some(n) = num(s) {
                Ok(Port::Range(n, n))
            } else if !s.is_empty()
                && s.len() <= 128
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                Ok(Port::Named(s.clone()))
            } else {
                Err(format!("{s:?} is neither a port, a range nor a port name"))
            }
        }
    }
}

/// An address or CIDR as the network Felix sends (`10.0.0.0/8`; an address is a full-length
/// prefix); `None` if it is neither.
pub fn net(text: &str) -> Option<String> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    Some(match addr {
        IpAddr::V4(a) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return None;
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return None;
            }
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    })
}

/// A workload as the selectors see it: its labels plus Calico's derived labels.
struct Endpoint<'a> {
    workload: &'a Workload,
    labels: BTreeMap<String, String>,
    ips: Vec<IpAddr>,
}

/// Looks labels up under a prefix (`pcns.` / `pcsa.`): Calico's `parseSelectorAttachPrefix`.
struct Prefixed<'a>(&'a BTreeMap<String, String>, &'static str);

impl LabelSource for Prefixed<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.0.get(&format!("{}{key}", self.1)).map(String::as_str)
    }
}

fn namespace_labels(set: &PolicySet, ns: &str) -> BTreeMap<String, String> {
    let mut labels = set.namespaces.get(ns).cloned().unwrap_or_default();
    labels.entry("kubernetes.io/metadata.name".into()).or_insert_with(|| ns.to_string());
    labels
}

fn service_account(w: &Workload) -> Option<&str> {
    w.spec.service_account_name.as_deref().filter(|s| !s.is_empty())
}

fn endpoint<'a>(set: &PolicySet, w: &'a Workload) -> Endpoint<'a> {
    let mut labels = w.labels.clone();
    labels.insert(NS_LABEL.into(), w.namespace.clone());
    labels.insert(ORCH_LABEL.into(), w.spec.orchestrator.clone().unwrap_or_else(|| "k8s".into()));
    for (k, v) in namespace_labels(set, &w.namespace) {
        labels.insert(format!("{NS_PREFIX}{k}"), v);
    }
    labels.insert(format!("{NS_PREFIX}{NAME_LABEL}"), w.namespace.clone());
    if let Some(sa) = service_account(w) {
        labels.insert(SA_LABEL.into(), sa.into());
        let key = (w.namespace.clone(), sa.to_string());
        for (k, v) in set.service_accounts.get(&key).cloned().unwrap_or_default() {
            labels.insert(format!("{SA_PREFIX}{k}"), v);
        }
        labels.insert(format!("{SA_PREFIX}{NAME_LABEL}"), sa.into());
    }
    let ips = w
        .spec
        .ip_networks
        .iter()
        .filter_map(|n| n.split('/').next()?.parse().ok())
        .collect();
    Endpoint { workload: w, labels, ips }
}

fn parse(text: &str) -> Selector {
    // Validated on load; a selector that does not parse here selects nothing.
    Selector::parse(text).unwrap_or_else(|_| Selector::parse("!all()").expect("constant"))
}

fn is_global(text: &str) -> bool {
    text.trim() == "global()"
}

/// A namespace constraint: the policy's own namespace, or a namespace selector.
#[derive(Clone)]
enum NsConstraint {
    Name(String),
    Selector(String),
}

/// The positive endpoint selector of an entity rule (or a policy), kept in parts.
#[derive(Clone, Default)]
struct EndpointSel {
    namespace: Option<NsConstraint>,
    sa_names: Vec<String>,
    sa_selector: Option<String>,
    selector: Option<String>,
    not_selector: Option<String>,
}

impl EndpointSel {
    fn matches(&self, ep: &Endpoint<'_>) -> bool {
        let ns_ok = match &self.namespace {
            None => true,
            Some(NsConstraint::Name(n)) => ep.workload.namespace == *n,
            Some(NsConstraint::Selector(s)) => !is_global(s) && parse(s).matches(&Prefixed(&ep.labels, NS_PREFIX)),
        };
        let names_ok = self.sa_names.is_empty()
            || ep.labels.get(SA_LABEL).is_some_and(|sa| self.sa_names.contains(sa));
        let sa_ok = self.sa_selector.as_deref().is_none_or(|s| parse(s).matches(&Prefixed(&ep.labels, SA_PREFIX)));
        let sel_ok = self.selector.as_deref().is_none_or(|s| !is_global(s) && parse(s).matches(&ep.labels));
        let not_ok = self.not_selector.as_deref().is_none_or(|s| !parse(s).matches(&ep.labels));
        ns_ok && names_ok && sa_ok && sel_ok && not_ok
    }

    /// A canonical description, in Calico's selector spelling where there is one.
    fn describe(&self) -> String {
        let canon = |s: &str| Selector::parse(s).map_or_else(|_| s.to_string(), |s| s.to_string());
        let mut parts = Vec::new();
        match &self.namespace {
            Some(NsConstraint::Name(n)) => parts.push(format!("{NS_LABEL} == {n:?}")),
            Some(NsConstraint::Selector(s)) => parts.push(format!("{NS_PREFIX}({})", canon(s))),
            None => {}
        }
        if let Some(s) = &self.sa_selector {
            parts.push(format!("{SA_PREFIX}({})", canon(s)));
        }
        if !self.sa_names.is_empty() {
            let names: BTreeSet<_> = self.sa_names.iter().collect();
            let names: Vec<_> = names.iter().map(|n| format!("{n:?}")).collect();
            parts.push(format!("{SA_LABEL} in {{{}}}", names.join(", ")));
        }
        if let Some(s) = &self.selector {
            parts.push(canon(s));
        }
        if let Some(s) = &self.not_selector {
            parts.push(format!("!({})", canon(s)));
        }
        if parts.is_empty() {
            "all()".into()
        } else {
            parts.join(" && ")
        }
    }
}

fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The IP sets the active rules reference: id -> (type, members).
#[derive(Default)]
struct IpSets(BTreeMap<String, (IpSetType, BTreeSet<String>)>);

impl IpSets {
    fn selector(&mut self, sel: &EndpointSel, eps: &[Endpoint<'_>]) -> String {
        let id = format!("s:{}", fnv(&sel.describe()));
        self.0.entry(id.clone()).or_insert_with(|| {
            let members = eps.iter().filter(|e| sel.matches(e)).flat_map(|e| e.ips.iter().map(IpAddr::to_string)).collect();
            (IpSetType::Ip, members)
        });
        id
    }

    fn named_port(&mut self, sel: &EndpointSel, name: &str, proto: &str, eps: &[Endpoint<'_>]) -> String {
        let id = format!("n:{}", fnv(&format!("{} named port {proto}:{name}", sel.describe())));
        self.0.entry(id.clone()).or_insert_with(|| {
            let mut members = BTreeSet::new();
            for e in eps.iter().filter(|e| sel.matches(e)) {
                for p in &e.workload.spec.ports {
                    let p_proto = p.protocol.as_ref().and_then(protocol).unwrap_or_else(|| "tcp".into());
                    if p.name == name && p_proto == proto {
                        for ip in &e.ips {
                            members.insert(format!("{ip},{proto}:{}", p.port));
                        }
                    }
                }
            }
            (IpSetType::IpAndPort, members)
        });
        id
    }
}

/// What one side of a rule becomes.
#[derive(Default)]
struct Side {
    ip_set_ids: Vec<String>,
    not_ip_set_ids: Vec<String>,
    ports: Vec<w::PortRange>,
    not_ports: Vec<w::PortRange>,
    named: Vec<String>,
    not_named: Vec<String>,
    nets: Vec<String>,
    not_nets: Vec<String>,
    sa_match: Option<w::ServiceAccountMatch>,
}

fn split_ports(ports: &[NumOrString]) -> (Vec<w::PortRange>, Vec<String>) {
    let mut numeric = Vec::new();
    let mut named = Vec::new();
    for p in ports {
        match port(p) {
            Ok(Port::Range(first, last)) => numeric.push(w::PortRange { first, last }),
            Ok(Port::Named(n)) => named.push(n),
            Err(_) => {}
        }
    }
    (numeric, named)
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

fn convert_side(e: &EntityRule, policy_ns: &str, proto: &str, sets: &mut IpSets, eps: &[Endpoint<'_>]) -> Side {
    let sa = e.service_accounts.clone().unwrap_or_default();
    let sa_selector = nonempty(&sa.selector);
    let selector = nonempty(&e.selector);
    let not_selector = nonempty(&e.not_selector);
    let ns_selector = nonempty(&e.namespace_selector);
    let namespace = match &ns_selector {
        Some(s) => Some(NsConstraint::Selector(s.clone())),
        None if !policy_ns.is_empty() => Some(NsConstraint::Name(policy_ns.to_string())),
        None => None,
    };
    let has_positive = selector.is_some() || sa_selector.is_some() || !sa.names.is_empty();
    let mut positive = has_positive.then(|| EndpointSel {
        namespace: None,
        sa_names: sa.names.clone(),
        sa_selector: sa_selector.clone(),
        selector: selector.clone(),
        not_selector: None,
    });
    if namespace.is_some() && (has_positive || not_selector.is_some() || ns_selector.is_some()) {
        positive.get_or_insert_with(EndpointSel::default).namespace = namespace;
    }
    let mut negative = not_selector.clone().map(|s| EndpointSel { selector: Some(s), ..Default::default() });
    if let Some(p) = positive.as_mut() {
        // A positive selector absorbs the negation (Felix's combineMatchesIfPossible).
        p.not_selector = negative.take().and_then(|n| n.selector);
    }
    let (ports, named) = split_ports(&e.ports);
    let (not_ports, not_named) = split_ports(&e.not_ports);
    let all = EndpointSel::default();
    let filter = positive.as_ref().unwrap_or(&all);
    let mut side = Side {
        ports,
        not_ports,
        nets: e.nets.iter().filter_map(|n| net(n)).collect(),
        not_nets: e.not_nets.iter().filter_map(|n| net(n)).collect(),
        ..Default::default()
    };
    side.named = named.iter().map(|n| sets.named_port(filter, n, proto, eps)).collect();
    side.not_named = not_named.iter().map(|n| sets.named_port(filter, n, proto, eps)).collect();
    if let Some(p) = &positive {
        if !side.ports.is_empty() || named.is_empty() {
            side.ip_set_ids.push(sets.selector(p, eps));
        }
    }
    if let Some(n) = &negative {
        side.not_ip_set_ids.push(sets.selector(n, eps));
    }
    if !sa.names.is_empty() || sa_selector.is_some() {
        side.sa_match = Some(w::ServiceAccountMatch { selector: sa_selector.unwrap_or_default(), names: sa.names });
    }
    side
}

fn action(a: &str) -> String {
    if a == "Pass" {
        "next-tier".into()
    } else {
        a.to_ascii_lowercase()
    }
}

fn convert_rule(r: &Rule, p: &Policy, rule_id: String, sets: &mut IpSets, eps: &[Endpoint<'_>]) -> w::Rule {
    let named_proto = match r.protocol.as_ref().and_then(protocol).as_deref() {
        Some("udp") => "udp",
        Some("sctp") => "sctp",
        _ => "tcp",
    };
    let src = convert_side(&r.source, &p.namespace, named_proto, sets, eps);
    let dst = convert_side(&r.destination, &p.namespace, named_proto, sets, eps);
    let icmp = r.icmp.as_ref().and_then(|i| match (i.icmp_type, i.code) {
        (Some(t), Some(c)) => Some(w::rule::Icmp::IcmpTypeCode(w::IcmpTypeAndCode { r#type: t, code: c })),
        (Some(t), None) => Some(w::rule::Icmp::IcmpType(t)),
        _ => None,
    });
    let not_icmp = r.not_icmp.as_ref().and_then(|i| match (i.icmp_type, i.code) {
        (Some(t), Some(c)) => Some(w::rule::NotIcmp::NotIcmpTypeCode(w::IcmpTypeAndCode { r#type: t, code: c })),
        (Some(t), None) => Some(w::rule::NotIcmp::NotIcmpType(t)),
        _ => None,
    });
    w::Rule {
        action: action(&r.action),
        ip_version: r.ip_version.unwrap_or(0),
        protocol: r.protocol.as_ref().and_then(wire_protocol),
        not_protocol: r.not_protocol.as_ref().and_then(wire_protocol),
        src_net: src.nets,
        not_src_net: src.not_nets,
        dst_net: dst.nets,
        not_dst_net: dst.not_nets,
        src_ports: src.ports,
        not_src_ports: src.not_ports,
        dst_ports: dst.ports,
        not_dst_ports: dst.not_ports,
        src_ip_set_ids: src.ip_set_ids,
        not_src_ip_set_ids: src.not_ip_set_ids,
        dst_ip_set_ids: dst.ip_set_ids,
        not_dst_ip_set_ids: dst.not_ip_set_ids,
        src_named_port_ip_set_ids: src.named,
        not_src_named_port_ip_set_ids: src.not_named,
        dst_named_port_ip_set_ids: dst.named,
        not_dst_named_port_ip_set_ids: dst.not_named,
        original_src_selector: r.source.selector.clone().unwrap_or_default(),
        original_dst_selector: r.destination.selector.clone().unwrap_or_default(),
        original_src_namespace_selector: r.source.namespace_selector.clone().unwrap_or_default(),
        original_dst_namespace_selector: r.destination.namespace_selector.clone().unwrap_or_default(),
        original_not_src_selector: r.source.not_selector.clone().unwrap_or_default(),
        original_not_dst_selector: r.destination.not_selector.clone().unwrap_or_default(),
        src_service_account_match: src.sa_match,
        dst_service_account_match: dst.sa_match,
        http_match: r.http.as_ref().map(|h| w::HttpMatch {
            methods: h.methods.clone(),
            paths: h
                .paths
                .iter()
                .filter_map(|p| {
                    let m = match (&p.exact, &p.prefix, &p.glob, &p.template) {
                        (Some(e), ..) => Pm::Exact(e.clone()),
                        (None, Some(x), ..) => Pm::Prefix(x.clone()),
                        (None, None, Some(g), _) => Pm::Glob(g.clone()),
                        (None, None, None, Some(t)) => Pm::Template(t.clone()),
                        (None, None, None, None) => return None,
                    };
                    Some(PathMatch { path_match: Some(m) })
                })
                .collect(),
        }),
        metadata: r.metadata.as_ref().map(|m| w::RuleMetadata { annotations: m.annotations.clone() }),
        icmp,
        not_icmp,
        rule_id,
        ..Default::default()
    }
}

/// Whether a policy applies to an endpoint (`selector`, namespace, `namespaceSelector`,
/// `serviceAccountSelector`).
fn selects(p: &Policy, ep: &Endpoint<'_>) -> bool {
    let s = &p.spec;
    let sel = EndpointSel {
        namespace: if p.kind.namespaced() {
            Some(NsConstraint::Name(p.namespace.clone()))
        } else {
            nonempty(&s.namespace_selector).map(NsConstraint::Selector)
        },
        sa_selector: nonempty(&s.service_account_selector),
        selector: nonempty(&s.selector),
        ..Default::default()
    };
    sel.matches(ep)
}

fn policy_types(p: &Policy) -> (bool, bool) {
    if p.spec.types.is_empty() {
        (true, !p.spec.egress.is_empty())
    } else {
        (p.spec.types.iter().any(|t| t == "Ingress"), p.spec.types.iter().any(|t| t == "Egress"))
    }
}

fn policy_id(p: &Policy) -> w::PolicyId {
    w::PolicyId { name: p.name.clone(), namespace: p.namespace.clone(), kind: p.kind.as_str().into() }
}

fn original_selector(p: &Policy) -> String {
    let sel = p.spec.selector.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "all()".into());
    let mut parts = vec![sel];
    if p.kind.namespaced() {
        parts.push(format!("{NS_LABEL} == '{}'", p.namespace));
    }
    if let Some(ns) = nonempty(&p.spec.namespace_selector) {
        parts.push(format!("{NS_PREFIX}({ns})"));
    }
    if let Some(sa) = nonempty(&p.spec.service_account_selector) {
        parts.push(format!("{SA_PREFIX}({sa})"));
    }
    if parts.len() == 1 {
        parts.pop().unwrap_or_default()
    } else {
        parts.iter().map(|s| format!("({s})")).collect::<Vec<_>>().join(" && ")
    }
}

fn order_key(order: Option<f64>) -> f64 {
    order.unwrap_or(f64::INFINITY)
}

/// The workloads of the inventory, `namespace/name`.
pub fn workload_names(set: &PolicySet) -> Vec<String> {
    set.workloads.iter().map(|w| format!("{}/{}", w.namespace, w.name)).collect()
}

/// The messages Felix would send for the workload `namespace/name`, ending in `inSync`.
pub fn compile(set: &PolicySet, namespace: &str, name: &str) -> Result<Vec<ToDataplane>, String> {
    let eps: Vec<Endpoint<'_>> = set.workloads.iter().map(|w| endpoint(set, w)).collect();
    let me = eps
        .iter()
        .find(|e| e.workload.namespace == namespace && e.workload.name == name)
        .ok_or_else(|| {
            format!("no WorkloadEndpoint {namespace}/{name} in the inventory (have: {})", workload_names(set).join(", "))
        })?;
    let wl = me.workload;

    // Active policies by tier.
    let mut by_tier: BTreeMap<String, Vec<&Policy>> = BTreeMap::new();
    for p in set.policies.iter().filter(|p| selects(p, me)) {
        by_tier.entry(p.tier().to_string()).or_default().push(p);
    }
    let tier_order = |t: &str| match set.tiers.get(t) {
        Some(tier) => order_key(tier.spec.order.or((t == DEFAULT_TIER).then_some(DEFAULT_TIER_ORDER))),
        None if t == DEFAULT_TIER => DEFAULT_TIER_ORDER,
        None => f64::INFINITY,
    };
    let mut tiers: Vec<(String, Vec<&Policy>)> = by_tier.into_iter().collect();
    tiers.sort_by(|a, b| tier_order(&a.0).total_cmp(&tier_order(&b.0)).then_with(|| a.0.cmp(&b.0)));

    let mut sets = IpSets::default();
    let mut policy_msgs = Vec::new();
    let mut tier_infos = Vec::new();
    for (tier, mut policies) in tiers {
        policies.sort_by(|a, b| {
            order_key(a.spec.order)
                .total_cmp(&order_key(b.spec.order))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.namespace.cmp(&b.namespace))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        let mut info = w::TierInfo {
            name: tier.clone(),
            default_action: set
                .tiers
                .get(&tier)
                .and_then(|t| t.spec.default_action.clone())
                .unwrap_or_else(|| "Deny".into()),
            ..Default::default()
        };
        for p in policies {
            let (ingress, egress) = policy_types(p);
            if ingress {
                info.ingress_policies.push(policy_id(p));
            }
            if egress {
                info.egress_policies.push(policy_id(p));
            }
            let key = if p.namespace.is_empty() { p.name.clone() } else { format!("{}/{}", p.namespace, p.name) };
            let inbound = p
                .spec
                .ingress
                .iter()
                .enumerate()
                .map(|(i, r)| convert_rule(r, p, format!("{key}:ingress:{i}"), &mut sets, &eps))
                .collect();
            let outbound = p
                .spec
                .egress
                .iter()
                .enumerate()
                .map(|(i, r)| convert_rule(r, p, format!("{key}:egress:{i}"), &mut sets, &eps))
                .collect();
            policy_msgs.push(Payload::ActivePolicyUpdate(w::ActivePolicyUpdate {
                id: Some(policy_id(p)),
                policy: Some(w::Policy {
                    inbound_rules: inbound,
                    outbound_rules: outbound,
                    untracked: p.spec.do_not_track.unwrap_or(false),
                    pre_dnat: p.spec.pre_dnat.unwrap_or(false),
                    namespace: p.namespace.clone(),
                    original_selector: original_selector(p),
                    perf_hints: p.spec.performance_hints.clone(),
                    tier: tier.clone(),
                }),
            }));
        }
        tier_infos.push(info);
    }

    // Profiles.
    let profile_ids = match &wl.spec.profiles {
        Some(list) => list.clone(),
        None => {
            let mut ids = vec![format!("kns.{}", wl.namespace)];
            if let Some(sa) = service_account(wl) {
                ids.push(format!("ksa.{}.{sa}", wl.namespace));
            }
            ids
        }
    };
    let mut profile_msgs = Vec::new();
    for id in &profile_ids {
        let profile = if id.starts_with("kns.") {
            let allow = || w::Rule { action: "allow".into(), ..Default::default() };
            w::Profile { inbound_rules: vec![allow()], outbound_rules: vec![allow()] }
        } else if id.starts_with("ksa.") {
            w::Profile::default()
        } else {
            return Err(format!(
                "WorkloadEndpoint {namespace}/{name}: profile {id:?} is unknown (only kns.<namespace> and ksa.<namespace>.<serviceaccount> profiles exist in this source)"
            ));
        };
        profile_msgs.push(Payload::ActiveProfileUpdate(w::ActiveProfileUpdate {
            id: Some(w::ProfileId { name: id.clone() }),
            profile: Some(profile),
        }));
    }

    // Service accounts and namespaces: every one known.
    let mut sas = set.service_accounts.clone();
    let mut namespaces: BTreeSet<String> = set.namespaces.keys().cloned().collect();
    for w in &set.workloads {
        namespaces.insert(w.namespace.clone());
        if let Some(sa) = service_account(w) {
            sas.entry((w.namespace.clone(), sa.to_string())).or_default();
        }
    }
    for (ns, _) in sas.keys() {
        namespaces.insert(ns.clone());
    }
    for p in &set.policies {
        if !p.namespace.is_empty() {
            namespaces.insert(p.namespace.clone());
        }
    }

    let (v4, v6): (Vec<String>, Vec<String>) = wl
        .spec
        .ip_networks
        .iter()
        .filter_map(|n| net(n))
        .partition(|n| !n.contains(':'));
    let endpoint = Payload::WorkloadEndpointUpdate(w::WorkloadEndpointUpdate {
        id: Some(w::WorkloadEndpointId {
            orchestrator_id: wl.spec.orchestrator.clone().unwrap_or_else(|| "k8s".into()),
            workload_id: format!("{}/{}", wl.namespace, wl.name),
            endpoint_id: wl.spec.endpoint.clone().unwrap_or_else(|| "eth0".into()),
        }),
        endpoint: Some(w::WorkloadEndpoint {
            state: "active".into(),
            name: wl.spec.interface_name.clone().unwrap_or_default(),
            mac: wl.spec.mac.clone().unwrap_or_default(),
            profile_ids,
            ipv4_nets: v4,
            ipv6_nets: v6,
            tiers: tier_infos,
        }),
    });

    let mut out: Vec<Payload> = Vec::new();
    for (id, (kind, members)) in sets.0 {
        out.push(Payload::IpsetUpdate(w::IpSetUpdate { id, members: members.into_iter().collect(), r#type: kind as i32 }));
    }
    out.extend(policy_msgs);
    out.extend(profile_msgs);
    for ((ns, name), labels) in sas {
        out.push(Payload::ServiceAccountUpdate(w::ServiceAccountUpdate {
            id: Some(w::ServiceAccountId { namespace: ns, name }),
            labels,
        }));
    }
    for ns in namespaces {
        let labels = namespace_labels(set, &ns);
        out.push(Payload::NamespaceUpdate(w::NamespaceUpdate { id: Some(w::NamespaceId { name: ns }), labels }));
    }
    out.push(endpoint);
    out.push(Payload::InSync(w::InSync {}));
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, payload)| ToDataplane { sequence_number: i as u64 + 1, payload: Some(payload) })
        .collect())
}

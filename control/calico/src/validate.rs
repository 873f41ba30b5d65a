//! Calico's verdict on a decoded resource, reimplemented from its rules: libcalico-go's
//! validator (names, selectors, protocols and ports, nets, HTTP matches, staged actions, the
//! placement of service matches), then the CRD schemas (enums, lengths, item counts, sets) and
//! their CEL rules (preDNAT and doNotTrack, HTTP with Allow and TCP, ICMP against the protocol
//! and IP version, what a service match excludes, `global()`, the well-known tiers), applied
//! after the defaults Calico fills in (`types`, the tier's default action, `stagedAction`).
//! Messages use Calico's wording where it has one.
//!
//! Each check gives `(field path, message)` with the path from the resource's root; the loader
//! turns them into [`Problem`]s with their lines. What Calico accepts but this project treats
//! differently (its path extensions, exact or prefix paths its filter matches nothing with) is a
//! note, not a problem.

use crate::k8s;
use crate::locate::FieldPath;
use crate::model::{
    EntityRule, Http, Icmp, Metadata, Policy, PolicyKind, PolicySet, Port, Problem, Protocol, Rule,
    Tier, Workload, DEFAULT_TIER, DEFAULT_TIER_ACTION, DEFAULT_TIER_ORDER, KUBE_ADMIN_TIER_ORDER,
    KUBE_BASELINE_TIER_ORDER,
};
use crate::values::{parse_cidr, parse_cidr_or_ip, parse_ip};
use alp_engine::selector::Selector;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// What a check found: the field and what is wrong with it.
pub(crate) type Findings = Vec<(FieldPath, String)>;

/// Longest selector the CRDs accept.
const MAX_SELECTOR: usize = 1024;
/// Largest total size of a resource's (or a rule's) annotations.
const MAX_ANNOTATIONS: usize = 256 * 1024;
const GLOBAL_ONLY: &str = "global() can only be used in an EntityRule namespaceSelector";
const PORTS_NEED_PROTOCOL: &str =
    "rules with numeric port or port range must set protocol to TCP or UDP or SCTP";
const PROTOCOL_HAS_NO_PORTS: &str =
    "rules that specify ports must set protocol to TCP or UDP or SCTP";
const NAME_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";

fn root() -> FieldPath {
    FieldPath::root()
}

/// A selector field: it must parse, fit the CRD's length and, unless `global_ok`, not use
/// `global()` (CEL's test is textual: any `global(`).
fn selector(out: &mut Findings, at: FieldPath, text: &str, max: Option<usize>, global_ok: bool) {
    if let Err(e) = Selector::parse(text) {
        out.push((
            at.clone(),
            format!(
                "bad selector {text:?} at position {}: {}",
                e.position, e.message
            ),
        ));
    }
    if let Some(max) = max {
        if text.len() > max {
            out.push((
                at.clone(),
                format!("may not be longer than {max} characters"),
            ));
        }
    }
    if !global_ok && text.contains("global(") {
        out.push((at, GLOBAL_ONLY.into()));
    }
}

/// Duplicates in a list the CRD declares a set.
fn unique(out: &mut Findings, at: &FieldPath, items: &[String]) {
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        if !seen.insert(item) {
            out.push((at.index(i), format!("duplicate value {item:?}")));
        }
    }
}

fn max_items(out: &mut Findings, at: &FieldPath, len: usize, max: usize) {
    if len > max {
        out.push((
            at.clone(),
            format!("must have at most {max} items, not {len}"),
        ));
    }
}

fn labels(out: &mut Findings, meta: &Metadata) {
    let at = root().key("metadata").key("labels");
    for (k, v) in &meta.labels {
        for e in k8s::qualified_name(k) {
            out.push((at.key(k), format!("label key {k:?}: {e}")));
        }
        for e in k8s::label_value(v) {
            out.push((at.key(k), format!("label value {v:?}: {e}")));
        }
    }
}

fn annotations(
    out: &mut Findings,
    at: FieldPath,
    annotations: &std::collections::BTreeMap<String, String>,
) {
    let mut total = 0;
    for (k, v) in annotations {
        for e in k8s::qualified_name(&k.to_ascii_lowercase()) {
            out.push((at.key(k), format!("annotation key {k:?}: {e}")));
        }
        total += k.len() + v.len();
    }
    if total > MAX_ANNOTATIONS {
        out.push((
            at,
            format!(
                "total size of annotations is too large by {} bytes",
                total - MAX_ANNOTATIONS
            ),
        ));
    }
}

/// `metadata` of every Calico resource: the name as a DNS subdomain, labels and annotations.
pub(crate) fn metadata(out: &mut Findings, meta: &Metadata) {
    let at = root().key("metadata").key("name");
    let name = &meta.name;
    if name.len() > k8s::DNS1123_SUBDOMAIN_MAX {
        out.push((
            at.clone(),
            format!(
                "name is too long by {} bytes",
                name.len() - k8s::DNS1123_SUBDOMAIN_MAX
            ),
        ));
    }
    if !k8s::is_subdomain_format(name) {
        out.push((
            at,
            format!(
                "name must consist of lower case alphanumeric characters, '-' or '.' (regex: {NAME_FORMAT}(\\.{NAME_FORMAT})*)"
            ),
        ));
    }
    // A namespace is a Kubernetes namespace name: a DNS-1123 label.
    let ns = &meta.namespace;
    if !ns.is_empty() && (ns.len() > k8s::DNS1123_LABEL_MAX || !k8s::is_label_format(ns)) {
        out.push((
            root().key("metadata").key("namespace"),
            format!(
                "namespace {ns:?} must be at most {} lower case alphanumeric characters or '-', starting and ending with an alphanumeric character",
                k8s::DNS1123_LABEL_MAX
            ),
        ));
    }
    labels(out, meta);
    annotations(
        out,
        root().key("metadata").key("annotations"),
        &meta.annotations,
    );
}

/// The policy names Calico accepts: global kinds a label with at most one dot; namespaced
/// kinds that, or `knp.default.` / `ossg.default.` and a subdomain.
fn policy_name_ok(kind: PolicyKind, name: &str) -> bool {
    let one_dot = |n: &str| match n.split_once('.') {
        Some((a, b)) => k8s::is_label_format(a) && k8s::is_label_format(b),
        None => k8s::is_label_format(n),
    };
    if !kind.namespaced() {
        return one_dot(name);
    }
    one_dot(name)
        || ["knp.default.", "ossg.default."].iter().any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(k8s::is_subdomain_format)
        })
}

pub(crate) fn policy(p: &Policy, out: &mut Findings, notes: &mut Findings) {
    metadata(out, &p.metadata);
    if k8s::is_subdomain_format(&p.name) && !policy_name_ok(p.kind, &p.name) {
        out.push((
            root().key("metadata").key("name"),
            if p.kind.namespaced() {
                format!("name must be {NAME_FORMAT} with at most one '.', or start with knp.default. or ossg.default.")
            } else {
                format!("name must be {NAME_FORMAT} with at most one '.'")
            },
        ));
    }
    let s = &p.spec;
    let spec = root().key("spec");
    if !s.tier.is_empty() && !k8s::is_subdomain_format(&s.tier) {
        out.push((
            spec.key("tier"),
            format!(
                "tier name {:?} must consist of lower case alphanumeric characters, '-' or '.'",
                s.tier
            ),
        ));
    }
    if p.kind.staged() {
        match s.staged_action.as_str() {
            "" | "Set" | "Delete" | "Learn" | "Ignore" => {}
            other => out.push((
                spec.key("stagedAction"),
                format!("must be Set, Delete, Learn or Ignore, not {other:?}"),
            )),
        }
        if p.is_staged_delete() {
            if !s.set_fields.is_empty() {
                out.push((
                    spec.clone(),
                    format!(
                        "Spec fields, except Tier, should all be zero-value if stagedAction is Delete (set: {})",
                        s.set_fields.join(", ")
                    ),
                ));
            }
            return;
        }
    }
    selector(
        out,
        spec.key("selector"),
        &s.selector,
        Some(MAX_SELECTOR),
        false,
    );
    selector(
        out,
        spec.key("serviceAccountSelector"),
        &s.service_account_selector,
        Some(MAX_SELECTOR),
        false,
    );
    if !p.kind.namespaced() {
        selector(
            out,
            spec.key("namespaceSelector"),
            &s.namespace_selector,
            Some(MAX_SELECTOR),
            false,
        );
    }
    // Types, after Calico's defaulting.
    let types = p.defaulted_types();
    let mut seen = BTreeSet::new();
    for (i, t) in s.types.iter().enumerate() {
        if t != "Ingress" && t != "Egress" {
            out.push((
                spec.key("types").index(i),
                format!("must be Ingress or Egress, not {t:?}"),
            ));
        } else if !seen.insert(t) {
            out.push((
                spec.key("types").index(i),
                format!("'{t}' type specified more than once"),
            ));
        }
    }
    max_items(out, &spec.key("types"), s.types.len(), 2);
    let hints = spec.key("performanceHints");
    for (i, h) in s.performance_hints.iter().enumerate() {
        if h != "AssumeNeededOnEveryNode" {
            out.push((
                hints.index(i),
                format!("unknown performance hint {h:?} (the only one is AssumeNeededOnEveryNode)"),
            ));
        }
    }
    unique(out, &hints, &s.performance_hints);
    if !p.kind.namespaced() {
        // The CEL rules of the global kinds.
        if s.pre_dnat && s.do_not_track {
            out.push((
                spec.key("preDNAT"),
                "preDNAT and doNotTrack cannot both be true".into(),
            ));
        }
        if s.pre_dnat && !s.egress.is_empty() {
            out.push((
                spec.key("egress"),
                "preDNAT policy cannot have any egress rules".into(),
            ));
        }
        if s.pre_dnat && types.iter().any(|t| t == "Egress") {
            out.push((
                spec.key("types"),
                "preDNAT policy cannot have 'Egress' type".into(),
            ));
        }
        if (s.pre_dnat || s.do_not_track) && !s.apply_on_forward {
            out.push((
                spec.key("applyOnForward"),
                "applyOnForward must be true if either preDNAT or doNotTrack is true".into(),
            ));
        }
    }
    for (dir, rules) in [("ingress", &s.ingress), ("egress", &s.egress)] {
        max_items(out, &spec.key(dir), rules.len(), 1024);
        for (i, r) in rules.iter().enumerate() {
            let at = spec.key(dir).index(i);
            rule(out, notes, &at, r);
            let ingress = dir == "ingress";
            let (wrong_side, side) = if ingress {
                (&r.destination, "destination")
            } else {
                (&r.source, "source")
            };
            if wrong_side.services.is_some() {
                out.push((
                    at.key(side).key("services"),
                    format!("not allowed in {dir} rule {side}"),
                ));
            }
            if !ingress && r.http.is_some() {
                out.push((at.key("http"), "not allowed in egress rules".into()));
            }
            let (right_side, side) = if ingress {
                (&r.source, "source")
            } else {
                (&r.destination, "destination")
            };
            if let Some(svc) = &right_side.services {
                if !p.kind.namespaced() && svc.namespace.is_empty() {
                    out.push((
                        at.key(side).key("services").key("namespace"),
                        "must specify a namespace".into(),
                    ));
                } else if svc.namespace.is_empty() {
                    notes.push((
                        at.key(side).key("services"),
                        format!(
                            "no namespace: Felix looks the service up as \"/{}\" and matches no endpoints (it does not default to the policy's namespace)",
                            svc.name
                        ),
                    ));
                }
            }
        }
    }
}

fn protocol(out: &mut Findings, at: FieldPath, p: &Option<Protocol>) {
    match p {
        Some(Protocol::Num(0)) => out.push((at, "protocol number invalid (1-255)".into())),
        Some(p @ Protocol::Name(name)) if !p.is_valid() => out.push((
            at,
            format!(
                "protocol name invalid: {name:?} (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255; names are case-sensitive)"
            ),
        )),
        _ => {}
    }
}

fn icmp(out: &mut Findings, at: FieldPath, icmp: &Option<Icmp>) {
    let Some(i) = icmp else { return };
    if let Some(t) = i.icmp_type {
        if !(0..=254).contains(&t) {
            out.push((
                at.key("type"),
                format!("ICMP type {t} must be between 0 and 254"),
            ));
        }
    }
    if let Some(c) = i.code {
        if !(0..=255).contains(&c) {
            out.push((
                at.key("code"),
                format!("ICMP code {c} must be between 0 and 255"),
            ));
        }
        if i.icmp_type.is_none() {
            out.push((
                at.key("code"),
                "ICMP code specified without an ICMP type".into(),
            ));
        }
    }
}

fn rule(out: &mut Findings, notes: &mut Findings, at: &FieldPath, r: &Rule) {
    match r.action.as_str() {
        "Allow" | "Deny" | "Log" | "Pass" => {}
        "" => out.push((
            at.key("action"),
            "is required (Allow, Deny, Log or Pass)".into(),
        )),
        other => out.push((
            at.key("action"),
            format!("must be Allow, Deny, Log or Pass, not {other:?}"),
        )),
    }
    if let Some(v) = r.ip_version {
        if v != 4 && v != 6 {
            out.push((at.key("ipVersion"), format!("must be 4 or 6, not {v}")));
        }
    }
    protocol(out, at.key("protocol"), &r.protocol);
    protocol(out, at.key("notProtocol"), &r.not_protocol);
    icmp(out, at.key("icmp"), &r.icmp);
    icmp(out, at.key("notICMP"), &r.not_icmp);

    // Ports against the protocol (libcalico-go validateRule).
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        for (field, ports) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
            let here = at.key(side).key(field);
            match &r.protocol {
                None if ports.iter().any(|p| matches!(p, Port::Range(..))) => {
                    out.push((here.clone(), PORTS_NEED_PROTOCOL.into()))
                }
                Some(p) if !p.supports_ports() && !ports.is_empty() => {
                    out.push((here.clone(), PROTOCOL_HAS_NO_PORTS.into()))
                }
                _ => {}
            }
            max_items(out, &here, ports.len(), 50);
            for (i, port) in ports.iter().enumerate() {
                match port {
                    Port::Range(min, _) if *min < 1 => out.push((
                        here.index(i),
                        "port range invalid, port number must be between 1 and 65535".into(),
                    )),
                    Port::Named(name) => {
                        let errs = k8s::port_name(name);
                        if !errs.is_empty() {
                            out.push((
                                here.index(i),
                                format!("invalid port name {name:?}: {}", errs.join("; ")),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    // The rule's CEL rules.
    if r.http.is_some() {
        if r.protocol.as_ref().is_some_and(|p| !p.is("TCP", 6)) {
            out.push((
                at.key("protocol"),
                "rules with HTTP match must have protocol TCP or unset".into(),
            ));
        }
        if r.action != "Allow" {
            out.push((
                at.key("http"),
                "HTTP match is only valid on Allow rules".into(),
            ));
        }
    }
    if r.destination.services.is_some()
        && !(r.destination.ports.is_empty() && r.destination.not_ports.is_empty())
    {
        out.push((
            at.key("destination"),
            "ports and notPorts cannot be specified with services".into(),
        ));
    }
    let is_icmp = |p: &Protocol| p.is("ICMP", 1);
    let is_icmpv6 = |p: &Protocol| p.is("ICMPv6", 58);
    if r.icmp.is_some()
        && !r
            .protocol
            .as_ref()
            .is_some_and(|p| is_icmp(p) || is_icmpv6(p))
    {
        out.push((
            at.key("icmp"),
            "ICMP fields require protocol to be ICMP or ICMPv6".into(),
        ));
    }
    for (field, p) in [("protocol", &r.protocol), ("notProtocol", &r.not_protocol)] {
        let Some(p) = p else { continue };
        match r.ip_version {
            Some(v) if is_icmp(p) && v != 4 => {
                out.push((at.key(field), "protocol ICMP requires ipVersion 4".into()))
            }
            Some(v) if is_icmpv6(p) && v != 6 => {
                out.push((at.key(field), "protocol ICMPv6 requires ipVersion 6".into()))
            }
            _ => {}
        }
    }

    nets(out, at, r);
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        entity(out, &at.key(side), e);
    }
    if let Some(h) = &r.http {
        http(out, notes, &at.key("http"), h);
    }
    if let Some(m) = &r.metadata {
        annotations(out, at.key("metadata").key("annotations"), &m.annotations);
    }
}

/// `nets` / `notNets` of both sides: each a strictly masked CIDR (a bare address is refused),
/// one IP version across the rule and `ipVersion`, no catch-all in a negation, no duplicates.
fn nets(out: &mut Findings, at: &FieldPath, r: &Rule) {
    let (mut seen4, mut seen6) = (false, false);
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        for (field, nets) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
            let here = at.key(side).key(field);
            max_items(out, &here, nets.len(), 256);
            unique(out, &here, nets);
            let (mut v4, mut v6) = (false, false);
            for (i, n) in nets.iter().enumerate() {
                let Some((addr, len)) = parse_cidr_or_ip(n) else {
                    out.push((here.index(i), format!("invalid CIDR {n:?}")));
                    continue;
                };
                if crate::values::masked(addr, len) != addr {
                    out.push((
                        here.index(i),
                        format!(
                            "{n:?} has host bits set (the network is {}/{len})",
                            crate::values::masked(addr, len)
                        ),
                    ));
                }
                if parse_cidr(n).is_none() {
                    out.push((
                        here.index(i),
                        format!(
                            "invalid CIDR {n:?}: an address needs its prefix length ({n}/{})",
                            len
                        ),
                    ));
                    continue;
                }
                v4 |= addr.is_ipv4();
                v6 |= addr.is_ipv6();
                if field == "notNets" && len == 0 {
                    let catch_all = match addr {
                        IpAddr::V4(_) => n == "0.0.0.0/0",
                        IpAddr::V6(a) => a.is_unspecified(),
                    };
                    if catch_all {
                        out.push((
                            here.index(i),
                            "catch-all CIDR in negation creates logical contradiction (matches no traffic)".into(),
                        ));
                    }
                }
            }
            if let Some(v) = r.ip_version {
                if (v4 && v != 4) || (v6 && v != 6) {
                    out.push((
                        here.clone(),
                        "rule IP version doesn't match CIDR version".into(),
                    ));
                }
            }
            if (v4 && seen6) || (v6 && seen4) || (v4 && v6) {
                out.push((
                    here.clone(),
                    "rule contains both IPv4 and IPv6 CIDRs".into(),
                ));
            }
            seen4 |= v4;
            seen6 |= v6;
        }
    }
}

fn entity(out: &mut Findings, at: &FieldPath, e: &EntityRule) {
    selector(
        out,
        at.key("selector"),
        &e.selector,
        Some(MAX_SELECTOR),
        false,
    );
    selector(
        out,
        at.key("notSelector"),
        &e.not_selector,
        Some(MAX_SELECTOR),
        true,
    );
    selector(
        out,
        at.key("namespaceSelector"),
        &e.namespace_selector,
        Some(MAX_SELECTOR),
        true,
    );
    let ns = &e.namespace_selector;
    if ns.contains("global(") && ns != "global()" && !global_alone(ns) {
        out.push((
            at.key("namespaceSelector"),
            "global() cannot be combined with other selectors".into(),
        ));
    }
    if let Some(sa) = &e.service_accounts {
        selector(
            out,
            at.key("serviceAccounts").key("selector"),
            &sa.selector,
            None,
            true,
        );
        unique(out, &at.key("serviceAccounts").key("names"), &sa.names);
    }
    if let Some(svc) = &e.services {
        let here = at.key("services");
        if !e.namespace_selector.is_empty() {
            out.push((
                here.clone(),
                "cannot specify NamespaceSelector and Services on the same rule".into(),
            ));
        }
        if e.service_accounts.is_some() {
            out.push((
                here.clone(),
                "cannot specify ServiceAccounts and Services on the same rule".into(),
            ));
        }
        if !e.selector.is_empty() || !e.not_selector.is_empty() {
            out.push((
                here.clone(),
                "cannot specify Selector/NotSelector and Services on the same rule".into(),
            ));
        }
        if !e.nets.is_empty() || !e.not_nets.is_empty() {
            out.push((
                here.clone(),
                "cannot specify Nets/NotNets and Services on the same rule".into(),
            ));
        }
        if svc.name.is_empty() {
            out.push((
                here.key("name"),
                "services must specify a service name".into(),
            ));
        }
        for (field, value) in [("name", &svc.name), ("namespace", &svc.namespace)] {
            if value.is_empty() {
                continue;
            }
            if !k8s::is_subdomain_format(value) {
                out.push((
                    here.key(field),
                    format!(
                        "{value:?} must consist of lower case alphanumeric characters, '-' or '.'"
                    ),
                ));
            }
            if value.len() > k8s::DNS1123_SUBDOMAIN_MAX {
                out.push((
                    here.key(field),
                    "may not be longer than 253 characters".into(),
                ));
            }
        }
    }
}

/// A namespace selector that is `global()` alone: its tokens are `global()` and the end
/// (libcalico-go tokenizes it).
fn global_alone(text: &str) -> bool {
    let t = text.trim_matches([' ', '\t']);
    t.strip_prefix("global(")
        .and_then(|rest| rest.trim_start_matches([' ', '\t']).strip_prefix(')'))
        .is_some_and(str::is_empty)
}

fn http(out: &mut Findings, notes: &mut Findings, at: &FieldPath, h: &Http) {
    max_items(out, &at.key("methods"), h.methods.len(), 20);
    max_items(out, &at.key("paths"), h.paths.len(), 20);
    let mut seen = BTreeSet::new();
    for (i, m) in h.methods.iter().enumerate() {
        if !seen.insert(m) {
            out.push((
                at.key("methods").index(i),
                format!("Invalid methods (duplicates): {m:?}"),
            ));
        }
    }
    for (i, p) in h.paths.iter().enumerate() {
        let here = at.key("paths").index(i);
        let given: Vec<(&str, &String)> = [
            ("exact", &p.exact),
            ("prefix", &p.prefix),
            ("glob", &p.glob),
            ("template", &p.template),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        let [(kind, v)] = given.as_slice() else {
            out.push((
                here,
                if given.is_empty() {
                    "Invalid path match. Either 'exact' or 'prefix' must be set".into()
                } else {
                    "Invalid path match: exactly one of exact, prefix (or this project's glob, template) may be set".into()
                },
            ));
            continue;
        };
        let field = here.key(kind);
        if v.len() > 1024 {
            out.push((
                field.clone(),
                "may not be longer than 1024 characters".into(),
            ));
        }
        match *kind {
            "exact" | "prefix" => {
                if !v.starts_with('/') || v.contains(['?', ' ', '#']) {
                    out.push((
                        field,
                        format!("Invalid path {v:?} (must start with `/` and not contain `?`, ` ` or `#`)"),
                    ));
                } else if let Err(e) = alp_engine::path::normalize(v) {
                    // D10: ambiguous or not normalisable, it would match no request; refused
                    // (stricter than calicoctl, which accepts it) so that the mistake is seen.
                    out.push((field, format!("path {v:?} does not normalise: {e}")));
                }
            }
            "glob" => {
                if let Err(e) = alp_engine::path_pattern::compile_glob(v) {
                    out.push((field, e.to_string()));
                } else {
                    notes.push((
                        field,
                        "glob paths are this project's extension: calicoctl refuses the field"
                            .into(),
                    ));
                }
            }
            _ => {
                if let Err(e) = alp_engine::path_pattern::compile_template(v) {
                    out.push((field, e.to_string()));
                } else {
                    notes.push((
                        field,
                        "template paths are this project's extension: calicoctl refuses the field"
                            .into(),
                    ));
                }
            }
        }
    }
}

pub(crate) fn tier(out: &mut Findings, meta: &Metadata, t: &Tier) {
    metadata(out, meta);
    let name = root().key("metadata").key("name");
    if t.name.len() > k8s::DNS1123_LABEL_MAX {
        out.push((
            name.clone(),
            format!(
                "name is too long by {} bytes",
                t.name.len() - k8s::DNS1123_LABEL_MAX
            ),
        ));
    }
    if !k8s::is_label_format(&t.name) {
        out.push((
            name,
            format!("name must consist of lower case alphanumeric characters or '-' (regex: {NAME_FORMAT})"),
        ));
    }
    let spec = root().key("spec");
    let action = t
        .spec
        .default_action
        .clone()
        .unwrap_or_else(|| DEFAULT_TIER_ACTION.into());
    if action != "Deny" && action != "Pass" {
        out.push((
            spec.key("defaultAction"),
            format!("must be Deny or Pass, not {action:?}"),
        ));
    }
    let required = match t.name.as_str() {
        DEFAULT_TIER => Some(("Deny", DEFAULT_TIER_ORDER)),
        "kube-admin" => Some(("Pass", KUBE_ADMIN_TIER_ORDER)),
        "kube-baseline" => Some(("Pass", KUBE_BASELINE_TIER_ORDER)),
        _ => None,
    };
    if let Some((want_action, want_order)) = required {
        if action != want_action {
            out.push((
                spec.key("defaultAction"),
                format!(
                    "The '{}' tier must have default action '{want_action}'",
                    t.name
                ),
            ));
        }
        if t.spec.order != Some(want_order) {
            out.push((
                spec.key("order"),
                format!("{} tier order must be {want_order}", t.name),
            ));
        }
    }
}

/// A `WorkloadEndpoint` of the inventory: addresses, and ports as Calico checks them.
pub(crate) fn workload(out: &mut Findings, w: &Workload) {
    let spec = root().key("spec");
    if w.spec.ip_networks.is_empty() {
        out.push((
            spec.key("ipNetworks"),
            "at least one address is required".into(),
        ));
    }
    for (i, n) in w.spec.ip_networks.iter().enumerate() {
        if parse_cidr_or_ip(n).is_none() {
            out.push((
                spec.key("ipNetworks").index(i),
                format!("{n:?} is not an IP address or CIDR"),
            ));
        }
    }
    for (i, p) in w.spec.ports.iter().enumerate() {
        let at = spec.key("ports").index(i);
        if p.name.is_empty() && p.host_port == 0 {
            out.push((
                at.key("name"),
                "WorkloadEndpointPort name must not be empty if no HostPort is specified".into(),
            ));
        }
        if !p.name.is_empty() {
            let errs = k8s::port_name(&p.name);
            if !errs.is_empty() {
                out.push((
                    at.key("name"),
                    format!("invalid port name {:?}: {}", p.name, errs.join("; ")),
                ));
            }
        }
        if p.port == 0 {
            out.push((at.key("port"), "must be 1-65535".into()));
        }
        if p.protocol
            .as_ref()
            .is_some_and(|proto| !proto.supports_ports())
        {
            out.push((
                at.key("protocol"),
                "WorkloadEndpointPort protocol does not support ports (TCP, UDP or SCTP)".into(),
            ));
        }
        if !p.host_ip.is_empty() && parse_ip(&p.host_ip).is_none() {
            out.push((
                at.key("hostIP"),
                format!("{:?} is not an IP address", p.host_ip),
            ));
        }
    }
}

/// Checks across resources: duplicates, tiers that do not exist, ambiguous workloads.
pub(crate) fn cross_check(set: &PolicySet, problems: &mut Vec<Problem>) {
    let mut seen = BTreeSet::new();
    for p in &set.policies {
        let res = format!("{} {}", p.kind.as_str(), p.qualified_name());
        if !seen.insert((p.kind, p.namespace.clone(), p.name.clone())) {
            problems.push(Problem {
                file: p.origin.file.clone(),
                line: p.origin.line,
                resource: Some(res.clone()),
                field: None,
                message: "defined more than once".into(),
            });
        }
        let tier = p.tier();
        if tier != DEFAULT_TIER && !set.tiers.contains_key(tier) {
            problems.push(Problem {
                file: p.origin.file.clone(),
                line: p.origin.line,
                resource: Some(res),
                field: Some("spec.tier".into()),
                message: format!("tier {tier:?} is not defined (add a Tier resource)"),
            });
        }
    }
    let mut names = BTreeSet::new();
    for w in &set.workloads {
        if !names.insert((w.namespace.clone(), w.name.clone())) {
            problems.push(Problem {
                file: w.origin.file.clone(),
                line: w.origin.line,
                resource: Some(format!("WorkloadEndpoint {}/{}", w.namespace, w.name)),
                field: None,
                message: "another WorkloadEndpoint has the same namespace and pod name".into(),
            });
        }
    }
}

/// Notes across resources: a service match whose Service has no EndpointSlice in an inventory
/// that has Services or EndpointSlices (it matches nothing).
pub(crate) fn cross_notes(set: &PolicySet) -> Vec<Problem> {
    let mut notes = Vec::new();
    if set.endpoint_slices.is_empty() && set.services.is_empty() {
        return notes;
    }
    for p in &set.policies {
        for (dir, rules) in [("ingress", &p.spec.ingress), ("egress", &p.spec.egress)] {
            for (i, r) in rules.iter().enumerate() {
                for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
                    let Some(svc) = &e.services else { continue };
                    if svc.namespace.is_empty()
                        || set
                            .endpoint_slices
                            .iter()
                            .any(|s| s.namespace == svc.namespace && s.service == svc.name)
                    {
                        continue;
                    }
                    notes.push(Problem {
                        file: p.origin.file.clone(),
                        line: p.origin.line,
                        resource: Some(format!("{} {}", p.kind.as_str(), p.qualified_name())),
                        field: Some(format!("spec.{dir}[{i}].{side}.services")),
                        message: format!(
                            "no EndpointSlice of Service {}/{} in the inventory: the match selects nothing",
                            svc.namespace, svc.name
                        ),
                    });
                }
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        use PolicyKind::*;
        assert!(policy_name_ok(GlobalNetworkPolicy, "a.b"));
        assert!(!policy_name_ok(GlobalNetworkPolicy, "a.b.c"));
        assert!(!policy_name_ok(GlobalNetworkPolicy, "knp.default.x"));
        assert!(policy_name_ok(NetworkPolicy, "knp.default.x.y"));
        assert!(policy_name_ok(NetworkPolicy, "ossg.default.x"));
        assert!(!policy_name_ok(NetworkPolicy, "knp.other.x"));
        assert!(!policy_name_ok(NetworkPolicy, "A"));
    }

    #[test]
    fn global_namespace_selectors() {
        assert!(global_alone("global()"));
        assert!(global_alone("  global( \t)  "));
        assert!(!global_alone("!global()"));
        assert!(!global_alone("global() && a == 'b'"));
    }
}

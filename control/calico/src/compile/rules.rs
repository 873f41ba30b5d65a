//! One rule of a policy as Felix sends it: each side's selectors become IP sets, named ports
//! `IP_AND_PORT` sets, and the rest (ports, nets, protocols, ICMP, HTTP) carries over.

use super::ip_sets::IpSets;
use super::selection::{nonempty, Endpoint, EndpointSel, NsConstraint};
use crate::model::{EntityRule, Icmp, Policy, PolicySet, Port, Protocol, Rule};
use crate::values::net;
use alp_felix::wire::felix::{
    self as w, http_match::path_match::PathMatch as Pm, http_match::PathMatch,
    protocol::NumberOrName,
};

/// A protocol as Felix sends it: a number, or the name in lower case (libcalico-go's v1 form).
fn wire_protocol(p: &Protocol) -> w::Protocol {
    w::Protocol {
        number_or_name: Some(match p {
            Protocol::Num(n) => NumberOrName::Number(i32::from(*n)),
            Protocol::Name(s) => NumberOrName::Name(s.to_ascii_lowercase()),
        }),
    }
}

/// What one side of a rule becomes.
#[derive(Default)]
struct Side {
    ip_set_ids: Vec<String>,
    not_ip_set_ids: Vec<String>,
    ip_port_set_ids: Vec<String>,
    ports: Vec<w::PortRange>,
    not_ports: Vec<w::PortRange>,
    named: Vec<String>,
    not_named: Vec<String>,
    nets: Vec<String>,
    not_nets: Vec<String>,
    sa_match: Option<w::ServiceAccountMatch>,
}

fn split_ports(ports: &[Port]) -> (Vec<w::PortRange>, Vec<String>) {
    let mut numeric = Vec::new();
    let mut named = Vec::new();
    for p in ports {
        match p {
            Port::Range(first, last) => numeric.push(w::PortRange {
                first: i32::from(*first),
                last: i32::from(*last),
            }),
            Port::Named(n) => named.push(n.clone()),
        }
    }
    (numeric, named)
}

/// The context of one rule's conversion.
pub(super) struct RuleCtx<'a, 'e> {
    pub(super) set: &'a PolicySet,
    pub(super) sets: &'a mut IpSets,
    pub(super) eps: &'a [Endpoint<'e>],
}

/// One side of a rule; `source` says which (service matches differ).
fn convert_side(
    e: &EntityRule,
    policy_ns: &str,
    proto: Option<&str>,
    source: bool,
    cx: &mut RuleCtx<'_, '_>,
) -> Side {
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
    let mut negative = not_selector.clone().map(|s| EndpointSel {
        selector: Some(s),
        ..Default::default()
    });
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
    side.named = named
        .iter()
        .map(|n| cx.sets.named_port(filter, n, proto, cx.eps))
        .collect();
    side.not_named = not_named
        .iter()
        .map(|n| cx.sets.named_port(filter, n, proto, cx.eps))
        .collect();
    if let Some(p) = &positive {
        if !side.ports.is_empty() || named.is_empty() {
            side.ip_set_ids.push(cx.sets.selector(p, cx.eps));
        }
    }
    if let Some(n) = &negative {
        side.not_ip_set_ids.push(cx.sets.selector(n, cx.eps));
    }
    if let Some(svc) = &e.services {
        // Felix: a destination service is an IP-and-port set of its endpoints; a source
        // service an address set appended to the source's IP sets.
        let id = cx.sets.service(cx.set, &svc.namespace, &svc.name, !source);
        if source {
            side.ip_set_ids.push(id);
        } else {
            side.ip_port_set_ids.push(id);
        }
    }
    if !sa.names.is_empty() || sa_selector.is_some() {
        side.sa_match = Some(w::ServiceAccountMatch {
            selector: sa_selector.unwrap_or_default(),
            names: sa.names,
        });
    }
    side
}

fn icmp_match(i: &Icmp) -> Option<(i32, Option<i32>)> {
    let t = i32::try_from(i.icmp_type?).ok()?;
    Some((t, i.code.and_then(|c| i32::try_from(c).ok())))
}

fn action(a: &str) -> String {
    if a == "Pass" {
        "next-tier".into()
    } else {
        a.to_ascii_lowercase()
    }
}

pub(super) fn convert_rule(
    r: &Rule,
    p: &Policy,
    rule_id: String,
    cx: &mut RuleCtx<'_, '_>,
) -> w::Rule {
    // Named ports of a rule without a protocol match ports of any protocol (Felix's
    // ProtocolAny).
    let named_proto = r.protocol.as_ref().map(Protocol::named_port_protocol);
    let src = convert_side(&r.source, &p.namespace, named_proto, true, cx);
    let dst = convert_side(&r.destination, &p.namespace, named_proto, false, cx);
    let icmp = r.icmp.as_ref().and_then(icmp_match).map(|(t, c)| match c {
        Some(c) => w::rule::Icmp::IcmpTypeCode(w::IcmpTypeAndCode { r#type: t, code: c }),
        None => w::rule::Icmp::IcmpType(t),
    });
    let not_icmp = r
        .not_icmp
        .as_ref()
        .and_then(icmp_match)
        .map(|(t, c)| match c {
            Some(c) => w::rule::NotIcmp::NotIcmpTypeCode(w::IcmpTypeAndCode { r#type: t, code: c }),
            None => w::rule::NotIcmp::NotIcmpType(t),
        });
    let original = |s: &str| s.to_string();
    w::Rule {
        action: action(&r.action),
        ip_version: r
            .ip_version
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0),
        protocol: r.protocol.as_ref().map(wire_protocol),
        not_protocol: r.not_protocol.as_ref().map(wire_protocol),
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
        dst_ip_port_set_ids: dst.ip_port_set_ids,
        not_dst_ip_set_ids: dst.not_ip_set_ids,
        src_named_port_ip_set_ids: src.named,
        not_src_named_port_ip_set_ids: src.not_named,
        dst_named_port_ip_set_ids: dst.named,
        not_dst_named_port_ip_set_ids: dst.not_named,
        original_src_selector: original(&r.source.selector),
        original_dst_selector: original(&r.destination.selector),
        original_src_namespace_selector: original(&r.source.namespace_selector),
        original_dst_namespace_selector: original(&r.destination.namespace_selector),
        original_not_src_selector: original(&r.source.not_selector),
        original_not_dst_selector: original(&r.destination.not_selector),
        src_service_account_match: src.sa_match,
        dst_service_account_match: dst.sa_match,
        http_match: r.http.as_ref().map(|h| w::HttpMatch {
            methods: h.methods.clone(),
            paths: h
                .paths
                .iter()
                .filter_map(|p| {
                    let m = if !p.exact.is_empty() {
                        Pm::Exact(p.exact.clone())
                    } else if !p.prefix.is_empty() {
                        Pm::Prefix(p.prefix.clone())
                    } else if !p.glob.is_empty() {
                        Pm::Glob(p.glob.clone())
                    } else if !p.template.is_empty() {
                        Pm::Template(p.template.clone())
                    } else {
                        return None;
                    };
                    Some(PathMatch {
                        path_match: Some(m),
                    })
                })
                .collect(),
        }),
        metadata: r.metadata.as_ref().map(|m| w::RuleMetadata {
            annotations: m.annotations.clone(),
        }),
        icmp,
        not_icmp,
        rule_id,
        ..Default::default()
    }
}

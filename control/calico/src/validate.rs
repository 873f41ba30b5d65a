//! Semantic checks beyond the YAML shape: selectors, actions, ports, nets, HTTP matches,
//! cross-resource references.

use crate::document::{line_of, Document};
use crate::model::{EntityRule, Policy, PolicySet, Problem, Rule, Workload, DEFAULT_TIER};
use crate::values::{net, port, protocol};
use alp_engine::selector::Selector;
use std::collections::BTreeSet;
use std::net::IpAddr;

type Found = Vec<(usize, String, String)>;

fn selector(found: &mut Found, doc: &Document<'_>, field: &str, text: Option<&str>) {
    if let Some(text) = text {
        if let Err(e) = Selector::parse(text) {
            found.push((
                line_of(doc, text),
                field.to_string(),
                format!(
                    "bad selector {text:?} at position {}: {}",
                    e.position, e.message
                ),
            ));
        }
    }
}

pub(crate) fn policy(p: &Policy, doc: &Document<'_>) -> Found {
    let mut found = Found::new();
    let s = &p.spec;
    selector(&mut found, doc, "spec.selector", s.selector.as_deref());
    selector(
        &mut found,
        doc,
        "spec.serviceAccountSelector",
        s.service_account_selector.as_deref(),
    );
    if p.kind.namespaced() {
        for (set, field) in [
            (s.namespace_selector.is_some(), "spec.namespaceSelector"),
            (s.do_not_track.is_some(), "spec.doNotTrack"),
            (s.pre_dnat.is_some(), "spec.preDNAT"),
            (s.apply_on_forward.is_some(), "spec.applyOnForward"),
        ] {
            if set {
                found.push((
                    line_of(doc, field.trim_start_matches("spec.")),
                    field.into(),
                    format!("not allowed in a {}", p.kind.as_str()),
                ));
            }
        }
    } else {
        selector(
            &mut found,
            doc,
            "spec.namespaceSelector",
            s.namespace_selector.as_deref(),
        );
    }
    for t in &s.types {
        if t != "Ingress" && t != "Egress" {
            found.push((
                line_of(doc, t),
                "spec.types".into(),
                format!("must be Ingress or Egress, not {t:?}"),
            ));
        }
    }
    if let Some(a) = &s.staged_action {
        if !p.kind.as_str().starts_with("Staged") {
            found.push((
                line_of(doc, "stagedAction"),
                "spec.stagedAction".into(),
                "only allowed in staged policies".into(),
            ));
        } else if a != "Set" && a != "Delete" {
            found.push((
                line_of(doc, a),
                "spec.stagedAction".into(),
                format!("must be Set or Delete, not {a:?}"),
            ));
        }
    }
    for (dir, rules) in [("ingress", &s.ingress), ("egress", &s.egress)] {
        for (i, rule) in rules.iter().enumerate() {
            check_rule(
                &mut found,
                doc,
                &format!("spec.{dir}[{i}]"),
                dir == "ingress",
                rule,
            );
        }
    }
    found
}

fn check_rule(found: &mut Found, doc: &Document<'_>, at: &str, ingress: bool, r: &Rule) {
    match r.action.as_str() {
        "Allow" | "Deny" | "Log" | "Pass" => {}
        "" => found.push((
            doc.start_line,
            format!("{at}.action"),
            "is required (Allow, Deny, Log or Pass)".into(),
        )),
        other => found.push((
            line_of(doc, other),
            format!("{at}.action"),
            format!("must be Allow, Deny, Log or Pass, not {other:?}"),
        )),
    }
    for (field, p) in [("protocol", &r.protocol), ("notProtocol", &r.not_protocol)] {
        if let Some(p) = p {
            if protocol(p).is_none() {
                found.push((
                    line_of(doc, &p.to_string()),
                    format!("{at}.{field}"),
                    format!(
                        "unknown protocol {p:?} (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255)"
                    ),
                ));
            }
        }
    }
    let ported = matches!(&r.protocol, Some(p) if matches!(protocol(p).as_deref(), Some("tcp" | "udp" | "sctp")));
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        check_entity(found, doc, &format!("{at}.{side}"), e, ported);
    }
    if let Some(http) = &r.http {
        if !ingress {
            found.push((
                line_of(doc, "http"),
                format!("{at}.http"),
                "HTTP match is only allowed on ingress rules".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, m) in http.methods.iter().enumerate() {
            if !seen.insert(m) {
                found.push((
                    line_of(doc, m),
                    format!("{at}.http.methods[{i}]"),
                    format!("duplicate method {m:?}"),
                ));
            }
        }
        for (i, p) in http.paths.iter().enumerate() {
            let field = format!("{at}.http.paths[{i}]");
            match (&p.exact, &p.prefix, &p.glob, &p.template) {
                (Some(v), None, None, None) | (None, Some(v), None, None) => {
                    let kind = if p.exact.is_some() { "exact" } else { "prefix" };
                    if !v.starts_with('/') {
                        found.push((
                            line_of(doc, v),
                            format!("{field}.{kind}"),
                            format!("path {v:?} must start with '/'"),
                        ));
                    } else if let Err(e) = alp_engine::path::normalize(v) {
                        // The engine would match nothing with it (spec section 5, D10): an
                        // ambiguous segment or an encoding no server reads the same way.
                        found.push((
                            line_of(doc, v),
                            format!("{field}.{kind}"),
                            format!("path {v:?} does not normalise: {e}"),
                        ));
                    }
                }
                (None, None, Some(v), None) => {
                    if let Err(e) = alp_engine::path_pattern::compile_glob(v) {
                        found.push((line_of(doc, v), format!("{field}.glob"), e.to_string()));
                    }
                }
                (None, None, None, Some(v)) => {
                    if let Err(e) = alp_engine::path_pattern::compile_template(v) {
                        found.push((line_of(doc, v), format!("{field}.template"), e.to_string()));
                    }
                }
                _ => found.push((
                    doc.start_line,
                    field,
                    "exactly one of exact, prefix, glob or template is required".into(),
                )),
            }
        }
    }
}

fn check_entity(found: &mut Found, doc: &Document<'_>, at: &str, e: &EntityRule, ported: bool) {
    selector(found, doc, &format!("{at}.selector"), e.selector.as_deref());
    selector(
        found,
        doc,
        &format!("{at}.notSelector"),
        e.not_selector.as_deref(),
    );
    selector(
        found,
        doc,
        &format!("{at}.namespaceSelector"),
        e.namespace_selector.as_deref(),
    );
    if let Some(sa) = &e.service_accounts {
        selector(
            found,
            doc,
            &format!("{at}.serviceAccounts.selector"),
            sa.selector.as_deref(),
        );
    }
    if e.services.is_some() {
        found.push((
            line_of(doc, "services"),
            format!("{at}.services"),
            "Kubernetes service matches are not supported by the YAML source".into(),
        ));
    }
    for (field, nets) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
        for (i, n) in nets.iter().enumerate() {
            if net(n).is_none() {
                found.push((
                    line_of(doc, n),
                    format!("{at}.{field}[{i}]"),
                    format!("{n:?} is not an IP address or CIDR"),
                ));
            }
        }
    }
    for (field, ports) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
        if !ports.is_empty() && !ported {
            found.push((
                line_of(doc, field),
                format!("{at}.{field}"),
                "ports need protocol TCP, UDP or SCTP".into(),
            ));
        }
        for (i, p) in ports.iter().enumerate() {
            if let Err(why) = port(p) {
                found.push((
                    line_of(doc, &p.to_string()),
                    format!("{at}.{field}[{i}]"),
                    why,
                ));
            }
        }
    }
}

pub(crate) fn workload(w: &Workload, doc: &Document<'_>) -> Found {
    let mut found = Found::new();
    if w.spec.ip_networks.is_empty() {
        found.push((
            doc.start_line,
            "spec.ipNetworks".into(),
            "at least one address is required".into(),
        ));
    }
    for (i, n) in w.spec.ip_networks.iter().enumerate() {
        if n.split('/')
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_none()
            || net(n).is_none()
        {
            found.push((
                line_of(doc, n),
                format!("spec.ipNetworks[{i}]"),
                format!("{n:?} is not an IP address or CIDR"),
            ));
        }
    }
    for (i, p) in w.spec.ports.iter().enumerate() {
        if p.name.is_empty() {
            found.push((
                doc.start_line,
                format!("spec.ports[{i}].name"),
                "is required".into(),
            ));
        }
        if p.port == 0 {
            found.push((
                line_of(doc, &p.name),
                format!("spec.ports[{i}].port"),
                "must be 1-65535".into(),
            ));
        }
        if let Some(proto) = &p.protocol {
            if !matches!(protocol(proto).as_deref(), Some("tcp" | "udp" | "sctp")) {
                found.push((
                    line_of(doc, &proto.to_string()),
                    format!("spec.ports[{i}].protocol"),
                    "must be TCP, UDP or SCTP".into(),
                ));
            }
        }
    }
    found
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

//! The workloads as selectors see them (their labels plus Calico's derived ones) and the
//! endpoint selectors of policies and rules.

use crate::model::{Policy, PolicySet, Workload};
use alp_engine::selector::{LabelSource, Selector};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub(super) const NS_LABEL: &str = "projectcalico.org/namespace";
pub(super) const SA_LABEL: &str = "projectcalico.org/serviceaccount";
const ORCH_LABEL: &str = "projectcalico.org/orchestrator";
const NAME_LABEL: &str = "projectcalico.org/name";
pub(super) const NS_PREFIX: &str = "pcns.";
pub(super) const SA_PREFIX: &str = "pcsa.";

/// A workload as the selectors see it: its labels plus Calico's derived labels.
pub(super) struct Endpoint<'a> {
    pub(super) workload: &'a Workload,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) ips: Vec<IpAddr>,
}

/// Looks labels up under a prefix (`pcns.` / `pcsa.`): Calico's `parseSelectorAttachPrefix`.
struct Prefixed<'a>(&'a BTreeMap<String, String>, &'static str);

impl LabelSource for Prefixed<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.0.get(&format!("{}{key}", self.1)).map(String::as_str)
    }
}

pub(super) fn namespace_labels(set: &PolicySet, ns: &str) -> BTreeMap<String, String> {
    let mut labels = set.namespaces.get(ns).cloned().unwrap_or_default();
    labels
        .entry("kubernetes.io/metadata.name".into())
        .or_insert_with(|| ns.to_string());
    labels
}

pub(super) fn endpoint<'a>(set: &PolicySet, w: &'a Workload) -> Endpoint<'a> {
    let mut labels = w.labels.clone();
    labels.insert(NS_LABEL.into(), w.namespace.clone());
    labels.insert(ORCH_LABEL.into(), w.orchestrator().to_string());
    for (k, v) in namespace_labels(set, &w.namespace) {
        labels.insert(format!("{NS_PREFIX}{k}"), v);
    }
    labels.insert(format!("{NS_PREFIX}{NAME_LABEL}"), w.namespace.clone());
    if let Some(sa) = w.service_account() {
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
    Endpoint {
        workload: w,
        labels,
        ips,
    }
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
pub(super) enum NsConstraint {
    Name(String),
    Selector(String),
}

/// The positive endpoint selector of an entity rule (or a policy), kept in parts.
#[derive(Clone, Default)]
pub(super) struct EndpointSel {
    pub(super) namespace: Option<NsConstraint>,
    pub(super) sa_names: Vec<String>,
    pub(super) sa_selector: Option<String>,
    pub(super) selector: Option<String>,
    pub(super) not_selector: Option<String>,
}

impl EndpointSel {
    pub(super) fn matches(&self, ep: &Endpoint<'_>) -> bool {
        let ns_ok = match &self.namespace {
            None => true,
            Some(NsConstraint::Name(n)) => ep.workload.namespace == *n,
            Some(NsConstraint::Selector(s)) => {
                !is_global(s) && parse(s).matches(&Prefixed(&ep.labels, NS_PREFIX))
            }
        };
        let names_ok = self.sa_names.is_empty()
            || ep
                .labels
                .get(SA_LABEL)
                .is_some_and(|sa| self.sa_names.contains(sa));
        let sa_ok = self
            .sa_selector
            .as_deref()
            .is_none_or(|s| parse(s).matches(&Prefixed(&ep.labels, SA_PREFIX)));
        let sel_ok = self
            .selector
            .as_deref()
            .is_none_or(|s| !is_global(s) && parse(s).matches(&ep.labels));
        let not_ok = self
            .not_selector
            .as_deref()
            .is_none_or(|s| !parse(s).matches(&ep.labels));
        ns_ok && names_ok && sa_ok && sel_ok && not_ok
    }

    /// A canonical description, in Calico's selector spelling where there is one.
    pub(super) fn describe(&self) -> String {
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

/// Whether a policy applies to an endpoint (`selector`, namespace, `namespaceSelector`,
/// `serviceAccountSelector`).
pub(super) fn selects(p: &Policy, ep: &Endpoint<'_>) -> bool {
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

pub(super) fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

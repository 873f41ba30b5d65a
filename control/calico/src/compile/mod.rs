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
//!   given: then each named port becomes an `IP_AND_PORT` set filtered by that selector (for the
//!   rule's protocol; for any protocol when the rule has none);
//! * a destination service match becomes an `IP_AND_PORT` set of the Service's endpoints and
//!   ports (`dst_ip_port_set_ids`), a source one an IP set of its endpoint addresses (added to
//!   `src_ip_set_ids`), both from the inventory's EndpointSlices (felix `serviceindex`);
//! * `Pass` becomes `next-tier`, other actions are lower-cased;
//! * tiers by `order` (absent = last), then name; policies likewise. The `default` tier has
//!   order 1000000 (what Calico requires of a `Tier default`); a tier's default action is
//!   `Deny` unless it says `Pass`; a staged `Delete` is not sent;
//! * profiles `kns.<namespace>` (allow everything) and `ksa.<namespace>.<serviceaccount>` (no
//!   rules), unless the endpoint lists `spec.profiles`.
//!
//! IP set ids are `s:` / `n:` / `svc:` / `svcnoport:` plus a 64-bit FNV-1a hash (hex) of a
//! canonical description of the selector (and named port) or the service: deterministic, equal
//! for equal selectors.
//!
//! The steps of [`compile`]: the tiers and their active policies (`active_tiers`, `tier`), each
//! policy (`policy`) with its rules (`rules`), the profiles (`profiles`), the labels of every
//! service account and namespace (`labels`), the endpoint (`endpoint_update`), and the IP sets
//! the rules referenced (`ip_sets`). Selecting workloads is `selection`.

mod ip_sets;
mod rules;
mod selection;

use crate::model::{Policy, PolicySet, Workload};
use alp_felix::wire::felix::{self as w, to_dataplane::Payload, ToDataplane};
use ip_sets::IpSets;
use selection::{
    endpoint, namespace_labels, nonempty, selects, Endpoint, NS_LABEL, NS_PREFIX, SA_PREFIX,
};
use std::collections::{BTreeMap, BTreeSet};

/// Why a workload's messages cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// `--workload` names no `WorkloadEndpoint` of the inventory.
    #[error("no WorkloadEndpoint {namespace}/{name} in the inventory (have: {})", known.join(", "))]
    UnknownWorkload {
        namespace: String,
        name: String,
        /// The inventory's workloads, `namespace/name`.
        known: Vec<String>,
    },
    /// The endpoint lists a profile this source does not define.
    #[error("WorkloadEndpoint {namespace}/{name}: profile {profile:?} is unknown (only kns.<namespace> and ksa.<namespace>.<serviceaccount> profiles exist in this source)")]
    UnknownProfile {
        namespace: String,
        name: String,
        profile: String,
    },
}

/// The workloads of the inventory, `namespace/name`.
pub fn workload_names(set: &PolicySet) -> Vec<String> {
    set.workloads
        .iter()
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect()
}

/// The messages Felix would send for the workload `namespace/name`, ending in `inSync`.
pub fn compile(
    set: &PolicySet,
    namespace: &str,
    name: &str,
) -> Result<Vec<ToDataplane>, CompileError> {
    let eps: Vec<Endpoint<'_>> = set.workloads.iter().map(|w| endpoint(set, w)).collect();
    let me = eps
        .iter()
        .find(|e| e.workload.namespace == namespace && e.workload.name == name)
        .ok_or_else(|| CompileError::UnknownWorkload {
            namespace: namespace.to_string(),
            name: name.to_string(),
            known: workload_names(set),
        })?;
    let wl = me.workload;

    let mut sets = IpSets::default();
    let mut policy_msgs = Vec::new();
    let mut tier_infos = Vec::new();
    for (name, policies) in active_tiers(set, me) {
        tier_infos.push(tier(
            set,
            &name,
            &policies,
            &mut sets,
            &eps,
            &mut policy_msgs,
        ));
    }
    let (profile_ids, profile_msgs) = profiles(wl)?;
    let endpoint = endpoint_update(wl, profile_ids, tier_infos);

    let mut out = sets.into_updates();
    out.extend(policy_msgs);
    out.extend(profile_msgs);
    out.extend(labels(set));
    out.push(endpoint);
    out.push(Payload::InSync(w::InSync {}));
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, payload)| ToDataplane {
            sequence_number: i as u64 + 1,
            payload: Some(payload),
        })
        .collect())
}

/// The tier step: the policies that select the workload, by tier; tiers in order (then by
/// name), and each tier's policies in order (then by name, namespace and kind).
fn active_tiers<'s>(set: &'s PolicySet, me: &Endpoint<'_>) -> Vec<(String, Vec<&'s Policy>)> {
    let mut by_tier: BTreeMap<String, Vec<&Policy>> = BTreeMap::new();
    // A staged Delete is not sent to Felix (libcalico-go's update processors drop it).
    for p in set
        .policies
        .iter()
        .filter(|p| !p.is_staged_delete() && selects(p, me))
    {
        by_tier.entry(p.tier().to_string()).or_default().push(p);
    }
    let mut tiers: Vec<(String, Vec<&Policy>)> = by_tier.into_iter().collect();
    tiers.sort_by(|a, b| {
        set.tier_order(&a.0)
            .total_cmp(&set.tier_order(&b.0))
            .then_with(|| a.0.cmp(&b.0))
    });
    for (_, policies) in &mut tiers {
        policies.sort_by(|a, b| {
            a.order()
                .total_cmp(&b.order())
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.namespace.cmp(&b.namespace))
                .then_with(|| a.kind.cmp(&b.kind))
        });
    }
    tiers
}

/// One tier of the endpoint, its policies (in order) added to `policy_msgs`.
fn tier(
    set: &PolicySet,
    name: &str,
    policies: &[&Policy],
    sets: &mut IpSets,
    eps: &[Endpoint<'_>],
    policy_msgs: &mut Vec<Payload>,
) -> w::TierInfo {
    let mut info = w::TierInfo {
        name: name.to_string(),
        default_action: set.tier_default_action(name),
        ..Default::default()
    };
    for p in policies {
        let (ingress, egress) = p.types();
        if ingress {
            info.ingress_policies.push(policy_id(p));
        }
        if egress {
            info.egress_policies.push(policy_id(p));
        }
        policy_msgs.push(policy(set, p, name, sets, eps));
    }
    info
}

/// The policy step: one active policy, its rules converted (their IP sets added to `sets`).
fn policy(
    set: &PolicySet,
    p: &Policy,
    tier: &str,
    sets: &mut IpSets,
    eps: &[Endpoint<'_>],
) -> Payload {
    let key = p.qualified_name();
    let mut cx = rules::RuleCtx { set, sets, eps };
    let inbound = p
        .spec
        .ingress
        .iter()
        .enumerate()
        .map(|(i, r)| rules::convert_rule(r, p, format!("{key}:ingress:{i}"), &mut cx))
        .collect();
    let outbound = p
        .spec
        .egress
        .iter()
        .enumerate()
        .map(|(i, r)| rules::convert_rule(r, p, format!("{key}:egress:{i}"), &mut cx))
        .collect();
    Payload::ActivePolicyUpdate(w::ActivePolicyUpdate {
        id: Some(policy_id(p)),
        policy: Some(w::Policy {
            inbound_rules: inbound,
            outbound_rules: outbound,
            untracked: p.spec.do_not_track,
            pre_dnat: p.spec.pre_dnat,
            namespace: p.namespace.clone(),
            original_selector: original_selector(p),
            perf_hints: p.spec.performance_hints.clone(),
            tier: tier.to_string(),
        }),
    })
}

fn policy_id(p: &Policy) -> w::PolicyId {
    w::PolicyId {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        kind: p.kind.as_str().into(),
    }
}

fn original_selector(p: &Policy) -> String {
    let sel = Some(p.spec.selector.clone())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "all()".into());
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
        parts
            .iter()
            .map(|s| format!("({s})"))
            .collect::<Vec<_>>()
            .join(" && ")
    }
}

/// The profile step: the endpoint's profile ids (`spec.profiles`, else `kns.<namespace>` and
/// `ksa.<namespace>.<serviceaccount>`) and their updates.
fn profiles(wl: &Workload) -> Result<(Vec<String>, Vec<Payload>), CompileError> {
    let profile_ids = match &wl.spec.profiles {
        Some(list) => list.clone(),
        None => {
            let mut ids = vec![format!("kns.{}", wl.namespace)];
            if let Some(sa) = wl.service_account() {
                ids.push(format!("ksa.{}.{sa}", wl.namespace));
            }
            ids
        }
    };
    let mut msgs = Vec::new();
    for id in &profile_ids {
        let profile = if id.starts_with("kns.") {
            let allow = || w::Rule {
                action: "allow".into(),
                ..Default::default()
            };
            w::Profile {
                inbound_rules: vec![allow()],
                outbound_rules: vec![allow()],
            }
        } else if id.starts_with("ksa.") {
            w::Profile::default()
        } else {
            return Err(CompileError::UnknownProfile {
                namespace: wl.namespace.clone(),
                name: wl.name.clone(),
                profile: id.clone(),
            });
        };
        msgs.push(Payload::ActiveProfileUpdate(w::ActiveProfileUpdate {
            id: Some(w::ProfileId { name: id.clone() }),
            profile: Some(profile),
        }));
    }
    Ok((profile_ids, msgs))
}

/// Every service account and namespace known (resources, workloads, policies), with labels.
fn labels(set: &PolicySet) -> Vec<Payload> {
    let mut sas = set.service_accounts.clone();
    let mut namespaces: BTreeSet<String> = set.namespaces.keys().cloned().collect();
    for w in &set.workloads {
        namespaces.insert(w.namespace.clone());
        if let Some(sa) = w.service_account() {
            sas.entry((w.namespace.clone(), sa.to_string()))
                .or_default();
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
    let mut out = Vec::new();
    for ((ns, name), labels) in sas {
        out.push(Payload::ServiceAccountUpdate(w::ServiceAccountUpdate {
            id: Some(w::ServiceAccountId {
                namespace: ns,
                name,
            }),
            labels,
        }));
    }
    for ns in namespaces {
        let labels = namespace_labels(set, &ns);
        out.push(Payload::NamespaceUpdate(w::NamespaceUpdate {
            id: Some(w::NamespaceId { name: ns }),
            labels,
        }));
    }
    out
}

/// The workload's endpoint: its addresses, profiles and tiers.
fn endpoint_update(wl: &Workload, profile_ids: Vec<String>, tiers: Vec<w::TierInfo>) -> Payload {
    let (v4, v6): (Vec<String>, Vec<String>) = wl
        .spec
        .ip_networks
        .iter()
        .filter_map(|n| crate::values::net(n))
        .partition(|n| !n.contains(':'));
    Payload::WorkloadEndpointUpdate(w::WorkloadEndpointUpdate {
        id: Some(w::WorkloadEndpointId {
            orchestrator_id: wl.orchestrator().to_string(),
            workload_id: format!("{}/{}", wl.namespace, wl.name),
            endpoint_id: wl.endpoint().to_string(),
        }),
        endpoint: Some(w::WorkloadEndpoint {
            state: "active".into(),
            name: wl.spec.interface_name.clone(),
            mac: wl.spec.mac.clone(),
            profile_ids,
            ipv4_nets: v4,
            ipv6_nets: v6,
            tiers,
        }),
    })
}

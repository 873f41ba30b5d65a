//! The snapshot: everything the filter needs to decide requests for one workload, and nothing
//! else. Control builds it from an in-sync store; the filter decodes it and compiles it once per
//! version. Field meanings follow Felix's Policy Sync messages (see `shared/spec/semantics.md`),
//! kept as close to the wire as evaluation allows so no semantics are lost in transit.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Labels of a namespace or service account.
pub type Labels = BTreeMap<String, String>;

/// An in-sync view of the store. There is no snapshot before the first `in_sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The workload endpoint; `None` when the store has none (every request: `NoEndpoint`).
    pub endpoint: Option<Endpoint>,
    /// Policies with a body. A referenced policy that is absent here is missing from the store.
    pub policies: Vec<Policy>,
    /// Profiles with a body.
    pub profiles: Vec<Profile>,
    pub ip_sets: Vec<IpSet>,
    pub service_accounts: Vec<ServiceAccount>,
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub tiers: Vec<Tier>,
    pub profile_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub name: String,
    pub ingress_policies: Vec<PolicyId>,
    /// As Felix sends it: `Deny`, `Pass`, or empty (older Felix).
    pub default_action: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PolicyId {
    pub name: String,
    pub namespace: String,
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: PolicyId,
    /// `Policy.namespace`: non-empty for namespaced policies (drives namespace pinning).
    pub namespace: String,
    pub inbound_rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub inbound_rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpSetKind {
    #[default]
    Ip,
    IpAndPort,
    Net,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpSet {
    pub id: String,
    pub kind: IpSetKind,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

/// `Protocol { oneof number_or_name }`; `Unset` is a present message with neither member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    Number(i32),
    Name(String),
    Unset,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: i32,
    pub last: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountMatch {
    pub selector: String,
    pub names: Vec<String>,
}

/// One side (source or destination) of a rule: the `src_*` / `dst_*` fields and their `not_` forms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSide {
    pub nets: Vec<String>,
    pub not_nets: Vec<String>,
    pub ports: Vec<PortRange>,
    pub not_ports: Vec<PortRange>,
    pub ip_set_ids: Vec<String>,
    pub not_ip_set_ids: Vec<String>,
    pub named_port_ip_set_ids: Vec<String>,
    pub not_named_port_ip_set_ids: Vec<String>,
    /// `dst_ip_port_set_ids` (service IP/port); always empty on the source side.
    pub ip_port_set_ids: Vec<String>,
    pub original_selector: String,
    pub original_not_selector: String,
    pub original_namespace_selector: String,
    pub service_account_match: Option<ServiceAccountMatch>,
}

/// `PathMatch { oneof path_match }`, plus this project's extensions (file source only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// A `PathMatch` with neither member set: matches nothing.
    Unset,
    /// Extension (YAML source only): a segment-aware glob, see [`crate::path_pattern`].
    Glob(String),
    /// Extension (YAML source only): a route template, see [`crate::path_pattern`].
    Template(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpMatch {
    pub methods: Vec<String>,
    pub paths: Vec<PathMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// As Felix sends it (`allow`, `deny`, `next-tier`, `log`; compared ignoring case).
    pub action: String,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub src: RuleSide,
    pub dst: RuleSide,
    pub http_match: Option<HttpMatch>,
    /// Felix's `rule_id`, for explanations only.
    pub rule_id: String,
}

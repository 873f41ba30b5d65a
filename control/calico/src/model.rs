//! The YAML resources this source reads, as serde types. Field names follow Calico's
//! `projectcalico.org/v3` CRDs (`shared/schemas/calico-*.yaml`); unknown fields in a `spec`
//! are rejected so that a typo does not silently widen a policy.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `metadata` of any resource. Other Kubernetes metadata (uid, resourceVersion, ...) is
/// accepted and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Kubernetes `v1` `Namespace` or `ServiceAccount`: only the labels are used.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelsOnly {
    #[serde(default)]
    pub metadata: Metadata,
}

/// A Calico v3 resource: header plus a typed spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource<S> {
    #[allow(dead_code)]
    pub api_version: String,
    #[allow(dead_code)]
    pub kind: String,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: S,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    pub order: Option<f64>,
    pub default_action: Option<String>,
}

/// Spec of all four policy kinds (the namespaced kinds do not have every field; the loader
/// rejects those it does not allow).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    pub tier: Option<String>,
    pub order: Option<f64>,
    pub selector: Option<String>,
    pub namespace_selector: Option<String>,
    pub service_account_selector: Option<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub ingress: Vec<Rule>,
    #[serde(default)]
    pub egress: Vec<Rule>,
    pub do_not_track: Option<bool>,
    #[serde(rename = "preDNAT")]
    pub pre_dnat: Option<bool>,
    pub apply_on_forward: Option<bool>,
    #[serde(default)]
    pub performance_hints: Vec<String>,
    pub staged_action: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub action: String,
    pub protocol: Option<NumOrString>,
    pub not_protocol: Option<NumOrString>,
    pub icmp: Option<Icmp>,
    #[serde(rename = "notICMP")]
    pub not_icmp: Option<Icmp>,
    pub ip_version: Option<i32>,
    #[serde(default)]
    pub source: EntityRule,
    #[serde(default)]
    pub destination: EntityRule,
    pub http: Option<Http>,
    pub metadata: Option<RuleMetadata>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub icmp_type: Option<i32>,
    pub code: Option<i32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default)]
    pub nets: Vec<String>,
    #[serde(default)]
    pub not_nets: Vec<String>,
    pub selector: Option<String>,
    pub not_selector: Option<String>,
    pub namespace_selector: Option<String>,
    #[serde(default)]
    pub ports: Vec<NumOrString>,
    #[serde(default)]
    pub not_ports: Vec<NumOrString>,
    pub service_accounts: Option<ServiceAccounts>,
    pub services: Option<Services>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccounts {
    #[serde(default)]
    pub names: Vec<String>,
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<HttpPath>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPath {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    /// Extension: a segment-aware glob (`alp_engine::path_pattern`).
    pub glob: Option<String>,
    /// Extension: a route template such as `/accounts/{id}/summary`.
    pub template: Option<String>,
}

/// A port, protocol or similar YAML scalar that may be a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum NumOrString {
    Num(i64),
    Str(String),
}

impl std::fmt::Display for NumOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumOrString::Num(n) => write!(f, "{n}"),
            NumOrString::Str(s) => f.write_str(s),
        }
    }
}

/// Calico's `WorkloadEndpoint` (`projectcalico.org/v3`): the inventory of workloads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    pub orchestrator: Option<String>,
    pub workload: Option<String>,
    pub node: Option<String>,
    #[serde(rename = "containerID")]
    pub container_id: Option<String>,
    pub pod: Option<String>,
    pub endpoint: Option<String>,
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub ip_networks: Vec<String>,
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    pub interface_name: Option<String>,
    pub mac: Option<String>,
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    #[serde(default)]
    pub name: String,
    pub protocol: Option<NumOrString>,
    #[serde(default)]
    pub port: u16,
    pub host_port: Option<u16>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
}

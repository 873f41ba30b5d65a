//! The types of this crate and their defaults:
//!
//! * the YAML resources this source reads, as serde types. Field names follow Calico's
//!   `projectcalico.org/v3` CRDs (`shared/schemas/calico-*.yaml`); unknown fields in a `spec`
//!   are rejected so that a typo does not silently widen a policy;
//! * what loading them gives ([`PolicySet`]: policies, tiers, workloads, labels) and what can
//!   be wrong with them ([`Problem`]);
//! * the defaults Calico applies where a resource says nothing (tier `default` and its order,
//!   a tier's default action, a policy's types, a workload's orchestrator and endpoint).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The tier of a policy that names none.
pub const DEFAULT_TIER: &str = "default";
/// The order of tier `default` unless a `Tier default` says otherwise.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// A tier's `defaultAction` unless it says `Pass`.
pub const DEFAULT_TIER_ACTION: &str = "Deny";
/// The namespace of a namespaced resource without `metadata.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";
/// A `WorkloadEndpoint`'s `spec.orchestrator` when absent.
pub const DEFAULT_ORCHESTRATOR: &str = "k8s";
/// A `WorkloadEndpoint`'s `spec.endpoint` when absent.
pub const DEFAULT_ENDPOINT: &str = "eth0";
/// The protocol of a named port that gives none.
pub const DEFAULT_PORT_PROTOCOL: &str = "tcp";

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

// What loading the resources gives.

/// One thing wrong with the input, in terms a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based line: the offending field's line where it can be found, else the document's first.
    pub line: usize,
    /// `Kind namespace/name` or `Kind name`, when known.
    pub resource: Option<String>,
    /// Dotted field path (`spec.ingress[0].http.paths[1].exact`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// A file or directory that could not be read.
    pub fn unreadable(file: &std::path::Path, error: &std::io::Error) -> Self {
        Problem {
            file: file.display().to_string(),
            line: 0,
            resource: None,
            field: None,
            message: format!("cannot read: {error}"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.file, self.line)?;
        if let Some(r) = &self.resource {
            write!(f, " {r}:")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Where a resource came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

/// The four policy kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    GlobalNetworkPolicy,
    NetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedNetworkPolicy,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::StagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            PolicyKind::StagedNetworkPolicy => "StagedNetworkPolicy",
        }
    }
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            PolicyKind::NetworkPolicy | PolicyKind::StagedNetworkPolicy
        )
    }
    pub(crate) fn from_kind(kind: &str) -> Option<PolicyKind> {
        Some(match kind {
            "GlobalNetworkPolicy" => PolicyKind::GlobalNetworkPolicy,
            "NetworkPolicy" => PolicyKind::NetworkPolicy,
            "StagedGlobalNetworkPolicy" => PolicyKind::StagedGlobalNetworkPolicy,
            "StagedNetworkPolicy" => PolicyKind::StagedNetworkPolicy,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: PolicyKind,
    pub name: String,
    /// Empty for the global kinds.
    pub namespace: String,
    pub spec: PolicySpec,
    pub origin: Origin,
}

impl Policy {
    /// `spec.tier`, else [`DEFAULT_TIER`].
    pub fn tier(&self) -> &str {
        self.spec
            .tier
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_TIER)
    }

    /// `spec.order` as a sort key (absent: last).
    pub fn order(&self) -> f64 {
        order_key(self.spec.order)
    }

    /// Whether the policy applies to ingress and to egress: `spec.types`, else Ingress, plus
    /// Egress when it has egress rules.
    pub fn types(&self) -> (bool, bool) {
        if self.spec.types.is_empty() {
            (true, !self.spec.egress.is_empty())
        } else {
            (
                self.spec.types.iter().any(|t| t == "Ingress"),
                self.spec.types.iter().any(|t| t == "Egress"),
            )
        }
    }

    /// `namespace/name` for the namespaced kinds, `name` for the global ones.
    pub fn qualified_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tier {
    pub name: String,
    pub spec: TierSpec,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub namespace: String,
    /// `spec.pod`, else `metadata.name`: what `--workload NAMESPACE/NAME` names.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: WorkloadEndpointSpec,
    pub origin: Origin,
}

impl Workload {
    /// `spec.serviceAccountName`, when given.
    pub fn service_account(&self) -> Option<&str> {
        self.spec
            .service_account_name
            .as_deref()
            .filter(|s| !s.is_empty())
    }

    /// `spec.orchestrator`, else [`DEFAULT_ORCHESTRATOR`].
    pub fn orchestrator(&self) -> &str {
        self.spec
            .orchestrator
            .as_deref()
            .unwrap_or(DEFAULT_ORCHESTRATOR)
    }

    /// `spec.endpoint`, else [`DEFAULT_ENDPOINT`].
    pub fn endpoint(&self) -> &str {
        self.spec.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT)
    }
}

/// Everything read from the policy path.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub tiers: BTreeMap<String, Tier>,
    pub policies: Vec<Policy>,
    /// Namespace name -> labels (explicit `Namespace` resources only).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// (namespace, name) -> labels.
    pub service_accounts: BTreeMap<(String, String), BTreeMap<String, String>>,
    pub workloads: Vec<Workload>,
    /// Documents of other kinds (Deployments, Services, ...), skipped: `file:line Kind name`.
    pub skipped: Vec<String>,
    pub files: Vec<PathBuf>,
}

impl PolicySet {
    /// A tier's order as a sort key: its `order`; tier `default` [`DEFAULT_TIER_ORDER`]
    /// unless its resource says otherwise; else last.
    pub fn tier_order(&self, tier: &str) -> f64 {
        let order = self.tiers.get(tier).and_then(|t| t.spec.order);
        order_key(order.or((tier == DEFAULT_TIER).then_some(DEFAULT_TIER_ORDER)))
    }

    /// A tier's `defaultAction`, else [`DEFAULT_TIER_ACTION`].
    pub fn tier_default_action(&self, tier: &str) -> String {
        self.tiers
            .get(tier)
            .and_then(|t| t.spec.default_action.clone())
            .unwrap_or_else(|| DEFAULT_TIER_ACTION.into())
    }
}

/// An `order` as a sort key: absent sorts last.
pub fn order_key(order: Option<f64>) -> f64 {
    order.unwrap_or(f64::INFINITY)
}

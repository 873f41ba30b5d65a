//! The types of this crate and their defaults:
//!
//! * the resources this source reads, as `decode` leaves them: field names follow Calico's
//!   `projectcalico.org/v3` API types, values are what calicoctl's decoding makes of the YAML
//!   (a string selector absent or empty is `""`, as in Calico);
//! * what loading them gives ([`PolicySet`]: policies, tiers, workloads, labels, services) and
//!   what can be wrong with them ([`Problem`]);
//! * the defaults Calico applies where a resource says nothing (tier `default` and its order,
//!   a tier's default action, a policy's types, a workload's orchestrator and endpoint).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The tier of a policy that names none.
pub const DEFAULT_TIER: &str = "default";
/// The order of tier `default` (Calico requires a `Tier default` to say exactly this).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// The order Calico requires of tier `kube-admin`.
pub const KUBE_ADMIN_TIER_ORDER: f64 = 1_000.0;
/// The order Calico requires of tier `kube-baseline`.
pub const KUBE_BASELINE_TIER_ORDER: f64 = 10_000_000.0;
/// A tier's `defaultAction` unless it says `Pass`.
pub const DEFAULT_TIER_ACTION: &str = "Deny";
/// The namespace of a namespaced resource without `metadata.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";
/// A `WorkloadEndpoint`'s `spec.orchestrator` when absent.
pub const DEFAULT_ORCHESTRATOR: &str = "k8s";
/// A `WorkloadEndpoint`'s `spec.endpoint` when absent.
pub const DEFAULT_ENDPOINT: &str = "eth0";
/// The protocol of a workload's named port that gives none.
pub const DEFAULT_PORT_PROTOCOL: &str = "tcp";

/// `metadata` of a resource: what this source uses of Kubernetes' `ObjectMeta`.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub name: String,
    /// Empty when absent.
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// `numorstring.Protocol` as calicoctl decodes it: a number (a numeric string becomes one) or a
/// name, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    Num(u8),
    Name(String),
}

/// The protocol names Calico accepts, case-sensitive.
pub const PROTOCOL_NAMES: [&str; 6] = ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"];

impl Protocol {
    /// Calico's `SupportsPorts`: TCP, UDP or SCTP by number or name (either case).
    pub fn supports_ports(&self) -> bool {
        match self {
            Protocol::Num(n) => matches!(n, 6 | 17 | 132),
            Protocol::Name(s) => {
                matches!(s.as_str(), "TCP" | "UDP" | "SCTP" | "tcp" | "udp" | "sctp")
            }
        }
    }

    /// Whether Calico's validator accepts it: 1-255 or one of [`PROTOCOL_NAMES`].
    pub fn is_valid(&self) -> bool {
        match self {
            Protocol::Num(n) => *n != 0,
            Protocol::Name(s) => PROTOCOL_NAMES.contains(&s.as_str()),
        }
    }

    /// Equal to `name` or `num`, as a CEL rule compares an int-or-string.
    pub fn is(&self, name: &str, num: u8) -> bool {
        match self {
            Protocol::Num(n) => *n == num,
            Protocol::Name(s) => s == name,
        }
    }

    /// The protocol a named-port IP set is for (Felix's `ProtocolFrom`): udp, sctp, else tcp.
    pub fn named_port_protocol(&self) -> &'static str {
        match self {
            Protocol::Num(17) => "udp",
            Protocol::Num(132) => "sctp",
            Protocol::Name(s) if s.eq_ignore_ascii_case("udp") => "udp",
            Protocol::Name(s) if s.eq_ignore_ascii_case("sctp") => "sctp",
            _ => "tcp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Num(n) => write!(f, "{n}"),
            Protocol::Name(s) => f.write_str(s),
        }
    }
}

/// `numorstring.Port`: a range (a single port is `min == max`) or a port name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    Range(u16, u16),
    Named(String),
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Range(a, b) if a == b => write!(f, "{a}"),
            Port::Range(a, b) => write!(f, "{a}:{b}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TierSpec {
    pub order: Option<f64>,
    /// As written; absent is [`DEFAULT_TIER_ACTION`] (the CRD's default).
    pub default_action: Option<String>,
}

/// Spec of the four policy kinds (each kind accepts only its own fields; `decode` refuses the
/// others as unknown).
#[derive(Debug, Clone, Default)]
pub struct PolicySpec {
    /// Empty: [`DEFAULT_TIER`].
    pub tier: String,
    pub order: Option<f64>,
    pub selector: String,
    pub namespace_selector: String,
    pub service_account_selector: String,
    /// As written; see [`Policy::types`] for the defaulted value.
    pub types: Vec<String>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub do_not_track: bool,
    pub pre_dnat: bool,
    pub apply_on_forward: bool,
    pub performance_hints: Vec<String>,
    /// Staged kinds; empty: `Set` (the CRD's default).
    pub staged_action: String,
    /// The fields (other than `tier`, `types` and `stagedAction`) that are not Go's zero value:
    /// what a staged `Delete` may not have.
    pub set_fields: Vec<&'static str>,
}

#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub action: String,
    pub ip_version: Option<i64>,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub icmp: Option<Icmp>,
    pub not_icmp: Option<Icmp>,
    pub source: EntityRule,
    pub destination: EntityRule,
    pub http: Option<Http>,
    pub metadata: Option<RuleMetadata>,
}

#[derive(Debug, Clone, Default)]
pub struct RuleMetadata {
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Icmp {
    pub icmp_type: Option<i64>,
    pub code: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct EntityRule {
    pub nets: Vec<String>,
    pub not_nets: Vec<String>,
    pub selector: String,
    pub not_selector: String,
    pub namespace_selector: String,
    pub ports: Vec<Port>,
    pub not_ports: Vec<Port>,
    pub service_accounts: Option<ServiceAccounts>,
    pub services: Option<ServiceMatch>,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceAccounts {
    pub names: Vec<String>,
    pub selector: String,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceMatch {
    pub name: String,
    /// Empty: the policy's namespace.
    pub namespace: String,
}

#[derive(Debug, Clone, Default)]
pub struct Http {
    pub methods: Vec<String>,
    pub paths: Vec<HttpPath>,
}

/// An `http.paths` entry; an empty string is an absent match, as in Calico.
#[derive(Debug, Clone, Default)]
pub struct HttpPath {
    pub exact: String,
    pub prefix: String,
    /// Extension: a segment-aware glob (`alp_engine::path_pattern`).
    pub glob: String,
    /// Extension: a route template such as `/accounts/{id}/summary`.
    pub template: String,
}

/// Calico's `WorkloadEndpoint` (`projectcalico.org/v3`): the inventory of workloads.
#[derive(Debug, Clone, Default)]
pub struct WorkloadEndpointSpec {
    pub orchestrator: String,
    pub workload: String,
    pub node: String,
    pub container_id: String,
    pub pod: String,
    pub endpoint: String,
    pub service_account_name: String,
    pub ip_networks: Vec<String>,
    /// `None` when absent: the default `kns.` / `ksa.` profiles.
    pub profiles: Option<Vec<String>>,
    pub interface_name: String,
    pub mac: String,
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default)]
pub struct EndpointPort {
    pub name: String,
    /// `None`: [`DEFAULT_PORT_PROTOCOL`].
    pub protocol: Option<Protocol>,
    pub port: u16,
    pub host_port: u16,
    pub host_ip: String,
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
    pub fn staged(self) -> bool {
        matches!(
            self,
            PolicyKind::StagedGlobalNetworkPolicy | PolicyKind::StagedNetworkPolicy
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
    pub metadata: Metadata,
    pub spec: PolicySpec,
    pub origin: Origin,
}

impl Policy {
    /// `spec.tier`, else [`DEFAULT_TIER`].
    pub fn tier(&self) -> &str {
        if self.spec.tier.is_empty() {
            DEFAULT_TIER
        } else {
            &self.spec.tier
        }
    }

    /// `spec.order` as a sort key (absent: last).
    pub fn order(&self) -> f64 {
        order_key(self.spec.order)
    }

    /// Whether the policy applies to ingress and to egress: `spec.types`, else as Calico
    /// defaults them: Ingress when there are no egress rules, Egress when there are egress
    /// rules and no ingress rules, both when there are both.
    pub fn types(&self) -> (bool, bool) {
        if self.spec.types.is_empty() {
            let egress = !self.spec.egress.is_empty();
            let ingress = !self.spec.ingress.is_empty();
            (!egress || ingress, egress)
        } else {
            (
                self.spec.types.iter().any(|t| t == "Ingress"),
                self.spec.types.iter().any(|t| t == "Egress"),
            )
        }
    }

    /// `spec.types` after Calico's defaulting ([`Policy::types`]); none for a staged
    /// `Delete` (whose types Calico clears).
    pub fn defaulted_types(&self) -> Vec<String> {
        if !self.spec.types.is_empty() {
            return self.spec.types.clone();
        }
        if self.is_staged_delete() {
            return Vec::new();
        }
        let (ingress, egress) = self.types();
        let mut out = Vec::new();
        if ingress {
            out.push("Ingress".to_string());
        }
        if egress {
            out.push("Egress".to_string());
        }
        out
    }

    /// A staged policy with `stagedAction: Delete`: never sent to Felix.
    pub fn is_staged_delete(&self) -> bool {
        self.kind.staged() && self.spec.staged_action == "Delete"
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
        Some(self.spec.service_account_name.as_str()).filter(|s| !s.is_empty())
    }

    /// `spec.orchestrator`, else [`DEFAULT_ORCHESTRATOR`].
    pub fn orchestrator(&self) -> &str {
        Some(self.spec.orchestrator.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_ORCHESTRATOR)
    }

    /// `spec.endpoint`, else [`DEFAULT_ENDPOINT`].
    pub fn endpoint(&self) -> &str {
        Some(self.spec.endpoint.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_ENDPOINT)
    }
}

/// One port of an `EndpointSlice` (`discovery.k8s.io/v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePort {
    /// `None`: no port (contributes nothing to a set with ports).
    pub port: Option<u16>,
    /// `TCP`, `UDP` or `SCTP`; `None` is TCP.
    pub protocol: Option<String>,
}

/// An `EndpointSlice`: the endpoints of the Kubernetes Service named by its
/// `kubernetes.io/service-name` label, what Felix's service matches are made of.
#[derive(Debug, Clone)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// `kubernetes.io/service-name`.
    pub service: String,
    /// Every endpoint's addresses.
    pub addresses: Vec<String>,
    pub ports: Vec<SlicePort>,
    pub origin: Origin,
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
    /// `EndpointSlice`s, for service matches.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Kubernetes `Service`s known (namespace, name), for messages.
    pub services: Vec<(String, String)>,
    /// Documents of other kinds (Deployments, ...), skipped: `file:line Kind name`.
    pub skipped: Vec<String>,
    /// Valid Calico that this project treats differently (its extensions, rule values its
    /// filter matches nothing with): `file:line: resource: field: what`.
    pub notes: Vec<Problem>,
    pub files: Vec<PathBuf>,
}

impl PolicySet {
    /// A tier's order as a sort key: its `order`; tier `default` [`DEFAULT_TIER_ORDER`]
    /// without a resource; else last.
    pub fn tier_order(&self, tier: &str) -> f64 {
        match self.tiers.get(tier) {
            Some(t) => order_key(t.spec.order),
            None if tier == DEFAULT_TIER => DEFAULT_TIER_ORDER,
            None => order_key(None),
        }
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

//! What a compiled program is: [`CompiledPolicy`], the endpoint's tiers and profiles flattened
//! into one ordered list of `Step`s over `CompiledRule`s whose clauses hold parsed selectors,
//! CIDRs, normalised paths and IP set indices, plus the lookups evaluation needs. Built by
//! `compile`, run by `evaluate`, named by `explain`.

use crate::address::Cidr;
use crate::identity::TrustDomains;
use crate::index::{first_segment, CandidateIndex, HttpKeys, RuleKeys, StepKeys};
use crate::ipset::IpSetLookup;
use crate::path_pattern;
use crate::selector::Selector;
use crate::snapshot::{Labels, PolicyId, PortRange, Protocol};
use std::collections::HashMap;
use std::sync::Arc;

/// Which policies a compiled program evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Program {
    /// What is enforced (spec section 4): staged kinds are left out of their tiers.
    #[default]
    Enforced,
    /// The rehearsal of promoting every staged policy: staged kinds are evaluated in their place
    /// in the tier as if enforced, and a staged policy replaces the enforced policy it stages
    /// (same name and namespace, kind without the `Staged` prefix) in the same tier. A tier
    /// holding only staged policies is no longer skipped: its default action applies.
    StagedAsEnforced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Deny,
    Pass,
    Log,
    /// Not an action Felix sends: `InconsistentStore` if the rule matches.
    Invalid,
}

/// A selector as a clause uses it: text that fails to parse makes the clause false. Shared by
/// every clause with the same text.
pub(crate) type ClauseSelector = Option<Arc<Selector>>;

#[derive(Debug, Clone)]
pub(crate) struct ServiceAccountClause {
    pub names: Vec<String>,
    pub selector: ClauseSelector,
}

#[derive(Debug, Clone)]
pub(crate) enum NamespaceClause {
    None,
    Selector(ClauseSelector),
    /// Namespaced policy whose rule names pods or service accounts: the peer's namespace must
    /// be the policy's.
    Pinned(String),
}

/// One side of a rule with references resolved to IP set indices. Lists are boxed slices, not
/// vectors: a rule holds eleven per side, mostly empty, and every VM holds every rule.
#[derive(Debug, Clone)]
pub(crate) struct SideClause {
    pub service_account: Option<ServiceAccountClause>,
    pub namespace: NamespaceClause,
    pub ip_sets: Box<[u32]>,
    pub not_ip_sets: Box<[u32]>,
    pub ip_port_sets: Box<[u32]>,
    pub ports: Box<[PortRange]>,
    pub named_port_sets: Box<[u32]>,
    pub not_ports: Box<[PortRange]>,
    pub not_named_port_sets: Box<[u32]>,
    /// In order; `None` is an entry that is not a valid CIDR (the clause fails at it).
    pub nets: Box<[Option<Cidr>]>,
    pub not_nets: Box<[Option<Cidr>]>,
}

#[derive(Debug, Clone)]
pub(crate) enum PathClause {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    /// Boxed, as the template: rare, and far larger than an exact path or prefix.
    Glob(Box<path_pattern::Glob>),
    Template(Box<matchit::Router<()>>),
    /// An unset entry or one whose value fails normalisation.
    Nothing,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpClause {
    /// Empty: any method (also when the rule listed `*`).
    pub methods: Vec<String>,
    pub paths: Vec<PathClause>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub action: Action,
    /// D3: the first referenced IP set the snapshot lacks; reaching the rule fails closed.
    pub missing_ip_set: Option<u32>,
    pub src: SideClause,
    pub dst: SideClause,
    pub http: Option<HttpClause>,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub rule_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultAction {
    Deny,
    Pass,
    /// D6: neither `Deny`, `Pass` (ignoring case) nor empty.
    Invalid,
}

/// One step of the flattened evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Entering a tier whose default action is invalid.
    InvalidTierDefault {
        tier: u32,
    },
    /// A referenced policy the snapshot lacks.
    MissingPolicy {
        tier: u32,
        policy: u32,
    },
    /// A policy rule; Pass continues at `tier_end`.
    PolicyRule {
        tier: u32,
        policy: u32,
        index: u32,
        rule: u32,
        tier_end: u32,
    },
    /// Every policy of the tier gave no match.
    TierEnd {
        tier: u32,
        default: DefaultAction,
    },
    /// Reaching the profiles with none listed.
    NoProfiles,
    ProfileRule {
        profile: u32,
        index: u32,
        rule: u32,
    },
    /// No profile rule decided.
    ProfilesEnd,
}

#[derive(Debug, Clone)]
pub(crate) struct TierInfo {
    pub name: String,
}

/// What a program's decisions are named by: its tiers, policies and profiles, by the indices
/// decisions carry. Shared, so that what names decisions later (the filter's per-policy
/// counters) keeps only this and not the whole program: the program of a replaced version is
/// freed before the next one is compiled.
#[derive(Debug, Default)]
pub struct ProgramNames {
    pub(crate) tiers: Vec<TierInfo>,
    pub(crate) policies: Vec<PolicyId>,
    /// Parallel to `policies`: the tier each was compiled in, `None` for a policy with no step
    /// (it never decides anything).
    pub(crate) policy_tiers: Vec<Option<u32>>,
    pub(crate) profiles: Vec<String>,
}

impl ProgramNames {
    /// Names of the tiers evaluated, by the index decisions use (`Origin`).
    pub fn tier_name(&self, tier: u32) -> Option<&str> {
        self.tiers.get(tier as usize).map(|t| t.name.as_str())
    }

    /// The policies evaluated, by the index decisions use (one entry per tier occurrence).
    pub fn policy_id(&self, policy: u32) -> Option<&PolicyId> {
        self.policies.get(policy as usize)
    }

    /// The tier a policy index was compiled in (`None` for a policy with no step, which never
    /// decides anything).
    pub fn policy_tier(&self, policy: u32) -> Option<u32> {
        self.policy_tiers.get(policy as usize).copied().flatten()
    }

    /// The profiles evaluated, by the index decisions use.
    pub fn profile_name(&self, profile: u32) -> Option<&str> {
        self.profiles.get(profile as usize).map(String::as_str)
    }

    pub fn tier_count(&self) -> usize {
        self.tiers.len()
    }

    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    pub fn profile_count(&self) -> usize {
        self.profiles.len()
    }
}

/// Everything needed to decide requests for one snapshot version.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) has_endpoint: bool,
    pub(crate) names: Arc<ProgramNames>,
    pub(crate) steps: Vec<Step>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) ip_set_ids: Vec<String>,
    /// Parallel to `ip_set_ids`; `None` where the snapshot lacks the set.
    pub(crate) ip_sets: Vec<Option<IpSetLookup>>,
    /// namespace -> service account -> labels.
    pub(crate) service_accounts: HashMap<String, HashMap<String, Labels>>,
    pub(crate) namespaces: HashMap<String, Labels>,
    pub(crate) index: CandidateIndex,
    /// D12: principals from other trust domains are invalid peer identities.
    pub(crate) trust_domains: TrustDomains,
}

impl CompiledPolicy {
    /// The id of an IP set a decision refers to.
    pub fn ip_set_id(&self, index: u32) -> Option<&str> {
        self.ip_set_ids.get(index as usize).map(String::as_str)
    }

    /// The names of this program's tiers, policies and profiles.
    pub fn names(&self) -> &Arc<ProgramNames> {
        &self.names
    }

    /// The `rule_id` of a compiled rule (by its index in `rules`), unless empty.
    pub(crate) fn rule_id(&self, step_rule: u32) -> Option<String> {
        self.rules
            .get(step_rule as usize)
            .map(|r| r.rule_id.clone())
            .filter(|id| !id.is_empty())
    }
}

impl Step {
    /// The `(tier, policy)` this step belongs to, if it is a policy's.
    pub(crate) fn policy(&self) -> Option<(u32, u32)> {
        match *self {
            Step::PolicyRule { tier, policy, .. } | Step::MissingPolicy { tier, policy } => {
                Some((tier, policy))
            }
            _ => None,
        }
    }

    /// What the candidate index knows of this step: every step that is not a plain rule, and
    /// every rule that fails closed when reached (missing IP set), is a candidate for every
    /// request.
    pub(crate) fn index_keys<'r>(&self, rules: &'r [CompiledRule]) -> StepKeys<'r> {
        let rule = match self {
            Step::PolicyRule { rule, .. } | Step::ProfileRule { rule, .. } => {
                rules.get(*rule as usize)
            }
            _ => None,
        };
        match rule.filter(|r| r.missing_ip_set.is_none()) {
            Some(rule) => StepKeys::Rule(rule.index_keys()),
            None => StepKeys::Always,
        }
    }
}

impl CompiledRule {
    /// The request facts that can rule this rule out: the source's service-account names, the
    /// destination port, the HTTP method and the first segment of the normalised path.
    fn index_keys(&self) -> RuleKeys<'_> {
        RuleKeys {
            service_accounts: self
                .src
                .service_account
                .as_ref()
                .map_or(&[], |sa| sa.names.as_slice()),
            // Named ports resolve through IP sets at evaluation: any port, as far as the index
            // knows.
            dst_ports: (!self.dst.ports.is_empty() && self.dst.named_port_sets.is_empty())
                .then_some(&*self.dst.ports),
            http: self.http.as_ref().map(|h| HttpKeys {
                methods: &h.methods,
                path_segments: path_segments(&h.paths),
            }),
        }
    }
}

/// The first segments a path clause list can match, or `None` when it can match any path (no
/// paths, a `/` prefix, a glob or a template). Entries that match nothing add none.
fn path_segments(paths: &[PathClause]) -> Option<Vec<&[u8]>> {
    if paths.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for p in paths {
        match p {
            PathClause::Exact(v) => out.push(first_segment(v)),
            PathClause::Prefix(v) if v.as_slice() == b"/" => return None,
            PathClause::Prefix(v) => out.push(first_segment(v)),
            PathClause::Glob(_) | PathClause::Template(_) => return None,
            PathClause::Nothing => {}
        }
    }
    Some(out)
}

//! Snapshot -> [`CompiledPolicy`]: the endpoint's tiers and profiles flattened into one ordered
//! program of steps, with selectors parsed, CIDRs parsed, paths normalised and IP sets turned into
//! lookups, once per snapshot version. Nothing here fails: whatever is wrong in a snapshot is
//! kept as a step or clause that fails closed when evaluation reaches it, as the spec requires.

use crate::address::{parse_cidr, Cidr};
use crate::decision::{Cause, Decision, Explanation, Origin, PolicyRef, Verdict};
use crate::identity::TrustDomains;
use crate::index::CandidateIndex;
use crate::ipset::IpSetLookup;
use crate::{path, path_pattern};
use crate::selector::Selector;
use crate::snapshot::{self, Labels, PathMatch, PolicyId, PortRange, Protocol, Snapshot};
use std::collections::HashMap;

/// Policy kinds that are stored but never enforced.
const STAGED_KINDS: [&str; 3] =
    ["StagedNetworkPolicy", "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy"];

/// Whether `kind` is a staged policy kind (never enforced; see [`Program::StagedAsEnforced`]).
pub fn is_staged_kind(kind: &str) -> bool {
    STAGED_KINDS.contains(&kind)
}

/// Whether the snapshot's endpoint lists any staged policy (so a staged program would differ).
pub fn has_staged_policies(snapshot: &Snapshot) -> bool {
    snapshot
        .endpoint
        .iter()
        .flat_map(|e| &e.tiers)
        .flat_map(|t| &t.ingress_policies)
        .any(|id| is_staged_kind(&id.kind))
}

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

impl Program {
    /// The ingress policies of `tier` this program evaluates, in order.
    fn policies(self, tier: &snapshot::Tier) -> Vec<&PolicyId> {
        match self {
            Program::Enforced => tier.ingress_policies.iter().filter(|id| !is_staged_kind(&id.kind)).collect(),
            Program::StagedAsEnforced => {
                let staged_for = |id: &PolicyId| {
                    tier.ingress_policies.iter().any(|s| {
                        is_staged_kind(&s.kind)
                            && s.name == id.name
                            && s.namespace == id.namespace
                            && s.kind.strip_prefix("Staged") == Some(id.kind.as_str())
                    })
                };
                tier.ingress_policies.iter().filter(|id| is_staged_kind(&id.kind) || !staged_for(id)).collect()
            }
        }
    }
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

impl Action {
    fn parse(text: &str) -> Action {
        match text.to_ascii_lowercase().as_str() {
            "allow" => Action::Allow,
            "deny" => Action::Deny,
            "pass" | "next-tier" => Action::Pass,
            "log" => Action::Log,
            _ => Action::Invalid,
        }
    }
}

/// A selector as a clause uses it: text that fails to parse makes the clause false.
pub(crate) type ClauseSelector = Option<Selector>;

fn clause_selector(text: &str) -> ClauseSelector {
    Selector::parse(text).ok()
}

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

/// One side of a rule with references resolved to IP set indices.
#[derive(Debug, Clone)]
pub(crate) struct SideClause {
    pub service_account: Option<ServiceAccountClause>,
    pub namespace: NamespaceClause,
    pub ip_sets: Vec<u32>,
    pub not_ip_sets: Vec<u32>,
    pub ip_port_sets: Vec<u32>,
    pub ports: Vec<PortRange>,
    pub named_port_sets: Vec<u32>,
    pub not_ports: Vec<PortRange>,
    pub not_named_port_sets: Vec<u32>,
    /// In order; `None` is an entry that is not a valid CIDR (the clause fails at it).
    pub nets: Vec<Option<Cidr>>,
    pub not_nets: Vec<Option<Cidr>>,
}

#[derive(Debug, Clone)]
pub(crate) enum PathClause {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Glob(path_pattern::Glob),
    Template(matchit::Router<()>),
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

impl DefaultAction {
    fn parse(text: &str) -> DefaultAction {
        if text == "Pass" {
            DefaultAction::Pass
        } else if text.is_empty() || text.eq_ignore_ascii_case("deny") || text.eq_ignore_ascii_case("pass") {
            DefaultAction::Deny
        } else {
            DefaultAction::Invalid
        }
    }
}

/// One step of the flattened evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Entering a tier whose default action is invalid.
    InvalidTierDefault { tier: u32 },
    /// A referenced policy the snapshot lacks.
    MissingPolicy { tier: u32, policy: u32 },
    /// A policy rule; Pass continues at `tier_end`.
    PolicyRule { tier: u32, policy: u32, index: u32, rule: u32, tier_end: u32 },
    /// Every policy of the tier gave no match.
    TierEnd { tier: u32, default: DefaultAction },
    /// Reaching the profiles with none listed.
    NoProfiles,
    ProfileRule { profile: u32, index: u32, rule: u32 },
    /// No profile rule decided.
    ProfilesEnd,
}

#[derive(Debug, Clone)]
pub(crate) struct TierInfo {
    pub name: String,
}

/// Everything needed to decide requests for one snapshot version.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) has_endpoint: bool,
    pub(crate) tiers: Vec<TierInfo>,
    pub(crate) policies: Vec<PolicyId>,
    pub(crate) profiles: Vec<String>,
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

/// Interns IP set ids so rules refer to sets by index.
struct IpSetTable<'s> {
    ids: Vec<String>,
    by_id: HashMap<&'s str, u32>,
    snapshot_sets: HashMap<&'s str, &'s snapshot::IpSet>,
}

impl<'s> IpSetTable<'s> {
    fn new(snapshot: &'s Snapshot) -> Self {
        IpSetTable {
            ids: Vec::new(),
            by_id: HashMap::new(),
            snapshot_sets: snapshot.ip_sets.iter().map(|s| (s.id.as_str(), s)).collect(),
        }
    }

    fn intern(&mut self, id: &'s str) -> u32 {
        if let Some(&i) = self.by_id.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.by_id.insert(id, i);
        i
    }

    fn intern_all(&mut self, ids: &'s [String]) -> Vec<u32> {
        ids.iter().map(|id| self.intern(id)).collect()
    }

    fn exists(&self, i: u32) -> bool {
        self.ids.get(i as usize).is_some_and(|id| self.snapshot_sets.contains_key(id.as_str()))
    }

    fn lookups(&self) -> Vec<Option<IpSetLookup>> {
        self.ids
            .iter()
            .map(|id| self.snapshot_sets.get(id.as_str()).map(|s| IpSetLookup::build(s.kind, &s.members)))
            .collect()
    }
}

fn compile_side<'s>(side: &'s snapshot::RuleSide, policy_namespace: &str, sets: &mut IpSetTable<'s>) -> SideClause {
    let service_account = side.service_account_match.as_ref().map(|m| ServiceAccountClause {
        names: m.names.clone(),
        selector: clause_selector(&m.selector),
    });
    let sa_named = side.service_account_match.as_ref().is_some_and(|m| !m.names.is_empty() || !m.selector.is_empty());
    let namespace = if !side.original_namespace_selector.is_empty() {
        NamespaceClause::Selector(clause_selector(&side.original_namespace_selector))
    } else if !policy_namespace.is_empty()
        && (!side.original_selector.is_empty() || !side.original_not_selector.is_empty() || sa_named)
    {
        NamespaceClause::Pinned(policy_namespace.to_string())
    } else {
        NamespaceClause::None
    };
    SideClause {
        service_account,
        namespace,
        ip_sets: sets.intern_all(&side.ip_set_ids),
        not_ip_sets: sets.intern_all(&side.not_ip_set_ids),
        ip_port_sets: sets.intern_all(&side.ip_port_set_ids),
        ports: side.ports.clone(),
        named_port_sets: sets.intern_all(&side.named_port_ip_set_ids),
        not_ports: side.not_ports.clone(),
        not_named_port_sets: sets.intern_all(&side.not_named_port_ip_set_ids),
        nets: side.nets.iter().map(|n| parse_cidr(n)).collect(),
        not_nets: side.not_nets.iter().map(|n| parse_cidr(n)).collect(),
    }
}

fn compile_http(m: &snapshot::HttpMatch) -> HttpClause {
    let any_method = m.methods.iter().any(|x| x == "*");
    HttpClause {
        methods: if any_method { Vec::new() } else { m.methods.clone() },
        paths: m
            .paths
            .iter()
            .map(|p| match p {
                PathMatch::Exact(v) => path::normalize(v).map_or(PathClause::Nothing, PathClause::Exact),
                PathMatch::Prefix(v) => path::normalize(v).map_or(PathClause::Nothing, PathClause::Prefix),
                PathMatch::Unset => PathClause::Nothing,
                PathMatch::Glob(g) => path_pattern::compile_glob(g).map_or(PathClause::Nothing, PathClause::Glob),
                PathMatch::Template(t) => {
                    path_pattern::compile_template(t).map_or(PathClause::Nothing, PathClause::Template)
                }
            })
            .collect(),
    }
}

fn compile_rule<'s>(rule: &'s snapshot::Rule, policy_namespace: &str, sets: &mut IpSetTable<'s>) -> CompiledRule {
    let src = compile_side(&rule.src, policy_namespace, sets);
    let dst = compile_side(&rule.dst, policy_namespace, sets);
    let missing_ip_set = [
        &src.ip_sets,
        &src.not_ip_sets,
        &dst.ip_sets,
        &dst.not_ip_sets,
        &dst.ip_port_sets,
        &src.named_port_sets,
        &src.not_named_port_sets,
        &dst.named_port_sets,
        &dst.not_named_port_sets,
    ]
    .into_iter()
    .flatten()
    .copied()
    .find(|&i| !sets.exists(i));
    CompiledRule {
        action: Action::parse(&rule.action),
        missing_ip_set,
        src,
        dst,
        http: rule.http_match.as_ref().map(compile_http),
        protocol: rule.protocol.clone(),
        not_protocol: rule.not_protocol.clone(),
        rule_id: rule.rule_id.clone(),
    }
}

impl CompiledPolicy {
    /// The enforced program.
    pub fn compile(snapshot: &Snapshot) -> CompiledPolicy {
        Self::compile_program(snapshot, Program::Enforced)
    }

    /// The enforced program, or the rehearsal of the staged policies ([`Program`]).
    pub fn compile_program(snapshot: &Snapshot, program: Program) -> CompiledPolicy {
        let mut sets = IpSetTable::new(snapshot);
        let mut tiers = Vec::new();
        let mut policies = Vec::new();
        let mut profiles = Vec::new();
        let mut steps = Vec::new();
        let mut rules = Vec::new();

        let policy_bodies: HashMap<&PolicyId, &snapshot::Policy> =
            snapshot.policies.iter().map(|p| (&p.id, p)).collect();
        let profile_bodies: HashMap<&str, &snapshot::Profile> =
            snapshot.profiles.iter().map(|p| (p.name.as_str(), p)).collect();

        if let Some(endpoint) = &snapshot.endpoint {
            for tier in &endpoint.tiers {
                let enforced = program.policies(tier);
                if enforced.is_empty() {
                    continue; // skipped without applying its default action
                }
                let t = tiers.len() as u32;
                tiers.push(TierInfo { name: tier.name.clone() });
                let default = DefaultAction::parse(&tier.default_action);
                if default == DefaultAction::Invalid {
                    steps.push(Step::InvalidTierDefault { tier: t });
                    continue; // nothing after the check on entering the tier is reached
                }
                let first_step = steps.len();
                for id in enforced {
                    let p = policies.len() as u32;
                    policies.push(id.clone());
                    let Some(body) = policy_bodies.get(id) else {
                        steps.push(Step::MissingPolicy { tier: t, policy: p });
                        continue;
                    };
                    for (index, rule) in body.inbound_rules.iter().enumerate() {
                        let r = rules.len() as u32;
                        rules.push(compile_rule(rule, &body.namespace, &mut sets));
                        steps.push(Step::PolicyRule { tier: t, policy: p, index: index as u32, rule: r, tier_end: 0 });
                    }
                }
                let tier_end = steps.len() as u32;
                for step in &mut steps[first_step..] {
                    if let Step::PolicyRule { tier_end: end, .. } = step {
                        *end = tier_end;
                    }
                }
                steps.push(Step::TierEnd { tier: t, default });
            }
            if endpoint.profile_ids.is_empty() {
                steps.push(Step::NoProfiles);
            }
            for name in &endpoint.profile_ids {
                let Some(body) = profile_bodies.get(name.as_str()) else {
                    continue; // a missing profile is skipped
                };
                let p = profiles.len() as u32;
                profiles.push(name.clone());
                for (index, rule) in body.inbound_rules.iter().enumerate() {
                    let r = rules.len() as u32;
                    rules.push(compile_rule(rule, "", &mut sets));
                    steps.push(Step::ProfileRule { profile: p, index: index as u32, rule: r });
                }
            }
            steps.push(Step::ProfilesEnd);
        }

        let mut service_accounts: HashMap<String, HashMap<String, Labels>> = HashMap::new();
        for sa in &snapshot.service_accounts {
            service_accounts.entry(sa.namespace.clone()).or_default().insert(sa.name.clone(), sa.labels.clone());
        }
        let namespaces = snapshot.namespaces.iter().map(|n| (n.name.clone(), n.labels.clone())).collect();
        let index = CandidateIndex::build(&steps, &rules);
        CompiledPolicy {
            has_endpoint: snapshot.endpoint.is_some(),
            tiers,
            policies,
            profiles,
            steps,
            rules,
            ip_sets: sets.lookups(),
            ip_set_ids: sets.ids,
            service_accounts,
            namespaces,
            index,
            trust_domains: TrustDomains::any(),
        }
    }

    /// This program with principals pinned to `trust_domains` (D12).
    pub fn with_trust_domains(mut self, trust_domains: TrustDomains) -> Self {
        self.trust_domains = trust_domains;
        self
    }

    /// The id of an IP set a decision refers to.
    pub fn ip_set_id(&self, index: u32) -> Option<&str> {
        self.ip_set_ids.get(index as usize).map(String::as_str)
    }

    /// Number of rules (policy and profile) compiled.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Names of the tiers evaluated, by the index decisions use ([`Origin`]).
    pub fn tier_name(&self, tier: u32) -> Option<&str> {
        self.tiers.get(tier as usize).map(|t| t.name.as_str())
    }

    /// The policies evaluated, by the index decisions use (one entry per tier occurrence).
    pub fn policy_id(&self, policy: u32) -> Option<&PolicyId> {
        self.policies.get(policy as usize)
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

    /// The tier a policy index was compiled in (`None` for a policy with no step, which never
    /// decides anything).
    pub fn policy_tier(&self, policy: u32) -> Option<u32> {
        self.steps.iter().find_map(|s| match *s {
            Step::PolicyRule { tier, policy: p, .. } | Step::MissingPolicy { tier, policy: p } if p == policy => Some(tier),
            _ => None,
        })
    }

    fn rule_id(&self, step_rule: u32) -> Option<String> {
        self.rules.get(step_rule as usize).map(|r| r.rule_id.clone()).filter(|id| !id.is_empty())
    }
}

/// Names for a decision's indices. `policy` is `None` before the first snapshot.
pub fn explain(policy: Option<&CompiledPolicy>, decision: &Decision) -> Explanation {
    let verdict = decision.verdict;
    let mut e = Explanation {
        decision: if verdict.is_allowed() { "allow" } else { "deny" },
        status: verdict.status(),
        reason: verdict.reason(),
        tier: None,
        policy: None,
        profile: None,
        rule: None,
        rule_id: None,
        detail: String::new(),
    };
    let tier_name = |t: u32| policy.and_then(|p| p.tiers.get(t as usize)).map(|t| t.name.clone());
    let policy_ref = |i: u32| {
        policy.and_then(|p| p.policies.get(i as usize)).map(|id| PolicyRef {
            name: id.name.clone(),
            namespace: id.namespace.clone(),
            kind: id.kind.clone(),
        })
    };
    match decision.origin {
        Origin::Precheck => {}
        Origin::PolicyRule { tier, policy: p, rule } => {
            e.tier = tier_name(tier);
            e.policy = policy_ref(p);
            e.rule = Some(rule);
        }
        Origin::MissingPolicy { tier, policy: p } => {
            e.tier = tier_name(tier);
            e.policy = policy_ref(p);
        }
        Origin::TierDefault { tier } => e.tier = tier_name(tier),
        Origin::ProfileRule { profile, rule } => {
            e.profile = policy.and_then(|p| p.profiles.get(profile as usize)).cloned();
            e.rule = Some(rule);
        }
        Origin::NoProfiles | Origin::ProfilesExhausted => {}
    }
    if let (Some(p), Some(step_rule)) = (policy, decision_rule(policy, decision)) {
        e.rule_id = p.rule_id(step_rule);
    }
    e.detail = match decision.cause {
        Cause::Precheck => match verdict {
            Verdict::NotInSync => "no policy has been synchronised from Felix yet".into(),
            Verdict::NoEndpoint => "the store has no workload endpoint".into(),
            Verdict::InvalidPeerIdentity => {
                "a principal is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, \
                 or its trust domain is not accepted"
                    .into()
            }
            Verdict::AttributesUnavailable => "the proxy could not read a request or connection attribute".into(),
            _ => String::new(),
        },
        Cause::RuleAction => match verdict {
            Verdict::Allow => "an allow rule matched".into(),
            _ if matches!(decision.origin, Origin::ProfileRule { .. }) => {
                "a deny or pass rule of a profile matched".into()
            }
            _ => "a deny rule matched".into(),
        },
        Cause::MissingIpSet(i) => format!(
            "the rule references IP set {:?}, which the store does not hold",
            policy.and_then(|p| p.ip_set_id(i)).unwrap_or("?")
        ),
        Cause::InvalidAction => "the matching rule has an action Felix does not send".into(),
        Cause::BadPath => "the request path cannot be normalised".into(),
        Cause::DefaultAction => "no policy in the tier matched; the tier's default action is Deny".into(),
        Cause::InvalidDefaultAction => "the tier's default action is neither Deny nor Pass".into(),
        Cause::MissingPolicy => "the tier references a policy the store does not hold".into(),
        Cause::NoProfiles => "no policy decided and the endpoint has no profiles".into(),
        Cause::ProfilesExhausted => "no policy or profile rule matched".into(),
    };
    e
}

/// The compiled rule a decision names, if any (to report its `rule_id`).
fn decision_rule(policy: Option<&CompiledPolicy>, decision: &Decision) -> Option<u32> {
    let p = policy?;
    p.steps.iter().find_map(|s| match (*s, decision.origin) {
        (Step::PolicyRule { tier, policy, index, rule, .. }, Origin::PolicyRule { tier: t, policy: q, rule: i })
            if tier == t && policy == q && index == i =>
        {
            Some(rule)
        }
        (Step::ProfileRule { profile, index, rule }, Origin::ProfileRule { profile: q, rule: i })
            if profile == q && index == i =>
        {
            Some(rule)
        }
        _ => None,
    })
}

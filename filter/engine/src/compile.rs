//! Snapshot -> [`CompiledPolicy`]: the endpoint's tiers and profiles flattened into one ordered
//! program of steps, with selectors parsed, CIDRs parsed, paths normalised and IP sets turned into
//! lookups, once per snapshot version. Nothing here fails: whatever is wrong in a snapshot is
//! kept as a step or clause that fails closed when evaluation reaches it, as the spec requires.
//! The program's types are in `program`.

use crate::address::parse_cidr;
use crate::identity::TrustDomains;
use crate::index::CandidateIndex;
use crate::ipset::IpSetLookup;
use crate::program::{
    Action, ClauseSelector, CompiledPolicy, CompiledRule, DefaultAction, HttpClause,
    NamespaceClause, PathClause, Program, ProgramNames, ServiceAccountClause, SideClause, Step,
    TierInfo,
};
use crate::selector::Selector;
use crate::snapshot::{self, Labels, PathMatch, PolicyId, Snapshot};
use crate::{path, path_pattern};
use std::collections::HashMap;
use std::sync::Arc;

/// Policy kinds that are stored but never enforced.
const STAGED_KINDS: [&str; 3] = [
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
];

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

impl Program {
    /// The ingress policies of `tier` this program evaluates, in order.
    fn policies(self, tier: &snapshot::Tier) -> Vec<&PolicyId> {
        match self {
            Program::Enforced => tier
                .ingress_policies
                .iter()
                .filter(|id| !is_staged_kind(&id.kind))
                .collect(),
            Program::StagedAsEnforced => {
                let staged_for = |id: &PolicyId| {
                    tier.ingress_policies.iter().any(|s| {
                        is_staged_kind(&s.kind)
                            && s.name == id.name
                            && s.namespace == id.namespace
                            && s.kind.strip_prefix("Staged") == Some(id.kind.as_str())
                    })
                };
                tier.ingress_policies
                    .iter()
                    .filter(|id| is_staged_kind(&id.kind) || !staged_for(id))
                    .collect()
            }
        }
    }
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

impl DefaultAction {
    fn parse(text: &str) -> DefaultAction {
        if text == "Pass" {
            DefaultAction::Pass
        } else if text.is_empty()
            || text.eq_ignore_ascii_case("deny")
            || text.eq_ignore_ascii_case("pass")
        {
            DefaultAction::Deny
        } else {
            DefaultAction::Invalid
        }
    }
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
            snapshot_sets: snapshot
                .ip_sets
                .iter()
                .map(|s| (s.id.as_str(), s))
                .collect(),
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

    fn intern_all(&mut self, ids: &'s [String]) -> Box<[u32]> {
        ids.iter().map(|id| self.intern(id)).collect()
    }

    fn exists(&self, i: u32) -> bool {
        self.ids
            .get(i as usize)
            .is_some_and(|id| self.snapshot_sets.contains_key(id.as_str()))
    }

    fn lookups(&self) -> Vec<Option<IpSetLookup>> {
        self.ids
            .iter()
            .map(|id| {
                self.snapshot_sets
                    .get(id.as_str())
                    .map(|s| IpSetLookup::build(s.kind, &s.members))
            })
            .collect()
    }
}

/// What rules share: IP sets by index, and parsed selectors by their text (a mesh's policies
/// repeat the same namespace and service-account selectors in many rules; each is parsed and
/// held once).
struct Interned<'s> {
    sets: IpSetTable<'s>,
    selectors: HashMap<&'s str, ClauseSelector>,
}

impl<'s> Interned<'s> {
    fn selector(&mut self, text: &'s str) -> ClauseSelector {
        self.selectors
            .entry(text)
            .or_insert_with(|| Selector::parse(text).ok().map(Arc::new))
            .clone()
    }
}

fn compile_side<'s>(
    side: &'s snapshot::RuleSide,
    policy_namespace: &str,
    shared: &mut Interned<'s>,
) -> SideClause {
    let service_account = side
        .service_account_match
        .as_ref()
        .map(|m| ServiceAccountClause {
            names: m.names.clone(),
            selector: shared.selector(&m.selector),
        });
    let sa_named = side
        .service_account_match
        .as_ref()
        .is_some_and(|m| !m.names.is_empty() || !m.selector.is_empty());
    let namespace = if !side.original_namespace_selector.is_empty() {
        NamespaceClause::Selector(shared.selector(&side.original_namespace_selector))
    } else if !policy_namespace.is_empty()
        && (!side.original_selector.is_empty()
            || !side.original_not_selector.is_empty()
            || sa_named)
    {
        NamespaceClause::Pinned(policy_namespace.to_string())
    } else {
        NamespaceClause::None
    };
    SideClause {
        service_account,
        namespace,
        ip_sets: shared.sets.intern_all(&side.ip_set_ids),
        not_ip_sets: shared.sets.intern_all(&side.not_ip_set_ids),
        ip_port_sets: shared.sets.intern_all(&side.ip_port_set_ids),
        ports: side.ports.clone().into_boxed_slice(),
        named_port_sets: shared.sets.intern_all(&side.named_port_ip_set_ids),
        not_ports: side.not_ports.clone().into_boxed_slice(),
        not_named_port_sets: shared.sets.intern_all(&side.not_named_port_ip_set_ids),
        nets: side.nets.iter().map(|n| parse_cidr(n)).collect(),
        not_nets: side.not_nets.iter().map(|n| parse_cidr(n)).collect(),
    }
}

fn compile_http(m: &snapshot::HttpMatch) -> HttpClause {
    let any_method = m.methods.iter().any(|x| x == "*");
    HttpClause {
        methods: if any_method {
            Vec::new()
        } else {
            m.methods.clone()
        },
        paths: m
            .paths
            .iter()
            .map(|p| match p {
                PathMatch::Exact(v) => {
                    path::normalize(v).map_or(PathClause::Nothing, PathClause::Exact)
                }
                PathMatch::Prefix(v) => {
                    path::normalize(v).map_or(PathClause::Nothing, PathClause::Prefix)
                }
                PathMatch::Unset => PathClause::Nothing,
                PathMatch::Glob(g) => path_pattern::compile_glob(g)
                    .map_or(PathClause::Nothing, |g| PathClause::Glob(Box::new(g))),
                PathMatch::Template(t) => path_pattern::compile_template(t)
                    .map_or(PathClause::Nothing, |t| PathClause::Template(Box::new(t))),
            })
            .collect(),
    }
}

fn compile_rule<'s>(
    rule: &'s snapshot::Rule,
    policy_namespace: &str,
    shared: &mut Interned<'s>,
) -> CompiledRule {
    let src = compile_side(&rule.src, policy_namespace, shared);
    let dst = compile_side(&rule.dst, policy_namespace, shared);
    let sets = &shared.sets;
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

/// The tier of each of `policies` policies: that of its first step.
fn policy_tiers(steps: &[Step], policies: usize) -> Vec<Option<u32>> {
    let mut tiers = vec![None; policies];
    for (tier, policy) in steps.iter().filter_map(Step::policy) {
        if let Some(slot @ None) = tiers.get_mut(policy as usize) {
            *slot = Some(tier);
        }
    }
    tiers
}

impl CompiledPolicy {
    /// The enforced program.
    pub fn compile(snapshot: &Snapshot) -> CompiledPolicy {
        Self::compile_program(snapshot, Program::Enforced)
    }

    /// The enforced program, or the rehearsal of the staged policies ([`Program`]).
    pub fn compile_program(snapshot: &Snapshot, program: Program) -> CompiledPolicy {
        let mut shared = Interned {
            sets: IpSetTable::new(snapshot),
            selectors: HashMap::new(),
        };
        let mut tiers = Vec::new();
        let mut policies = Vec::new();
        let mut profiles = Vec::new();
        let mut steps = Vec::new();
        let mut rules = Vec::new();

        let policy_bodies: HashMap<&PolicyId, &snapshot::Policy> =
            snapshot.policies.iter().map(|p| (&p.id, p)).collect();
        let profile_bodies: HashMap<&str, &snapshot::Profile> = snapshot
            .profiles
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();

        if let Some(endpoint) = &snapshot.endpoint {
            for tier in &endpoint.tiers {
                let enforced = program.policies(tier);
                if enforced.is_empty() {
                    continue; // skipped without applying its default action
                }
                let t = tiers.len() as u32;
                tiers.push(TierInfo {
                    name: tier.name.clone(),
                });
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
                        rules.push(compile_rule(rule, &body.namespace, &mut shared));
                        steps.push(Step::PolicyRule {
                            tier: t,
                            policy: p,
                            index: index as u32,
                            rule: r,
                            tier_end: 0,
                        });
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
                    rules.push(compile_rule(rule, "", &mut shared));
                    steps.push(Step::ProfileRule {
                        profile: p,
                        index: index as u32,
                        rule: r,
                    });
                }
            }
            steps.push(Step::ProfilesEnd);
        }

        let mut service_accounts: HashMap<String, HashMap<String, Labels>> = HashMap::new();
        for sa in &snapshot.service_accounts {
            service_accounts
                .entry(sa.namespace.clone())
                .or_default()
                .insert(sa.name.clone(), sa.labels.clone());
        }
        let namespaces = snapshot
            .namespaces
            .iter()
            .map(|n| (n.name.clone(), n.labels.clone()))
            .collect();
        let keys: Vec<_> = steps.iter().map(|s| s.index_keys(&rules)).collect();
        let index = CandidateIndex::build(&keys);
        CompiledPolicy {
            has_endpoint: snapshot.endpoint.is_some(),
            names: Arc::new(ProgramNames {
                policy_tiers: policy_tiers(&steps, policies.len()),
                tiers,
                policies,
                profiles,
            }),
            steps,
            rules,
            ip_sets: shared.sets.lookups(),
            ip_set_ids: shared.sets.ids,
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
}

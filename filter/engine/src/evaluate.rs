//! Deciding one request against a [`CompiledPolicy`] (spec sections 4 and 5).

use crate::decision::{Cause, Decision, Origin, Verdict};
use crate::index::Candidates;
use crate::ipset::IpSetLookup;
use crate::program::{
    Action, CompiledPolicy, CompiledRule, DefaultAction, HttpClause, NamespaceClause, PathClause,
    SideClause, Step,
};
use crate::protocol::l4_clause;
use crate::request::{Peer, Request};
use crate::snapshot::{Labels, PortRange};
use crate::{path, path_pattern};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

static NO_LABELS: Labels = Labels::new();

/// One side of the request, resolved against the store once per request.
struct PeerView<'a> {
    namespace: &'a str,
    service_account: &'a str,
    sa_labels: &'a Labels,
    ns_labels: &'a Labels,
    address: Option<IpAddr>,
    port: u16,
    protocol: u8,
}

impl<'a> PeerView<'a> {
    fn new(
        policy: &'a CompiledPolicy,
        namespace: &'a str,
        service_account: &'a str,
        peer: &Peer<'_>,
        protocol: u8,
    ) -> Self {
        let sa_labels = policy
            .service_accounts
            .get(namespace)
            .and_then(|m| m.get(service_account))
            .filter(|_| !service_account.is_empty())
            .unwrap_or(&NO_LABELS);
        let ns_labels = policy
            .namespaces
            .get(namespace)
            .filter(|_| !namespace.is_empty())
            .unwrap_or(&NO_LABELS);
        PeerView {
            namespace,
            service_account,
            sa_labels,
            ns_labels,
            address: peer.address,
            port: peer.port,
            protocol,
        }
    }
}

/// Why rule matching stopped evaluation altogether.
struct BadPath;

struct Evaluation<'a> {
    policy: &'a CompiledPolicy,
    request: &'a Request<'a>,
    src: PeerView<'a>,
    dst: PeerView<'a>,
    /// The normalised request path, or `Err` when it is not acceptable.
    path: OnceCell<Result<Cow<'a, [u8]>, ()>>,
}

impl CompiledPolicy {
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        match self.prepare(request) {
            Ok(eval) => {
                let (ns, sa) = (eval.src.namespace, eval.src.service_account);
                let identity = if sa.is_empty() {
                    None
                } else {
                    self.index
                        .identity_steps(ns, sa, |i| eval.identity_may_match(i))
                };
                let path = match &request.http {
                    Some(_) if self.index.indexes_paths() => eval.normalized_path().as_deref().ok(),
                    _ => None,
                };
                eval.run(self.index.candidates(
                    sa,
                    identity,
                    request.destination.port,
                    request.http.as_ref().map(|h| h.method),
                    path,
                ))
            }
            Err(decision) => decision,
        }
    }

    /// The same decision without the candidate index: every step is visited (tests compare).
    #[cfg(test)]
    pub(crate) fn evaluate_unindexed(&self, request: &Request<'_>) -> Decision {
        match self.prepare(request) {
            Ok(eval) => eval.run(self.index.every_step()),
            Err(decision) => decision,
        }
    }

    /// The checks before any policy (spec 4, steps 2 and 3), then the request resolved against
    /// the store.
    fn prepare<'a>(&'a self, request: &'a Request<'a>) -> Result<Evaluation<'a>, Decision> {
        if !self.has_endpoint {
            return Err(Decision::precheck(Verdict::NoEndpoint));
        }
        let (Ok((src_ns, src_sa)), Ok((dst_ns, dst_sa))) = (
            self.trust_domains.peer(request.source.principal),
            self.trust_domains.peer(request.destination.principal),
        ) else {
            return Err(Decision::precheck(Verdict::InvalidPeerIdentity));
        };
        Ok(Evaluation {
            policy: self,
            request,
            src: PeerView::new(self, src_ns, src_sa, &request.source, request.protocol),
            dst: PeerView::new(self, dst_ns, dst_sa, &request.destination, request.protocol),
            path: OnceCell::new(),
        })
    }
}

fn decided(verdict: Verdict, origin: Origin, cause: Cause) -> Decision {
    Decision {
        verdict,
        origin,
        cause,
    }
}

impl<'a> Evaluation<'a> {
    fn run(&self, candidates: Candidates<'_>) -> Decision {
        let steps = &self.policy.steps;
        let mut pos = 0;
        while let Some(i) = candidates.next_from(pos) {
            pos = i + 1;
            let Some(step) = steps.get(i) else { break };
            match *step {
                Step::InvalidTierDefault { tier } => {
                    return decided(
                        Verdict::InconsistentStore,
                        Origin::TierDefault { tier },
                        Cause::InvalidDefaultAction,
                    )
                }
                Step::MissingPolicy { tier, policy } => {
                    return decided(
                        Verdict::InconsistentStore,
                        Origin::MissingPolicy { tier, policy },
                        Cause::MissingPolicy,
                    )
                }
                Step::PolicyRule {
                    tier,
                    policy,
                    index,
                    rule,
                    tier_end,
                } => {
                    let origin = Origin::PolicyRule {
                        tier,
                        policy,
                        rule: index,
                    };
                    match self.rule_outcome(rule) {
                        Outcome::NoMatch | Outcome::Action(Action::Log) => {}
                        Outcome::Action(Action::Pass) => pos = tier_end as usize + 1,
                        Outcome::Action(Action::Allow) => {
                            return decided(Verdict::Allow, origin, Cause::RuleAction)
                        }
                        Outcome::Action(Action::Deny) => {
                            return decided(Verdict::PolicyDenied, origin, Cause::RuleAction)
                        }
                        Outcome::Action(Action::Invalid) => {
                            return decided(
                                Verdict::InconsistentStore,
                                origin,
                                Cause::InvalidAction,
                            )
                        }
                        Outcome::Stop(verdict, cause) => return decided(verdict, origin, cause),
                    }
                }
                Step::TierEnd { tier, default } => {
                    if default != DefaultAction::Pass {
                        return decided(
                            Verdict::PolicyDenied,
                            Origin::TierDefault { tier },
                            Cause::DefaultAction,
                        );
                    }
                }
                Step::NoProfiles => {
                    return decided(Verdict::PolicyDenied, Origin::NoProfiles, Cause::NoProfiles)
                }
                Step::ProfileRule {
                    profile,
                    index,
                    rule,
                } => {
                    let origin = Origin::ProfileRule {
                        profile,
                        rule: index,
                    };
                    match self.rule_outcome(rule) {
                        Outcome::NoMatch | Outcome::Action(Action::Log) => {}
                        Outcome::Action(Action::Allow) => {
                            return decided(Verdict::Allow, origin, Cause::RuleAction)
                        }
                        Outcome::Action(Action::Deny | Action::Pass) => {
                            return decided(Verdict::PolicyDenied, origin, Cause::RuleAction)
                        }
                        Outcome::Action(Action::Invalid) => {
                            return decided(
                                Verdict::InconsistentStore,
                                origin,
                                Cause::InvalidAction,
                            )
                        }
                        Outcome::Stop(verdict, cause) => return decided(verdict, origin, cause),
                    }
                }
                Step::ProfilesEnd => break,
            }
        }
        decided(
            Verdict::PolicyDenied,
            Origin::ProfilesExhausted,
            Cause::ProfilesExhausted,
        )
    }

    fn rule_outcome(&self, index: u32) -> Outcome {
        let Some(rule) = self.policy.rules.get(index as usize) else {
            return Outcome::Stop(Verdict::InconsistentStore, Cause::InvalidAction);
        };
        if let Some(set) = rule.missing_ip_set {
            return Outcome::Stop(Verdict::InconsistentStore, Cause::MissingIpSet(set));
        }
        match self.rule_matches(rule) {
            Ok(true) => Outcome::Action(rule.action),
            Ok(false) => Outcome::NoMatch,
            Err(BadPath) => Outcome::Stop(Verdict::BadRequestPath, Cause::BadPath),
        }
    }

    /// Source, destination, HTTP, L4 protocol, in that order (only the HTTP clause can stop).
    fn rule_matches(&self, rule: &CompiledRule) -> Result<bool, BadPath> {
        if !self.side_matches(&rule.src, &self.src) || !self.side_matches(&rule.dst, &self.dst) {
            return Ok(false);
        }
        if let Some(http) = &rule.http {
            if !self.http_matches(http)? {
                return Ok(false);
            }
        }
        Ok(l4_clause(
            rule.protocol.as_ref(),
            rule.not_protocol.as_ref(),
            i32::from(self.request.protocol),
        ))
    }

    fn set(&self, i: u32) -> Option<&IpSetLookup> {
        self.policy.ip_sets.get(i as usize).and_then(Option::as_ref)
    }

    fn ip_in(&self, set: u32, peer: &PeerView<'_>) -> bool {
        match (self.set(set), peer.address) {
            (Some(s), Some(ip)) => s.contains_ip(ip),
            _ => false,
        }
    }

    fn port_key_in(&self, set: u32, peer: &PeerView<'_>) -> bool {
        match (self.set(set), peer.address) {
            (Some(s), Some(ip)) => s.contains_ip_port(ip, peer.protocol, peer.port),
            _ => false,
        }
    }

    /// Whether step `i` could match the source identity: its source service-account and
    /// namespace clauses (steps other than rules always could).
    fn identity_may_match(&self, i: usize) -> bool {
        let rule = match self.policy.steps.get(i) {
            Some(Step::PolicyRule { rule, .. } | Step::ProfileRule { rule, .. }) => {
                self.policy.rules.get(*rule as usize)
            }
            _ => None,
        };
        match rule {
            Some(r) if r.missing_ip_set.is_none() => self.identity_matches(&r.src, &self.src),
            _ => true,
        }
    }

    /// The service-account and namespace clauses of one side.
    fn identity_matches(&self, side: &SideClause, peer: &PeerView<'_>) -> bool {
        if let Some(sa) = &side.service_account {
            if !peer.service_account.is_empty() {
                if !sa.names.is_empty() && !sa.names.iter().any(|n| n == peer.service_account) {
                    return false;
                }
                if !sa
                    .selector
                    .as_ref()
                    .is_some_and(|s| s.matches(peer.sa_labels))
                {
                    return false;
                }
            }
        }
        if !peer.namespace.is_empty() {
            let ok = match &side.namespace {
                NamespaceClause::None => true,
                NamespaceClause::Selector(sel) => {
                    sel.as_ref().is_some_and(|s| s.matches(peer.ns_labels))
                }
                NamespaceClause::Pinned(ns) => ns == peer.namespace,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    fn side_matches(&self, side: &SideClause, peer: &PeerView<'_>) -> bool {
        if !self.identity_matches(side, peer) {
            return false;
        }
        if !side.ip_sets.iter().all(|&s| self.ip_in(s, peer))
            || side.not_ip_sets.iter().any(|&s| self.ip_in(s, peer))
        {
            return false;
        }
        if !side.ip_port_sets.iter().all(|&s| self.port_key_in(s, peer)) {
            return false;
        }
        let in_range = |ranges: &[PortRange]| {
            let port = i32::from(peer.port);
            ranges.iter().any(|r| r.first <= port && port <= r.last)
        };
        if (!side.ports.is_empty() || !side.named_port_sets.is_empty())
            && !in_range(&side.ports)
            && !side
                .named_port_sets
                .iter()
                .any(|&s| self.port_key_in(s, peer))
        {
            return false;
        }
        if in_range(&side.not_ports)
            || side
                .not_named_port_sets
                .iter()
                .any(|&s| self.port_key_in(s, peer))
        {
            return false;
        }
        if !side.nets.is_empty() && !nets_match(&side.nets, peer.address) {
            return false;
        }
        not_nets_match(&side.not_nets, peer.address)
    }

    /// The request path, normalised once (`Err`: not acceptable, or no HTTP).
    fn normalized_path(&self) -> &Result<Cow<'a, [u8]>, ()> {
        self.path.get_or_init(|| match &self.request.http {
            // The HTTP clause also wants a request path that starts with `/` (spec section 5).
            Some(req) if req.path.starts_with('/') => path::normalize_request(req.path)
                .map(|n| n.matching)
                .map_err(|_| ()),
            _ => Err(()),
        })
    }

    fn http_matches(&self, http: &HttpClause) -> Result<bool, BadPath> {
        let Some(req) = &self.request.http else {
            return Ok(false); // D4
        };
        if !http.methods.is_empty() && !http.methods.iter().any(|m| m == req.method) {
            return Ok(false);
        }
        if http.paths.is_empty() {
            return Ok(true);
        }
        let Ok(p) = self.normalized_path() else {
            return Err(BadPath);
        };
        Ok(http.paths.iter().any(|entry| match entry {
            PathClause::Exact(v) => v.as_slice() == &**p,
            PathClause::Prefix(prefix) => path::prefix_matches(prefix, p),
            PathClause::Glob(g) => path_pattern::glob_matches(g, p),
            PathClause::Template(t) => path_pattern::template_matches(t, p),
            PathClause::Nothing => false,
        }))
    }
}

enum Outcome {
    NoMatch,
    Action(Action),
    Stop(Verdict, Cause),
}

fn nets_match(nets: &[Option<crate::address::Cidr>], address: Option<IpAddr>) -> bool {
    let Some(ip) = address else { return false };
    for net in nets {
        match net {
            None => return false,
            Some(c) if c.contains(ip) => return true,
            Some(_) => {}
        }
    }
    false
}

fn not_nets_match(nets: &[Option<crate::address::Cidr>], address: Option<IpAddr>) -> bool {
    for net in nets {
        match (net, address) {
            (None, _) => return false,
            (Some(c), Some(ip)) if c.contains(ip) => return false,
            _ => {}
        }
    }
    true
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;

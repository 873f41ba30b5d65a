//! Decisions with names, and every way a decision is rendered as text: [`explain`] turns a
//! [`Decision`]'s indices into the tier, policy, profile and rule they name, with a sentence for
//! a person ([`Explanation`], what `control check` prints and the filter logs);
//! [`StagedExplanation`] is the staged rehearsal's decision explained, with whether it differs;
//! [`Explanation::to_text`] and [`Explanation::origin_fields`] render one line, and
//! [`QualifiedName`] is how a policy is named in text (`namespace/name`, or `name`).

use crate::decision::{Cause, Decision, Origin, Verdict};
use crate::program::{CompiledPolicy, Step};
use crate::snapshot::PolicyId;
use serde::Serialize;
use std::fmt;

/// A decision with names instead of indices: what `control check` prints and the filter logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `allow` or `deny`.
    pub decision: &'static str,
    pub status: Option<u16>,
    /// The verdict class (`allow`, `policy_denied`, `not_in_sync`, ...).
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Index of the rule within the policy's or profile's inbound rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// A sentence for a person.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRef {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub kind: String,
}

/// The staged rehearsal's decision explained (against the staged program), and whether its
/// verdict differs from the enforced one: `"staged"` in `control check --staged` and in the
/// filter's decision log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagedExplanation {
    #[serde(flatten)]
    pub decision: Explanation,
    pub differs: bool,
}

/// A policy's name as text shows it: `namespace/name`, or `name` for a global policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualifiedName<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> QualifiedName<'a> {
    pub fn new(namespace: &'a str, name: &'a str) -> Self {
        QualifiedName { namespace, name }
    }
}

impl fmt::Display for QualifiedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

impl PolicyId {
    /// `namespace/name`, or `name` for a global policy.
    pub fn qualified_name(&self) -> QualifiedName<'_> {
        QualifiedName::new(&self.namespace, &self.name)
    }
}

impl PolicyRef {
    /// `namespace/name`, or `name` for a global policy.
    pub fn qualified_name(&self) -> QualifiedName<'_> {
        QualifiedName::new(&self.namespace, &self.name)
    }
}

/// Where a decision came from, as ` key=value` fields (each with a leading space, absent ones
/// left out): ` tier=t policy=ns/p kind=K profile=x rule=0 rule_id=r`.
#[derive(Debug, Clone, Copy)]
pub struct OriginFields<'a>(&'a Explanation);

impl fmt::Display for OriginFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if let Some(tier) = &e.tier {
            write!(f, " tier={tier}")?;
        }
        if let Some(p) = &e.policy {
            write!(f, " policy={}", p.qualified_name())?;
            if !p.kind.is_empty() {
                write!(f, " kind={}", p.kind)?;
            }
        }
        if let Some(profile) = &e.profile {
            write!(f, " profile={profile}")?;
        }
        if let Some(rule) = e.rule {
            write!(f, " rule={rule}")?;
        }
        if let Some(id) = &e.rule_id {
            write!(f, " rule_id={id}")?;
        }
        Ok(())
    }
}

impl Explanation {
    /// One line for a person (`control check --format text`).
    pub fn to_text(&self) -> String {
        let status = self
            .status
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        format!(
            "{} (status {}, {}){}: {}",
            self.decision.to_uppercase(),
            status,
            self.reason,
            self.origin_fields(),
            self.detail
        )
    }

    /// Where the decision came from, as ` key=value` fields ([`OriginFields`]): the part of
    /// [`to_text`](Self::to_text) other one-line renderings (the filter's debug line) share.
    pub fn origin_fields(&self) -> OriginFields<'_> {
        OriginFields(self)
    }
}

/// The staged decision explained against the staged program, and whether it differs from the
/// enforced decision. `policy` is the program staged decisions refer to.
pub fn explain_staged(
    policy: Option<&CompiledPolicy>,
    staged: &Decision,
    enforced: &Decision,
) -> StagedExplanation {
    StagedExplanation {
        decision: explain(policy, staged),
        differs: staged.verdict != enforced.verdict,
    }
}

/// Names for a decision's indices. `policy` is `None` before the first snapshot.
pub fn explain(policy: Option<&CompiledPolicy>, decision: &Decision) -> Explanation {
    let verdict = decision.verdict;
    let mut e = Explanation {
        decision: if verdict.is_allowed() {
            "allow"
        } else {
            "deny"
        },
        status: verdict.status(),
        reason: verdict.reason(),
        tier: None,
        policy: None,
        profile: None,
        rule: None,
        rule_id: None,
        detail: String::new(),
    };
    let tier_name = |t: u32| {
        policy
            .and_then(|p| p.names.tiers.get(t as usize))
            .map(|t| t.name.clone())
    };
    let policy_ref = |i: u32| {
        policy
            .and_then(|p| p.names.policies.get(i as usize))
            .map(|id| PolicyRef {
                name: id.name.clone(),
                namespace: id.namespace.clone(),
                kind: id.kind.clone(),
            })
    };
    match decision.origin {
        Origin::Precheck => {}
        Origin::PolicyRule {
            tier,
            policy: p,
            rule,
        } => {
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
            e.profile = policy
                .and_then(|p| p.names.profiles.get(profile as usize))
                .cloned();
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
        (
            Step::PolicyRule {
                tier,
                policy,
                index,
                rule,
                ..
            },
            Origin::PolicyRule {
                tier: t,
                policy: q,
                rule: i,
            },
        ) if tier == t && policy == q && index == i => Some(rule),
        (
            Step::ProfileRule {
                profile,
                index,
                rule,
            },
            Origin::ProfileRule {
                profile: q,
                rule: i,
            },
        ) if profile == q && index == i => Some(rule),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rendering_for_names_and_lines() {
        let policy = |namespace: &str| PolicyRef {
            name: "p".into(),
            namespace: namespace.into(),
            kind: "NetworkPolicy".into(),
        };
        assert_eq!(policy("").qualified_name().to_string(), "p");
        assert_eq!(policy("prod").qualified_name().to_string(), "prod/p");
        let id = PolicyId {
            name: "g".into(),
            namespace: String::new(),
            kind: "GlobalNetworkPolicy".into(),
        };
        assert_eq!(id.qualified_name().to_string(), "g");
        let e = Explanation {
            decision: "deny",
            status: Some(403),
            reason: "policy_denied",
            tier: Some("t".into()),
            policy: Some(policy("prod")),
            profile: None,
            rule: Some(2),
            rule_id: Some("prod/p:ingress:2".into()),
            detail: "a deny rule matched".into(),
        };
        assert_eq!(
            e.origin_fields().to_string(),
            " tier=t policy=prod/p kind=NetworkPolicy rule=2 rule_id=prod/p:ingress:2"
        );
        assert_eq!(
            e.to_text(),
            "DENY (status 403, policy_denied) tier=t policy=prod/p kind=NetworkPolicy rule=2 rule_id=prod/p:ingress:2: a deny rule matched"
        );
    }
}

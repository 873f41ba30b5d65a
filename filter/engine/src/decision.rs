//! What a decision is: the verdict, the response the filter sends, and where it came from (as
//! indices into the program; `explain` gives them names).

use serde::Serialize;

/// The engine's verdict (spec section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    PolicyDenied,
    InvalidPeerIdentity,
    NotInSync,
    NoEndpoint,
    InconsistentStore,
    BadRequestPath,
    /// D11: the filter could not read an attribute the decision needs (a host error, not
    /// "absent"). Never produced by the engine itself.
    AttributesUnavailable,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Allow,
        Verdict::PolicyDenied,
        Verdict::InvalidPeerIdentity,
        Verdict::NotInSync,
        Verdict::NoEndpoint,
        Verdict::InconsistentStore,
        Verdict::BadRequestPath,
        Verdict::AttributesUnavailable,
    ];

    pub fn is_allowed(self) -> bool {
        self == Verdict::Allow
    }

    /// HTTP status of the local reply (D9); `None` when the request continues.
    pub fn status(self) -> Option<u16> {
        match self {
            Verdict::Allow => None,
            Verdict::PolicyDenied | Verdict::InvalidPeerIdentity => Some(403),
            Verdict::NotInSync
            | Verdict::NoEndpoint
            | Verdict::InconsistentStore
            | Verdict::AttributesUnavailable => Some(503),
            Verdict::BadRequestPath => Some(400),
        }
    }

    /// Body of the local reply; never names policies, rules, IP sets or labels.
    pub fn body(self) -> &'static str {
        match self {
            Verdict::Allow => "",
            Verdict::PolicyDenied => "denied by policy",
            Verdict::InvalidPeerIdentity => "invalid peer identity",
            Verdict::NotInSync => "policy not synchronised",
            Verdict::NoEndpoint => "no workload endpoint",
            Verdict::InconsistentStore => "inconsistent policy store",
            Verdict::BadRequestPath => "invalid request path",
            Verdict::AttributesUnavailable => "request attributes unavailable",
        }
    }

    /// Stable snake_case name, used as the `reason` class in output, logs and stats.
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::PolicyDenied => "policy_denied",
            Verdict::InvalidPeerIdentity => "invalid_peer_identity",
            Verdict::NotInSync => "not_in_sync",
            Verdict::NoEndpoint => "no_endpoint",
            Verdict::InconsistentStore => "inconsistent_store",
            Verdict::BadRequestPath => "bad_request_path",
            Verdict::AttributesUnavailable => "attributes_unavailable",
        }
    }
}

/// Where in the compiled policy a decision was made. Indices refer to the
/// [`CompiledPolicy`](crate::program::CompiledPolicy) that made it, so deciding never allocates;
/// `explain` (`Engine::explain`) turns them into names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Decided before any policy was consulted (not in sync, no endpoint, identity).
    Precheck,
    /// A rule of an enforced policy in a tier.
    PolicyRule { tier: u32, policy: u32, rule: u32 },
    /// A referenced policy that the store does not hold.
    MissingPolicy { tier: u32, policy: u32 },
    /// The tier's default action (every policy of the tier gave no match), or an invalid one.
    TierDefault { tier: u32 },
    /// A rule of a profile.
    ProfileRule { profile: u32, rule: u32 },
    /// The endpoint lists no profiles.
    NoProfiles,
    /// No profile rule matched.
    ProfilesExhausted,
}

/// Why the origin produced the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Not in sync, no endpoint, or an invalid principal (the verdict says which).
    Precheck,
    /// The matched rule's action (Allow, Deny; Pass in a profile denies).
    RuleAction,
    /// The rule referenced an IP set the store does not hold (D3); the index is into
    /// [`CompiledPolicy::ip_set_id`](crate::program::CompiledPolicy::ip_set_id).
    MissingIpSet(u32),
    /// The matched rule's action is not one Felix sends.
    InvalidAction,
    /// The request path could not be normalised.
    BadPath,
    /// The tier's default action applied.
    DefaultAction,
    /// The tier's default action is not `Deny`, `Pass` or empty (D6).
    InvalidDefaultAction,
    MissingPolicy,
    NoProfiles,
    ProfilesExhausted,
}

/// The result of evaluating one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub origin: Origin,
    pub cause: Cause,
}

impl Decision {
    pub fn precheck(verdict: Verdict) -> Self {
        Decision {
            verdict,
            origin: Origin::Precheck,
            cause: Cause::Precheck,
        }
    }
}

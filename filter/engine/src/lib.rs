//! Calico application layer policy, evaluated without host calls.
//!
//! * [`snapshot`]: the versioned data control hands to the filter.
//! * [`envelope`]: the snapshot's binary framing (magic, schema, version).
//! * [`selector`]: Calico's label selector language.
//! * [`path`], [`address`], [`identity`], [`ipset`], [`protocol`]: request-side primitives.
//! * [`compile`]: snapshot -> [`Policy`](compile::CompiledPolicy) with selectors parsed and
//!   lookups built once per version.
//! * [`evaluate`]: request -> [`Decision`](decision::Decision).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod snapshot;
pub mod path;
pub mod address;
pub mod ipset;
pub mod protocol;
pub mod identity;
pub mod selector;
pub mod envelope;
pub mod decision;
pub mod request;
pub mod compile;
mod evaluate;
mod index;
#[doc(hidden)]
pub mod synthetic;

pub use compile::CompiledPolicy;
pub use decision::{Decision, Explanation, Verdict};
pub use request::{Http, Peer, Request, RequestSpec};
pub use snapshot::Snapshot;

/// What a filter VM or `control check` holds: nothing before the first in-sync snapshot,
/// then one compiled version at a time.
#[derive(Debug, Default)]
pub struct Engine {
    current: Option<(u64, CompiledPolicy)>,
}

impl Engine {
    /// No snapshot yet: every request is `NotInSync`.
    pub fn not_in_sync() -> Self {
        Engine { current: None }
    }

    pub fn from_snapshot(version: u64, snapshot: &Snapshot) -> Self {
        Engine { current: Some((version, CompiledPolicy::compile(snapshot))) }
    }

    pub fn version(&self) -> Option<u64> {
        self.current.as_ref().map(|(v, _)| *v)
    }

    pub fn policy(&self) -> Option<&CompiledPolicy> {
        self.current.as_ref().map(|(_, p)| p)
    }

    pub fn decide(&self, request: &Request<'_>) -> Decision {
        match &self.current {
            Some((_, policy)) => policy.evaluate(request),
            None => Decision::precheck(Verdict::NotInSync),
        }
    }

    pub fn explain(&self, decision: &Decision) -> Explanation {
        compile::explain(self.policy(), decision)
    }
}

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
pub mod path_pattern;
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

pub use compile::{CompiledPolicy, Program};
pub use decision::{Decision, Explanation, Verdict};
pub use request::{Http, Peer, Request, RequestSpec};
pub use snapshot::Snapshot;

/// What a filter VM or `control check` holds: nothing before the first in-sync snapshot,
/// then one compiled version at a time; optionally also the staged rehearsal of that version.
#[derive(Debug, Default)]
pub struct Engine {
    current: Option<(u64, CompiledPolicy)>,
    /// Whether the staged rehearsal was asked for.
    staged_requested: bool,
    /// The [`Program::StagedAsEnforced`] program, compiled only when asked for and when the
    /// snapshot lists staged policies (otherwise it would be the enforced program again).
    staged: Option<CompiledPolicy>,
}

impl Engine {
    /// No snapshot yet: every request is `NotInSync`.
    pub fn not_in_sync() -> Self {
        Engine::default()
    }

    pub fn from_snapshot(version: u64, snapshot: &Snapshot) -> Self {
        Engine { current: Some((version, CompiledPolicy::compile(snapshot))), ..Engine::default() }
    }

    /// The enforced program plus, when `staged`, the staged rehearsal ([`Engine::decide_staged`]).
    pub fn from_snapshot_with(version: u64, snapshot: &Snapshot, staged: bool) -> Self {
        let mut engine = Self::from_snapshot(version, snapshot);
        engine.staged_requested = staged;
        if staged && compile::has_staged_policies(snapshot) {
            engine.staged = Some(CompiledPolicy::compile_program(snapshot, Program::StagedAsEnforced));
        }
        engine
    }

    pub fn version(&self) -> Option<u64> {
        self.current.as_ref().map(|(v, _)| *v)
    }

    pub fn policy(&self) -> Option<&CompiledPolicy> {
        self.current.as_ref().map(|(_, p)| p)
    }

    /// Whether this engine was built with the staged rehearsal.
    pub fn staged_requested(&self) -> bool {
        self.staged_requested
    }

    /// The program staged decisions refer to: the staged one, else the enforced one.
    pub fn staged_policy(&self) -> Option<&CompiledPolicy> {
        self.staged.as_ref().or(self.policy())
    }

    pub fn decide(&self, request: &Request<'_>) -> Decision {
        match &self.current {
            Some((_, policy)) => policy.evaluate(request),
            None => Decision::precheck(Verdict::NotInSync),
        }
    }

    /// What the request would get if every staged policy were enforced, given the enforced
    /// decision: `None` unless built with the rehearsal; the enforced decision itself when the
    /// snapshot has no staged policy (no second evaluation).
    pub fn decide_staged(&self, request: &Request<'_>, enforced: &Decision) -> Option<Decision> {
        if !self.staged_requested {
            return None;
        }
        Some(match &self.staged {
            Some(staged) => staged.evaluate(request),
            None => *enforced,
        })
    }

    pub fn explain(&self, decision: &Decision) -> Explanation {
        compile::explain(self.policy(), decision)
    }

    /// Names for a decision of [`Engine::decide_staged`].
    pub fn explain_staged(&self, decision: &Decision) -> Explanation {
        compile::explain(self.staged_policy(), decision)
    }
}

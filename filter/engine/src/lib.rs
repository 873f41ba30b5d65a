//! Calico application layer policy, evaluated without host calls.
//!
//! * [`snapshot`]: the versioned data control hands to the filter.
//! * [`envelope`]: the snapshot's binary framing (magic, schema, version).
//! * [`selector`]: Calico's label selector language.
//! * [`path`], [`address`], [`identity`], [`ipset`], [`protocol`]: request-side primitives.
//! * [`program`]: what a compiled program is ([`CompiledPolicy`]: steps, rules, clauses and
//!   lookups).
//! * [`compile`]: snapshot -> [`CompiledPolicy`] with selectors parsed and lookups built once per
//!   version.
//! * `evaluate`: request -> [`Decision`] (with `index`, the candidate filter).
//! * [`explain`]: decision -> [`Explanation`] (names, a sentence) and every text rendering of a
//!   decision.

pub mod address;
pub mod compile;
pub mod decision;
pub mod envelope;
mod evaluate;
pub mod explain;
mod glob;
pub mod identity;
mod index;
pub mod ipset;
pub mod path;
pub mod path_pattern;
pub mod program;
pub mod protocol;
pub mod relay_contract;
pub mod request;
pub mod selector;
pub mod snapshot;
/// Generated snapshots for benchmarks and load tests (feature `test-util`).
#[cfg(feature = "test-util")]
pub mod synthetic;
#[doc(hidden)]
pub mod testdata;

pub use decision::{Decision, Verdict};
pub use explain::{Explanation, StagedExplanation};
pub use identity::TrustDomains;
pub use program::{CompiledPolicy, Program, ProgramNames};
pub use request::{Http, Peer, Request, RequestSpec};
pub use snapshot::Snapshot;

/// How an [`Engine`] is built beyond its snapshot: settings of the filter or `control check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Also compile the staged rehearsal ([`Engine::decide_staged`]).
    pub staged: bool,
    /// D12: accepted trust domains (empty: any).
    pub trust_domains: TrustDomains,
}

/// What a filter VM or `control check` holds: nothing before the first in-sync snapshot,
/// then one compiled version at a time; optionally also the staged rehearsal of that version.
#[derive(Debug, Default)]
pub struct Engine {
    current: Option<(u64, CompiledPolicy)>,
    /// What it was built with (whether the staged rehearsal was asked for, trust domains).
    options: Options,
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
        Self::from_snapshot_with(version, snapshot, &Options::default())
    }

    /// The enforced program plus, when `options.staged`, the staged rehearsal
    /// ([`Engine::decide_staged`]); principals pinned to `options.trust_domains`.
    pub fn from_snapshot_with(version: u64, snapshot: &Snapshot, options: &Options) -> Self {
        let compile = |program| {
            CompiledPolicy::compile_program(snapshot, program)
                .with_trust_domains(options.trust_domains.clone())
        };
        Engine {
            current: Some((version, compile(Program::Enforced))),
            options: options.clone(),
            staged: (options.staged && compile::has_staged_policies(snapshot))
                .then(|| compile(Program::StagedAsEnforced)),
        }
    }

    pub fn version(&self) -> Option<u64> {
        self.current.as_ref().map(|(v, _)| *v)
    }

    pub fn policy(&self) -> Option<&CompiledPolicy> {
        self.current.as_ref().map(|(_, p)| p)
    }

    /// Whether this engine was built with the staged rehearsal.
    pub fn staged_requested(&self) -> bool {
        self.options.staged
    }

    /// The options this engine was built with.
    pub fn options(&self) -> &Options {
        &self.options
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
        if !self.options.staged {
            return None;
        }
        Some(match &self.staged {
            Some(staged) => staged.evaluate(request),
            None => *enforced,
        })
    }

    pub fn explain(&self, decision: &Decision) -> Explanation {
        explain::explain(self.policy(), decision)
    }

    /// Names for a decision of [`Engine::decide_staged`].
    pub fn explain_staged(&self, decision: &Decision) -> Explanation {
        explain::explain(self.staged_policy(), decision)
    }

    /// A decision of [`Engine::decide_staged`] explained, and whether it differs from the
    /// `enforced` decision it was made beside.
    pub fn explain_staged_against(
        &self,
        staged: &Decision,
        enforced: &Decision,
    ) -> StagedExplanation {
        explain::explain_staged(self.staged_policy(), staged, enforced)
    }
}

//! Policy sources, shared by `control serve`, `control ext-authz` and (the file sources)
//! `control check`: each keeps a [`watch`] of the current [`Policy`] up to date, following
//! Felix's sync semantics (semantics.md section 2.3): nothing before the first in-sync state,
//! and a new stream's state replaces the old one only once that stream is in sync. Each also
//! says whether it is in sync right now, which is what `/readyz` reports.
//!
//! * [`updates_file`]: a file of `ToDataplane` messages, replayed whenever it changes.
//! * [`felix`]: Felix's Policy Sync API (gRPC over a Unix socket), followed live.
//! * [`calico_yaml`]: Calico v3 resource YAML compiled for one workload, reloaded on change.
//! * [`args`]: the flags that select one ([`args::SourceArgs`]).
//! * [`counters`]: what the sources count (`GET /metrics`).
//!
//! Each source keeps one [`SyncState`] for its whole life, so the
//! generation of each [`Revision`] it sends says whether the store changed: equal generations,
//! equal snapshots.
//!
//! Another source plugs in the same way: implement [`Source`] and
//! add a `--flag` to [`args::SourceArgs`] and its `source` group.

pub mod args;
pub mod calico_yaml;
pub mod counters;
pub mod felix;
pub mod updates_file;

use alp_engine::Snapshot;
use alp_felix::SyncState;
use counters::Counters;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

/// One state of a source's current (enforced) store.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The source's [`SyncState::generation`]: a new one exactly when the store changed.
    pub generation: u64,
    pub snapshot: Arc<Snapshot>,
}

impl Revision {
    /// The current store of `sync` (`None` before its first `in_sync`).
    pub fn current(sync: &SyncState) -> Option<Revision> {
        let (generation, snapshot) = sync.snapshot()?;
        Some(Revision {
            generation,
            snapshot: Arc::new(snapshot),
        })
    }

    /// [`Revision::current`] unless its generation is `sent` (the one already sent): a file
    /// rewritten with the same content builds no snapshot.
    pub fn newer_than(sync: &SyncState, sent: Option<u64>) -> Option<Revision> {
        if sent == Some(sync.generation()) {
            return None;
        }
        Revision::current(sync)
    }
}

/// What to serve: `None` until the source has first been in sync, then the current store's
/// revision. A source that loses sync keeps its last revision here (D8) and reports the loss
/// through [`Outputs::in_sync`].
pub type Policy = Option<Revision>;

pub type SourceFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// What a source reports.
pub struct Outputs {
    /// Every new revision. Sending one of the same generation again is harmless (versions
    /// only change with the generation).
    pub policy: watch::Sender<Policy>,
    /// Whether the source is in sync now: the updates file replayed to `inSync`, or the Felix
    /// stream in progress has delivered `inSync`. Readiness.
    pub in_sync: watch::Sender<bool>,
    /// Counters for `GET /metrics` (reconnects, updates applied, snapshot build time).
    pub counters: Arc<Counters>,
}

impl Outputs {
    /// New outputs and their receivers (policy, in sync).
    pub fn new() -> (Outputs, watch::Receiver<Policy>, watch::Receiver<bool>) {
        let (policy, policy_rx) = watch::channel(None);
        let (in_sync, in_sync_rx) = watch::channel(false);
        (
            Outputs {
                policy,
                in_sync,
                counters: Arc::default(),
            },
            policy_rx,
            in_sync_rx,
        )
    }

    /// Reports sync state changes only (no wake-ups for repeats).
    pub fn set_in_sync(&self, value: bool) {
        self.in_sync.send_if_modified(|now| {
            let changed = *now != value;
            *now = value;
            changed
        });
    }

    /// The generation of the revision last sent.
    pub fn sent_generation(&self) -> Option<u64> {
        self.policy.borrow().as_ref().map(|r| r.generation)
    }

    /// Sends the current store of `sync` unless its generation is the one last sent.
    pub fn send_if_new(&self, sync: &SyncState) {
        if let Some(revision) = Revision::newer_than(sync, self.sent_generation()) {
            self.policy.send_replace(Some(revision));
        }
    }
}

pub trait Source: Send {
    /// For logs: `updates file /path`, `felix unix:/var/run/...`.
    fn describe(&self) -> String;

    /// Runs until the process stops (returning means the source is gone for good), reporting
    /// every new state through `out`.
    fn run(self: Box<Self>, out: Outputs) -> SourceFuture;
}

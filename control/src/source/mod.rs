//! Policy sources: each keeps a [`watch`] of the current [`Policy`] up to date, following
//! Felix's sync semantics (semantics.md section 2.3): nothing before the first in-sync state,
//! and a new stream's state replaces the old one only once that stream is in sync. Each also
//! says whether it is in sync right now, which is what `/readyz` reports.
//!
//! * [`updates_file`]: a file of `ToDataplane` messages, replayed whenever it changes.
//! * [`felix`]: Felix's Policy Sync API (gRPC over a Unix socket), followed live.
//! * [`calico_yaml`]: Calico v3 resource YAML compiled for one workload, reloaded on change.
//!
//! Another source plugs in the same way: implement [`Source`] and
//! add a `--flag` to [`args::SourceArgs`] and its `source` group.

pub mod args;
pub mod calico_yaml;
pub mod felix;
pub mod updates_file;

use super::metrics::ControlMetrics;
use alp_engine::Snapshot;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

/// The snapshot to serve: `None` until the source has first been in sync, then the snapshot of
/// the current (enforced) store. A source that loses sync keeps its last snapshot here (D8)
/// and reports the loss through [`Outputs::in_sync`].
pub type Policy = Option<Arc<Snapshot>>;

pub type SourceFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// What a source reports.
pub struct Outputs {
    /// Every new snapshot. Sending an equal snapshot again is harmless (versions only change
    /// when the content does).
    pub policy: watch::Sender<Policy>,
    /// Whether the source is in sync now: the updates file replayed to `inSync`, or the Felix
    /// stream in progress has delivered `inSync`. Readiness.
    pub in_sync: watch::Sender<bool>,
    /// Counters for `GET /metrics` (reconnects, updates applied, snapshot build time).
    pub metrics: Arc<ControlMetrics>,
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
                metrics: Arc::default(),
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
}

pub trait Source: Send {
    /// For logs: `updates file /path`, `felix unix:/var/run/...`.
    fn describe(&self) -> String;

    /// Runs until the process stops (returning means the source is gone for good), reporting
    /// every new state through `out`.
    fn run(self: Box<Self>, out: Outputs) -> SourceFuture;
}

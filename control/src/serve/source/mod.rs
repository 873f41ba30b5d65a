//! Policy sources: each keeps a [`watch`] of the current [`Policy`] up to date, following
//! Felix's sync semantics (semantics.md section 2.3): nothing before the first in-sync state,
//! and a new stream's state replaces the old one only once that stream is in sync.
//!
//! * [`updates_file`]: a file of `ToDataplane` messages, replayed whenever it changes.
//!
//! A Felix Policy Sync (gRPC) source and a Calico YAML source plug in the same way: implement
//! [`Source`] and add a `--flag` to [`super::ServeArgs`] and its `source` group.

pub mod updates_file;

use alp_engine::Snapshot;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

/// The source's view: `None` while not in sync (no snapshot to give), else the snapshot of
/// the current store.
pub type Policy = Option<Arc<Snapshot>>;

pub type SourceFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

pub trait Source: Send {
    /// For logs: `updates file /path`, `felix unix:/var/run/...`.
    fn describe(&self) -> String;

    /// Runs until the process stops (returning means the source is gone for good), sending
    /// every new state. Sending an equal snapshot again is harmless (versions only change
    /// when the content does).
    fn run(self: Box<Self>, policy: watch::Sender<Policy>) -> SourceFuture;
}

//! The state of one filter instance in a wasm VM (one VM per Envoy worker thread, plus the main
//! thread's), shared by its root context and every HTTP or stream context it creates:
//! [`VmState`]. The native module keeps one per worker thread and filter configuration, with
//! the process's one compiled program as its [`ProcessEngine`].

use crate::attributes::ConnectionCache;
use crate::cache::SnapshotCache;
use crate::config::NonCanonicalPath;
use crate::decision_log::DecisionLogger;
use crate::metrics::{Metrics, Subject};
use alp_engine::Engine;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// How decisions are acted on and logged (from the plugin configuration).
#[derive(Debug, Default)]
pub struct Settings {
    /// `enforce: false`: nothing is refused.
    pub dry_run: bool,
    pub log: DecisionLogger,
    /// D10: what a non-canonical request path gets.
    pub non_canonical_path: NonCanonicalPath,
    /// Requests (HTTP filter) or connections (network filter).
    pub subject: Subject,
    /// Write each decision to filter state `wasm.alp_decision` (access logs).
    pub filter_state: bool,
}

/// Where a native module's workers find the compiled program in force: one for the whole
/// process, replaced atomically by the thread that follows control.
pub trait ProcessEngine: Send + Sync + std::fmt::Debug {
    /// The program in force now (not in sync before the first snapshot).
    fn current(&self) -> Arc<Engine>;
}

/// What the contexts of one VM share: the compiled snapshot, the connections' attributes, the
/// stats and the settings. The root context configures it, relays snapshots into `cache` and
/// flushes `metrics` on its tick; HTTP contexts decide requests with it
/// (`VmState::on_request_headers`, in `decide`), stream contexts connections (`connection`).
/// Clones share everything.
#[derive(Debug, Clone, Default)]
pub struct VmState {
    pub cache: Rc<RefCell<SnapshotCache>>,
    pub connections: Rc<RefCell<ConnectionCache>>,
    pub metrics: Arc<Metrics>,
    pub settings: Rc<Settings>,
    /// Set in the native module: decide with the process's program instead of `cache`'s copy.
    pub process: Option<Arc<dyn ProcessEngine>>,
}

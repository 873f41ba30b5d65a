//! What one worker thread keeps per filter configuration: the filter's `VmState` (its own
//! metrics and decision-log budget, its connections' attributes, and the process's program as
//! the engine), and the per-policy series it created. Envoy runs each stream and connection on
//! one worker, so nothing here is shared between threads or locked.

use crate::filter_config::FilterConfig;
use crate::host::{StreamHost, Target};
use crate::metric_table::RuntimeSeries;
use alp_filter::cache::Events;
use alp_filter::decision_log::DecisionLogger;
use alp_filter::metrics::{SnapshotStatus, Subject};
use alp_filter::vm_state::{ProcessEngine, Settings, VmState};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// The filter-state key prefix of the native module: decisions go to `calico.alp_decision`
/// (`%FILTER_STATE(calico.alp_decision:PLAIN)%` in an access log).
pub const FILTER_STATE_PREFIX: &str = "calico.";
/// How often a worker refills its decision-log rate limit (the wasm filter's tick).
const LOG_TICK_MS: u64 = 100;

pub struct Worker {
    config: Weak<FilterConfig>,
    pub vm: VmState,
    runtime: RuntimeSeries,
    last_tick_ms: Cell<u64>,
}

thread_local! {
    static WORKERS: RefCell<HashMap<u64, Rc<Worker>>> = RefCell::new(HashMap::new());
}

impl Worker {
    fn new(config: &Arc<FilterConfig>) -> Worker {
        let filter = &config.config.filter;
        let subject = match config.kind {
            crate::metric_table::Kind::Http => Subject::Request,
            crate::metric_table::Kind::Network => Subject::Connection,
        };
        let process: Arc<dyn ProcessEngine> = config.follower.clone();
        let vm = VmState {
            metrics: Rc::new(config.worker_metrics()),
            settings: Rc::new(Settings {
                dry_run: !filter.enforce,
                log: DecisionLogger::new(
                    filter.decision_log,
                    filter.decision_log_sample,
                    filter.decision_log_max_per_second,
                    seed(),
                ),
                non_canonical_path: filter.non_canonical_path,
                subject,
                filter_state: filter.filter_state,
            }),
            process: Some(process),
            ..VmState::default()
        };
        Worker {
            config: Arc::downgrade(config),
            vm,
            runtime: RuntimeSeries::default(),
            last_tick_ms: Cell::new(now_ms()),
        }
    }

    /// This thread's worker for `config`, made on first use (dropping those of configurations
    /// Envoy has destroyed since).
    pub fn of(config: &Arc<FilterConfig>) -> Rc<Worker> {
        WORKERS.with(|workers| {
            let Ok(mut workers) = workers.try_borrow_mut() else {
                // Re-entered while the map is being changed: a worker of its own for this call.
                return Rc::new(Worker::new(config));
            };
            if let Some(w) = workers.get(&config.id) {
                return Rc::clone(w);
            }
            workers.retain(|_, w| w.config.strong_count() > 0);
            let worker = Rc::new(Worker::new(config));
            workers.insert(config.id, Rc::clone(&worker));
            worker
        })
    }

    /// The host of one hook call on `target`.
    pub fn host<'a>(&'a self, config: &'a FilterConfig, target: Target) -> StreamHost<'a> {
        StreamHost {
            target,
            definitions: &config.definitions,
            runtime: &self.runtime,
            filter_state_prefix: FILTER_STATE_PREFIX,
        }
    }

    /// After a decision: refills the decision-log budget when due and adds the counts to
    /// Envoy's stats (a native call each, so no batching on a tick is needed).
    pub fn after_decision(&self, config: &FilterConfig, host: &StreamHost<'_>) {
        let now = now_ms();
        let elapsed = now.saturating_sub(self.last_tick_ms.get());
        if elapsed >= LOG_TICK_MS {
            self.last_tick_ms.set(now);
            let suppressed = self.vm.settings.log.tick(elapsed);
            self.vm.metrics.count_suppressed_lines(suppressed);
        }
        let stats = &config.follower.stats;
        // Process-wide events: whichever worker flushes first counts them, once. The gauges
        // are set on the configuration's tick (`ticker`), not per decision.
        let status = SnapshotStatus {
            events: Events {
                reloads: stats.reloads.swap(0, Ordering::Relaxed),
                refusals: stats.refusals.swap(0, Ordering::Relaxed),
            },
            version: None,
            received_ms: None,
        };
        self.vm.metrics.flush_with(host, Some(status));
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A decision-log sampling seed unique to this worker.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}

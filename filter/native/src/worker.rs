//! What one worker thread keeps per filter configuration: the filter's `VmState` (its own
//! metrics, which the configuration's tick flushes, its decision-log budget, its connections'
//! attributes, and the process's program as the engine). Envoy runs each stream and
//! connection on one worker, so nothing else here is shared between threads.

use crate::filter_config::FilterConfig;
use crate::host::{StreamHost, Target};
use alp_filter::decision_log::DecisionLogger;
use alp_filter::metrics::Subject;
use alp_filter::vm_state::{ProcessEngine, Settings, VmState};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Weak};

/// The filter-state key prefix of the native module: decisions go to `calico.alp_decision`
/// (`%FILTER_STATE(calico.alp_decision:PLAIN)%` in an access log).
pub const FILTER_STATE_PREFIX: &str = "calico.";
/// How often a worker refills its decision-log rate limit (the wasm filter's tick).
const LOG_TICK_MS: u64 = 100;

pub struct Worker {
    config: Weak<FilterConfig>,
    pub vm: VmState,
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
            metrics: config.worker_metrics(),
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
    pub fn host(&self, target: Target) -> StreamHost {
        StreamHost {
            target,
            filter_state_prefix: FILTER_STATE_PREFIX,
        }
    }

    /// After a decision: refills the decision-log budget when due (the wasm filter does it on
    /// its tick; this worker's budget is its own).
    pub fn after_decision(&self) {
        let now = now_ms();
        let elapsed = now.saturating_sub(self.last_tick_ms.get());
        if elapsed >= LOG_TICK_MS {
            self.last_tick_ms.set(now);
            let suppressed = self.vm.settings.log.tick(elapsed);
            self.vm.metrics.count_suppressed_lines(suppressed);
        }
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

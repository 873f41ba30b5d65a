//! One filter configuration (`*_config_new`), shared by every worker thread: the parsed
//! settings, the process's follower for them, the stats Envoy defined for it, and each
//! worker's metrics, which its tick (`tick`, on Envoy's main thread) adds to Envoy's stats.

use crate::follower::Follower;
use crate::host::{self, ConfigHost, ConfigTarget, TickHost};
use crate::metric_table::{Definitions, Kind, RuntimeSeries};
use crate::registry;
use crate::settings::NativeConfig;
use alp_filter::cache::Events;
use alp_filter::host::Level;
use alp_filter::metrics::{Metrics, SnapshotStatus, Subject};
use alp_filter::vm_state::ProcessEngine;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The per-policy families a worker may count into (HTTP; declared with their label names
/// while Envoy still allows definitions).
const POLICY_FAMILIES: [&str; 2] = [
    "alp_policy_requests_total",
    "alp_staged_policy_requests_total",
];
const POLICY_LABELS: [&str; 3] = ["alp_tier", "alp_policy", "alp_action"];

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub struct FilterConfig {
    /// Distinguishes this configuration's per-thread state from another's.
    pub id: u64,
    pub kind: Kind,
    pub config: NativeConfig,
    pub follower: Arc<Follower>,
    pub definitions: Definitions,
    /// Envoy's configuration, for the tick's stats calls.
    envoy: ConfigTarget,
    /// The metric ids as defined; each worker takes a copy with its own counts.
    metrics: Metrics,
    /// Every worker's metrics, flushed on the tick.
    workers: Mutex<Vec<Arc<Metrics>>>,
    /// Per-policy series made on the tick (main thread only; locked for `Sync`).
    runtime: Mutex<RuntimeSeries>,
}

impl FilterConfig {
    /// Parses `bytes` and defines the stats; the error is logged by the caller and makes Envoy
    /// refuse the configuration.
    pub fn new(kind: Kind, target: ConfigTarget, bytes: &[u8]) -> Result<FilterConfig, String> {
        let config = NativeConfig::parse(bytes)?;
        let follower = registry::follower(&config.follow(), Arc::new(host::log))
            .map_err(|e| format!("cannot start the thread that follows control: {e}"))?;
        let definitions = RefCell::new(Definitions::default());
        let subject = match kind {
            Kind::Http => Subject::Request,
            Kind::Network => Subject::Connection,
        };
        let metrics = if config.filter.metrics {
            let config_host = ConfigHost {
                target,
                definitions: &definitions,
            };

            let metrics = Metrics::define(&config_host, !config.filter.enforce, subject);
            if let (Kind::Http, Ok(mut d)) = (kind, definitions.try_borrow_mut()) {
                for family in POLICY_FAMILIES {
                    d.declare_family(&config_host.target, family, &POLICY_LABELS);
                }
            }
            metrics
        } else {
            Metrics::disabled()
        };
        let filter = &config.filter;
        host::log(
            Level::Info,
            &format!(
                "configured as the native {} filter: control at {}, poll {} ms, retry {} ms; {}, \
                 staged rehearsal {}, metrics {}, decision log {} sampled at {} (at most {}/s, \
                 0: no limit); trust domains {}, non-canonical paths: {}",
                match kind {
                    Kind::Http => "HTTP",
                    Kind::Network => "network",
                },
                config.control,
                filter.poll_timeout_ms,
                filter.retry_interval_ms,
                if filter.enforce {
                    "enforcing"
                } else {
                    "DRY RUN (nothing is refused)"
                },
                if filter.staged { "on" } else { "off" },
                if filter.metrics { "on" } else { "off" },
                filter.decision_log.as_str(),
                filter.decision_log_sample,
                filter.decision_log_max_per_second,
                if filter.trust_domains.is_empty() {
                    "any".to_string()
                } else {
                    filter.trust_domains.join(", ")
                },
                filter.non_canonical_path.as_str(),
            ),
        );
        Ok(FilterConfig {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kind,
            config,
            follower,
            definitions: definitions.into_inner(),
            envoy: target,
            metrics,
            workers: Mutex::new(Vec::new()),
            runtime: Mutex::new(RuntimeSeries::default()),
        })
    }

    /// A new worker's metrics: the configuration's ids, nothing counted, flushed on the tick.
    pub fn worker_metrics(&self) -> Arc<Metrics> {
        let metrics = Arc::new(self.metrics.with_same_ids());
        lock(&self.workers).push(Arc::clone(&metrics));
        metrics
    }

    /// The tick (`ticker`, on Envoy's main thread): every worker's counts into Envoy's stats,
    /// the process's snapshot events (counted once), and the snapshot gauges.
    pub fn tick(&self) {
        let runtime = lock(&self.runtime);
        let host = TickHost {
            target: self.envoy,
            definitions: &self.definitions,
            runtime: &runtime,
        };
        let stats = &self.follower.stats;
        let received = stats.received_ms.load(Ordering::Relaxed);
        let status = SnapshotStatus {
            events: Events {
                reloads: stats.reloads.swap(0, Ordering::Relaxed),
                refusals: stats.refusals.swap(0, Ordering::Relaxed),
            },
            version: self.follower.current().version(),
            received_ms: (received > 0).then_some(received),
        };
        // The configuration's own metrics count nothing: they carry the events and gauges.
        self.metrics.flush_with(&host, Some(status));
        for metrics in lock(&self.workers).iter() {
            metrics.flush_with(&host, None);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

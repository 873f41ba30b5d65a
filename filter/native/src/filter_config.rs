//! One filter configuration (`*_config_new`), shared by every worker thread: the parsed
//! settings, the process's follower for them, and the stats Envoy defined for it.

use crate::abi;
use crate::follower::Follower;
use crate::host::{self, ConfigHost, ConfigTarget};
use crate::metric_table::{Definitions, Kind};
use crate::registry;
use crate::settings::NativeConfig;
use alp_filter::host::Level;
use alp_filter::metrics::{Metrics, Subject};
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
    /// The metric ids as defined; each worker takes a copy with its own counts.
    metrics: Mutex<Metrics>,
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
            metrics: Mutex::new(metrics),
        })
    }

    /// Sets `alp_snapshot_version` and `alp_snapshot_age_seconds` through the configuration
    /// (its tick, on the main thread).
    pub fn set_snapshot_gauges(&self, config_envoy_ptr: abi::HttpFilterConfigEnvoyPtr) {
        let engine = alp_filter::vm_state::ProcessEngine::current(self.follower.as_ref());
        let received = self.follower.stats.received_ms.load(Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let values = [
            ("alp_snapshot_version", engine.version()),
            (
                "alp_snapshot_age_seconds",
                (received > 0).then(|| now.saturating_sub(received) / 1000),
            ),
        ];
        for (name, value) in values {
            let (Some(value), Some((_, envoy_id))) = (
                value,
                self.definitions.gauges.iter().find(|(n, _)| n == name),
            ) else {
                continue;
            };
            // SAFETY: the configuration's pointer during its scheduled event; no labels.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                    config_envoy_ptr,
                    *envoy_id,
                    std::ptr::null(),
                    0,
                    value,
                );
            }
        }
    }

    /// A worker's own metrics: the configuration's ids, nothing counted.
    pub fn worker_metrics(&self) -> Metrics {
        match self.metrics.lock() {
            Ok(m) => m.with_same_ids(),
            Err(poisoned) => poisoned.into_inner().with_same_ids(),
        }
    }
}

//! proxy-wasm contexts: the root context (configuration, tick, callouts) and, as configured
//! (`filter`), one HTTP context per request or one stream context per connection, sharing the
//! filter's [`VmState`] and delegating to [`Relay`], the request path (`decide`) and the
//! connection gate (`connection`) with the real host.

use crate::config::{Config, FilterKind};
use crate::connection::{ConnectionGate, Flow};
use crate::decide::Action as FilterAction;
use crate::decision_log::DecisionLogger;
use crate::host::proxy::ProxyHost;
use crate::host::{Clock, Host, Level};
use crate::metrics::{Metrics, Subject};
use crate::relay::Relay;
use crate::vm_state::{Settings, VmState};
use alp_engine::{Options, TrustDomains};
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

/// Ticks between reads of Envoy's log level.
const LOG_LEVEL_EVERY: u32 = 10;

pub struct Root {
    host: ProxyHost,
    vm: VmState,
    relay: Option<Relay>,
    owner: u64,
    ticks: u32,
    kind: FilterKind,
}

impl Root {
    pub fn new() -> Self {
        let host = ProxyHost;
        host.refresh_log_level();
        let vm = VmState::default();
        // Until this VM creates a context (SnapshotCache::set_serving).
        if let Ok(mut cache) = vm.cache.try_borrow_mut() {
            cache.set_serving(false);
        }
        Root {
            host,
            vm,
            relay: None,
            owner: owner_id(&host),
            ticks: 0,
            kind: FilterKind::Http,
        }
    }

    /// This VM decides: from now on it compiles the snapshots it follows (its first request or
    /// connection compiles the current one).
    fn serving(&self) {
        if let Ok(mut cache) = self.vm.cache.try_borrow_mut() {
            cache.set_serving(true);
        }
    }
}

/// A lease owner id unique to this root context: random, mixed with the time.
fn owner_id(host: &ProxyHost) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(host.now_ms());
    hasher.finish() | 1
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        match self.vm.cache.try_borrow_mut() {
            Ok(mut cache) => relay.on_response(&self.host, &mut cache, token_id, body_size),
            Err(_) => self
                .host
                .log(Level::Error, "snapshot cache busy; response dropped"),
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.host.refresh_log_level();
        let bytes = self.get_plugin_configuration();
        let config = match Config::parse(bytes.as_deref()) {
            Ok(config) => config,
            Err(err) => {
                self.host.log(
                    Level::Error,
                    &format!(
                        "{err}; expected a JSON object with optional keys control_cluster, \
                         control_authority, poll_timeout_ms, retry_interval_ms, tick_ms, \
                         enforce, staged, metrics, decision_log, decision_log_sample, \
                         decision_log_max_per_second, trust_domains, non_canonical_path, filter, filter_state"
                    ),
                );
                return false;
            }
        };
        if proxy_wasm::hostcalls::set_tick_period(Duration::from_millis(config.tick_ms)).is_err() {
            self.host.log(Level::Error, "could not set the tick period");
            return false;
        }
        self.kind = config.filter;
        let subject = match config.filter {
            FilterKind::Http => Subject::Request,
            FilterKind::Network => Subject::Connection,
        };
        self.vm.metrics = std::sync::Arc::new(if config.metrics {
            Metrics::define(&self.host, !config.enforce, subject)
        } else {
            Metrics::disabled()
        });
        self.vm.settings = Rc::new(Settings {
            dry_run: !config.enforce,
            log: DecisionLogger::new(
                config.decision_log,
                config.decision_log_sample,
                config.decision_log_max_per_second,
                self.owner,
            ),
            non_canonical_path: config.non_canonical_path,
            subject,
            filter_state: config.filter_state,
        });
        if let Ok(mut cache) = self.vm.cache.try_borrow_mut() {
            cache.set_options(Options {
                staged: config.staged,
                trust_domains: TrustDomains::new(config.trust_domains.iter().cloned()),
            });
        }
        self.host.log(
            Level::Info,
            &format!(
                "configured as the {} filter: control cluster {:?}, authority {:?}, poll {} ms, retry {} ms, tick {} ms; \
                 {}, staged rehearsal {}, metrics {}, decision log {} sampled at {} (at most {}/s, 0: no limit); \
                 trust domains {}, non-canonical paths: {}",
                config.filter.as_str(),
                config.control_cluster,
                config.control_authority,
                config.poll_timeout_ms,
                config.retry_interval_ms,
                config.tick_ms,
                if config.enforce { "enforcing" } else { "DRY RUN (nothing is refused)" },
                if config.staged { "on" } else { "off" },
                if config.metrics { "on" } else { "off" },
                config.decision_log.as_str(),
                config.decision_log_sample,
                config.decision_log_max_per_second,
                if config.trust_domains.is_empty() { "any".to_string() } else { config.trust_domains.join(", ") },
                config.non_canonical_path.as_str(),
            ),
        );
        self.relay = Some(Relay::new(config, self.owner));
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        if self.ticks >= LOG_LEVEL_EVERY {
            self.ticks = 0;
            self.host.refresh_log_level();
        }
        let tick_ms = self.relay.as_ref().map_or(0, |r| r.config().tick_ms);
        self.vm
            .metrics
            .count_suppressed_lines(self.vm.settings.log.tick(tick_ms));
        let Ok(mut cache) = self.vm.cache.try_borrow_mut() else {
            self.vm.metrics.flush(&self.host, None);
            return;
        };
        if let Some(relay) = self.relay.as_mut() {
            relay.on_tick(&self.host, &mut cache);
        }
        self.vm.metrics.flush(&self.host, Some(&mut cache));
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.serving();
        Some(Box::new(Http {
            host: self.host,
            vm: self.vm.clone(),
        }))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        self.serving();
        Some(Box::new(Tcp {
            host: self.host,
            vm: self.vm.clone(),
            gate: ConnectionGate::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(match self.kind {
            FilterKind::Http => ContextType::HttpContext,
            FilterKind::Network => ContextType::StreamContext,
        })
    }
}

pub struct Http {
    host: ProxyHost,
    vm: VmState,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.vm.on_request_headers(&self.host) {
            FilterAction::Continue => Action::Continue,
            FilterAction::Replied => Action::Pause,
        }
    }
}

/// One downstream connection through the network filter.
pub struct Tcp {
    host: ProxyHost,
    vm: VmState,
    gate: ConnectionGate,
}

impl Context for Tcp {}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

impl StreamContext for Tcp {
    fn on_new_connection(&mut self) -> Action {
        action(self.gate.on_new_connection(&self.vm, &self.host))
    }

    fn on_downstream_data(&mut self, data_size: usize, end_of_stream: bool) -> Action {
        action(
            self.gate
                .on_downstream_data(&self.vm, &self.host, data_size, end_of_stream),
        )
    }

    fn on_upstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        action(self.gate.on_upstream_data(&self.vm, &self.host))
    }
}

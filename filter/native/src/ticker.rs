//! The filter configurations' tick: every [`TICK`] each one's `*_config_scheduled` hook runs on
//! Envoy's main thread ([`FilterConfig::tick`](crate::filter_config::FilterConfig::tick)),
//! which adds what the workers counted to Envoy's stats and sets the snapshot gauges, as the
//! wasm filter's root context does on its tick. One thread for the process posts the events
//! through each configuration's scheduler; a configuration's scheduler is deleted, under the
//! same lock, when Envoy destroys the configuration, so nothing is posted for it after.

use crate::abi;
use crate::metric_table::Kind;
use std::sync::{Mutex, Once};
use std::time::Duration;

/// How often counts reach Envoy (the wasm filter's default tick).
pub const TICK: Duration = Duration::from_millis(100);

/// A configuration's scheduler, owned by the registry.
enum Scheduler {
    Http(abi::HttpFilterConfigSchedulerModulePtr),
    Network(abi::NetworkFilterConfigSchedulerModulePtr),
}

// SAFETY: Envoy's configuration schedulers are made to be committed from other threads; one is
// deleted only under the registry's lock, after which nothing uses it.
unsafe impl Send for Scheduler {}

static SCHEDULERS: Mutex<Vec<(u64, Scheduler)>> = Mutex::new(Vec::new());
static START: Once = Once::new();

/// Ticks configuration `id` (of `kind`, Envoy's `config_envoy_ptr`) from now on.
pub fn register(id: u64, kind: Kind, config_envoy_ptr: *mut std::ffi::c_void) {
    // SAFETY: the configuration pointer of the current `config_new`.
    let scheduler = unsafe {
        match kind {
            Kind::Http => Scheduler::Http(
                abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(
                    config_envoy_ptr,
                ),
            ),
            Kind::Network => Scheduler::Network(
                abi::envoy_dynamic_module_callback_network_filter_config_scheduler_new(
                    config_envoy_ptr,
                ),
            ),
        }
    };
    if matches!(scheduler, Scheduler::Http(p) | Scheduler::Network(p) if p.is_null()) {
        return;
    }
    lock().push((id, scheduler));
    START.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("calico-alp-tick".to_string())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                for (id, s) in lock().iter() {
                    // SAFETY: a live scheduler (deleted only under this lock).
                    unsafe {
                        match s {
                            Scheduler::Http(p) => {
                                abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(*p, *id)
                            }
                            Scheduler::Network(p) => {
                                abi::envoy_dynamic_module_callback_network_filter_config_scheduler_commit(*p, *id)
                            }
                        }
                    }
                }
            });
    });
}

/// Stops ticking configuration `id` and deletes its scheduler (its `config_destroy`).
pub fn unregister(id: u64) {
    let mut schedulers = lock();
    if let Some(i) = schedulers.iter().position(|(c, _)| *c == id) {
        let (_, s) = schedulers.swap_remove(i);
        // SAFETY: made by `scheduler_new`, removed from the registry, used by nothing else.
        unsafe {
            match s {
                Scheduler::Http(p) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(p)
                }
                Scheduler::Network(p) => {
                    abi::envoy_dynamic_module_callback_network_filter_config_scheduler_delete(p)
                }
            }
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Scheduler)>> {
    SCHEDULERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

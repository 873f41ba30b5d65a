//! The HTTP configurations' tick: once a second each one's `on_http_filter_config_scheduled`
//! runs on Envoy's main thread and sets the snapshot gauges (`alp_snapshot_version`,
//! `alp_snapshot_age_seconds`), which otherwise would move only when a request is decided (the
//! wasm filter sets them on its root context's tick). One thread for the process posts the
//! events through each configuration's scheduler; a configuration's scheduler is deleted, under
//! the same lock, when Envoy destroys the configuration, so no event is posted for it after.

use crate::abi;
use std::sync::{Mutex, Once};
use std::time::Duration;

/// How often the gauges are set.
pub const TICK: Duration = Duration::from_secs(1);

/// A scheduler pointer, owned by the registry (Envoy's scheduler may be used from any thread).
struct Scheduler(abi::HttpFilterConfigSchedulerModulePtr);

// SAFETY: Envoy's configuration scheduler is made to be committed from other threads; it is
// deleted only under the registry's lock, after which nothing uses it.
unsafe impl Send for Scheduler {}

static SCHEDULERS: Mutex<Vec<(u64, Scheduler)>> = Mutex::new(Vec::new());
static START: Once = Once::new();

/// Ticks configuration `id` through a new scheduler of `config_envoy_ptr` from now on.
pub fn register(id: u64, config_envoy_ptr: abi::HttpFilterConfigEnvoyPtr) {
    // SAFETY: the configuration pointer of the current `config_new`.
    let scheduler = unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(config_envoy_ptr)
    };
    if scheduler.is_null() {
        return;
    }
    lock().push((id, Scheduler(scheduler)));
    START.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("calico-alp-tick".to_string())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                for (id, s) in lock().iter() {
                    // SAFETY: a live scheduler (deleted only under this lock).
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            s.0, *id,
                        )
                    };
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
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(s.0) };
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Scheduler)>> {
    SCHEDULERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! The network filter's event hooks (`envoy.filters.network.dynamic_modules`, before
//! `tcp_proxy`): each connection decided once with `alp-filter`'s `ConnectionGate`.
//!
//! When: a plaintext connection in `new_connection`. A TLS connection is held there (the read
//! filter chain stops, so `tcp_proxy` opens nothing upstream) until Envoy reports it
//! `Connected`, which for TLS means the handshake is complete and comes before any data; it is
//! decided then, and the chain resumes only if it is allowed. TLS attributes are never read
//! before that: Envoy would keep values read mid-handshake for the whole connection.
//! A denial closes the connection without a byte either way.
//!
//! Closing a connection makes Envoy call `network_filter_event` before `close` returns; the
//! filter's state is a `RefCell`, so that nested call sees it busy and does nothing.

use crate::abi::{self, EnvoyBuffer};
use crate::filter_config::FilterConfig;
use crate::guard;
use crate::host::{ConfigTarget, Target};
use crate::metric_table::Kind;
use crate::ticker;
use crate::worker::Worker;
use alp_filter::connection::{ConnectionGate, Flow};
use std::cell::RefCell;
use std::ffi::c_void;
use std::rc::Rc;

struct NetworkFilter {
    worker: Rc<Worker>,
    gate: RefCell<ConnectionGate>,
    /// `new_connection` stopped the read chain; allowing resumes it.
    held: std::cell::Cell<bool>,
}

impl NetworkFilter {
    /// Runs `step` on the gate with this connection's host (nothing if the gate is busy: a
    /// nested call from `close`), then counts; a panic closes the connection.
    fn step(
        &self,
        envoy: abi::NetworkFilterEnvoyPtr,
        what: &str,
        step: impl FnOnce(
            &mut ConnectionGate,
            &alp_filter::vm_state::VmState,
            &dyn alp_filter::host::Host,
        ) -> Flow,
    ) -> Flow {
        let Ok(mut gate) = self.gate.try_borrow_mut() else {
            return Flow::Pause;
        };
        let failed = || {
            // SAFETY: the current connection's filter pointer.
            unsafe {
                abi::envoy_dynamic_module_callback_network_filter_close_with_details(
                    envoy,
                    abi::CLOSE_NO_FLUSH,
                    abi::ModuleBuffer::from_bytes(b"calico_alp_error"),
                );
            }
            Flow::Pause
        };
        guard::catch_with(what, failed, || {
            let host = self.worker.host(Target::Connection(envoy));
            let flow = step(&mut gate, &self.worker.vm, &host);
            self.worker.after_decision();
            flow
        })
    }
}

fn status(flow: Flow) -> abi::NetworkDataStatus {
    match flow {
        Flow::Continue => abi::NETWORK_CONTINUE,
        Flow::Pause => abi::NETWORK_STOP_ITERATION,
    }
}

/// # Safety
/// As for the HTTP filter's `config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_new(
    config_envoy_ptr: abi::NetworkFilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> abi::NetworkFilterConfigModulePtr {
    // SAFETY: Envoy's configuration bytes for the duration of this call.
    let bytes = unsafe { guard::bytes(config) };
    guard::config_new("network", || {
        let config = FilterConfig::new(
            Kind::Network,
            ConfigTarget::Network(config_envoy_ptr),
            &bytes,
        )?;
        if config.config.filter.metrics {
            ticker::register(config.id, Kind::Network, config_envoy_ptr);
        }
        Ok(config)
    })
}

/// The configuration's tick (`ticker`), on the main thread: the workers' counts into Envoy's
/// stats. (Envoy passes no configuration pointer to this hook; the configuration keeps it.)
///
/// # Safety
/// `config` is a live pointer from `config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_scheduled(
    config: abi::NetworkFilterConfigModulePtr,
    _event_id: u64,
) {
    // SAFETY: as documented.
    let Some(config) = (unsafe { guard::config_arc(config) }) else {
        return;
    };
    guard::catch("adding the counts to Envoy's stats", (), || config.tick());
}

/// # Safety
/// `config` is a pointer this module returned from `config_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_destroy(
    config: abi::NetworkFilterConfigModulePtr,
) {
    // SAFETY: as documented.
    if let Some(c) = unsafe { guard::config_arc(config) } {
        ticker::unregister(c.id);
    }
    // SAFETY: as documented.
    unsafe { guard::config_destroy(config) }
}

/// # Safety
/// `config` is a live pointer this module returned from `config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_new(
    config: abi::NetworkFilterConfigModulePtr,
    _filter_envoy_ptr: abi::NetworkFilterEnvoyPtr,
) -> abi::NetworkFilterModulePtr {
    // SAFETY: as documented.
    let Some(config) = (unsafe { guard::config_arc(config) }) else {
        return std::ptr::null();
    };
    guard::catch("creating a network filter", std::ptr::null(), || {
        let worker = Worker::of(&config);
        Box::into_raw(Box::new(NetworkFilter {
            worker,
            gate: RefCell::new(ConnectionGate::new()),
            held: std::cell::Cell::new(false),
        })) as *const c_void
    })
}

/// # Safety
/// `filter` is this module's live filter for the connection of `envoy`.
unsafe fn filter<'a>(filter: abi::NetworkFilterModulePtr) -> Option<&'a NetworkFilter> {
    // SAFETY: as documented.
    unsafe { (filter as *const NetworkFilter).as_ref() }
}

/// # Safety
/// `filter` is a live pointer from `network_filter_new`; `envoy` is Envoy's for it.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_new_connection(
    envoy: abi::NetworkFilterEnvoyPtr,
    filter_ptr: abi::NetworkFilterModulePtr,
) -> abi::NetworkDataStatus {
    // SAFETY: as documented.
    let Some(f) = (unsafe { filter(filter_ptr) }) else {
        return abi::NETWORK_STOP_ITERATION;
    };
    let mut waits = false;
    let flow = f.step(envoy, "deciding a new connection", |gate, vm, host| {
        let flow = gate.on_new_connection(vm, host);
        waits = gate.awaits_handshake();
        flow
    });
    if waits {
        // Held until `Connected`: nothing reaches tcp_proxy before the decision.
        f.held.set(true);
        return abi::NETWORK_STOP_ITERATION;
    }
    status(flow)
}

/// # Safety
/// As for `new_connection`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_event(
    envoy: abi::NetworkFilterEnvoyPtr,
    filter_ptr: abi::NetworkFilterModulePtr,
    event: abi::NetworkConnectionEvent,
) {
    // SAFETY: as documented.
    let Some(f) = (unsafe { filter(filter_ptr) }) else {
        return;
    };
    if event != abi::EVENT_CONNECTED && event != abi::EVENT_CONNECTED_ZERO_RTT {
        return;
    }
    let flow = f.step(
        envoy,
        "deciding a connection after its handshake",
        |gate, vm, host| gate.on_handshake_complete(vm, host),
    );
    if flow == Flow::Continue && f.held.replace(false) {
        // SAFETY: the current connection's filter pointer.
        unsafe { abi::envoy_dynamic_module_callback_network_filter_continue_reading(envoy) }
    }
}

/// # Safety
/// As for `new_connection`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_read(
    envoy: abi::NetworkFilterEnvoyPtr,
    filter_ptr: abi::NetworkFilterModulePtr,
    data_length: usize,
    end_stream: bool,
) -> abi::NetworkDataStatus {
    // SAFETY: as documented.
    let Some(f) = (unsafe { filter(filter_ptr) }) else {
        return abi::NETWORK_STOP_ITERATION;
    };
    status(f.step(
        envoy,
        "deciding a connection on its data",
        |gate, vm, host| gate.on_downstream_data(vm, host, data_length, end_stream),
    ))
}

/// # Safety
/// As for `new_connection`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_write(
    envoy: abi::NetworkFilterEnvoyPtr,
    filter_ptr: abi::NetworkFilterModulePtr,
    _data_length: usize,
    _end_stream: bool,
) -> abi::NetworkDataStatus {
    // SAFETY: as documented.
    let Some(f) = (unsafe { filter(filter_ptr) }) else {
        return abi::NETWORK_STOP_ITERATION;
    };
    status(f.step(
        envoy,
        "deciding a connection on upstream data",
        |gate, vm, host| gate.on_upstream_data(vm, host),
    ))
}

/// # Safety
/// `filter` is a pointer from `network_filter_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_destroy(
    filter: abi::NetworkFilterModulePtr,
) {
    if !filter.is_null() {
        // SAFETY: made by `Box::into_raw` in `network_filter_new`; Envoy destroys it once.
        drop(unsafe { Box::from_raw(filter as *mut NetworkFilter) });
    }
}

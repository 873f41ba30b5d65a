//! Calico application layer policy as a proxy-wasm HTTP filter and network filter: thin glue
//! around `alp-engine`.
//!
//! * [`config`]: the plugin configuration (JSON, every key optional).
//! * [`host`]: everything the filter needs from Envoy, behind one trait: the real host
//!   (`host::proxy`), the header-map parser (`host::header_map`) and, in tests, a fake.
//! * [`attributes`]: request attributes from Envoy properties (spec section 3).
//! * [`cache`]: the VM's compiled snapshot, picked up from shared data once per version.
//! * [`lease`]: which VM of the process fetches from control.
//! * [`relay`]: the lease holder's long-poll to control and publication into shared data.
//! * [`vm_state`]: what one VM's root and HTTP contexts share (snapshot cache, connections,
//!   metrics, settings).
//! * [`decide`]: request -> engine -> continue or local reply (spec section 7).
//! * [`connection`]: connection -> engine -> continue or close, and when (network filter).
//! * [`metrics`]: Envoy stats `alp_*` (counted in the VM, flushed on the tick).
//! * [`decision_log`]: one JSON line per logged decision in Envoy's log ([`timestamp`]: its
//!   time).
//! * `context`: the proxy-wasm root, HTTP and stream contexts wiring the above to the real host.
//!
//! Relay protocol and shared-data layout: see `relay` and `cache`.

pub mod attributes;
pub mod cache;
pub mod config;
pub mod connection;
pub mod decide;
pub mod decision_log;
pub mod host;
pub mod lease;
pub mod metrics;
pub mod relay;
pub mod timestamp;
pub mod vm_state;

#[cfg(target_family = "wasm")]
mod context;

#[cfg(target_family = "wasm")]
proxy_wasm::main! {{
    // Installs proxy-wasm's panic hook (a panic is logged before the VM aborts); our own log
    // lines go through `host::Host::log` with Envoy's level.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(context::Root::new())
    });
}}

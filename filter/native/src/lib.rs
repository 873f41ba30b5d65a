//! Calico application layer policy as a native Envoy dynamic module: an HTTP filter and a
//! network filter on the same engine and the same filter logic (`alp-filter`: attributes,
//! decisions, local replies, path rewrite, metrics, decision logs) as the wasm module, with
//! Envoy's dynamic-module ABI as the host instead of proxy-wasm.
//!
//! * [`abi`]: the project's own declarations of the ABI's types, event hooks and callbacks.
//! * [`settings`]: the filter configuration (the wasm filter's keys plus `control_address`).
//! * [`control_client`] and [`follower`]: the process's one compiled program, kept current by a
//!   thread that long-polls control; [`registry`]: one follower per distinct setting.

pub mod control_client;
pub mod follower;
pub mod registry;
pub mod settings;

pub mod abi;
mod abi_check;
mod filter_config;
mod guard;
pub mod host;
mod http_filter;
pub mod metric_table;
mod network_filter;
mod ticker;
mod worker;

/// Envoy calls this once when it loads the module. The answer is the ABI version this module
/// was written against (Envoy 1.40's `v0.2.0`, which Envoy compares with its own), or null
/// when this Envoy lacks a callback the module calls (`abi_check`): Envoy then refuses every
/// configuration that names the module.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const std::ffi::c_char {
    let missing = abi_check::missing();
    if !missing.is_empty() {
        // Not through Envoy's log: its callbacks are what is missing.
        eprintln!(
            "calico-alp native module: this Envoy does not export {missing:?}; the module needs \
             the dynamic-module ABI {} (Envoy 1.40)",
            String::from_utf8_lossy(&abi::ABI_VERSION[..abi::ABI_VERSION.len() - 1])
        );
        return std::ptr::null();
    }
    abi::ABI_VERSION.as_ptr().cast()
}

//! What every hook needs around its work: configuration pointers held as `Arc`s, Envoy's
//! buffers copied, and panics caught at the ABI boundary (unwinding into Envoy would abort it;
//! the module is built with `panic = "unwind"` for this) and turned into a fail-closed answer.

use crate::abi::EnvoyBuffer;
use crate::filter_config::FilterConfig;
use crate::host;
use alp_filter::host::Level;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Copies an Envoy buffer passed to a hook.
///
/// # Safety
/// `b` must be valid for the current hook.
pub unsafe fn bytes(b: EnvoyBuffer) -> Vec<u8> {
    if b.ptr.is_null() || b.length == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy passes `length` readable bytes valid during the hook.
    unsafe { std::slice::from_raw_parts(b.ptr, b.length) }.to_vec()
}

/// Runs `make` for a `*_config_new`: the configuration as a pointer for Envoy, or null (Envoy
/// then refuses the configuration) after logging why.
pub fn config_new(
    what: &str,
    make: impl FnOnce() -> Result<FilterConfig, String>,
) -> *const c_void {
    match catch_unwind(AssertUnwindSafe(make)) {
        Ok(Ok(config)) => Arc::into_raw(Arc::new(config)) as *const c_void,
        Ok(Err(err)) => {
            host::log(
                Level::Error,
                &format!("calico-alp {what} filter configuration refused: {err}"),
            );
            std::ptr::null()
        }
        Err(_) => {
            host::log(
                Level::Error,
                &format!("calico-alp {what} filter configuration failed (panic)"),
            );
            std::ptr::null()
        }
    }
}

/// Releases a configuration pointer made by [`config_new`].
///
/// # Safety
/// `ptr` is null or from [`config_new`], and not used again.
pub unsafe fn config_destroy(ptr: *const c_void) {
    if !ptr.is_null() {
        // SAFETY: made by `Arc::into_raw` in `config_new`; Envoy destroys it once.
        drop(unsafe { Arc::from_raw(ptr as *const FilterConfig) });
    }
}

/// Another reference to the configuration behind `ptr`.
///
/// # Safety
/// `ptr` is null or from [`config_new`] and not yet destroyed.
pub unsafe fn config_arc(ptr: *const c_void) -> Option<Arc<FilterConfig>> {
    if ptr.is_null() {
        return None;
    }
    let ptr = ptr as *const FilterConfig;
    // SAFETY: `ptr` holds a strong count (from `config_new`) until `config_destroy`.
    unsafe {
        Arc::increment_strong_count(ptr);
        Some(Arc::from_raw(ptr))
    }
}

/// Runs `work`; after a panic logs it and returns `failed`.
pub fn catch<T>(what: &str, failed: T, work: impl FnOnce() -> T) -> T {
    catch_with(what, || failed, work)
}

/// Runs `work`; after a panic logs it and returns what `failed` does (which fails closed).
pub fn catch_with<T>(what: &str, failed: impl FnOnce() -> T, work: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(value) => value,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            host::log(
                Level::Error,
                &format!("calico-alp panicked while {what}: {message}"),
            );
            failed()
        }
    }
}

//! The HTTP filter's event hooks (`envoy.filters.http.dynamic_modules`): a configuration per
//! `DynamicModuleFilter`, a filter object per stream, and the request headers decided with
//! `alp-filter`'s request path (`VmState::on_request_headers`: attributes, engine, D9-D12
//! replies, path rewrite, metrics, decision log). Every other hook lets the stream go on.
//!
//! A panic in the filter is caught at the hook (Envoy would abort): the request is refused with
//! a 500 and the panic logged.

use crate::abi::{self, EnvoyBuffer};
use crate::filter_config::FilterConfig;
use crate::guard;
use crate::host::{self, ConfigTarget, Target};
use crate::metric_table::Kind;
use crate::ticker;
use crate::worker::Worker;
use alp_filter::decide::Action;
use alp_filter::host::{Host, Level};
use std::ffi::c_void;
use std::rc::Rc;

/// One stream's filter: this worker's state for its configuration.
struct HttpFilter {
    worker: Rc<Worker>,
}

/// # Safety
/// Envoy passes its configuration pointer and the filter's name and configuration bytes, valid
/// during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy_ptr: abi::HttpFilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> abi::HttpFilterConfigModulePtr {
    // SAFETY: Envoy's configuration bytes for the duration of this call.
    let bytes = unsafe { guard::bytes(config) };
    guard::config_new("HTTP", || {
        let config = FilterConfig::new(Kind::Http, ConfigTarget::Http(config_envoy_ptr), &bytes)?;
        if config.config.filter.metrics {
            ticker::register(config.id, Kind::Http, config_envoy_ptr);
        }
        Ok(config)
    })
}

/// # Safety
/// `config` is a pointer this module returned from `config_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: abi::HttpFilterConfigModulePtr,
) {
    // SAFETY: as documented.
    if let Some(c) = unsafe { guard::config_arc(config) } {
        ticker::unregister(c.id);
    }
    // SAFETY: as documented.
    unsafe { guard::config_destroy(config) }
}

/// The configuration's tick (`ticker`), on the main thread: the workers' counts and the
/// snapshot gauges into Envoy's stats.
///
/// # Safety
/// Envoy passes the configuration's pointers, live during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy_ptr: abi::HttpFilterConfigEnvoyPtr,
    config: abi::HttpFilterConfigModulePtr,
    _event_id: u64,
) {
    // SAFETY: as documented.
    let Some(config) = (unsafe { guard::config_arc(config) }) else {
        return;
    };
    let _ = config_envoy_ptr; // the configuration keeps its own pointer
    guard::catch("adding the counts to Envoy's stats", (), || config.tick());
}

/// # Safety
/// `config` is a pointer this module returned from `config_new` and has not destroyed.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: abi::HttpFilterConfigModulePtr,
    _filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
) -> abi::HttpFilterModulePtr {
    // SAFETY: as documented.
    let Some(config) = (unsafe { guard::config_arc(config) }) else {
        return std::ptr::null();
    };
    guard::catch("creating an HTTP filter", std::ptr::null(), || {
        let worker = Worker::of(&config);
        Box::into_raw(Box::new(HttpFilter { worker })) as *const c_void
    })
}

/// # Safety
/// `filter` is a pointer this module returned from `http_filter_new` and not yet destroyed;
/// `filter_envoy_ptr` is Envoy's for the same stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: abi::HttpFilterEnvoyPtr,
    filter: abi::HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::HeadersStatus {
    // SAFETY: as documented.
    let Some(filter) = (unsafe { (filter as *const HttpFilter).as_ref() }) else {
        return abi::HEADERS_CONTINUE;
    };
    let refused = || {
        refuse_after_panic(filter_envoy_ptr);
        abi::HEADERS_STOP_ITERATION
    };
    guard::catch_with("deciding a request", refused, || {
        let host = filter.worker.host(Target::Http(filter_envoy_ptr));
        let action = filter.worker.vm.on_request_headers(&host);
        filter.worker.after_decision();
        match action {
            Action::Continue => abi::HEADERS_CONTINUE,
            Action::Replied => abi::HEADERS_STOP_ITERATION,
        }
    })
}

/// Fail closed: a request whose decision panicked is answered 500.
fn refuse_after_panic(filter_envoy_ptr: abi::HttpFilterEnvoyPtr) {
    let host = host::StreamHost {
        target: Target::Http(filter_envoy_ptr),
        filter_state_prefix: crate::worker::FILTER_STATE_PREFIX,
    };
    host.log(
        Level::Error,
        "request refused (500): the policy filter failed",
    );
    host.send_local_reply(
        500,
        &[("content-type", "text/plain")],
        "policy filter error",
    );
}

/// # Safety
/// `filter` is a pointer this module returned from `http_filter_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    filter: abi::HttpFilterModulePtr,
) {
    if !filter.is_null() {
        // SAFETY: made by `Box::into_raw` in `http_filter_new`; Envoy destroys it once.
        drop(unsafe { Box::from_raw(filter as *mut HttpFilter) });
    }
}

// The hooks below have nothing to do: the request was decided on its headers.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::BodyStatus {
    abi::BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
) -> abi::TrailersStatus {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::HeadersStatus {
    abi::HEADERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::BodyStatus {
    abi::BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
) -> abi::TrailersStatus {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _callout_id: u64,
    _result: abi::HttpCalloutResult,
    _headers: *const abi::EnvoyHttpHeader,
    _headers_len: usize,
    _body: *const EnvoyBuffer,
    _body_len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _stream_id: u64,
    _headers: *const abi::EnvoyHttpHeader,
    _headers_len: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_len: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _stream_id: u64,
    _trailers: *const abi::EnvoyHttpHeader,
    _trailers_len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
    _stream_id: u64,
    _reason: abi::HttpStreamResetReason,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: abi::HttpFilterEnvoyPtr,
    _: abi::HttpFilterModulePtr,
) {
}

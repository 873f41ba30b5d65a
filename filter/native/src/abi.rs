//! Raw FFI declarations for the subset of the Envoy dynamic-module ABI that this filter uses.
//!
//! Target: Envoy 1.40 (ABI marker string `v0.2.0`). Every declaration here was checked against
//! the callback symbols exported by the Envoy 1.40 binary and, for the ones marked "verified",
//! exercised in a running Envoy 1.40 (see the notes that accompany this file).
//!
//! Conventions:
//! * C enums are `u32` type aliases plus `pub const` values. An enum value that Envoy hands us
//!   (a hook argument) is therefore always a plain integer: an unknown value cannot be UB.
//!   Compare against the constants and treat anything else as "unknown".
//! * `bool` is C `_Bool` / C++ `bool` (1 byte, 0 or 1), which Rust's `bool` matches.
//! * Buffers are `(pointer, length)` pairs passed by value (two registers on x86-64/aarch64).
//!   "Envoy" buffers point into Envoy memory, "module" buffers into ours; neither is
//!   NUL-terminated, except the ABI version string returned from `on_program_init`.
//! * Opaque handles are raw pointers. `*EnvoyPtr` handles are owned by Envoy; `*ModulePtr`
//!   handles are ours (Envoy only stores them and hands them back).
#![allow(non_camel_case_types, non_upper_case_globals, dead_code)]

use core::ffi::c_void;

/// The ABI marker returned by `envoy_dynamic_module_on_program_init` (NUL-terminated).
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

// =====================================================================================
// Common types
// =====================================================================================

/// Bytes owned by Envoy; lifetime depends on the callback that produced it (see notes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    /// An empty buffer to pass as an out-parameter.
    pub const fn null() -> Self {
        Self {
            ptr: core::ptr::null(),
            length: 0,
        }
    }
}

/// Bytes owned by the module; Envoy only reads them during the call they are passed to.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// Borrow a byte slice for the duration of one call.
    pub const fn from_bytes(b: &[u8]) -> Self {
        Self {
            ptr: b.as_ptr(),
            length: b.len(),
        }
    }
    /// The empty/null buffer (e.g. "no details", "remove header").
    pub const fn null() -> Self {
        Self {
            ptr: core::ptr::null(),
            length: 0,
        }
    }
}

/// An HTTP header (key/value) owned by the module, e.g. for `http_send_response`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// An HTTP header (key/value) owned by Envoy's header map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_log_level` (mirrors spdlog's levels).
pub type LogLevel = u32;
pub const LOG_LEVEL_TRACE: LogLevel = 0;
pub const LOG_LEVEL_DEBUG: LogLevel = 1;
pub const LOG_LEVEL_INFO: LogLevel = 2;
pub const LOG_LEVEL_WARN: LogLevel = 3;
pub const LOG_LEVEL_ERROR: LogLevel = 4;
pub const LOG_LEVEL_CRITICAL: LogLevel = 5;
pub const LOG_LEVEL_OFF: LogLevel = 6;

/// `envoy_dynamic_module_type_metrics_result`.
pub type MetricsResult = u32;
pub const METRICS_SUCCESS: MetricsResult = 0;
pub const METRICS_NOT_FOUND: MetricsResult = 1;
pub const METRICS_INVALID_LABELS: MetricsResult = 2;
/// Returned by `*_define_*` once the config has left `config_new` (stat creation frozen).
pub const METRICS_FROZEN: MetricsResult = 3;

/// `envoy_dynamic_module_type_attribute_id` (CEL-style attribute names in the doc lines).
/// Full numbering up to the last id known to exist in 1.40; ids marked (v) were read back from a
/// live Envoy 1.40 (HTTP and network filter, plaintext and mTLS). Addresses come as "ip:port".
/// TLS-derived ids read in `on_network_filter_new_connection` are NOT final (handshake pending).
pub type AttributeId = u32;
pub const ATTR_REQUEST_PATH: AttributeId = 0; // request.path (v)
pub const ATTR_REQUEST_URL_PATH: AttributeId = 1; // request.url_path
pub const ATTR_REQUEST_HOST: AttributeId = 2; // request.host (v)
pub const ATTR_REQUEST_SCHEME: AttributeId = 3; // request.scheme
pub const ATTR_REQUEST_METHOD: AttributeId = 4; // request.method (v)
pub const ATTR_REQUEST_HEADERS: AttributeId = 5; // request.headers
pub const ATTR_REQUEST_REFERER: AttributeId = 6; // request.referer
pub const ATTR_REQUEST_USER_AGENT: AttributeId = 7; // request.useragent
pub const ATTR_REQUEST_TIME: AttributeId = 8; // request.time
pub const ATTR_REQUEST_ID: AttributeId = 9; // request.id (v)
pub const ATTR_REQUEST_PROTOCOL: AttributeId = 10; // request.protocol (v)
pub const ATTR_REQUEST_QUERY: AttributeId = 11; // request.query
pub const ATTR_REQUEST_DURATION: AttributeId = 12; // request.duration
pub const ATTR_REQUEST_SIZE: AttributeId = 13; // request.size
pub const ATTR_REQUEST_TOTAL_SIZE: AttributeId = 14; // request.total_size
pub const ATTR_RESPONSE_CODE: AttributeId = 15; // response.code
pub const ATTR_RESPONSE_CODE_DETAILS: AttributeId = 16; // response.code_details
pub const ATTR_RESPONSE_FLAGS: AttributeId = 17; // response.flags
pub const ATTR_RESPONSE_GRPC_STATUS: AttributeId = 18; // response.grpc_status
pub const ATTR_RESPONSE_HEADERS: AttributeId = 19; // response.headers
pub const ATTR_RESPONSE_TRAILERS: AttributeId = 20; // response.trailers
pub const ATTR_RESPONSE_SIZE: AttributeId = 21; // response.size
pub const ATTR_RESPONSE_TOTAL_SIZE: AttributeId = 22; // response.total_size
pub const ATTR_RESPONSE_BACKEND_LATENCY: AttributeId = 23; // response.backend_latency
pub const ATTR_SOURCE_ADDRESS: AttributeId = 24; // source.address (v)
pub const ATTR_SOURCE_PORT: AttributeId = 25; // source.port (v)
pub const ATTR_DESTINATION_ADDRESS: AttributeId = 26; // destination.address (v)
pub const ATTR_DESTINATION_PORT: AttributeId = 27; // destination.port (v)
pub const ATTR_CONNECTION_ID: AttributeId = 28; // connection.id (v)
pub const ATTR_CONNECTION_MTLS: AttributeId = 29; // connection.mtls (v)
pub const ATTR_CONNECTION_REQUESTED_SERVER_NAME: AttributeId = 30; // connection.requested_server_name (false unless a listener filter such as tls_inspector set the SNI)
pub const ATTR_CONNECTION_TLS_VERSION: AttributeId = 31; // connection.tls_version (v)
pub const ATTR_CONNECTION_SUBJECT_LOCAL_CERTIFICATE: AttributeId = 32; // connection.subject_local_certificate (v)
pub const ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE: AttributeId = 33; // connection.subject_peer_certificate (v)
pub const ATTR_CONNECTION_DNS_SAN_LOCAL_CERTIFICATE: AttributeId = 34; // connection.dns_san_local_certificate
pub const ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE: AttributeId = 35; // connection.dns_san_peer_certificate (v)
pub const ATTR_CONNECTION_URI_SAN_LOCAL_CERTIFICATE: AttributeId = 36; // connection.uri_san_local_certificate (v)
pub const ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE: AttributeId = 37; // connection.uri_san_peer_certificate (v)
pub const ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST: AttributeId = 38; // connection.sha256_peer_certificate_digest (v)
pub const ATTR_CONNECTION_TRANSPORT_FAILURE_REASON: AttributeId = 39; // connection.transport_failure_reason
pub const ATTR_CONNECTION_TERMINATION_DETAILS: AttributeId = 40; // connection.termination_details
pub const ATTR_UPSTREAM_ADDRESS: AttributeId = 41; // upstream.address
pub const ATTR_UPSTREAM_PORT: AttributeId = 42; // upstream.port
pub const ATTR_UPSTREAM_TLS_VERSION: AttributeId = 43; // upstream.tls_version
pub const ATTR_UPSTREAM_SUBJECT_LOCAL_CERTIFICATE: AttributeId = 44; // upstream.subject_local_certificate
pub const ATTR_UPSTREAM_SUBJECT_PEER_CERTIFICATE: AttributeId = 45; // upstream.subject_peer_certificate
pub const ATTR_UPSTREAM_DNS_SAN_LOCAL_CERTIFICATE: AttributeId = 46; // upstream.dns_san_local_certificate
pub const ATTR_UPSTREAM_DNS_SAN_PEER_CERTIFICATE: AttributeId = 47; // upstream.dns_san_peer_certificate
pub const ATTR_UPSTREAM_URI_SAN_LOCAL_CERTIFICATE: AttributeId = 48; // upstream.uri_san_local_certificate
pub const ATTR_UPSTREAM_URI_SAN_PEER_CERTIFICATE: AttributeId = 49; // upstream.uri_san_peer_certificate
pub const ATTR_UPSTREAM_SHA256_PEER_CERTIFICATE_DIGEST: AttributeId = 50; // upstream.sha256_peer_certificate_digest
pub const ATTR_UPSTREAM_LOCAL_ADDRESS: AttributeId = 51; // upstream.local_address
pub const ATTR_UPSTREAM_TRANSPORT_FAILURE_REASON: AttributeId = 52; // upstream.transport_failure_reason
pub const ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT: AttributeId = 53; // upstream.request_attempt_count
pub const ATTR_UPSTREAM_CX_POOL_READY_DURATION: AttributeId = 54; // upstream.cx_pool_ready_duration
pub const ATTR_UPSTREAM_LOCALITY: AttributeId = 55; // upstream.locality
pub const ATTR_XDS_NODE: AttributeId = 56; // xds.node
pub const ATTR_XDS_CLUSTER_NAME: AttributeId = 57; // xds.cluster_name
pub const ATTR_XDS_CLUSTER_METADATA: AttributeId = 58; // xds.cluster_metadata
pub const ATTR_XDS_LISTENER_DIRECTION: AttributeId = 59; // xds.listener_direction
pub const ATTR_XDS_LISTENER_METADATA: AttributeId = 60; // xds.listener_metadata
pub const ATTR_XDS_ROUTE_NAME: AttributeId = 61; // xds.route_name
pub const ATTR_XDS_ROUTE_METADATA: AttributeId = 62; // xds.route_metadata
pub const ATTR_XDS_VIRTUAL_HOST_NAME: AttributeId = 63; // xds.virtual_host_name
pub const ATTR_XDS_VIRTUAL_HOST_METADATA: AttributeId = 64; // xds.virtual_host_metadata
pub const ATTR_XDS_UPSTREAM_HOST_METADATA: AttributeId = 65; // xds.upstream_host_metadata
pub const ATTR_XDS_FILTER_CHAIN_NAME: AttributeId = 66; // xds.filter_chain_name
pub const ATTR_HEALTH_CHECK: AttributeId = 67; // health_check

// =====================================================================================
// HTTP filter types
// =====================================================================================

/// Envoy's `DynamicModuleHttpFilterConfig*` (passed to `config_new`; valid until `config_destroy`).
pub type HttpFilterConfigEnvoyPtr = *mut c_void;
/// Our per-config object returned from `config_new` (must be non-null on success).
pub type HttpFilterConfigModulePtr = *const c_void;
/// Envoy's `DynamicModuleHttpFilter*` (per stream; valid until `on_http_filter_destroy`).
pub type HttpFilterEnvoyPtr = *mut c_void;
/// Our per-stream object returned from `on_http_filter_new`.
pub type HttpFilterModulePtr = *const c_void;
/// Our per-route config (unused, but part of optional hook signatures).
pub type HttpFilterPerRouteConfigModulePtr = *const c_void;

/// A configuration's scheduler (`http_filter_config_scheduler_new`); the module deletes it.
pub type HttpFilterConfigSchedulerModulePtr = *mut c_void;

/// `envoy_dynamic_module_type_http_header_type`.
pub type HttpHeaderType = u32;
pub const HEADER_TYPE_REQUEST_HEADER: HttpHeaderType = 0;
pub const HEADER_TYPE_REQUEST_TRAILER: HttpHeaderType = 1;
pub const HEADER_TYPE_RESPONSE_HEADER: HttpHeaderType = 2;
pub const HEADER_TYPE_RESPONSE_TRAILER: HttpHeaderType = 3;

/// `..._on_http_filter_request_headers_status` / `..._response_headers_status` (FilterHeadersStatus).
pub type HeadersStatus = u32;
pub const HEADERS_CONTINUE: HeadersStatus = 0;
pub const HEADERS_STOP_ITERATION: HeadersStatus = 1;
pub const HEADERS_CONTINUE_AND_DONT_END_STREAM: HeadersStatus = 2;
pub const HEADERS_STOP_ALL_ITERATION_AND_BUFFER: HeadersStatus = 3;
pub const HEADERS_STOP_ALL_ITERATION_AND_WATERMARK: HeadersStatus = 4;

/// `..._request_body_status` / `..._response_body_status` (FilterDataStatus).
pub type BodyStatus = u32;
pub const BODY_CONTINUE: BodyStatus = 0;
pub const BODY_STOP_ITERATION_AND_BUFFER: BodyStatus = 1;
pub const BODY_STOP_ITERATION_AND_WATERMARK: BodyStatus = 2;
pub const BODY_STOP_ITERATION_NO_BUFFER: BodyStatus = 3;

/// `..._request_trailers_status` / `..._response_trailers_status` (FilterTrailersStatus).
pub type TrailersStatus = u32;
pub const TRAILERS_CONTINUE: TrailersStatus = 0;
pub const TRAILERS_STOP_ITERATION: TrailersStatus = 1;

/// `..._on_http_filter_local_reply_status` (optional hook's return).
pub type LocalReplyStatus = u32;
pub const LOCAL_REPLY_CONTINUE: LocalReplyStatus = 0;
pub const LOCAL_REPLY_CONTINUE_AND_RESET_STREAM: LocalReplyStatus = 1;

/// `envoy_dynamic_module_type_http_callout_result` (arg of the callout-done hooks).
pub type HttpCalloutResult = u32;
/// `envoy_dynamic_module_type_http_stream_reset_reason` (arg of the stream-reset hooks).
pub type HttpStreamResetReason = u32;

// =====================================================================================
// Network filter types
// =====================================================================================

/// Envoy's `DynamicModuleNetworkFilterConfig*` (valid until `network_filter_config_destroy`).
pub type NetworkFilterConfigEnvoyPtr = *mut c_void;
/// Our per-config object returned from `network_filter_config_new`.
pub type NetworkFilterConfigModulePtr = *const c_void;
/// Envoy's `DynamicModuleNetworkFilter*` (per connection; valid until `network_filter_destroy`).
pub type NetworkFilterEnvoyPtr = *mut c_void;
/// Our per-connection object returned from `network_filter_new`.
pub type NetworkFilterModulePtr = *const c_void;
/// A network configuration's scheduler; the module deletes it.
pub type NetworkFilterConfigSchedulerModulePtr = *mut c_void;

/// `envoy_dynamic_module_type_on_network_filter_data_status` (Network::FilterStatus).
pub type NetworkDataStatus = u32;
pub const NETWORK_CONTINUE: NetworkDataStatus = 0;
pub const NETWORK_STOP_ITERATION: NetworkDataStatus = 1;

/// `envoy_dynamic_module_type_network_connection_close_type`.
pub type NetworkCloseType = u32;
pub const CLOSE_FLUSH_WRITE: NetworkCloseType = 0;
pub const CLOSE_NO_FLUSH: NetworkCloseType = 1;
pub const CLOSE_FLUSH_WRITE_AND_DELAY: NetworkCloseType = 2;
pub const CLOSE_ABORT: NetworkCloseType = 3;
pub const CLOSE_ABORT_RESET: NetworkCloseType = 4;

/// `envoy_dynamic_module_type_network_connection_event` (arg of `on_network_filter_event`).
pub type NetworkConnectionEvent = u32;
pub const EVENT_REMOTE_CLOSE: NetworkConnectionEvent = 0;
pub const EVENT_LOCAL_CLOSE: NetworkConnectionEvent = 1;
pub const EVENT_CONNECTED: NetworkConnectionEvent = 2;
pub const EVENT_CONNECTED_ZERO_RTT: NetworkConnectionEvent = 3;

// =====================================================================================
// Callbacks implemented by Envoy (exported from the envoy binary)
// =====================================================================================

unsafe extern "C" {
    // ---------------------------------------------------------------- logging

    /// Log `message` on the `dynamic_modules` logger (1.40 keeps it; no source location).
    pub fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);
    /// True if `level` is enabled on the `dynamic_modules` logger (cheap; use before formatting).
    pub fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool;

    // ---------------------------------------------------------------- HTTP: headers

    /// Value number `index` of header `key` into `*result` (null buffer if absent); if
    /// `optional_size` is non-null it receives the number of values for `key`.
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        header_type: HttpHeaderType,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    /// Replace all values of `key` with `value` (null `value` removes the header); works for `:path`.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        header_type: HttpHeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    // ---------------------------------------------------------------- HTTP: local reply

    /// Send a local reply (status, extra headers, body, optional response-code details).
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_len: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    // ---------------------------------------------------------------- HTTP: attributes

    /// String attribute into `*result` (Envoy memory, valid until the current hook returns).
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;
    /// Integer attribute (ports, connection id, ...) into `*result`.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut u64,
    ) -> bool;
    /// Boolean attribute (connection.mtls) into `*result`.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut bool,
    ) -> bool;
    // ---------------------------------------------------------------- HTTP: routing
    /// Clear the cached route so the next filter (router) re-matches after a header change.
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
    );

    // ---------------------------------------------------------------- HTTP: filter state

    /// Store `value` as a string filter-state object under `key` (readable by
    /// `%FILTER_STATE(key:PLAIN)%`); false if the key exists read-only or stream info is gone.
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter_envoy_ptr: HttpFilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    // ---------------------------------------------------------------- HTTP: metrics

    /// Define a counter (optionally labeled) during `config_new` only; writes its id.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_len: usize,
        counter_id: *mut usize,
    ) -> MetricsResult;
    /// Define a gauge (optionally labeled) during `config_new` only; writes its id.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_len: usize,
        gauge_id: *mut usize,
    ) -> MetricsResult;
    /// Adds `value` to a counter through the configuration (no stream needed: the main
    /// thread's tick); `label_values` as many as the family was defined with.
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> MetricsResult;
    /// Set a gauge from the config (any thread-agnostic config context, e.g. a scheduled event).
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> MetricsResult;
    // ---------------------------------------------------------------- HTTP: config scheduler

    /// A scheduler that runs `on_http_filter_config_scheduled` on the main thread for this
    /// configuration; the module deletes it.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: HttpFilterConfigEnvoyPtr,
    ) -> HttpFilterConfigSchedulerModulePtr;
    /// Posts `event_id` to the main thread; callable from any thread.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: HttpFilterConfigSchedulerModulePtr,
        event_id: u64,
    );
    /// Frees a scheduler made by `http_filter_config_scheduler_new`.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: HttpFilterConfigSchedulerModulePtr,
    );

    // ---------------------------------------------------------------- network: config scheduler

    /// A scheduler that runs `on_network_filter_config_scheduled` on the main thread for this
    /// configuration; the module deletes it.
    pub fn envoy_dynamic_module_callback_network_filter_config_scheduler_new(
        config_envoy_ptr: NetworkFilterConfigEnvoyPtr,
    ) -> NetworkFilterConfigSchedulerModulePtr;
    /// Posts `event_id` to the main thread; callable from any thread.
    pub fn envoy_dynamic_module_callback_network_filter_config_scheduler_commit(
        scheduler: NetworkFilterConfigSchedulerModulePtr,
        event_id: u64,
    );
    /// Frees a scheduler made by `network_filter_config_scheduler_new`.
    pub fn envoy_dynamic_module_callback_network_filter_config_scheduler_delete(
        scheduler: NetworkFilterConfigSchedulerModulePtr,
    );

    // ---------------------------------------------------------------- network: attributes

    /// String attribute of the connection (same ids and lifetime rule as the HTTP variant).
    pub fn envoy_dynamic_module_callback_network_filter_get_attribute_string(
        filter_envoy_ptr: NetworkFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;
    /// Integer attribute of the connection.
    pub fn envoy_dynamic_module_callback_network_filter_get_attribute_int(
        filter_envoy_ptr: NetworkFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut u64,
    ) -> bool;
    /// Boolean attribute of the connection.
    pub fn envoy_dynamic_module_callback_network_filter_get_attribute_bool(
        filter_envoy_ptr: NetworkFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut bool,
    ) -> bool;

    // ---------------------------------------------------------------- network: TLS

    /// True if the connection has a TLS transport (even before the handshake completes).
    pub fn envoy_dynamic_module_callback_network_filter_is_ssl(
        filter_envoy_ptr: NetworkFilterEnvoyPtr,
    ) -> bool;
    // ---------------------------------------------------------------- network: control
    /// Close and record `details` as the connection termination details.
    pub fn envoy_dynamic_module_callback_network_filter_close_with_details(
        filter_envoy_ptr: NetworkFilterEnvoyPtr,
        close_type: NetworkCloseType,
        details: ModuleBuffer,
    );
    /// Resume the read filter chain after `new_connection`/`read` returned StopIteration.
    pub fn envoy_dynamic_module_callback_network_filter_continue_reading(
        filter_envoy_ptr: NetworkFilterEnvoyPtr,
    );

    // ---------------------------------------------------------------- network: filter state

    /// Store `value` as a string filter-state object on the connection's stream info.
    pub fn envoy_dynamic_module_callback_network_set_filter_state_bytes(
        filter_envoy_ptr: NetworkFilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    // ---------------------------------------------------------------- network: metrics (no labels)

    /// Define an unlabeled counter during `network_filter_config_new` only; writes its id.
    pub fn envoy_dynamic_module_callback_network_filter_config_define_counter(
        config_envoy_ptr: NetworkFilterConfigEnvoyPtr,
        name: ModuleBuffer,
        counter_id: *mut usize,
    ) -> MetricsResult;
    /// Adds `value` to a counter through the configuration (the main thread's tick).
    pub fn envoy_dynamic_module_callback_network_filter_config_increment_counter(
        config_envoy_ptr: NetworkFilterConfigEnvoyPtr,
        id: usize,
        value: u64,
    ) -> MetricsResult;
}

// =====================================================================================
// Event hooks: the symbols the module must export (`#[no_mangle] pub extern "C" fn`).
// Verified against Envoy 1.40 by omitting each one and loading a config (`--mode validate`).
// M = mandatory (config load fails: "Failed to resolve symbol <name>"), O = optional.
// Hooks for the HTTP filter are resolved when an HTTP DynamicModuleFilter config is loaded,
// those for the network filter when a DynamicModuleNetworkFilter config is; a module used
// only as an HTTP filter does not need the network hooks and vice versa.
// =====================================================================================
//
// Common
//  M envoy_dynamic_module_on_program_init() -> *const c_char
//      NUL-terminated ABI marker ("v0.2.0"); NULL => module rejected, config load fails.
//
// HTTP filter (return type in [])
//  M on_http_filter_config_new(HttpFilterConfigEnvoyPtr, name: EnvoyBuffer, config: EnvoyBuffer)
//        -> HttpFilterConfigModulePtr                               [null => config rejected]
//  M on_http_filter_config_destroy(HttpFilterConfigModulePtr)
//  M on_http_filter_new(HttpFilterConfigModulePtr, HttpFilterEnvoyPtr) -> HttpFilterModulePtr
//  M on_http_filter_request_headers(HttpFilterEnvoyPtr, HttpFilterModulePtr, end_of_stream: bool)
//        -> HeadersStatus
//  M on_http_filter_request_body(HttpFilterEnvoyPtr, HttpFilterModulePtr, end_of_stream: bool)
//        -> BodyStatus
//  M on_http_filter_request_trailers(HttpFilterEnvoyPtr, HttpFilterModulePtr) -> TrailersStatus
//  M on_http_filter_response_headers(HttpFilterEnvoyPtr, HttpFilterModulePtr, end_of_stream: bool)
//        -> HeadersStatus
//  M on_http_filter_response_body(HttpFilterEnvoyPtr, HttpFilterModulePtr, end_of_stream: bool)
//        -> BodyStatus
//  M on_http_filter_response_trailers(HttpFilterEnvoyPtr, HttpFilterModulePtr) -> TrailersStatus
//  M on_http_filter_stream_complete(HttpFilterEnvoyPtr, HttpFilterModulePtr)
//  M on_http_filter_destroy(HttpFilterModulePtr)
//  M on_http_filter_scheduled(HttpFilterEnvoyPtr, HttpFilterModulePtr, event_id: u64)
//  M on_http_filter_http_callout_done(HttpFilterEnvoyPtr, HttpFilterModulePtr, callout_id: u64,
//        result: HttpCalloutResult, headers: *const EnvoyHttpHeader, headers_len: usize,
//        body_chunks: *const EnvoyBuffer, body_chunks_len: usize)
//  M on_http_filter_http_stream_headers(HttpFilterEnvoyPtr, HttpFilterModulePtr, stream_id: u64,
//        headers: *const EnvoyHttpHeader, headers_len: usize, end_stream: bool)
//  M on_http_filter_http_stream_data(HttpFilterEnvoyPtr, HttpFilterModulePtr, stream_id: u64,
//        data: *const EnvoyBuffer, data_len: usize, end_stream: bool)
//  M on_http_filter_http_stream_trailers(HttpFilterEnvoyPtr, HttpFilterModulePtr, stream_id: u64,
//        trailers: *const EnvoyHttpHeader, trailers_len: usize)
//  M on_http_filter_http_stream_complete(HttpFilterEnvoyPtr, HttpFilterModulePtr, stream_id: u64)
//  M on_http_filter_http_stream_reset(HttpFilterEnvoyPtr, HttpFilterModulePtr, stream_id: u64,
//        reason: HttpStreamResetReason)
//  M on_http_filter_downstream_above_write_buffer_high_watermark(HttpFilterEnvoyPtr, HttpFilterModulePtr)
//  M on_http_filter_downstream_below_write_buffer_low_watermark(HttpFilterEnvoyPtr, HttpFilterModulePtr)
//  O on_http_filter_config_scheduled(HttpFilterConfigEnvoyPtr, HttpFilterConfigModulePtr, event_id: u64)
//        (main thread; needed only if http_filter_config_scheduler_* is used)
//  O on_http_filter_local_reply(HttpFilterEnvoyPtr, HttpFilterModulePtr, response_code: u32,
//        details: EnvoyBuffer, reset_imminent: bool) -> LocalReplyStatus
//  O on_http_filter_config_http_callout_done(HttpFilterConfigEnvoyPtr, HttpFilterConfigModulePtr,
//        callout_id: u64, result, headers, headers_len, body_chunks, body_chunks_len)
//  O on_http_filter_config_http_stream_{headers,data,trailers,complete,reset}
//        (HttpFilterConfigEnvoyPtr, HttpFilterConfigModulePtr, stream_id: u64, ...as above)
//  O on_http_filter_per_route_config_new(name: EnvoyBuffer, config: EnvoyBuffer)
//        -> HttpFilterPerRouteConfigModulePtr  (resolved only when a per-route config is used)
//  O on_http_filter_per_route_config_destroy(HttpFilterPerRouteConfigModulePtr)
//
// Network filter
//  M on_network_filter_config_new(NetworkFilterConfigEnvoyPtr, name: EnvoyBuffer, config: EnvoyBuffer)
//        -> NetworkFilterConfigModulePtr                            [null => config rejected]
//  M on_network_filter_config_destroy(NetworkFilterConfigModulePtr)
//  M on_network_filter_new(NetworkFilterConfigModulePtr, NetworkFilterEnvoyPtr)
//        -> NetworkFilterModulePtr                                  [null => connection closed]
//  M on_network_filter_new_connection(NetworkFilterEnvoyPtr, NetworkFilterModulePtr)
//        -> NetworkDataStatus
//  M on_network_filter_read(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, data_length: usize,
//        end_stream: bool) -> NetworkDataStatus
//  M on_network_filter_write(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, data_length: usize,
//        end_stream: bool) -> NetworkDataStatus
//  M on_network_filter_event(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, event: NetworkConnectionEvent)
//  M on_network_filter_destroy(NetworkFilterModulePtr)
//  O on_network_filter_config_scheduled(NetworkFilterConfigModulePtr, event_id: u64)
//        (NOTE: two arguments, unlike the HTTP variant)
//  O on_network_filter_scheduled(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, event_id: u64)
//  O on_network_filter_http_callout_done(NetworkFilterEnvoyPtr, NetworkFilterModulePtr, callout_id: u64,
//        result, headers, headers_len, body_chunks, body_chunks_len)
//  O on_network_filter_above_write_buffer_high_watermark(NetworkFilterEnvoyPtr, NetworkFilterModulePtr)
//  O on_network_filter_below_write_buffer_low_watermark(NetworkFilterEnvoyPtr, NetworkFilterModulePtr)

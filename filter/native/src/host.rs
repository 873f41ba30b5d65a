//! `alp-filter`'s hosts over Envoy's dynamic-module ABI: [`StreamHost`] for one HTTP stream or
//! one connection (what a decision reads and does), and the stats of a filter configuration:
//! [`ConfigHost`] while Envoy creates it (the only time Envoy lets stats be defined), and
//! [`TickHost`] on its tick, when every worker's counts are added on Envoy's main thread.
//!
//! Attributes are read with the ABI's attribute getters, which answer "not there" and "could not
//! be read" alike (`false`); both read as absent here, so a TLS attribute of a plaintext
//! connection is absent as in the wasm filter. Nothing here goes through Envoy's shared data or
//! HTTP callouts: the native module follows control itself (`follower`), so those host calls
//! answer "nothing" and are never made.

use crate::abi::{self, EnvoyBuffer, ModuleBuffer, ModuleHttpHeader};
use crate::metric_table::{Define, Definitions, Kind, RuntimeSeries};
use alp_filter::host::{CasMismatch, Clock, Host, HostError, Level, MethodAndPath, Stats};
use std::cell::RefCell;
use std::time::Duration;

/// What a [`StreamHost`] acts on.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Http(abi::HttpFilterEnvoyPtr),
    Connection(abi::NetworkFilterEnvoyPtr),
}

/// The host of one hook call on a stream or connection.
pub struct StreamHost {
    pub target: Target,
    /// The filter-state key decisions go to (`decide::FILTER_STATE` under the module's prefix).
    pub filter_state_prefix: &'static str,
}

fn buffer(s: &str) -> ModuleBuffer {
    ModuleBuffer::from_bytes(s.as_bytes())
}

/// Copies an Envoy buffer (valid only during the hook) into our memory.
///
/// # Safety
/// `b` must come from an ABI call that returned success in the current hook.
unsafe fn copy(b: EnvoyBuffer) -> Vec<u8> {
    if b.ptr.is_null() || b.length == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy gave a pointer to `length` readable bytes that live until the hook returns.
    unsafe { std::slice::from_raw_parts(b.ptr, b.length) }.to_vec()
}

fn level(level: Level) -> abi::LogLevel {
    match level {
        Level::Trace => abi::LOG_LEVEL_TRACE,
        Level::Debug => abi::LOG_LEVEL_DEBUG,
        Level::Info => abi::LOG_LEVEL_INFO,
        Level::Warn => abi::LOG_LEVEL_WARN,
        Level::Error => abi::LOG_LEVEL_ERROR,
    }
}

/// Writes `message` to Envoy's log (logger `dynamic_modules`); callable from any thread.
pub fn log(at: Level, message: &str) {
    // SAFETY: plain values; Envoy copies the message during the call.
    unsafe {
        if abi::envoy_dynamic_module_callback_log_enabled(level(at)) {
            abi::envoy_dynamic_module_callback_log(level(at), buffer(message));
        }
    }
}

pub fn log_enabled(at: Level) -> bool {
    // SAFETY: a plain value.
    unsafe { abi::envoy_dynamic_module_callback_log_enabled(level(at)) }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The attribute behind a property path the filter reads, and its type.
enum Attribute {
    Text(abi::AttributeId),
    Int(abi::AttributeId),
    Flag(abi::AttributeId),
}

fn attribute(path: &[&str]) -> Option<Attribute> {
    use Attribute::*;
    Some(match path {
        ["source", "address"] => Text(abi::ATTR_SOURCE_ADDRESS),
        ["destination", "address"] => Text(abi::ATTR_DESTINATION_ADDRESS),
        ["connection", "id"] => Int(abi::ATTR_CONNECTION_ID),
        ["connection", "mtls"] => Flag(abi::ATTR_CONNECTION_MTLS),
        ["connection", "tls_version"] => Text(abi::ATTR_CONNECTION_TLS_VERSION),
        ["connection", "uri_san_peer_certificate"] => {
            Text(abi::ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE)
        }
        ["connection", "uri_san_local_certificate"] => {
            Text(abi::ATTR_CONNECTION_URI_SAN_LOCAL_CERTIFICATE)
        }
        ["connection", "dns_san_peer_certificate"] => {
            Text(abi::ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE)
        }
        ["connection", "dns_san_local_certificate"] => {
            Text(abi::ATTR_CONNECTION_DNS_SAN_LOCAL_CERTIFICATE)
        }
        ["connection", "subject_peer_certificate"] => {
            Text(abi::ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE)
        }
        ["connection", "subject_local_certificate"] => {
            Text(abi::ATTR_CONNECTION_SUBJECT_LOCAL_CERTIFICATE)
        }
        _ => return None,
    })
}

impl StreamHost {
    fn text_attribute(&self, id: abi::AttributeId) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::null();
        // SAFETY: the filter pointer is the one of the current hook; `out` is ours.
        let found = unsafe {
            match self.target {
                Target::Http(f) => {
                    abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                        f, id, &mut out,
                    )
                }
                Target::Connection(f) => {
                    abi::envoy_dynamic_module_callback_network_filter_get_attribute_string(
                        f, id, &mut out,
                    )
                }
            }
        };
        // SAFETY: returned by a successful call in this hook.
        found.then(|| unsafe { copy(out) })
    }

    fn int_attribute(&self, id: abi::AttributeId) -> Option<u64> {
        let mut out = 0u64;
        // SAFETY: as above.
        let found = unsafe {
            match self.target {
                Target::Http(f) => {
                    abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                        f, id, &mut out,
                    )
                }
                Target::Connection(f) => {
                    abi::envoy_dynamic_module_callback_network_filter_get_attribute_int(
                        f, id, &mut out,
                    )
                }
            }
        };
        found.then_some(out)
    }

    fn flag_attribute(&self, id: abi::AttributeId) -> Option<bool> {
        let mut out = false;
        // SAFETY: as above.
        let found = unsafe {
            match self.target {
                Target::Http(f) => {
                    abi::envoy_dynamic_module_callback_http_filter_get_attribute_bool(
                        f, id, &mut out,
                    )
                }
                Target::Connection(f) => {
                    abi::envoy_dynamic_module_callback_network_filter_get_attribute_bool(
                        f, id, &mut out,
                    )
                }
            }
        };
        found.then_some(out)
    }

    fn header(&self, name: &str) -> Option<Vec<u8>> {
        let Target::Http(f) = self.target else {
            return None;
        };
        let mut out = EnvoyBuffer::null();
        let mut count = 0usize;
        // SAFETY: the filter pointer is the current stream's; `out` and `count` are ours.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                f,
                abi::HEADER_TYPE_REQUEST_HEADER,
                buffer(name),
                &mut out,
                0,
                &mut count,
            )
        };
        // SAFETY: returned by a successful call in this hook.
        (found && count > 0).then(|| unsafe { copy(out) })
    }
}

impl Host for StreamHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(match (attribute(path), self.target) {
            // Reading `connection.tls_version` before a TLS handshake completes makes Envoy keep
            // a wrong value for the whole connection, and the network filter asks whether a
            // connection is TLS at once: it only needs to know that TLS is there.
            (Some(Attribute::Text(abi::ATTR_CONNECTION_TLS_VERSION)), Target::Connection(f)) => {
                // SAFETY: the connection's filter pointer in the current hook.
                let tls = unsafe { abi::envoy_dynamic_module_callback_network_filter_is_ssl(f) };
                tls.then(|| b"tls".to_vec())
            }
            (Some(Attribute::Text(id)), _) => self.text_attribute(id),
            (Some(Attribute::Int(id)), _) => {
                self.int_attribute(id).map(|v| v.to_le_bytes().to_vec())
            }
            (Some(Attribute::Flag(id)), _) => self.flag_attribute(id).map(|v| vec![u8::from(v)]),
            (None, _) => None,
        })
    }

    fn request_method_and_path(&self) -> Result<MethodAndPath, HostError> {
        Ok((self.header(":method"), self.header(":path")))
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.header(name).and_then(|v| String::from_utf8(v).ok())
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) {
        let key = format!("{}{name}", self.filter_state_prefix);
        // SAFETY: the current hook's filter pointer; Envoy copies key and value.
        unsafe {
            match self.target {
                Target::Http(f) => {
                    abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                        f,
                        buffer(&key),
                        ModuleBuffer::from_bytes(value),
                    );
                }
                Target::Connection(f) => {
                    abi::envoy_dynamic_module_callback_network_set_filter_state_bytes(
                        f,
                        buffer(&key),
                        ModuleBuffer::from_bytes(value),
                    );
                }
            }
        }
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        let Target::Http(f) = self.target else {
            return Err(HostError);
        };
        // SAFETY: the current stream's filter pointer; Envoy copies the strings.
        let done = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                f,
                abi::HEADER_TYPE_REQUEST_HEADER,
                buffer(name),
                buffer(value),
            )
        };
        if done {
            Ok(())
        } else {
            Err(HostError)
        }
    }

    fn clear_route_cache(&self) {
        if let Target::Http(f) = self.target {
            // SAFETY: the current stream's filter pointer.
            unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(f) }
        }
    }

    fn shared_data(&self, _key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (None, None)
    }

    fn set_shared_data(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), CasMismatch> {
        Err(CasMismatch)
    }

    fn send_local_reply(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let Target::Http(f) = self.target else {
            return;
        };
        let mut headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        // SAFETY: the current stream's filter pointer; the headers and body outlive the call,
        // which copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                f,
                u32::from(status),
                headers.as_mut_ptr(),
                headers.len(),
                buffer(body),
                buffer("calico_alp"),
            );
        }
    }

    fn close_downstream(&self) {
        if let Target::Connection(f) = self.target {
            // SAFETY: the current connection's filter pointer. Envoy delivers the close event
            // to this filter before the call returns (`network_filter` is re-entrant for it).
            unsafe {
                abi::envoy_dynamic_module_callback_network_filter_close_with_details(
                    f,
                    abi::CLOSE_NO_FLUSH,
                    buffer("calico_alp_denied"),
                );
            }
        }
    }

    fn dispatch_call(&self, _: &str, _: &[(&str, &str)], _: Duration) -> Result<u32, String> {
        Err("the native module makes no HTTP callouts".to_string())
    }

    fn call_response_header(&self, _name: &str) -> Option<String> {
        None
    }

    fn call_response_body(&self, _size: usize) -> Option<Vec<u8>> {
        None
    }

    fn log(&self, at: Level, message: &str) {
        log(at, message);
    }

    fn log_enabled(&self, at: Level) -> bool {
        log_enabled(at)
    }
}

impl Clock for StreamHost {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// A filter configuration of Envoy's, for its stats: valid from its `config_new` to its
/// `config_destroy` (the tick stops before that; `ticker`).
#[derive(Debug, Clone, Copy)]
pub enum ConfigTarget {
    Http(abi::HttpFilterConfigEnvoyPtr),
    Network(abi::NetworkFilterConfigEnvoyPtr),
}

// SAFETY: only a handle: the module passes it back to Envoy from `config_new` and from the
// configuration's scheduled events, both on Envoy's main thread, while the configuration lives.
unsafe impl Send for ConfigTarget {}
unsafe impl Sync for ConfigTarget {}

impl Define for ConfigTarget {
    fn counter(&self, name: &str, label_names: &[&str]) -> Option<usize> {
        let mut id = 0usize;
        let names: Vec<ModuleBuffer> = label_names.iter().map(|n| buffer(n)).collect();
        // SAFETY: the configuration pointer of the current `config_new`; Envoy copies the names.
        let result = unsafe {
            match self {
                ConfigTarget::Http(c) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                        *c,
                        buffer(name),
                        names.as_ptr(),
                        names.len(),
                        &mut id,
                    )
                }
                ConfigTarget::Network(c) => {
                    if !label_names.is_empty() {
                        return None;
                    }
                    abi::envoy_dynamic_module_callback_network_filter_config_define_counter(
                        *c,
                        buffer(name),
                        &mut id,
                    )
                }
            }
        };
        (result == abi::METRICS_SUCCESS).then_some(id)
    }

    fn gauge(&self, name: &str) -> Option<usize> {
        let ConfigTarget::Http(c) = self else {
            return None;
        };
        let mut id = 0usize;
        // SAFETY: as above.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                *c,
                buffer(name),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        (result == abi::METRICS_SUCCESS).then_some(id)
    }
}

/// What `Metrics::define` sees in `config_new`: it defines stats into `definitions` and sets
/// gauges through the configuration.
pub struct ConfigHost<'a> {
    pub target: ConfigTarget,
    pub definitions: &'a RefCell<Definitions>,
}

impl ConfigHost<'_> {
    fn kind(&self) -> Kind {
        match self.target {
            ConfigTarget::Http(_) => Kind::Http,
            ConfigTarget::Network(_) => Kind::Network,
        }
    }
}

impl Clock for ConfigHost<'_> {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

impl Stats for ConfigHost<'_> {
    fn define_counter(&self, family: &str, labels: &[(&str, &str)]) -> Option<u32> {
        let kind = self.kind();
        self.definitions
            .try_borrow_mut()
            .ok()?
            .define_counter(kind, &self.target, family, labels)
    }
    fn increment_counter(&self, _: u32, _: u64) {}
    fn define_gauge(&self, name: &str) -> Option<u32> {
        self.definitions
            .try_borrow_mut()
            .ok()?
            .define_gauge(&self.target, name)
    }
    fn set_gauge(&self, id: u32, value: u64) {
        if let Ok(d) = self.definitions.try_borrow() {
            set_config_gauge(self.target, &d, id, value);
        }
    }
}

/// Adds a worker's counts to Envoy's stats through its configuration, on Envoy's main thread
/// (the configuration's tick): Envoy does the work of a labeled counter (building its name)
/// there, not on the request path. Per-policy series are made here too, in the configuration's
/// runtime series.
pub struct TickHost<'a> {
    pub target: ConfigTarget,
    pub definitions: &'a Definitions,
    pub runtime: &'a RuntimeSeries,
}

impl Clock for TickHost<'_> {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

impl Stats for TickHost<'_> {
    fn define_counter(&self, family: &str, labels: &[(&str, &str)]) -> Option<u32> {
        let kind = match self.target {
            ConfigTarget::Http(_) => Kind::Http,
            ConfigTarget::Network(_) => Kind::Network,
        };
        self.definitions
            .runtime_series(kind, self.runtime, family, labels)
    }

    fn increment_counter(&self, id: u32, by: u64) {
        let Some(series) = self.definitions.series(self.runtime, id) else {
            return;
        };
        let s = series.get();
        let values: Vec<ModuleBuffer> = s.label_values.iter().map(|v| buffer(v)).collect();
        // SAFETY: the configuration's pointer during its scheduled event; the label values
        // outlive the call.
        unsafe {
            match self.target {
                ConfigTarget::Http(c) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                        c,
                        s.envoy_id,
                        values.as_ptr(),
                        values.len(),
                        by,
                    );
                }
                ConfigTarget::Network(c) => {
                    abi::envoy_dynamic_module_callback_network_filter_config_increment_counter(
                        c, s.envoy_id, by,
                    );
                }
            }
        }
    }

    fn define_gauge(&self, _name: &str) -> Option<u32> {
        None
    }

    fn set_gauge(&self, id: u32, value: u64) {
        set_config_gauge(self.target, self.definitions, id, value);
    }
}

/// Sets gauge `id` (of `definitions`) through an HTTP configuration (network ones have none).
fn set_config_gauge(target: ConfigTarget, definitions: &Definitions, id: u32, value: u64) {
    let (ConfigTarget::Http(c), Some((_, envoy_id))) =
        (target, definitions.gauges.get(id as usize))
    else {
        return;
    };
    // SAFETY: a live configuration pointer (its `config_new`, or its tick); no labels.
    unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
            c,
            *envoy_id,
            std::ptr::null(),
            0,
            value,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property `alp-filter` reads (attributes.rs, connection.rs) has its attribute, of
    /// the type the wasm host returns it in.
    #[test]
    fn every_property_the_filter_reads_has_its_attribute() {
        fn text(path: &[&str]) -> bool {
            matches!(attribute(path), Some(Attribute::Text(_)))
        }
        for side in ["peer", "local"] {
            for what in ["uri_san", "dns_san", "subject"] {
                let name = format!("{what}_{side}_certificate");
                assert!(text(&["connection", name.as_str()]), "{name}");
            }
        }
        assert!(text(&["source", "address"]));
        assert!(text(&["destination", "address"]));
        assert!(text(&["connection", "tls_version"]));
        assert!(matches!(
            attribute(&["connection", "id"]),
            Some(Attribute::Int(_))
        ));
        assert!(matches!(
            attribute(&["connection", "mtls"]),
            Some(Attribute::Flag(_))
        ));
        assert!(attribute(&["request", "headers"]).is_none());
        assert!(attribute(&[]).is_none());
    }
}

//! The real host: [`ProxyHost`], proxy-wasm host calls. The request path reads `:method` and
//! `:path` with one raw call for the serialized header map (`raw`), parsed by
//! [`header_map::method_and_path`](super::header_map::method_and_path).

use super::header_map::method_and_path;
use super::{CasMismatch, Clock, Host, HostError, Level, MethodAndPath, Stats};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// The one host call the SDK wraps too expensively for the request path: the request's header
/// map in the proxy-wasm serialization, without building a `Vec<(String, Bytes)>` of every
/// header (one allocation per name and value) as `hostcalls::get_map_bytes` does.
mod raw {
    /// `MapType::HttpRequestHeaders` in the proxy-wasm ABI.
    const HTTP_REQUEST_HEADERS: u32 = 0;

    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }

    /// The serialized request header map; `None` on a host error (or outside an HTTP stream).
    pub(super) fn request_header_pairs() -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes the address and size of a buffer it allocated in this VM
        // through `proxy_on_memory_allocate`, i.e. with the global allocator, as the SDK's own
        // calls do; ownership passes to us and the Vec frees it.
        unsafe {
            if proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) != 0
                || data.is_null()
            {
                return None;
            }
            Some(Vec::from_raw_parts(data, size, size))
        }
    }
}

/// Envoy's log level as last read from the host (shared by every context of this VM).
static LOG_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// The real host: proxy-wasm host calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyHost;

impl ProxyHost {
    /// Reads Envoy's current log level for the wasm logger, so disabled lines cost nothing.
    pub fn refresh_log_level(&self) {
        use proxy_wasm::types::LogLevel;
        if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
            let ours = match level {
                LogLevel::Trace => Level::Trace,
                LogLevel::Debug => Level::Debug,
                LogLevel::Info => Level::Info,
                LogLevel::Warn => Level::Warn,
                LogLevel::Error | LogLevel::Critical => Level::Error,
            };
            LOG_LEVEL.store(ours as u8, Ordering::Relaxed);
        }
    }
}

impl Host for ProxyHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        // The SDK maps the host's NotFound to `Ok(None)`; every other status is an error.
        proxy_wasm::hostcalls::get_property(path.to_vec()).map_err(|_| HostError)
    }

    fn request_method_and_path(&self) -> Result<MethodAndPath, HostError> {
        raw::request_header_pairs()
            .map(|map| method_and_path(&map))
            .ok_or(HostError)
    }

    fn request_header(&self, name: &str) -> Option<String> {
        proxy_wasm::hostcalls::get_map_value(proxy_wasm::types::MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) {
        let _ = proxy_wasm::hostcalls::set_property(vec![name], Some(value));
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        proxy_wasm::hostcalls::set_map_value(
            proxy_wasm::types::MapType::HttpRequestHeaders,
            name,
            Some(value),
        )
        .map_err(|_| HostError)
    }

    fn clear_route_cache(&self) {
        // Envoy's foreign function; absent in hosts that re-route on header changes by
        // themselves, so its result does not matter.
        let _ = proxy_wasm::hostcalls::call_foreign_function("clear_route_cache", None);
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        proxy_wasm::hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set_shared_data(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), CasMismatch> {
        proxy_wasm::hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| CasMismatch)
    }

    fn send_local_reply(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let _ = proxy_wasm::hostcalls::send_http_response(
            u32::from(status),
            headers.to_vec(),
            Some(body.as_bytes()),
        );
    }

    fn close_downstream(&self) {
        let _ = proxy_wasm::hostcalls::close_downstream();
    }

    fn dispatch_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, String> {
        proxy_wasm::hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, vec![], timeout)
            .map_err(|status| format!("{status:?}"))
    }

    fn call_response_header(&self, name: &str) -> Option<String> {
        proxy_wasm::hostcalls::get_map_value_bytes(
            proxy_wasm::types::MapType::HttpCallResponseHeaders,
            name,
        )
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn call_response_body(&self, size: usize) -> Option<Vec<u8>> {
        proxy_wasm::hostcalls::get_buffer(
            proxy_wasm::types::BufferType::HttpCallResponseBody,
            0,
            size,
        )
        .ok()
        .flatten()
    }

    fn log(&self, level: Level, message: &str) {
        use proxy_wasm::types::LogLevel;
        if !self.log_enabled(level) {
            return;
        }
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = proxy_wasm::hostcalls::log(level, message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        level as u8 >= LOG_LEVEL.load(Ordering::Relaxed)
    }
}

impl Clock for ProxyHost {
    fn now_ms(&self) -> u64 {
        proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl Stats for ProxyHost {
    fn define_counter(&self, family: &str, labels: &[(&str, &str)]) -> Option<u32> {
        let name = crate::metrics::stat_name(family, labels);
        proxy_wasm::hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, &name).ok()
    }

    fn increment_counter(&self, id: u32, by: u64) {
        let _ = proxy_wasm::hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }

    fn define_gauge(&self, name: &str) -> Option<u32> {
        proxy_wasm::hostcalls::define_metric(proxy_wasm::types::MetricType::Gauge, name).ok()
    }

    fn set_gauge(&self, id: u32, value: u64) {
        let _ = proxy_wasm::hostcalls::record_metric(id, value);
    }
}

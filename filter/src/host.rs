//! Everything the filter needs from Envoy, behind one trait: [`Host`]. [`ProxyHost`] is the real
//! proxy-wasm implementation; tests use `fake::FakeHost`, which can share one shared-data map
//! between several fake VMs.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Log levels, as Envoy orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// `set_shared_data` refused the write because the value changed since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// The host answered a read of a request or connection attribute with an error, not with
/// "not present" (D11): the decision cannot be made and the request fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

/// `:method` and `:path` as read (each `None` when the request has none).
pub type MethodAndPath = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The host calls the filter makes. Reads of what a decision uses tell "absent" (`Ok(None)`)
/// from "could not be read" (`Err`, D11); the rest is infallible from the caller's view (a host
/// error reads as absent, or is reported in the result).
pub trait Host {
    /// An Envoy attribute (`["source", "address"]`), raw bytes; `Ok(None)` when absent.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// `:method` and `:path` of the current HTTP stream. The real host reads both with one host
    /// call (the serialized header map) instead of one call each.
    fn request_method_and_path(&self) -> Result<MethodAndPath, HostError>;
    /// Replaces a request header of the current HTTP stream (`:path` after a D10 rewrite).
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Makes Envoy choose the route again (after `:path` changed).
    fn clear_route_cache(&self);
    /// A shared-data value and its CAS token; `(None, None)` when the key does not exist.
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared-data value; with `cas`, only if the value is still the one read with it.
    /// (Envoy cannot make "create if absent" conditional: `cas: None` always writes.)
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>)
        -> Result<(), CasMismatch>;
    /// Answers the current HTTP stream locally.
    fn send_local_reply(&self, status: u16, headers: &[(&str, &str)], body: &str);
    /// Starts an HTTP callout to `cluster`; the token identifies its response.
    fn dispatch_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, String>;
    /// A header of the callout response being delivered (`:status` included).
    fn call_response_header(&self, name: &str) -> Option<String>;
    /// The body of the callout response being delivered.
    fn call_response_body(&self, size: usize) -> Option<Vec<u8>>;
    fn log(&self, level: Level, message: &str);
    /// Whether a line at `level` would be logged: check before formatting a costly one.
    fn log_enabled(&self, level: Level) -> bool;
    /// Wall-clock time, milliseconds since the Unix epoch (the same clock in every VM).
    fn now_ms(&self) -> u64;
    /// Defines (or finds) a counter metric.
    fn define_counter(&self, name: &str) -> Option<u32>;
    fn increment_counter(&self, id: u32, by: u64);
    /// Defines (or finds) a gauge metric.
    fn define_gauge(&self, name: &str) -> Option<u32>;
    fn set_gauge(&self, id: u32, value: u64);
}

/// The one host call the SDK wraps too expensively for the request path: the request's header
/// map in the proxy-wasm serialization, without building a `Vec<(String, Bytes)>` of every
/// header (one allocation per name and value) as `hostcalls::get_map_bytes` does.
mod raw {
    /// `MapType::HttpRequestHeaders` in the proxy-wasm ABI.
    const HTTP_REQUEST_HEADERS: u32 = 0;

    extern "C" {
        fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    }

    /// The serialized request header map; `None` on a host error (or outside an HTTP stream).
    pub(super) fn request_header_pairs() -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes the address and size of a buffer it allocated in this VM
        // through `proxy_on_memory_allocate`, i.e. with the global allocator, as the SDK's own
        // calls do; ownership passes to us and the Vec frees it.
        unsafe {
            if proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) != 0 || data.is_null() {
                return None;
            }
            Some(Vec::from_raw_parts(data, size, size))
        }
    }
}

/// `:method` and `:path` from a serialized header map: a u32 count, the count's (key size,
/// value size) u32 pairs, then each key and value followed by a NUL (all little-endian). A map
/// that does not parse yields what was found before the problem.
pub fn method_and_path(map: &[u8]) -> MethodAndPath {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = map.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let (mut method, mut path) = (None, None);
    let Some(count) = u32_at(0) else {
        return (method, path);
    };
    let mut data = 4usize.saturating_add(count.saturating_mul(8));
    for i in 0..count {
        let entry = i.checked_mul(8).and_then(|x| x.checked_add(4));
        let (Some(key_len), Some(value_len)) = (entry.and_then(u32_at), entry.and_then(|e| e.checked_add(4)).and_then(u32_at)) else {
            break;
        };
        let key = map.get(data..data.saturating_add(key_len));
        let value_at = data.saturating_add(key_len).saturating_add(1);
        let value = map.get(value_at..value_at.saturating_add(value_len));
        let (Some(key), Some(value)) = (key, value) else {
            break;
        };
        match key {
            b":method" if method.is_none() => method = Some(value.to_vec()),
            b":path" if path.is_none() => path = Some(value.to_vec()),
            _ => {}
        }
        if method.is_some() && path.is_some() {
            break;
        }
        data = value_at.saturating_add(value_len).saturating_add(1);
    }
    (method, path)
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

    fn now_ms(&self) -> u64 {
        proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn define_counter(&self, name: &str) -> Option<u32> {
        proxy_wasm::hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
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

#[cfg(test)]
pub mod fake {
    //! A host for tests: properties, headers and callouts are set by the test; shared data is
    //! an `Rc` map that several `FakeHost`s (several "VMs") can share.

    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::rc::Rc;

    /// Gauge ids start here, so a gauge id used as a counter (or back) finds nothing.
    pub const GAUGE_IDS: u32 = 1 << 20;

    #[derive(Debug, Default)]
    pub struct SharedData {
        map: HashMap<String, (Vec<u8>, u32)>,
        next_cas: u32,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Call {
        pub token: u32,
        pub cluster: String,
        pub headers: Vec<(String, String)>,
        pub timeout: Duration,
    }

    impl Call {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Reply {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    /// Headers and body of a callout response.
    pub type Response = (Vec<(String, String)>, Vec<u8>);

    #[derive(Debug, Default)]
    pub struct FakeHost {
        pub shared: Rc<RefCell<SharedData>>,
        pub properties: RefCell<HashMap<String, Vec<u8>>>,
        pub headers: RefCell<HashMap<String, Vec<u8>>>,
        pub now: Cell<u64>,
        pub calls: RefCell<Vec<Call>>,
        pub next_token: Cell<u32>,
        pub fail_dispatch: Cell<bool>,
        /// Headers and body of the callout response being delivered.
        pub response: RefCell<Response>,
        pub replies: RefCell<Vec<Reply>>,
        pub logs: RefCell<Vec<(Level, String)>>,
        pub counters: RefCell<Vec<(String, u64)>>,
        /// Gauges by name; their ids are offset by [`GAUGE_IDS`] from counter ids.
        pub gauges: RefCell<Vec<(String, u64)>>,
        /// Every define and update call (a request must make none).
        pub metric_calls: Cell<usize>,
        pub property_reads: Cell<usize>,
        pub shared_reads: RefCell<Vec<String>>,
        /// Properties whose read fails with a host error (D11).
        pub failing_properties: RefCell<Vec<String>>,
        /// Reading the request headers fails with a host error.
        pub fail_headers: Cell<bool>,
        /// Every `set_request_header` call.
        pub header_writes: RefCell<Vec<(String, String)>>,
        pub route_cache_clears: Cell<usize>,
    }

    impl FakeHost {
        pub fn new() -> Self {
            FakeHost {
                now: Cell::new(1_000_000),
                ..Default::default()
            }
        }

        /// Another VM of the same process: shares this host's shared data and clock value.
        pub fn sibling(&self) -> Self {
            FakeHost {
                shared: Rc::clone(&self.shared),
                now: Cell::new(self.now.get()),
                ..Default::default()
            }
        }

        pub fn set_property(&self, path: &str, value: &str) {
            self.properties
                .borrow_mut()
                .insert(path.to_string(), value.as_bytes().to_vec());
        }

        pub fn set_property_bytes(&self, path: &str, value: &[u8]) {
            self.properties
                .borrow_mut()
                .insert(path.to_string(), value.to_vec());
        }

        /// Reads of `path` fail with a host error from now on.
        pub fn fail_property(&self, path: &str) {
            self.failing_properties.borrow_mut().push(path.to_string());
        }

        pub fn set_header(&self, name: &str, value: &str) {
            self.headers
                .borrow_mut()
                .insert(name.to_string(), value.as_bytes().to_vec());
        }

        pub fn advance(&self, ms: u64) {
            self.now.set(self.now.get() + ms);
        }

        pub fn respond(&self, status: u16, body: &[u8]) {
            *self.response.borrow_mut() = (
                vec![(":status".to_string(), status.to_string())],
                body.to_vec(),
            );
        }

        pub fn respond_failure(&self) {
            *self.response.borrow_mut() = (vec![], vec![]);
        }

        pub fn last_call(&self) -> Option<Call> {
            self.calls.borrow().last().cloned()
        }

        pub fn logged(&self, level: Level, needle: &str) -> bool {
            self.logs
                .borrow()
                .iter()
                .any(|(l, m)| *l == level && m.contains(needle))
        }

        pub fn gauge(&self, name: &str) -> Option<u64> {
            self.gauges
                .borrow()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
        }

        /// Counters whose name starts with `prefix` and are not zero, sorted.
        pub fn counters_with(&self, prefix: &str) -> Vec<(String, u64)> {
            let mut out: Vec<_> = self
                .counters
                .borrow()
                .iter()
                .filter(|(n, v)| n.starts_with(prefix) && *v > 0)
                .cloned()
                .collect();
            out.sort();
            out
        }

        pub fn counter(&self, name: &str) -> u64 {
            self.counters
                .borrow()
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v)
        }

        pub fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
            self.shared.borrow().map.get(key).map(|(v, _)| v.clone())
        }

        /// Writes shared data as another party would (no CAS).
        pub fn put_shared(&self, key: &str, value: &[u8]) {
            let _ = self.set_shared_data(key, value, None);
        }
    }

    impl Host for FakeHost {
        fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
            self.property_reads.set(self.property_reads.get() + 1);
            let name = path.join(".");
            if self.failing_properties.borrow().contains(&name) {
                return Err(HostError);
            }
            Ok(self.properties.borrow().get(&name).cloned())
        }

        fn request_method_and_path(&self) -> Result<MethodAndPath, HostError> {
            if self.fail_headers.get() {
                return Err(HostError);
            }
            let headers = self.headers.borrow();
            Ok((headers.get(":method").cloned(), headers.get(":path").cloned()))
        }

        fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
            self.header_writes.borrow_mut().push((name.to_string(), value.to_string()));
            self.headers.borrow_mut().insert(name.to_string(), value.as_bytes().to_vec());
            Ok(())
        }

        fn clear_route_cache(&self) {
            self.route_cache_clears.set(self.route_cache_clears.get() + 1);
        }

        fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.shared_reads.borrow_mut().push(key.to_string());
            match self.shared.borrow().map.get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        fn set_shared_data(
            &self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), CasMismatch> {
            let mut shared = self.shared.borrow_mut();
            shared.next_cas += 1;
            let next = shared.next_cas;
            if let (Some(cas), Some((_, current))) = (cas, shared.map.get(key)) {
                if cas != *current {
                    return Err(CasMismatch);
                }
            }
            shared.map.insert(key.to_string(), (value.to_vec(), next));
            Ok(())
        }

        fn send_local_reply(&self, status: u16, headers: &[(&str, &str)], body: &str) {
            self.replies.borrow_mut().push(Reply {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: body.to_string(),
            });
        }

        fn dispatch_call(
            &self,
            cluster: &str,
            headers: &[(&str, &str)],
            timeout: Duration,
        ) -> Result<u32, String> {
            if self.fail_dispatch.get() {
                return Err("BadArgument".to_string());
            }
            let token = self.next_token.get() + 1;
            self.next_token.set(token);
            self.calls.borrow_mut().push(Call {
                token,
                cluster: cluster.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                timeout,
            });
            Ok(token)
        }

        fn call_response_header(&self, name: &str) -> Option<String> {
            self.response
                .borrow()
                .0
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }

        fn call_response_body(&self, size: usize) -> Option<Vec<u8>> {
            let body = &self.response.borrow().1;
            Some(body[..size.min(body.len())].to_vec())
        }

        fn log(&self, level: Level, message: &str) {
            self.logs.borrow_mut().push((level, message.to_string()));
        }

        fn log_enabled(&self, _level: Level) -> bool {
            true
        }

        fn now_ms(&self) -> u64 {
            self.now.get()
        }

        fn define_counter(&self, name: &str) -> Option<u32> {
            self.metric_calls.set(self.metric_calls.get() + 1);
            let mut counters = self.counters.borrow_mut();
            if let Some(i) = counters.iter().position(|(n, _)| n == name) {
                return u32::try_from(i).ok();
            }
            counters.push((name.to_string(), 0));
            u32::try_from(counters.len() - 1).ok()
        }

        fn increment_counter(&self, id: u32, by: u64) {
            self.metric_calls.set(self.metric_calls.get() + 1);
            if let Some((_, v)) = self.counters.borrow_mut().get_mut(id as usize) {
                *v += by;
            }
        }

        fn define_gauge(&self, name: &str) -> Option<u32> {
            self.metric_calls.set(self.metric_calls.get() + 1);
            let mut gauges = self.gauges.borrow_mut();
            let i = match gauges.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    gauges.push((name.to_string(), 0));
                    gauges.len() - 1
                }
            };
            u32::try_from(i).ok().map(|i| i + GAUGE_IDS)
        }

        fn set_gauge(&self, id: u32, value: u64) {
            self.metric_calls.set(self.metric_calls.get() + 1);
            let i = id.wrapping_sub(GAUGE_IDS) as usize;
            if let Some((_, v)) = self.gauges.borrow_mut().get_mut(i) {
                *v = value;
            }
        }
    }
}

#[cfg(test)]
mod header_map_tests {
    use super::method_and_path;

    /// The proxy-wasm serialization of `pairs`.
    fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn finds_method_and_path_in_a_serialized_map() {
        let map = serialize(&[(":authority", b"x"), (":path", b"/a?b"), (":method", b"GET"), ("cookie", b"c")]);
        assert_eq!(method_and_path(&map), (Some(b"GET".to_vec()), Some(b"/a?b".to_vec())));
        let map = serialize(&[("x-path", b"/no"), (":path", b""), ("bytes", b"\xff\x00")]);
        assert_eq!(method_and_path(&map), (None, Some(Vec::new())));
        assert_eq!(method_and_path(&serialize(&[])), (None, None));
        // The first of repeated pseudo-headers (Envoy never sends two).
        let map = serialize(&[(":method", b"GET"), (":method", b"POST"), (":path", b"/")]);
        assert_eq!(method_and_path(&map).0, Some(b"GET".to_vec()));
    }

    #[test]
    fn truncated_or_lying_maps_yield_what_was_read() {
        let map = serialize(&[(":method", b"GET"), (":path", b"/a")]);
        for cut in 0..map.len() {
            let (m, p) = method_and_path(&map[..cut]);
            assert!(m.is_none() || m == Some(b"GET".to_vec()));
            assert!(p.is_none() || p == Some(b"/a".to_vec()));
        }
        let mut huge = map.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let _ = method_and_path(&huge);
        let mut long_key = map;
        long_key[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(method_and_path(&long_key), (None, None));
    }
}

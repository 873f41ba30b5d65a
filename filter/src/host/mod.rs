//! Everything the filter needs from Envoy, behind one trait: [`Host`]. [`proxy::ProxyHost`] is
//! the real proxy-wasm implementation (host calls, and the one raw FFI call the request path
//! makes); [`header_map`] parses the serialized request header map it reads; tests use
//! `fake::FakeHost`, which can share one shared-data map between several fake VMs.

use std::time::Duration;

pub mod header_map;
#[cfg(target_family = "wasm")]
pub mod proxy;

#[cfg(test)]
pub mod fake;

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
pub trait Host: Clock {
    /// An Envoy attribute (`["source", "address"]`), raw bytes; `Ok(None)` when absent.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// `:method` and `:path` of the current HTTP stream. The real host reads both with one host
    /// call (the serialized header map) instead of one call each.
    fn request_method_and_path(&self) -> Result<MethodAndPath, HostError>;
    /// A request header of the current HTTP stream, for logs only (`None` when absent or
    /// unreadable).
    fn request_header(&self, name: &str) -> Option<String>;
    /// Sets Envoy filter state `wasm.<name>` of the current stream or connection (what access
    /// logs read with `%FILTER_STATE(wasm.<name>:PLAIN)%`).
    fn set_filter_state(&self, name: &str, value: &[u8]);
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
    /// Closes the current downstream connection (network filter); the filters after this one
    /// (`tcp_proxy`) then close their side too.
    fn close_downstream(&self);
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
}

/// The host's clock.
pub trait Clock {
    /// Wall-clock time, milliseconds since the Unix epoch (the same clock in every VM).
    fn now_ms(&self) -> u64;
}

/// Envoy stats: what [`Metrics`](crate::metrics::Metrics) defines and flushes into. The wasm
/// module's hosts are both this and a [`Host`]; the native module flushes every worker's counts
/// through its filter configuration, on Envoy's main thread, where no stream exists.
pub trait Stats: Clock {
    /// Defines (or finds) the counter of `family` with `labels` (label, value). proxy-wasm has
    /// no labels: its host encodes them into the name (`metrics::stat_name`); the native module
    /// gives them to Envoy as labels where the ABI allows.
    fn define_counter(&self, family: &str, labels: &[(&str, &str)]) -> Option<u32>;
    fn increment_counter(&self, id: u32, by: u64);
    /// Defines (or finds) a gauge metric.
    fn define_gauge(&self, name: &str) -> Option<u32>;
    fn set_gauge(&self, id: u32, value: u64);
}

//! A host for tests: properties, headers and callouts are set by the test; shared data is
//! an `Rc` map that several `FakeHost`s (several "VMs") can share.

use super::{CasMismatch, Clock, Host, HostError, Level, MethodAndPath, Stats};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

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
    pub shared_reads: RefCell<Vec<String>>,
    /// Properties whose read fails with a host error (D11).
    pub failing_properties: RefCell<Vec<String>>,
    /// Reading the request headers fails with a host error.
    pub fail_headers: Cell<bool>,
    /// Every `set_request_header` call.
    pub header_writes: RefCell<Vec<(String, String)>>,
    pub route_cache_clears: Cell<usize>,
    /// `close_downstream` calls.
    pub closes: Cell<usize>,
    /// Filter state written, by name (the last value).
    pub filter_state: RefCell<HashMap<String, Vec<u8>>>,
    /// Every host call made, by `Host` method name, in order (what a real host would be asked:
    /// `log_enabled` reads a cached level and is no host call).
    pub host_calls: RefCell<Vec<&'static str>>,
    /// Envoy's log level (`None`: everything is logged, so tests see debug lines too).
    pub log_level: Cell<Option<Level>>,
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

    /// The sum of the counters of `family` whose labels include `labels` (names in Istio's
    /// label encoding, `metrics::stat_name`).
    pub fn metric(&self, family: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .borrow()
            .iter()
            .filter(|(name, _)| {
                let mut parts: Vec<&str> = name.split(";.;").collect();
                let own = parts.pop();
                own == Some(family)
                    && labels
                        .iter()
                        .all(|(l, v)| parts.contains(&format!("{l}=.={v}").as_str()))
            })
            .map(|(_, v)| *v)
            .sum()
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

impl FakeHost {
    fn record(&self, call: &'static str) {
        self.host_calls.borrow_mut().push(call);
    }

    /// How many attributes (properties) were read.
    pub fn property_reads(&self) -> usize {
        self.host_calls
            .borrow()
            .iter()
            .filter(|&&c| c == "property")
            .count()
    }
}

impl Host for FakeHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.record("property");
        let name = path.join(".");
        if self.failing_properties.borrow().contains(&name) {
            return Err(HostError);
        }
        Ok(self.properties.borrow().get(&name).cloned())
    }

    fn request_method_and_path(&self) -> Result<MethodAndPath, HostError> {
        self.record("request_method_and_path");
        if self.fail_headers.get() {
            return Err(HostError);
        }
        let headers = self.headers.borrow();
        Ok((
            headers.get(":method").cloned(),
            headers.get(":path").cloned(),
        ))
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.record("set_request_header");
        self.header_writes
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
        self.headers
            .borrow_mut()
            .insert(name.to_string(), value.as_bytes().to_vec());
        Ok(())
    }

    fn clear_route_cache(&self) {
        self.record("clear_route_cache");
        self.route_cache_clears
            .set(self.route_cache_clears.get() + 1);
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.record("shared_data");
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
        self.record("send_local_reply");
        self.replies.borrow_mut().push(Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_string(),
        });
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.record("request_header");
        self.headers
            .borrow()
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) {
        self.record("set_filter_state");
        self.filter_state
            .borrow_mut()
            .insert(name.to_string(), value.to_vec());
    }

    fn close_downstream(&self) {
        self.record("close_downstream");
        self.closes.set(self.closes.get() + 1);
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
        self.record("call_response_header");
        self.response
            .borrow()
            .0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn call_response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.record("call_response_body");
        let body = &self.response.borrow().1;
        Some(body[..size.min(body.len())].to_vec())
    }

    fn log(&self, level: Level, message: &str) {
        if !self.log_enabled(level) {
            return; // as Envoy: no host call below its level
        }
        self.record("log");
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn log_enabled(&self, level: Level) -> bool {
        self.log_level.get().is_none_or(|min| level >= min)
    }
}

impl Clock for FakeHost {
    fn now_ms(&self) -> u64 {
        self.record("now_ms");
        self.now.get()
    }
}

impl Stats for FakeHost {
    fn define_counter(&self, family: &str, labels: &[(&str, &str)]) -> Option<u32> {
        self.record("define_counter");
        let name = crate::metrics::stat_name(family, labels);
        let name = name.as_str();
        self.metric_calls.set(self.metric_calls.get() + 1);
        let mut counters = self.counters.borrow_mut();
        if let Some(i) = counters.iter().position(|(n, _)| n == name) {
            return u32::try_from(i).ok();
        }
        counters.push((name.to_string(), 0));
        u32::try_from(counters.len() - 1).ok()
    }

    fn increment_counter(&self, id: u32, by: u64) {
        self.record("increment_counter");
        self.metric_calls.set(self.metric_calls.get() + 1);
        if let Some((_, v)) = self.counters.borrow_mut().get_mut(id as usize) {
            *v += by;
        }
    }

    fn define_gauge(&self, name: &str) -> Option<u32> {
        self.record("define_gauge");
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
        self.record("set_gauge");
        self.metric_calls.set(self.metric_calls.get() + 1);
        let i = id.wrapping_sub(GAUGE_IDS) as usize;
        if let Some((_, v)) = self.gauges.borrow_mut().get_mut(i) {
            *v = value;
        }
    }
}

//! The benchmark's no-op proxy-wasm filter, for both of Envoy's wasm filters: a root context per
//! plugin and, per request (`envoy.filters.http.wasm`) or per connection
//! (`envoy.filters.network.wasm`), a context that lets everything continue, with no host call on
//! the request or data path. Whatever it costs is the price of any wasm filter in Envoy (VM
//! entry, context creation, the header or data callbacks).
//!
//! As the real filter, the plugin configuration chooses the kind: `{"filter":"network"}` makes
//! the root create stream contexts; anything else (or none) HTTP contexts. The stream context
//! implements the callbacks the real network filter implements (new connection, downstream and
//! upstream data: `filter/keep-exports.sh` keeps their exports), so it is called as often.
//! Built with the same release profile as the real filter:
//! `cargo build -p alp-bench-noop-filter --target wasm32-wasip1 --release`.

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { kind: ContextType::HttpContext })
    });
}}

struct Root {
    kind: ContextType,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let network = self
            .get_plugin_configuration()
            .is_some_and(|c| c.windows(b"\"network\"".len()).any(|w| w == b"\"network\""));
        self.kind = if network {
            ContextType::StreamContext
        } else {
            ContextType::HttpContext
        };
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Pass))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(self.kind)
    }
}

struct Pass;

impl Context for Pass {}

impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

impl StreamContext for Pass {
    fn on_new_connection(&mut self) -> Action {
        Action::Continue
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_upstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

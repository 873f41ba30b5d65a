//! The benchmark's no-op proxy-wasm HTTP filter: a root context and one HTTP context per request
//! that lets every request continue, with no host call on the request path. Whatever it costs is
//! the price of any wasm filter in Envoy (VM entry, context creation, header callbacks).
//! Built with the same release profile as the real filter:
//! `cargo build -p alp-bench-noop-filter --target wasm32-wasip1 --release`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Pass;

impl Context for Pass {}

impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

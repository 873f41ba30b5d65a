//! Times snapshot encode, decode and compile, and one decision, wherever it runs — in particular
//! under wasmtime, where the filter decodes: `cargo run --release -p alp-engine --example
//! snapshot_timing --target wasm32-wasip1 [RULES]`. A measurement tool, not a test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // measurement code, not an input path

use alp_engine::synthetic::{endpoint_with_rules, TARGET_PRINCIPAL};
use alp_engine::{envelope, CompiledPolicy, Http, Peer, Request};
use std::time::Instant;

fn median_ms(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let rules: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let snapshot = endpoint_with_rules(rules);
    let bytes = envelope::encode(1, &snapshot).expect("encodes");
    let time = |f: &mut dyn FnMut()| {
        median_ms(
            (0..7)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    let decode = time(&mut || {
        envelope::decode(&bytes).expect("decodes");
    });
    let compile = time(&mut || {
        CompiledPolicy::compile(&snapshot);
    });
    let json = serde_json::to_vec(&snapshot).expect("json");
    let json_decode = time(&mut || {
        serde_json::from_slice::<alp_engine::Snapshot>(&json).expect("json decodes");
    });
    let policy = CompiledPolicy::compile(&snapshot);
    let request = Request {
        source: Peer {
            principal: TARGET_PRINCIPAL,
            address: None,
            port: 0,
        },
        destination: Peer::default(),
        protocol: 6,
        http: Some(Http {
            method: "GET",
            path: "/api/v1/items/1",
            host: "",
        }),
    };
    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(policy.evaluate(std::hint::black_box(&request)));
    }
    let decide_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "rules={rules} snapshot_bytes={} decode_ms={decode:.2} compile_ms={compile:.2} json_bytes={} json_decode_ms={json_decode:.2} decide_us={decide_us:.3}",
        bytes.len(),
        json.len()
    );
}

//! Decision latency against rule count, and snapshot encode/decode/compile cost.
//! Run: `cargo bench -p alp-engine --bench decide`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // measurement code, not an input path

use alp_engine::synthetic::{client_principal, endpoint_with_rules, TARGET_PRINCIPAL};
use alp_engine::{envelope, CompiledPolicy, Http, Peer, Request, Verdict};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

fn request(principal: &str) -> Request<'_> {
    Request {
        source: Peer {
            principal,
            address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 7))),
            port: 51234,
        },
        destination: Peer {
            principal: "spiffe://cluster.local/ns/ns0/sa/server",
            address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 9, 9))),
            port: 8080,
        },
        protocol: 6,
        http: Some(Http {
            method: "GET",
            path: "/api/v1/items/42?full=1",
            host: "server",
        }),
    }
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for rules in [10usize, 1_000, 10_000] {
        let policy = CompiledPolicy::compile(&endpoint_with_rules(rules));
        let target = request(TARGET_PRINCIPAL);
        assert_eq!(policy.evaluate(&target).verdict, Verdict::Allow);
        group.bench_with_input(
            BenchmarkId::new("allowed_by_last_rule", rules),
            &rules,
            |b, _| b.iter(|| policy.evaluate(black_box(&target))),
        );
        let client = client_principal(17);
        let busy = request(&client);
        group.bench_with_input(BenchmarkId::new("busy_client", rules), &rules, |b, _| {
            b.iter(|| policy.evaluate(black_box(&busy)))
        });
    }
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(20);
    for rules in [1_000usize, 10_000] {
        let snap = endpoint_with_rules(rules);
        let bytes = envelope::encode(1, &snap).expect("encodes");
        group.bench_with_input(BenchmarkId::new("encode", rules), &rules, |b, _| {
            b.iter(|| envelope::encode(1, black_box(&snap)))
        });
        group.bench_with_input(BenchmarkId::new("decode", rules), &rules, |b, _| {
            b.iter(|| envelope::decode(black_box(&bytes)))
        });
        group.bench_with_input(BenchmarkId::new("compile", rules), &rules, |b, _| {
            b.iter(|| CompiledPolicy::compile(black_box(&snap)))
        });
    }
    group.finish();
}

/// The D10 check the filter makes on every request (`path::forwarded_path`) and the matching
/// form the HTTP clause computes, for a canonical path, a canonical path with escapes and
/// parameters, and a non-canonical one.
fn path(c: &mut Criterion) {
    let mut group = c.benchmark_group("path");
    for (name, p) in [
        ("canonical", "/api/v1/items/42?full=1"),
        ("canonical_escaped", "/api/v1/it%65ms;v=2/42?full=1"),
        ("non_canonical", "/api/v1/../v1//items/./42?full=1"),
    ] {
        group.bench_with_input(BenchmarkId::new("forwarded_path", name), &p, |b, p| {
            b.iter(|| alp_engine::path::forwarded_path(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("normalize_request", name), &p, |b, p| {
            b.iter(|| alp_engine::path::normalize_request(black_box(p)).map(|n| n.matching.len()))
        });
    }
    group.finish();
}

criterion_group!(benches, decide, snapshot, path);
criterion_main!(benches);

//! What one filter VM's heap holds for a snapshot: the envelope bytes, the decoded snapshot, the
//! compiled program, and the high-water mark while a new version replaces it (a wasm VM's linear
//! memory never shrinks, so that mark is what the VM keeps). A counting allocator measures it, natively or under wasmtime (the filter's target:
//! `cargo run --release -p alp-engine --example memory --target wasm32-wasip1 [RULES...]`).
//! A measurement tool, not a test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // measurement code, not an input path

use alp_engine::synthetic::endpoint_with_rules;
use alp_engine::{envelope, Engine};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn reset_peak() -> usize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn kib(bytes: usize) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1, 1_000, 10_000]
    } else {
        counts
    };
    println!(
        "| rules | envelope | decoded snapshot | compiled engine | heap high-water, updating |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for rules in counts {
        let bytes = envelope::encode(1, &endpoint_with_rules(rules)).unwrap();
        let start = live();

        let before = live();
        let (version, snapshot) = envelope::decode(&bytes).unwrap();
        let decoded = live() - before;

        let before = live();
        let in_force = Engine::from_snapshot(version, &snapshot);
        let compiled = live() - before;
        drop(snapshot);

        // An update as the filter installs it (`filter/src/cache.rs`): the next version's bytes
        // are copied out of shared data and decoded, the bytes dropped, the engine in force
        // freed, then the new one compiled.
        reset_peak();
        let next = bytes.clone();
        let (version, snapshot) = envelope::decode(&next).unwrap();
        drop(next);
        drop(in_force);
        let in_force = Engine::from_snapshot(version + 1, &snapshot);
        drop(snapshot);
        let peak = PEAK.load(Ordering::Relaxed) - start;
        drop(in_force);

        println!(
            "| {rules} | {} | {} | {} | {} |",
            kib(bytes.len()),
            kib(decoded),
            kib(compiled),
            kib(peak)
        );
    }
}

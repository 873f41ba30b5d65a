//! Fuzz targets: one function per input parser of the project, each taking raw bytes. They are
//! run three ways:
//! * by libFuzzer (the binaries of the separate workspace `fuzz/libfuzzer/`, `fuzz/run.sh`);
//! * by `cargo test` (`tests/replay.rs`): every file of `corpus/<target>/` and
//!   `regressions/<target>/` through its target, with or without a fuzzer installed;
//! * by hand: `cargo test -p alp-fuzz --test replay -- --ignored regenerate_corpus` rewrites the
//!   generated seeds (`corpus/*/gen-*`).
//!
//! A target panics (an `assert!`) when an invariant fails; the project's own code must never
//! panic on any input. Inputs are bounded by libFuzzer's `-max_len` (4096 by default).

pub mod calico_yaml;
pub mod envelope;
pub mod felix_json;
pub mod felix_proto;
pub mod header_map;
pub mod path_match;
pub mod path_normalize;
pub mod properties;
pub mod selector;
mod util;

/// Every target: its name (the folder under `corpus/` and `regressions/`, and the libFuzzer
/// binary) and its function.
/// A target: fuzz input in, a panic when an invariant fails.
pub type Target = fn(&[u8]);

pub const TARGETS: &[(&str, Target)] = &[
    ("path_normalize", path_normalize::fuzz),
    ("path_match", path_match::fuzz),
    ("selector", selector::fuzz),
    ("envelope", envelope::fuzz),
    ("felix_json", felix_json::fuzz),
    ("felix_proto", felix_proto::fuzz),
    ("calico_yaml", calico_yaml::fuzz),
    ("header_map", header_map::fuzz),
    ("properties", properties::fuzz),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

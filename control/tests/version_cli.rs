//! `control version`: the crate version and the checksum of the wasm module the build went
//! with (from `dist/calico-alp.wasm.sha256` at build time), or "unknown" on a build without it.

use serde_json::Value;
use std::process::{Command, Output};

fn control(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_control"))
        .args(args)
        .output()
        .expect("control runs")
}

/// What build.rs recorded for this build (the test is compiled with the same build script).
const BUILT: &str = env!("ALP_CONTROL_MODULE_SHA256");

#[test]
fn version_prints_the_crate_version_and_the_module_checksum() {
    let out = control(&["version"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("control {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let module = lines.get(1).copied().unwrap_or("");
    if BUILT.is_empty() {
        assert!(
            module.starts_with("module sha256 unknown (") && module.contains("wasm-bundle.sh"),
            "{module}"
        );
    } else {
        assert_eq!(BUILT.len(), 64, "{BUILT}");
        assert!(BUILT.bytes().all(|b| b.is_ascii_hexdigit()), "{BUILT}");
        assert!(
            module.starts_with(&format!("module sha256 {BUILT} (")),
            "{module}"
        );
    }

    let out = control(&["version", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    if BUILT.is_empty() {
        assert!(json["module_sha256"].is_null(), "{json}");
    } else {
        assert_eq!(json["module_sha256"], BUILT);
    }
    assert!(json["module_sha256_source"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
}

/// The checksum recorded is the one wasm-bundle.sh wrote, when the build had it.
#[test]
fn the_recorded_checksum_is_the_bundled_modules() {
    let source = env!("ALP_CONTROL_MODULE_SHA256_SOURCE");
    if !source.starts_with("dist/") || BUILT.is_empty() {
        eprintln!("note: built without dist/calico-alp.wasm.sha256 ({source})");
        return;
    }
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/calico-alp.wasm.sha256"
    );
    // Written by wasm-bundle.sh as `sha256sum` prints it; cargo rebuilds control and this test
    // when it changes, so it can only differ if ./wasm-bundle.sh ran after this build.
    let text = std::fs::read_to_string(file).expect("dist/calico-alp.wasm.sha256");
    if text.split_whitespace().next() != Some(BUILT) {
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let built = modified(std::path::Path::new(env!("CARGO_BIN_EXE_control")));
        let written = modified(std::path::Path::new(file));
        assert!(
            matches!((written, built), (Some(w), Some(b)) if w > b),
            "control records {BUILT}, but {file} (older than the build) says {text}"
        );
        eprintln!("note: the module was bundled again after this build; not compared");
    }
}

//! Tells the tests where the project's `shared/` test material is: the first `shared` folder
//! above this crate, with symbolic links resolved, as `ALP_SHARED_DIR` (empty when there is
//! none). Resolved here, natively, because the wasm tests' sandbox (wasmtime) does not follow a
//! link to an absolute path. Nothing is read: the crate builds without `shared/`.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let found = manifest
        .ancestors()
        .map(|dir| dir.join("shared"))
        .find(|dir| dir.join("conformance").is_dir())
        .and_then(|dir| dir.canonicalize().ok());
    let shown = found
        .as_deref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=ALP_SHARED_DIR={shown}");
    println!("cargo:rerun-if-changed=build.rs");
    // Found: follow it. Not found: watch where a checkout's `../shared` would be (a missing
    // path makes cargo run this again on every build, until it appears).
    match &found {
        Some(dir) => println!("cargo:rerun-if-changed={}", dir.display()),
        None => {
            if let Some(root) = manifest.ancestors().nth(2) {
                println!(
                    "cargo:rerun-if-changed={}",
                    root.join("../shared").display()
                );
            }
        }
    }
}

//! Generates the subset of Envoy's external authorization API that `control ext-authz` serves
//! (`proto/envoy/...`, `proto/google/rpc/status.proto`): message types with `prost-build`, the
//! `Authorization` service (server, and a client for the tests) with `tonic-prost-build`, as
//! `control/felix/build.rs` does for Policy Sync. `protox` parses the protos in pure Rust (no
//! `protoc` on the build machine). One include file nests the packages as modules.
//!
//! Also records the checksum of the wasm module built alongside (`src/build_info.rs`) for
//! `control version`: never an error, whatever is (not) there.

#[path = "src/build_info.rs"]
#[allow(dead_code)]
mod build_info;

use std::path::Path;

const PROTO_DIR: &str = "proto";
const PROTO_FILE: &str = "proto/envoy/service/auth/v3/external_auth.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    println!("cargo:rerun-if-changed=src/build_info.rs");
    module_checksum();

    let fds = protox::compile([PROTO_FILE], [PROTO_DIR])?;
    let mut config = prost_build::Config::new();
    config.include_file("ext_authz_proto.rs");
    config.service_generator(
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .build_transport(false)
            .service_generator(),
    );
    config.compile_fds(fds)?;
    Ok(())
}

/// Sets `ALP_CONTROL_MODULE_SHA256` (hex, or empty) and `..._SOURCE` for the compiler.
///
/// Rebuilds when the checksum file changes. Cargo reruns a build script on every build while a
/// path it watches is missing, so a missing file is not watched itself: its directory `dist/` is
/// when it exists (a later `./wasm-bundle.sh` then triggers a rebuild); without `dist/` nothing
/// more is watched and the build says so.
fn module_checksum() {
    use build_info::{BUILT_CHECKSUM_ENV, BUILT_SOURCE_ENV, CHECKSUM_ENV, CHECKSUM_FILE};
    println!("cargo:rerun-if-env-changed={CHECKSUM_ENV}");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    let root = Path::new(&manifest_dir).join("..");
    let file = root.join(CHECKSUM_FILE);
    let dist = root.join("dist");
    let (sum, source) = if let Ok(value) = std::env::var(CHECKSUM_ENV) {
        match build_info::parse_checksum(&value) {
            Ok(sum) => (sum, format!("${CHECKSUM_ENV} at build time")),
            Err(e) => {
                println!("cargo:warning=${CHECKSUM_ENV} ignored: {e}");
                (String::new(), format!("${CHECKSUM_ENV} is {e}"))
            }
        }
    } else if file.is_file() {
        println!("cargo:rerun-if-changed={}", file.display());
        match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| build_info::parse_checksum(&text))
        {
            Ok(sum) => (sum, format!("{CHECKSUM_FILE} at build time")),
            Err(e) => (String::new(), format!("{CHECKSUM_FILE}: {e}")),
        }
    } else if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
        (
            String::new(),
            format!("built without the module: no {CHECKSUM_FILE}; run ./wasm-bundle.sh, then build control again"),
        )
    } else {
        (
            String::new(),
            format!("built without the module: no {CHECKSUM_FILE}; run ./wasm-bundle.sh, then touch control/build.rs and build control again"),
        )
    };
    println!("cargo:rustc-env={BUILT_CHECKSUM_ENV}={sum}");
    println!("cargo:rustc-env={BUILT_SOURCE_ENV}={source}");
}

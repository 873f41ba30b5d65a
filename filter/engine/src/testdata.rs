//! Test support: the project's test material in `shared/` beside the checkout (CI lays it
//! there), read at run time so that the crates build without it. Natively and under wasmtime
//! (whose runner preopens `/`, see `.cargo/config.toml`) alike: `build.rs` finds the folder and
//! resolves links, which the wasm sandbox would not follow.

use std::path::PathBuf;

/// The contents of `shared/<relative>`.
pub fn shared_file(relative: &str) -> Result<String, String> {
    let dir = env!("ALP_SHARED_DIR");
    if dir.is_empty() {
        return Err(format!(
            "shared/{relative}: no shared/ folder was found above {} when this crate was built",
            env!("CARGO_MANIFEST_DIR")
        ));
    }
    let path = PathBuf::from(dir).join(relative);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

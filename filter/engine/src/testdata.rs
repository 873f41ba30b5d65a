//! Test support: the project's test material in `shared/` beside the checkout (CI lays it
//! there), read at run time so that the crates build without it. Natively and under wasmtime
//! (whose runner preopens `/`, see `.cargo/config.toml`) alike.

use std::path::PathBuf;

/// The contents of `shared/<relative>`, looked up from this crate's directory upwards.
pub fn shared_file(relative: &str) -> Result<String, String> {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in start.ancestors() {
        let candidate = dir.join("shared").join(relative);
        if candidate.is_file() {
            return std::fs::read_to_string(&candidate)
                .map_err(|e| format!("{}: {e}", candidate.display()));
        }
    }
    Err(format!(
        "shared/{relative} not found above {}",
        start.display()
    ))
}

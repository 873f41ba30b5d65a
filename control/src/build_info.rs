//! What `control version` reports about the build: the crate version and the checksum of the
//! wasm module built alongside it.
//!
//! `build.rs` reads the checksum at build time from `dist/calico-alp.wasm.sha256` (written by
//! `./wasm-bundle.sh` as `sha256sum` prints it: `<64 hex digits>  calico-alp.wasm`), or from the
//! environment variable `ALP_MODULE_SHA256` (64 hex digits) when it is set, for builds whose
//! context has no `dist/`. Neither is needed: a fresh clone builds, and reports the checksum as
//! unknown. This file is compiled into `build.rs` too (`#[path]`), so the parsing is tested here.

/// `dist/calico-alp.wasm.sha256`, relative to the workspace root.
pub const CHECKSUM_FILE: &str = "dist/calico-alp.wasm.sha256";

/// The environment variable that gives the checksum instead of the file.
pub const CHECKSUM_ENV: &str = "ALP_MODULE_SHA256";

/// The variable `build.rs` sets for the compiler: the module's sha256 (hex), or empty.
pub const BUILT_CHECKSUM_ENV: &str = "ALP_CONTROL_MODULE_SHA256";

/// The variable `build.rs` sets for the compiler: where the checksum came from, or why there is
/// none.
pub const BUILT_SOURCE_ENV: &str = "ALP_CONTROL_MODULE_SHA256_SOURCE";

/// The checksum in a `sha256sum` line (or a bare digest, `sha256:` prefix allowed): 64 hex
/// digits, returned in lower case.
pub fn parse_checksum(text: &str) -> Result<String, String> {
    let first = text.split_whitespace().next().unwrap_or("");
    let hex = first.strip_prefix("sha256:").unwrap_or(first);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let shown: String = first.chars().take(80).collect();
        return Err(format!("not a sha256 checksum (64 hex digits): {shown:?}"));
    }
    Ok(hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_wasm_bundle_writes() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_checksum(&format!("{hex}  calico-alp.wasm\n")),
            Ok(hex.clone())
        );
        assert_eq!(parse_checksum(&hex), Ok(hex.clone()));
        assert_eq!(
            parse_checksum(&format!("sha256:{}", hex.to_uppercase())),
            Ok(hex.clone())
        );
        for bad in [
            "",
            "\n",
            "abc  calico-alp.wasm",
            &"g".repeat(64),
            &"a".repeat(65),
        ] {
            assert!(parse_checksum(bad).is_err(), "{bad:?}");
        }
    }

    /// The file is the one `./wasm-bundle.sh` writes, in the format read above.
    #[test]
    fn the_file_is_the_one_wasm_bundle_writes() {
        let script =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wasm-bundle.sh"))
                .expect("wasm-bundle.sh");
        assert!(
            script.contains("NAME=calico-alp"),
            "wasm-bundle.sh names the module calico-alp"
        );
        assert!(
            script.contains(r#"(cd dist && sha256sum "$NAME.wasm" > "$NAME.wasm.sha256")"#),
            "wasm-bundle.sh writes dist/$NAME.wasm.sha256 with sha256sum"
        );
        assert_eq!(CHECKSUM_FILE, "dist/calico-alp.wasm.sha256");
        assert_eq!(CHECKSUM_ENV, "ALP_MODULE_SHA256");
    }
}

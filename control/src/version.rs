//! `control version`: the crate version and the checksum of the wasm module this build goes
//! with (see [`crate::build_info`]), so that an operator can tell which module a `control` binary
//! was released with and compare it with the WasmPlugin's or the bootstrap's `sha256` for an
//! `https://` module (an `oci://` image is pinned by its manifest digest instead: see
//! images/README.md).

use clap::{Args, ValueEnum};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// `text`: two lines for a person; `json`: one object,
    /// `{"version","module_sha256","module_sha256_source"}` (`module_sha256` null when unknown).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// This build's facts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    /// The module's sha256 (hex), `None` when the build did not have it.
    pub module_sha256: Option<&'static str>,
    /// Where the checksum came from, or why there is none.
    pub module_sha256_source: &'static str,
}

/// The facts compiled into this binary.
pub fn build_info() -> BuildInfo {
    let sum = env!("ALP_CONTROL_MODULE_SHA256");
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        module_sha256: (!sum.is_empty()).then_some(sum),
        module_sha256_source: env!("ALP_CONTROL_MODULE_SHA256_SOURCE"),
    }
}

impl BuildInfo {
    pub fn to_text(&self) -> String {
        let module = match self.module_sha256 {
            Some(sum) => format!("module sha256 {sum} ({})", self.module_sha256_source),
            None => format!("module sha256 unknown ({})", self.module_sha256_source),
        };
        format!("control {}\n{module}", self.version)
    }
}

pub fn run(args: &VersionArgs) -> ExitCode {
    let info = build_info();
    match args.output {
        Output::Text => println!("{}", info.to_text()),
        Output::Json => match serde_json::to_string(&info) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("control: {e}");
                return ExitCode::from(2);
            }
        },
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build_info::{BUILT_CHECKSUM_ENV, BUILT_SOURCE_ENV};

    // The names build.rs sets are the ones read above (env! needs literals).
    #[test]
    fn reads_what_build_rs_sets() {
        assert_eq!(BUILT_CHECKSUM_ENV, "ALP_CONTROL_MODULE_SHA256");
        assert_eq!(BUILT_SOURCE_ENV, "ALP_CONTROL_MODULE_SHA256_SOURCE");
        let info = build_info();
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        if let Some(sum) = info.module_sha256 {
            assert_eq!(crate::build_info::parse_checksum(sum).as_deref(), Ok(sum));
        }
        assert!(!info.module_sha256_source.is_empty());
    }

    #[test]
    fn text_says_unknown_without_the_module() {
        let mut info = BuildInfo {
            version: "1.2.3",
            module_sha256: None,
            module_sha256_source: "built without the module",
        };
        assert_eq!(
            info.to_text(),
            "control 1.2.3\nmodule sha256 unknown (built without the module)"
        );
        info.module_sha256 = Some("ab");
        assert!(info
            .to_text()
            .ends_with("module sha256 ab (built without the module)"));
    }
}

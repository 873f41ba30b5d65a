//! `control`: relays Calico policy to the Envoy wasm filter, and the operator's CLI.

// Compiled into build.rs, which sets what `version` reads; only its tests run from here.
#[allow(dead_code)]
mod build_info;
mod check;
mod decide;
mod ext_authz;
mod health;
mod listen;
mod running;
mod runtime;
mod serve;
mod source;
mod validate;
mod version;
mod versioner;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The exit statuses every subcommand keeps to (`--help` of each says which it uses).
const EXIT_CODES: &str = "\
Exit status:
  0  success (check: every request decided; with --fail-on-deny, every one allowed)
  1  the thing checked is not fine: validate found problems, health got no 200
  2  bad input or usage (a file that cannot be read or parsed, a bad flag), or a server that
     could not start or failed
  3  check --fail-on-deny: at least one request was not allowed";

#[derive(Parser)]
#[command(
    name = "control",
    version,
    about = "Calico application layer policy for Envoy: relay and operator tools",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Largest policy YAML file (or standard input) the loader reads, in bytes; a larger one is
    /// refused unparsed (a reload keeps the last good policy).
    #[arg(
        long,
        global = true,
        value_name = "BYTES",
        default_value_t = alp_calico::limits::DEFAULT_MAX_POLICY_BYTES,
        env = "ALP_MAX_POLICY_BYTES"
    )]
    max_policy_bytes: usize,
    /// Deepest nesting (block and flow collections) of a policy YAML document, measured
    /// before parsing; a deeper one is refused unparsed (a reload keeps the last good policy).
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = alp_calico::limits::DEFAULT_MAX_YAML_DEPTH,
        env = "ALP_MAX_YAML_DEPTH"
    )]
    max_yaml_depth: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Explain how the policy decides requests, offline (exit 0; 3 with --fail-on-deny when a
    /// request is not allowed; 2 bad input).
    #[command(after_help = EXIT_CODES)]
    Check(check::CheckArgs),
    /// Serve the current policy snapshot to the Envoy filters (HTTP long-poll).
    Serve(serve::ServeArgs),
    /// Probe a running `control serve` (exit 0: healthy/ready, 1: not), for exec probes.
    Health(health::HealthArgs),
    /// Check Calico v3 policy YAML (exit 0: valid; 1: every problem printed).
    Validate(validate::ValidateArgs),
    /// Serve Envoy's ext_authz gRPC API (Authorization/Check) with the same engine.
    ExtAuthz(ext_authz::ExtAuthzArgs),
    /// Print this build's version and the sha256 of the wasm module built with it.
    Version(version::VersionArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    alp_calico::limits::set_limits(alp_calico::limits::Limits {
        max_bytes: cli.max_policy_bytes,
        max_depth: cli.max_yaml_depth,
    });
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::ExtAuthz(args) => ext_authz::run(&args),
        Command::Health(args) => return health::run(&args),
        Command::Validate(args) => return validate::run(&args),
        Command::Version(args) => return version::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("control: {err:#}");
            ExitCode::from(2)
        }
    }
}

//! `control`: relays Calico policy to the Envoy wasm filter, and the operator's CLI.

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
mod versioner;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "control",
    version,
    about = "Calico application layer policy for Envoy: relay and operator tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explain how the policy decides requests, offline.
    Check(check::CheckArgs),
    /// Serve the current policy snapshot to the Envoy filters (HTTP long-poll).
    Serve(serve::ServeArgs),
    /// Probe a running `control serve` (exit 0: healthy/ready, 1: not), for exec probes.
    Health(health::HealthArgs),
    /// Check Calico v3 policy YAML (exit 0: valid; 1: every problem printed).
    Validate(validate::ValidateArgs),
    /// Serve Envoy's ext_authz gRPC API (Authorization/Check) with the same engine.
    ExtAuthz(ext_authz::ExtAuthzArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::ExtAuthz(args) => ext_authz::run(&args),
        Command::Health(args) => return health::run(&args),
        Command::Validate(args) => return validate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("control: {err:#}");
            ExitCode::from(2)
        }
    }
}

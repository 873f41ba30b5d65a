//! `control`: relays Calico policy to the Envoy wasm filter, and the operator's CLI.

mod check;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "control", version, about = "Calico application layer policy for Envoy: relay and operator tools")]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Serve(args) => serve::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("control: {err:#}");
            ExitCode::from(2)
        }
    }
}

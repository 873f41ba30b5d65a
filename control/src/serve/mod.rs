//! `control serve`: keeps the current policy snapshot and hands it to the Envoy filters over an
//! HTTP long-poll (the wire contract is `alp_engine::relay_contract`).
//!
//! ```text
//! source (Felix Policy Sync, updates file, Calico YAML) --watch<Policy>--> publish (versions, envelope)
//!     --watch<Option<Arc<Published>>>--> http (GET /v1/snapshot long-poll, /healthz, /readyz)
//! source --watch<bool> (in sync)--> http (/readyz)
//! source --Arc<Counters>--> http (/metrics)
//! ```
//!
//! * [`crate::source`]: the [`Source`] trait and the sources (shared with `ext-authz`, `check`).
//! * [`publish`]: versioning ([`crate::versioner`]) and encoding, one new version per change.
//! * [`http`]: the endpoints and the long-poll.
//! * [`crate::listen`]: `HOST:PORT` or `unix:PATH`.
//! * [`metrics`]: `GET /metrics` (Prometheus text format).

pub mod http;
pub mod metrics;
pub mod publish;

#[cfg(test)]
mod tests;

use crate::listen::Listen;
use crate::running::Running;
use crate::source::args::SourceArgs;
use crate::source::{Outputs, Source};
use crate::versioner::unix_micros;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;
use tokio::sync::watch;
use tracing::info;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to serve: HOST:PORT (e.g. 127.0.0.1:9400, [::1]:9400) or unix:PATH (a stale socket
    /// file is replaced).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9400",
        env = "ALP_LISTEN"
    )]
    pub listen: Listen,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    crate::runtime::init_tracing();
    crate::runtime::runtime(2)?.block_on(async {
        let source = args.source.source()?;
        let running = start(&args.listen, source).await?;
        info!(listen = %running.address, "control serving");
        running.until_signal().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Binds `listen` and starts the source, the publisher and the HTTP server.
pub async fn start(listen: &Listen, source: Box<dyn Source>) -> Result<Running> {
    let bound = listen.bind().await?;
    let address = bound.address();
    info!(source = %source.describe(), "policy source");
    let (outputs, policy_rx, in_sync_rx) = Outputs::new();
    let counters = outputs.counters.clone();
    let (published_tx, published_rx) = watch::channel(None);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let source = tokio::spawn(source.run(outputs));
    let publisher = tokio::spawn(publish::run(policy_rx, published_tx, unix_micros));
    let state = http::AppState {
        published: published_rx,
        shutdown: shutdown_rx.clone(),
        in_sync: in_sync_rx,
        counters,
    };
    let server = tokio::spawn(bound.serve(http::router(state), shutdown_rx));
    Ok(Running {
        address,
        shutdown: shutdown_tx,
        server,
        source,
        worker: ("publisher", publisher),
    })
}

//! `control serve`: keeps the current policy snapshot and hands it to the Envoy filters over an
//! HTTP long-poll.
//!
//! ```text
//! source (Felix Policy Sync, updates file) --watch<Policy>--> publish (versions, envelope)
//!     --watch<Option<Arc<Published>>>--> http (GET /v1/snapshot long-poll, /healthz, /readyz)
//! source --watch<bool> (in sync)--> http (/readyz)
//! source --Arc<ControlMetrics>--> http (/metrics)
//! ```
//!
//! * [`source`]: the [`Source`](source::Source) trait and the sources.
//! * [`publish`]: versioning and encoding, one new version per actual change.
//! * [`http`]: the endpoints and the long-poll.
//! * [`listen`]: `HOST:PORT` or `unix:PATH`.
//! * [`metrics`]: `GET /metrics` (Prometheus text format).

pub mod http;
pub mod listen;
pub mod metrics;
pub mod publish;
mod running;
pub mod source;

#[cfg(test)]
mod tests;

use anyhow::{Context, Result};
use clap::Args;
use listen::Listen;
pub use running::Running;
use source::Source;
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
    pub source: source::args::SourceArgs,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

pub(crate) fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let source = args.source.source()?;
    let running = start(&args.listen, source).await?;
    info!(listen = %running.address, "control serving");
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = shutdown.send(true);
    });
    running.finished().await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Binds `listen` and starts the source, the publisher and the HTTP server.
pub async fn start(listen: &Listen, source: Box<dyn Source>) -> Result<Running> {
    let bound = listen.bind().await?;
    let address = bound.address();
    info!(source = %source.describe(), "policy source");
    let (outputs, policy_rx, in_sync_rx) = source::Outputs::new();
    let metrics = outputs.metrics.clone();
    let (published_tx, published_rx) = watch::channel(None);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let source = tokio::spawn(source.run(outputs));
    let publisher = tokio::spawn(publish::run(policy_rx, published_tx, publish::unix_micros));
    let state = http::AppState {
        published: published_rx,
        shutdown: shutdown_rx.clone(),
        in_sync: in_sync_rx,
        metrics,
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


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
use clap::{ArgGroup, Args};
use listen::Listen;
pub use running::Running;
use source::Source;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["updates", "felix_socket", "policy"])))]
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
    /// Source: Felix `ToDataplane` messages (protobuf JSON; JSON Lines or one array), replayed
    /// as one stream. Re-read whenever the file changes; a file that does not parse is
    /// reported and the last good snapshot stays.
    #[arg(long, value_name = "FILE")]
    pub updates: Option<PathBuf>,
    /// Source: Felix's Policy Sync API on this Unix socket (in a pod with the Calico CSI
    /// volume mounted at /var/run/felix: /var/run/felix/nodeagent/socket). Reconnects with
    /// backoff; the last in-sync policy stays served while disconnected.
    #[arg(long, value_name = "PATH")]
    pub felix_socket: Option<PathBuf>,
    /// Source: Calico v3 resource YAML (a file or a directory; repeatable) compiled for
    /// `--workload` as Felix would. Reloaded on change; an invalid edit is reported and the
    /// last good policy stays.
    #[arg(long, value_name = "PATH", requires = "workload")]
    pub policy: Vec<PathBuf>,
    /// With `--policy`: the workload to enforce for, NAMESPACE/NAME (a WorkloadEndpoint of the
    /// inventory).
    #[arg(long, value_name = "NAMESPACE/NAME", requires = "policy")]
    pub workload: Option<String>,
    /// How often file sources check for changes (a stat per file: cheap enough to keep the
    /// update-to-enforcement time well inside 50 ms).
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub watch_interval_ms: u64,
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

fn source_from_args(args: &ServeArgs) -> Result<Box<dyn Source>> {
    let interval = Duration::from_millis(args.watch_interval_ms.max(10));
    if let (false, Some(workload)) = (args.policy.is_empty(), &args.workload) {
        alp_calico::parse_workload(workload).map_err(anyhow::Error::msg)?;
        return Ok(Box::new(source::calico_yaml::CalicoYaml::new(args.policy.clone(), workload.clone(), interval)));
    }
    match (&args.updates, &args.felix_socket) {
        (Some(path), None) => Ok(Box::new(source::updates_file::UpdatesFile::new(
            path.clone(),
            interval,
        ))),
        (None, Some(socket)) => Ok(Box::new(source::felix::Felix::new(socket.clone()))),
        _ => anyhow::bail!("give one policy source: --felix-socket PATH or --updates FILE"),
    }
}

async fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let source = source_from_args(args)?;
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


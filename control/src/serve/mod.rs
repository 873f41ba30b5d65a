//! `control serve`: keeps the current policy snapshot and hands it to the Envoy filters over an
//! HTTP long-poll (the wire contract is `alp_engine::relay_contract`).
//!
//! ```text
//! source (Felix Policy Sync, updates file, Calico YAML) --watch<Policy>--> publish (versions, envelope)
//!     --watch<Option<Arc<Published>>>--> http (GET /v1/snapshot long-poll, /healthz, /readyz)
//! source --watch<bool> (in sync)--> http (/readyz)
//! source --Arc<Counters>--> http (/metrics; also on --metrics-listen, with /healthz only)
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

use crate::listen::{Bind, ConnLimits, Listen};
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
    /// Also serve `GET /metrics` (Prometheus text format) and `GET /healthz` on this address,
    /// and nothing else (the snapshot and /readyz stay on --listen), so that Prometheus can
    /// scrape control in a pod: HOST:PORT, e.g. 127.0.0.1:9402 for Istio's metrics merging,
    /// 0.0.0.0:9402 for a direct scrape. Off unless given (an empty value: off).
    #[arg(long, value_name = "ADDR", env = "ALP_METRICS_LISTEN")]
    pub metrics_listen: Option<OptionalListen>,
    /// Close a connection that has not sent complete request headers this long after it
    /// opened (or after its last response, on a kept-alive connection): 10s, 500ms, 2m or
    /// bare seconds. A long-poll whose headers arrived is not cut. Applies to --listen and
    /// --metrics-listen.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = crate::listen::parse_duration,
        env = "ALP_HEADER_READ_TIMEOUT"
    )]
    pub header_read_timeout: std::time::Duration,
    /// Connections open at once on each listener (--listen, --metrics-listen); one more is
    /// closed as soon as it is accepted (logged, counted in
    /// alp_control_connections_refused_total).
    #[arg(
        long,
        value_name = "N",
        default_value_t = ConnLimits::DEFAULT_MAX_CONNECTIONS,
        value_parser = positive_count,
        env = "ALP_MAX_CONNECTIONS"
    )]
    pub max_connections: usize,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// A count of at least 1.
fn positive_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?}: give a whole number of at least 1")),
    }
}

/// An address, or none for an empty value (so that `ALP_METRICS_LISTEN=` turns it off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalListen(pub Option<Listen>);

impl std::str::FromStr for OptionalListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(OptionalListen(None));
        }
        s.parse().map(|l| OptionalListen(Some(l)))
    }
}

impl ServeArgs {
    /// What each listener lets a client hold.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
        }
    }

    /// Where to serve the metrics as well, if anywhere.
    pub fn metrics_listen(&self) -> Option<&Listen> {
        self.metrics_listen.as_ref().and_then(|m| m.0.as_ref())
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    crate::runtime::init_tracing();
    crate::runtime::runtime(2)?.block_on(async {
        let source = args.source.source()?;
        let running = start_limited(
            &args.listen,
            args.metrics_listen(),
            args.conn_limits(),
            source,
        )
        .await?;
        info!(listen = %running.address, "control serving");
        if let Some(metrics) = &running.metrics_address {
            info!(metrics_listen = %metrics, "serving /metrics and /healthz");
        }
        running.until_signal().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Binds `listen` and starts the source, the publisher and the HTTP server.
#[cfg(test)]
pub async fn start(listen: &Listen, source: Box<dyn Source>) -> Result<Running> {
    start_with(listen, None, source).await
}

/// [`start_limited`] with the default limits.
#[cfg(test)]
pub async fn start_with(
    listen: &Listen,
    metrics: Option<&Listen>,
    source: Box<dyn Source>,
) -> Result<Running> {
    start_limited(listen, metrics, ConnLimits::default(), source).await
}

/// Binds `listen` (and with `metrics` the metrics-only server there too), then starts the
/// source, the publisher and the HTTP servers, each listener within `limits`. Both addresses
/// are bound before anything starts, so either failing to bind is an error here; a server that
/// fails later stops the whole (as [`Running::finished`] reports).
pub async fn start_limited(
    listen: &Listen,
    metrics: Option<&Listen>,
    limits: ConnLimits,
    source: Box<dyn Source>,
) -> Result<Running> {
    let bound = listen.bind().await?;
    let address = bound.address();
    let metrics_bound = match metrics {
        Some(m) => Some(m.bind().await?),
        None => None,
    };
    let metrics_address = metrics_bound.as_ref().map(|b| b.address());
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
    let main_server = bound.serve_with(http::router(state.clone()), limits, shutdown_rx.clone());
    let server = tokio::spawn(async move {
        match metrics_bound {
            None => main_server.await,
            Some(m) => {
                let metrics_server = m.serve_with(http::metrics_router(state), limits, shutdown_rx);
                tokio::try_join!(main_server, metrics_server).map(|_| ())
            }
        }
    });
    Ok(Running {
        address,
        metrics_address,
        shutdown: shutdown_tx,
        server,
        source,
        worker: ("publisher", publisher),
    })
}

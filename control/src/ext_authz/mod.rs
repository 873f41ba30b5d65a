//! `control ext-authz`: the same policy engine behind Envoy's `ext_authz` gRPC filter
//! (`envoy.service.auth.v3.Authorization/Check`), for Envoy deployments that cannot run wasm
//! (the Dikastes architecture: one gRPC round trip per request).
//!
//! ```text
//! source (--updates, --felix-socket, --policy) --watch<Policy>--> compile (one Engine per change)
//!     --watch<Arc<Engine>>--> Check: CheckRequest -> Request -> Engine::decide -> CheckResponse
//! ```
//!
//! * The policy sources are `control serve`'s ([`crate::source`]): same flags, same
//!   semantics (nothing before the first in-sync state: every request 503; a source that loses
//!   sync keeps its last snapshot in force, D8).
//! * Attributes come from what Envoy established, as in the filter: `source`/`destination`
//!   `address.socket_address` (address, port), `principal` (Envoy's certificate identity: URI SAN,
//!   else DNS SAN, else subject), `request.http` method, path and host. A check without
//!   `request.http` (the network `ext_authz` filter) is a connection-level check (D4).
//! * Paths (D10, spec section 5 "Forwarded path"): ext_authz cannot change the path Envoy
//!   forwards, so a non-canonical request path (dot or empty segments, `\`) is refused as the
//!   filter's `non_canonical_path: reject` refuses it: 400 `invalid request path`. Configure
//!   Envoy to normalise paths (`normalize_path`, `merge_slashes`,
//!   `path_with_escaped_slashes_action`) so that clients' paths reach the check canonical.
//! * `--trust-domain` (repeatable) is the filter's `trust_domains` (D12).
//! * Allowed: gRPC status OK. Denied: the D9 status and body, as the filter's local reply
//!   (`403 denied by policy`, `503 policy not synchronised`, `400 invalid request path`, ...),
//!   with `content-type: text/plain`; the `google.rpc.Status` code is PERMISSION_DENIED,
//!   UNAVAILABLE or INVALID_ARGUMENT accordingly.
//!
//! Envoy side: `envoy.filters.http.ext_authz` with `grpc_service.envoy_grpc` to a cluster that
//! reaches `--listen` (a `pipe` address for `unix:PATH`), `transport_api_version: V3`, and
//! `status_on_error: {code: ServiceUnavailable}` so an unreachable server answers 503 like a
//! filter without policy (Envoy's default is 403). `bench/` has a complete bootstrap.

pub mod proto;
mod service;

#[cfg(test)]
mod tests;

use crate::decide::EngineArgs;
use crate::listen::{Bind, Bound, Listen};
use crate::running::Running;
use crate::source::args::SourceArgs;
use crate::source::{Outputs, Policy, Source};
use crate::versioner::{unix_micros, Next, Versioner};
use alp_engine::{Engine, Options};
use anyhow::{Context, Result};
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{error, info};

pub use service::Authorizer;

#[derive(Args, Debug)]
pub struct ExtAuthzArgs {
    /// Where to serve gRPC: unix:PATH (a stale socket file is replaced) or HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9401")]
    pub listen: Listen,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Threads answering checks (1: a single-threaded runtime, the cheapest on one core).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: &ExtAuthzArgs) -> Result<ExitCode> {
    crate::runtime::init_tracing();
    crate::runtime::runtime(args.threads)?.block_on(async {
        let source = args.source.source()?;
        let running = start(&args.listen, source, args.engine.options(false)).await?;
        info!(listen = %running.address, "control ext-authz serving envoy.service.auth.v3.Authorization");
        running.until_signal().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Binds `listen`, starts the source, the compiler (engines built with `options`) and the gRPC
/// server.
pub async fn start(listen: &Listen, source: Box<dyn Source>, options: Options) -> Result<Running> {
    let bound = listen.bind().await?;
    let address = bound.address();
    info!(source = %source.describe(), "policy source");
    let (outputs, policy_rx, _in_sync) = Outputs::new();
    let (engine_tx, engine_rx) = watch::channel(Arc::new(Engine::not_in_sync()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let source = tokio::spawn(source.run(outputs));
    let compiler = tokio::spawn(compile(policy_rx, engine_tx, options));
    let server = tokio::spawn(serve(bound, Authorizer::new(engine_rx), shutdown_rx));
    Ok(Running {
        address,
        metrics_address: None,
        shutdown: shutdown_tx,
        server,
        source,
        worker: ("compiler", compiler),
    })
}

/// Compiles each new revision once (off the async threads) and installs it for the checks.
/// Versions as `control serve`'s ([`crate::versioner`]); a revision already compiled keeps its
/// engine.
async fn compile(
    mut policy: watch::Receiver<Policy>,
    engine: watch::Sender<Arc<Engine>>,
    options: Options,
) {
    let mut versioner = Versioner::new(unix_micros);
    loop {
        let current = policy.borrow_and_update().clone();
        if let Next::Build {
            generation,
            version,
            snapshot,
        } = versioner.next(&current)
        {
            let started = std::time::Instant::now();
            let for_compile = Arc::clone(&snapshot);
            let options = options.clone();
            match tokio::task::spawn_blocking(move || {
                Engine::from_snapshot_with(version, &for_compile, &options)
            })
            .await
            {
                Ok(compiled) => {
                    let rules: usize = snapshot
                        .policies
                        .iter()
                        .map(|p| p.inbound_rules.len())
                        .sum();
                    info!(
                        version,
                        rules,
                        ms = started.elapsed().as_millis() as u64,
                        "policy compiled"
                    );
                    let compiled = Arc::new(compiled);
                    versioner.built(generation, version, Arc::clone(&compiled));
                    engine.send_replace(compiled);
                }
                Err(e) => error!(
                    version,
                    "compiling the policy failed: {e}; keeping the previous one"
                ),
            }
        }
        if policy.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(
    bound: Bound,
    authorizer: Authorizer,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    use proto::envoy::service::auth::v3::authorization_server::AuthorizationServer;
    let signal = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let router =
        tonic::transport::Server::builder().add_service(AuthorizationServer::new(authorizer));
    match bound {
        Bound::Tcp(listener) => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, signal)
                .await
                .context("gRPC server")
        }
        Bound::Unix(listener, path) => {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let result = router
                .serve_with_incoming_shutdown(incoming, signal)
                .await
                .context("gRPC server");
            if tokio::fs::remove_file(&path).await.is_ok() {
                info!(path = %path.display(), "removed socket");
            }
            result
        }
    }
}

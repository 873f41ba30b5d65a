//! A started server (`control serve` or `control ext-authz`): its address, the switch that stops
//! it, and the tasks that must all stay up.

use crate::runtime::wait_for_signal;
use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

pub struct Running {
    /// The address actually bound (`unix:/path`, or the port of `:0` resolved).
    pub address: String,
    /// `control serve --metrics-listen`: the address its metrics server bound.
    pub metrics_address: Option<String>,
    pub shutdown: watch::Sender<bool>,
    pub(crate) server: JoinHandle<Result<()>>,
    pub(crate) source: JoinHandle<Result<()>>,
    /// The task that turns the source's snapshots into what the server hands out (the
    /// publisher, or ext-authz's compiler), and its name for errors.
    pub(crate) worker: (&'static str, JoinHandle<()>),
}

impl Running {
    /// Serves until SIGINT or SIGTERM (then shuts down as [`Running::finished`] does).
    pub async fn until_signal(self) -> Result<()> {
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutting down");
            let _ = shutdown.send(true);
        });
        self.finished().await
    }

    /// Waits until the server stops (after `shutdown`), or fails if the source or the worker
    /// stops first: without them the server would never hear of a change again.
    pub async fn finished(mut self) -> Result<()> {
        let (worker_name, worker) = &mut self.worker;
        let outcome = tokio::select! {
            r = &mut self.server => r.context("server task")?,
            r = &mut self.source => match r.context("source task")? {
                Ok(()) => Err(anyhow::anyhow!("the policy source stopped")),
                Err(e) => Err(e.context("the policy source failed")),
            },
            r = worker => {
                r.with_context(|| format!("{worker_name} task"))?;
                Err(anyhow::anyhow!("the {worker_name} stopped"))
            }
        };
        if let Err(e) = &outcome {
            error!("{e:#}");
            let _ = self.shutdown.send(true);
        }
        self.source.abort();
        self.worker.1.abort();
        outcome
    }
}

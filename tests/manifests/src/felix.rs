//! A test Felix serving the Policy Sync API on a Unix socket, in this process (the `felix-sim`
//! crate, which serves the real `felix.PolicySync/Sync` gRPC service): what the CSI driver's
//! socket gives control in a pod.

use anyhow::{anyhow, Context as _, Result};
use felix_sim::{play, FelixSim, Script};
use std::path::Path;
use std::thread::JoinHandle;

/// Serves a script until dropped (then the socket goes away, as when Felix stops).
pub struct TestFelix {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestFelix {
    /// Serves `script` (ToDataplane JSON lines, `pause MS`, `end`, ...: the felix-sim script
    /// format) on `socket`, creating its directory.
    pub fn start(socket: &Path, script: &str) -> Result<TestFelix> {
        let script = Script::parse(script).context("the test Felix script")?;
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let socket = socket.to_path_buf();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                let sim = match FelixSim::start(&socket).await {
                    Ok(sim) => {
                        let _ = ready_tx.send(Ok(()));
                        sim
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                let mut quiet = |_event: String| {};
                tokio::select! {
                    _ = play(sim, &script, &mut quiet) => {}
                    _ = stop_rx => {}
                }
            });
        });
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the test Felix thread died"))?
            .map_err(|e| anyhow!("starting the test Felix: {e}"))?;
        Ok(TestFelix {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for TestFelix {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! `test-felix --socket PATH SCRIPT`: serves Felix's Policy Sync API on a Unix socket from a
//! script (see the `felix_sim` crate documentation for its steps), logging each connection to
//! standard error. Runs until the script's `exit` step, SIGTERM or Ctrl-C.

use anyhow::{Context as _, Result};
use clap::Parser;
use felix_sim::{play, FelixSim, Script};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "test-felix",
    about = "A scripted Felix Policy Sync server for tests"
)]
struct Cli {
    /// The Unix socket to serve on (replaced if it exists).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The script: ToDataplane JSON lines and `pause MS`, `end`, `fail TEXT`, `exit` steps.
    script: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let text = std::fs::read_to_string(&cli.script)
        .with_context(|| format!("reading {}", cli.script.display()))?;
    let script =
        Script::parse(&text).with_context(|| format!("script {}", cli.script.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sim = FelixSim::start(&cli.socket).await?;
        eprintln!(
            "test-felix: serving {} ({} scripted connections)",
            cli.socket.display(),
            script.connections.len()
        );
        let mut log = |line: String| eprintln!("test-felix: {line}");
        tokio::select! {
            _ = play(sim, &script, &mut log) => {}
            _ = stop_signal() => eprintln!("test-felix: stopping"),
        }
        anyhow::Ok(())
    })?;
    // The socket is removed when the server drops (inside `play` or here).
    let _ = std::fs::remove_file(&cli.socket);
    Ok(())
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

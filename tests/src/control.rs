//! Running `control serve --updates FILE --listen unix:SOCKET` (or `--felix-socket PATH`, to
//! follow a test Felix, or `--policy PATH... --workload NS/NAME`, Calico YAML) for one workload.

use crate::http;
use crate::process::{wait_for, Proc};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where control gets its policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--updates FILE`: a `ToDataplane` JSON Lines file.
    Updates(PathBuf),
    /// `--felix-socket PATH`: Felix's Policy Sync API (in tests, a `felix-sim` test Felix).
    FelixSocket(PathBuf),
    /// `--policy PATH... --workload NAMESPACE/NAME`: Calico v3 YAML.
    Policy {
        paths: Vec<PathBuf>,
        workload: String,
    },
}

impl Source {
    /// The arguments, for a person to read.
    pub fn describe(&self) -> String {
        self.args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// control's command-line arguments for this source.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        match self {
            Source::Updates(p) => vec!["--updates".into(), p.into()],
            Source::FelixSocket(p) => vec!["--felix-socket".into(), p.into()],
            Source::Policy { paths, workload } => paths
                .iter()
                .flat_map(|p| ["--policy".into(), p.into()])
                .chain(["--workload".into(), workload.into()])
                .collect(),
        }
    }
}

/// A `control serve` process and where it listens.
pub struct Control {
    pub proc: Proc,
    pub socket: PathBuf,
}

impl Control {
    /// Starts control and waits until `/healthz` answers 200 (not `/readyz`: a file without
    /// `inSync` never gets ready, and that is a state the tests want).
    pub fn start(
        binary: &Path,
        workload: &str,
        source: &Source,
        socket: &Path,
        extra_args: &[String],
        log: &Path,
        timeout: Duration,
    ) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .args(source.args())
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("ALP_CONTROL_LOG").unwrap_or_else(|_| "info".into()),
            );
        let mut proc = Proc::spawn(&format!("control-{workload}"), cmd, log)?;
        let ok = wait_for(timeout, Duration::from_millis(25), || {
            if proc.exited().is_some() {
                return Some(false);
            }
            http::unix_get(socket, "/healthz")
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| true)
        });
        if ok != Some(true) {
            bail!(
                "control for {workload} did not answer /healthz on {} within {timeout:?}; log {}:\n{}",
                socket.display(),
                log.display(),
                proc.log_tail(30)
            );
        }
        Ok(Control {
            proc,
            socket: socket.to_path_buf(),
        })
    }

    /// True if `/readyz` answers 200 (control holds an in-sync snapshot).
    pub fn ready(&self) -> bool {
        http::unix_get(&self.socket, "/readyz")
            .map(|r| r.status == 200)
            .unwrap_or(false)
    }

    /// Waits for `/readyz`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        if wait_for(timeout, Duration::from_millis(25), || {
            self.ready().then_some(())
        })
        .is_none()
        {
            bail!(
                "control {} not ready within {timeout:?}; log:\n{}",
                self.proc.name(),
                self.proc.log_tail(30)
            );
        }
        Ok(())
    }
}

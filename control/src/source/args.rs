//! The policy-source flags shared by `control serve`, `control ext-authz` and `control check`,
//! and the source they select.

use super::calico_yaml::CalicoYaml;
use super::felix::Felix;
use super::updates_file::UpdatesFile;
use super::Source;
use anyhow::Result;
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["updates", "felix_socket", "policy"])))]
pub struct SourceArgs {
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

/// The source the flags name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected<'a> {
    /// `--updates FILE`.
    Updates(&'a Path),
    /// `--felix-socket PATH`.
    Felix(&'a Path),
    /// `--policy PATH... --workload NAMESPACE/NAME` (the workload's form checked).
    Policy(&'a [PathBuf], &'a str),
}

impl SourceArgs {
    /// Which source the flags name.
    pub fn selected(&self) -> Result<Selected<'_>> {
        if let (false, Some(workload)) = (self.policy.is_empty(), &self.workload) {
            alp_calico::parse_workload(workload)?;
            return Ok(Selected::Policy(&self.policy, workload));
        }
        match (&self.updates, &self.felix_socket) {
            (Some(path), None) => Ok(Selected::Updates(path)),
            (None, Some(socket)) => Ok(Selected::Felix(socket)),
            _ => anyhow::bail!(
                "give one policy source: --felix-socket PATH, --updates FILE or --policy PATH"
            ),
        }
    }

    /// The source the flags select, followed live.
    pub fn source(&self) -> Result<Box<dyn Source>> {
        let interval = Duration::from_millis(self.watch_interval_ms.max(10));
        Ok(match self.selected()? {
            Selected::Policy(paths, workload) => Box::new(CalicoYaml::new(
                paths.to_vec(),
                workload.to_string(),
                interval,
            )),
            Selected::Updates(path) => Box::new(UpdatesFile::new(path.to_path_buf(), interval)),
            Selected::Felix(socket) => Box::new(Felix::new(socket.to_path_buf())),
        })
    }
}

//! Calico v3 resource YAML (`--policy PATH`, files or directories, `-` for standard input)
//! compiled for one workload (`--workload NAMESPACE/NAME`) into the messages Felix would send,
//! replayed as one Policy Sync stream of the source's one [`SyncState`]. Checked every
//! `interval` (paths, modification times, sizes, inodes of every YAML file; standard input is
//! read once, at the start); a change that loads and compiles replaces the policy (one that
//! compiles to the same messages keeps its generation), one that does not is reported problem
//! by problem and the last good snapshot stays.

use super::{Outputs, Revision, Source, SourceFuture};
use alp_felix::store::Store;
use alp_felix::sync::SyncState;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

pub struct CalicoYaml {
    paths: Vec<PathBuf>,
    workload: String,
    interval: Duration,
}

impl CalicoYaml {
    pub fn new(paths: Vec<PathBuf>, workload: String, interval: Duration) -> Self {
        CalicoYaml {
            paths,
            workload,
            interval,
        }
    }
}

impl Source for CalicoYaml {
    fn describe(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        format!(
            "calico yaml {} for workload {}",
            paths.join(", "),
            self.workload
        )
    }

    fn run(self: Box<Self>, out: Outputs) -> SourceFuture {
        Box::pin(async move {
            let stdin = if self
                .paths
                .iter()
                .any(|p| p == Path::new(alp_calico::load::STDIN))
            {
                let text = tokio::task::spawn_blocking(|| {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
                })
                .await??;
                Some(std::sync::Arc::new(text))
            } else {
                None
            };
            let mut sync = SyncState::new();
            let mut last: Option<Vec<Stamp>> = None;
            loop {
                let paths = self.paths.clone();
                let now = tokio::task::spawn_blocking(move || fingerprint(&paths)).await?;
                if last.as_ref() != Some(&now) {
                    last = Some(now);
                    let (paths, workload) = (self.paths.clone(), self.workload.clone());
                    let stdin = stdin.clone();
                    let started = std::time::Instant::now();
                    let sent = out.sent_generation();
                    // Off the async threads: compile, replay, and the snapshot if it is new.
                    let (back, loaded) = tokio::task::spawn_blocking(move || {
                        let loaded = load(
                            &mut sync,
                            &paths,
                            stdin.as_deref().map(String::as_str),
                            &workload,
                        )
                        .is_some();
                        let new = loaded.then(|| Revision::newer_than(&sync, sent));
                        (sync, new)
                    })
                    .await?;
                    sync = back;
                    if let Some(new) = loaded {
                        if let Some(revision) = new {
                            out.policy.send_replace(Some(revision));
                        }
                        out.counters.built(started.elapsed());
                        // In sync from the first good load on; a bad edit keeps the last one.
                        out.set_in_sync(true);
                    }
                }
                tokio::time::sleep(self.interval).await;
            }
        })
    }
}

/// What tells a changed tree: each YAML file's path, modification time, size and inode, or
/// the error reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    File(PathBuf, Option<SystemTime>, u64, u64),
    Error(PathBuf, String),
}

fn fingerprint(paths: &[PathBuf]) -> Vec<Stamp> {
    fn walk(path: &Path, top: bool, out: &mut Vec<Stamp>) {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut children: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    children.sort();
                    for child in children {
                        walk(&child, false, out);
                    }
                }
                Err(e) => out.push(Stamp::Error(path.to_path_buf(), e.to_string())),
            },
            Ok(meta) => {
                let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
                if top || yaml {
                    out.push(Stamp::File(
                        path.to_path_buf(),
                        meta.modified().ok(),
                        meta.len(),
                        meta.ino(),
                    ));
                }
            }
            Err(e) => out.push(Stamp::Error(path.to_path_buf(), e.to_string())),
        }
    }
    let mut out = Vec::new();
    for p in paths
        .iter()
        .filter(|p| *p != Path::new(alp_calico::load::STDIN))
    {
        walk(p, true, &mut out);
    }
    out
}

/// Loads (`stdin`: standard input's text, for the path `-`), compiles and replays into `sync`
/// as a new stream; the current store, or `None` with every problem logged.
pub fn load<'s>(
    sync: &'s mut SyncState,
    paths: &[PathBuf],
    stdin: Option<&str>,
    workload: &str,
) -> Option<&'s Store> {
    let messages = match alp_calico::updates_for_with(paths, stdin, workload) {
        Ok(messages) => messages,
        Err(problems) => {
            for line in problems.to_string().lines() {
                error!("policy rejected: {line}");
            }
            warn!("keeping the last good snapshot");
            return None;
        }
    };
    for (_, why) in sync.replay(&messages).malformed {
        warn!("compiled message ignored: {why}");
    }
    let store = sync.current().filter(|_| sync.in_sync())?;
    info!(
        workload,
        messages = messages.len(),
        "calico yaml policy loaded"
    );
    Some(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: app == 'a'\n  ingress:\n    - action: Allow\n";
    const WORKLOAD: &str = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: a\n  namespace: default\n  labels: {app: a}\nspec:\n  ipNetworks: [10.0.0.1/32]\n";

    #[test]
    fn loads_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
        std::fs::write(dir.path().join("w.yaml"), WORKLOAD).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let paths = vec![dir.path().to_path_buf()];
        let before = fingerprint(&paths);
        assert_eq!(before.len(), 2, "{before:?}");
        let snapshot = load(&mut SyncState::new(), &paths, None, "default/a")
            .expect("loads")
            .snapshot();
        assert_eq!(snapshot.endpoint.unwrap().tiers.len(), 1);
        std::fs::write(dir.path().join("p.yaml"), format!("{POLICY}    bogus: 1\n")).unwrap();
        assert_ne!(fingerprint(&paths), before);
        assert!(
            load(&mut SyncState::new(), &paths, None, "default/a").is_none(),
            "an invalid edit gives nothing"
        );
        assert!(
            load(&mut SyncState::new(), &paths, None, "default/b").is_none(),
            "unknown workload"
        );
    }
}

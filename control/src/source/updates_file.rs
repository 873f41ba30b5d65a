//! A file of Felix `ToDataplane` messages (protobuf JSON mapping; JSON Lines or one array),
//! replayed as one Policy Sync stream each time it changes: checked every `interval` by
//! modification time, size and inode. Each replay is a new stream of the source's one
//! [`SyncState`]: one that reaches `inSync` replaces the policy (a file rewritten with the same
//! content keeps its generation, so nothing new is published); one that does not (or a file
//! that cannot be read or parsed) is reported and the last good snapshot stays. The source is
//! in sync (ready) from its first good replay on.

use super::{Outputs, Source, SourceFuture};
use alp_felix::store::Store;
use alp_felix::sync::SyncState;
use alp_felix::updates::parse_updates;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

pub struct UpdatesFile {
    path: PathBuf,
    interval: Duration,
}

impl UpdatesFile {
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        UpdatesFile { path, interval }
    }
}

impl Source for UpdatesFile {
    fn describe(&self) -> String {
        format!("updates file {}", self.path.display())
    }

    fn run(self: Box<Self>, out: Outputs) -> SourceFuture {
        Box::pin(async move {
            let mut sync = SyncState::new();
            let mut last: Option<Stamp> = None;
            let mut stat_error: Option<String> = None;
            loop {
                match stamp(&self.path).await {
                    Ok(now) => {
                        if stat_error.take().is_some() {
                            info!(file = %self.path.display(), "updates file readable again");
                        }
                        if last.as_ref() != Some(&now) {
                            last = Some(now);
                            let started = std::time::Instant::now();
                            if load(&mut sync, &self.path).await {
                                out.send_if_new(&sync);
                                out.counters.built(started.elapsed());
                                // In sync from the first good replay on: a later bad file
                                // keeps the last good snapshot, which stays in force.
                                out.set_in_sync(true);
                            }
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if stat_error.as_deref() != Some(text.as_str()) {
                            error!(file = %self.path.display(), "cannot read updates file: {text}; keeping the last good snapshot");
                            stat_error = Some(text);
                        }
                        last = None;
                    }
                }
                tokio::time::sleep(self.interval).await;
            }
        })
    }
}

/// What tells a changed file: modification time, size, inode (a file replaced by rename).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

async fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = tokio::fs::metadata(path).await?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Replays the file into `sync`; whether the replay reached `inSync`. Problems are logged.
async fn load(sync: &mut SyncState, path: &Path) -> bool {
    let file = path.display();
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) => {
            error!(%file, "cannot read updates file: {e}; keeping the last good snapshot");
            return false;
        }
    };
    replay(sync, &file.to_string(), &text).is_some()
}

/// Parses a document and replays it into `sync` as a new stream; the current store if the
/// replay reached `inSync`.
pub fn replay<'s>(sync: &'s mut SyncState, file: &str, text: &str) -> Option<&'s Store> {
    let messages = match parse_updates(text) {
        Ok(messages) => messages,
        Err(e) => {
            error!(%file, "updates file rejected: {e}; keeping the last good snapshot");
            return None;
        }
    };
    for (index, why) in sync.replay(&messages).malformed {
        warn!(%file, message = index + 1, "message ignored: {why}");
    }
    if sync.in_sync() {
        info!(%file, messages = messages.len(), "updates file replayed");
        sync.current()
    } else {
        warn!(%file, messages = messages.len(), "updates file has no inSync message; keeping the last good snapshot");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN_SYNC: &str = r#"{"inSync":{}}"#;

    #[test]
    fn replays_to_a_snapshot_only_when_in_sync() {
        let endpoint = r#"{"workloadEndpointUpdate":{"id":{"orchestratorId":"k8s","workloadId":"default/pod","endpointId":"eth0"},"endpoint":{"profileIds":["kns.default"]}}}"#;
        let snapshot = replay(
            &mut SyncState::new(),
            "t",
            &format!("{endpoint}\n\n{IN_SYNC}\n"),
        )
        .unwrap()
        .snapshot();
        assert_eq!(
            snapshot.endpoint.unwrap().profile_ids,
            vec!["kns.default".to_string()]
        );
        assert!(
            replay(&mut SyncState::new(), "t", endpoint).is_none(),
            "no inSync: nothing"
        );
        assert!(
            replay(
                &mut SyncState::new(),
                "t",
                &format!("[{endpoint},{IN_SYNC}]")
            )
            .is_some(),
            "array form"
        );
    }

    #[test]
    fn bad_documents_give_nothing() {
        assert!(replay(&mut SyncState::new(), "t", "{not json\n").is_none());
        assert!(replay(
            &mut SyncState::new(),
            "t",
            r#"{"activePolicyUpdate":{"policy":{"inboundRules":"x"}}}"#
        )
        .is_none());
    }
}

//! A file of Felix `ToDataplane` messages (protobuf JSON mapping; JSON Lines or one array),
//! replayed as one Policy Sync stream each time it changes: checked every `interval` by
//! modification time, size and inode. A replay that reaches `inSync` replaces the policy; one
//! that does not (or a file that cannot be read or parsed) is reported and the last good
//! snapshot stays. The source is in sync (ready) from its first good replay on.

use super::{Outputs, Source, SourceFuture};
use alp_felix::store::Applied;
use alp_felix::sync::SyncState;
use alp_felix::updates::parse_updates;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
                            if let Some(snapshot) = load(&self.path).await {
                                out.metrics.built(started.elapsed());
                                out.policy.send_replace(Some(Arc::new(snapshot)));
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

/// Replays the file; the snapshot if the replay reached `inSync`. Problems are logged.
async fn load(path: &Path) -> Option<alp_engine::Snapshot> {
    let file = path.display();
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) => {
            error!(%file, "cannot read updates file: {e}; keeping the last good snapshot");
            return None;
        }
    };
    replay(&file.to_string(), &text)
}

/// Parses and applies a document to a fresh stream.
pub fn replay(file: &str, text: &str) -> Option<alp_engine::Snapshot> {
    let messages = match parse_updates(text) {
        Ok(messages) => messages,
        Err(e) => {
            error!(%file, "updates file rejected: {e}; keeping the last good snapshot");
            return None;
        }
    };
    let mut sync = SyncState::new();
    sync.begin_stream();
    for (index, message) in messages.iter().enumerate() {
        if let Applied::Malformed(why) = sync.apply(message).applied {
            warn!(%file, message = index + 1, "message ignored: {why}");
        }
    }
    match sync.current() {
        Some(store) => {
            info!(%file, messages = messages.len(), "updates file replayed");
            Some(store.snapshot())
        }
        None => {
            warn!(%file, messages = messages.len(), "updates file has no inSync message; keeping the last good snapshot");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN_SYNC: &str = r#"{"inSync":{}}"#;

    #[test]
    fn replays_to_a_snapshot_only_when_in_sync() {
        let endpoint = r#"{"workloadEndpointUpdate":{"id":{"orchestratorId":"k8s","workloadId":"default/pod","endpointId":"eth0"},"endpoint":{"profileIds":["kns.default"]}}}"#;
        let snapshot = replay("t", &format!("{endpoint}\n\n{IN_SYNC}\n")).unwrap();
        assert_eq!(
            snapshot.endpoint.unwrap().profile_ids,
            vec!["kns.default".to_string()]
        );
        assert!(replay("t", endpoint).is_none(), "no inSync: nothing");
        assert!(
            replay("t", &format!("[{endpoint},{IN_SYNC}]")).is_some(),
            "array form"
        );
    }

    #[test]
    fn bad_documents_give_nothing() {
        assert!(replay("t", "{not json\n").is_none());
        assert!(replay(
            "t",
            r#"{"activePolicyUpdate":{"policy":{"inboundRules":"x"}}}"#
        )
        .is_none());
    }
}

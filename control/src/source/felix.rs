//! Felix's Policy Sync API: `PolicySync.Sync` (gRPC, server streaming `ToDataplane`) on the
//! per-workload Unix socket Felix creates under `policySyncPathPrefix`.
//!
//! Applies each stream to a [`SyncState`] as semantics.md section 2.3 says:
//!
//! * every connection starts a fresh pending store ([`SyncState::begin_stream`]); nothing is
//!   published before the first `inSync`;
//! * at `inSync` pending becomes current and is published; later messages of that stream apply
//!   to current and every change is published promptly. A burst is coalesced: after a message
//!   arrives, whatever else the stream already holds is applied too (up to [`MAX_BATCH`]
//!   messages or [`MAX_BATCH_TIME`]), then one snapshot is built. Every message reaches the
//!   store; only snapshot building is coalesced;
//! * when the stream ends or fails, control reconnects after a capped exponential backoff with
//!   jitter ([`Backoff`]: 100 ms doubling to 5 s, reset once a stream reaches `inSync`). The
//!   last in-sync snapshot stays served until the new stream's `inSync`, which replaces it whole
//!   (D8: stale entries do not survive a reconnect);
//! * the source is in sync (ready) only while the stream in progress has delivered `inSync`.
//!
//! Messages the store rejects (an update without id, a delta for an unknown IP set, ...) are
//! logged with what was wrong by the store and skipped; payloads the engine does not use
//! (`configUpdate`, routes, host endpoints, anything newer than our proto subset) are skipped
//! silently. A message that does not decode as protobuf at all fails the stream (as in Felix's
//! own clients): control logs the gRPC status and reconnects, keeping the last snapshot.

use super::{Outputs, Revision, Source, SourceFuture};
use alp_felix::store::Applied;
use alp_felix::sync::SyncState;
use alp_felix::wire::felix::policy_sync_client::PolicySyncClient;
use alp_felix::wire::felix::{to_dataplane::Payload, SyncRequest, ToDataplane};
use futures_util::FutureExt;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tonic::codec::Streaming;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::{debug, info, warn};

/// The largest message accepted from Felix. gRPC's usual default (4 MiB) is too small for a
/// full `ipsetUpdate` of a large set (100 k IPv6 members is about 4 MB); Felix is trusted.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// At most this many messages are applied before a snapshot is built...
pub const MAX_BATCH: usize = 10_000;
/// ...or for at most this long, so a long burst still shows progress.
pub const MAX_BATCH_TIME: Duration = Duration::from_millis(20);
/// How long connecting to the socket (including the HTTP/2 handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Follows Felix on a Unix socket.
pub struct Felix {
    socket: PathBuf,
    backoff: Backoff,
}

impl Felix {
    /// Follows the Policy Sync socket at `socket`, with the default reconnect backoff.
    pub fn new(socket: PathBuf) -> Self {
        Felix {
            socket,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// Another reconnect backoff (tests).
    #[cfg(test)]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(initial, max);
        self
    }
}

impl Source for Felix {
    fn describe(&self) -> String {
        format!("felix unix:{}", self.socket.display())
    }

    fn run(self: Box<Self>, out: Outputs) -> SourceFuture {
        Box::pin(async move {
            let Felix {
                socket,
                mut backoff,
            } = *self;
            let mut sync = SyncState::new();
            let mut failures_in_a_row = 0u32;
            for stream in 1u64.. {
                let outcome = follow_one(&socket, stream, &mut sync, &out).await;
                out.set_in_sync(false);
                out.counters.reconnected();
                if outcome.reached_in_sync {
                    backoff.reset();
                    failures_in_a_row = 0;
                }
                failures_in_a_row += 1;
                let delay = backoff.next_delay();
                let kept = if sync.current().is_some() {
                    "serving the last in-sync snapshot"
                } else {
                    "nothing to serve yet"
                };
                // A Felix that stays away is reported now and then, not on every attempt.
                if failures_in_a_row == 1 || failures_in_a_row.is_multiple_of(12) {
                    warn!(
                        socket = %socket.display(),
                        stream,
                        attempts = failures_in_a_row,
                        "Felix stream {}; {kept}; reconnecting in {} ms",
                        outcome.why,
                        delay.as_millis()
                    );
                } else {
                    debug!(socket = %socket.display(), stream, "Felix stream {}; reconnecting in {} ms", outcome.why, delay.as_millis());
                }
                tokio::time::sleep(delay).await;
            }
            Ok(())
        })
    }
}

/// How a stream ended.
struct Outcome {
    reached_in_sync: bool,
    why: String,
}

impl Outcome {
    fn failed(why: String) -> Self {
        Outcome {
            reached_in_sync: false,
            why,
        }
    }
}

/// Connects, syncs and follows one stream until it ends.
async fn follow_one(socket: &Path, stream: u64, sync: &mut SyncState, out: &Outputs) -> Outcome {
    let channel = match connect(socket).await {
        Ok(channel) => channel,
        Err(e) => return Outcome::failed(format!("cannot connect: {}", error_chain(&e))),
    };
    let mut client = PolicySyncClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut messages = match client.sync(SyncRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Outcome::failed(format!("refused: {}", status_text(&status))),
    };
    sync.begin_stream();
    info!(socket = %socket.display(), stream, "connected to Felix; waiting for inSync");
    follow(&mut messages, stream, sync, out).await
}

/// A tonic channel over the Unix socket (the URI is a placeholder: the connector decides).
async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// Counts for the logs.
#[derive(Default)]
struct Counts {
    messages: u64,
    malformed: u64,
}

/// What one batch did.
#[derive(Default)]
struct Batch {
    messages: usize,
    current_changed: bool,
    reached_in_sync: bool,
}

/// Applies the stream until it ends; publishes after each batch that changed the current store.
async fn follow(
    messages: &mut Streaming<ToDataplane>,
    stream: u64,
    sync: &mut SyncState,
    out: &Outputs,
) -> Outcome {
    let started = Instant::now();
    let mut counts = Counts::default();
    let mut reached_in_sync = false;
    loop {
        let mut batch = Batch::default();
        let first = messages.message().await;
        let batch_start = Instant::now();
        let mut end = take(first, sync, &mut batch, &mut counts);
        // Coalesce: apply what has already arrived before building a snapshot. `unconstrained`
        // keeps tokio's cooperative budget from cutting the batch short.
        while end.is_none() && batch.messages < MAX_BATCH && batch_start.elapsed() < MAX_BATCH_TIME
        {
            match tokio::task::unconstrained(messages.message()).now_or_never() {
                Some(next) => end = take(next, sync, &mut batch, &mut counts),
                None => break,
            }
        }
        let applied = batch_start.elapsed();
        out.counters.applied(batch.messages as u64);
        if batch.current_changed {
            publish(sync, out);
        }
        debug!(
            stream,
            messages = batch.messages,
            published = batch.current_changed,
            apply_us = applied.as_micros() as u64,
            total_us = batch_start.elapsed().as_micros() as u64,
            "batch"
        );
        if batch.reached_in_sync {
            reached_in_sync = true;
            out.set_in_sync(true);
            info!(
                stream,
                messages = counts.messages,
                malformed = counts.malformed,
                ms = started.elapsed().as_millis() as u64,
                generation = sync.generation(),
                "in sync with Felix"
            );
        }
        if let Some(why) = end {
            return Outcome {
                reached_in_sync,
                why: format!("{why} after {} messages", counts.messages),
            };
        }
    }
}

/// Applies one item of the stream; `Some(why)` when the stream is over.
fn take(
    item: Result<Option<ToDataplane>, tonic::Status>,
    sync: &mut SyncState,
    batch: &mut Batch,
    counts: &mut Counts,
) -> Option<String> {
    match item {
        Ok(Some(msg)) => {
            batch.messages += 1;
            counts.messages += 1;
            let was_in_sync = sync.in_sync();
            let result = sync.apply(&msg);
            // The store logs what was wrong with a malformed message (with its sequence number).
            if matches!(result.applied, Applied::Malformed(_)) {
                counts.malformed += 1;
            }
            batch.current_changed |= result.current_changed;
            if !was_in_sync && matches!(msg.payload, Some(Payload::InSync(_))) {
                batch.reached_in_sync = true;
            }
            None
        }
        Ok(None) => Some("ended".to_string()),
        Err(status) => Some(format!("failed: {}", status_text(&status))),
    }
}

/// Builds the current store's snapshot and hands it to the publisher.
fn publish(sync: &SyncState, out: &Outputs) {
    let started = Instant::now();
    if let Some(revision) = Revision::current(sync) {
        out.counters.built(started.elapsed());
        debug!(generation = revision.generation, "snapshot built");
        out.policy.send_replace(Some(revision));
    }
}

fn status_text(status: &tonic::Status) -> String {
    let text = format!("{:?}: {}", status.code(), status.message());
    with_root_cause(text, status)
}

/// An error with its innermost cause (tonic's transport errors say little on their own, and
/// the causes in between mostly repeat each other).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    with_root_cause(e.to_string(), e)
}

fn with_root_cause(mut text: String, e: &(dyn std::error::Error + 'static)) -> String {
    let mut root = None;
    let mut cause = e.source();
    while let Some(c) = cause {
        root = Some(c);
        cause = c.source();
    }
    if let Some(root) = root.map(|r| r.to_string()) {
        if !text.contains(&root) {
            text.push_str(": ");
            text.push_str(&root);
        }
    }
    text
}

/// Capped exponential backoff with jitter: the delay is uniform in `[base/2, base]`, `base`
/// doubling from `initial` up to `max` with each attempt, back to `initial` on `reset`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    base: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Backoff {
            initial,
            max,
            base: initial,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = (self.base * 2).min(self.max);
        base.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    pub fn reset(&mut self) {
        self.base = self.initial;
    }
}

#[cfg(test)]
mod tests;

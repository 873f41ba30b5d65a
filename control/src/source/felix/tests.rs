//! The Felix source against a test Felix (`felix-sim`) serving the real `PolicySync` service
//! on a temporary Unix socket: every behaviour goes through tonic, HTTP/2 and the socket.

use super::*;
use crate::source::{Outputs, Policy};
use alp_engine::Snapshot;
use felix_sim::{FelixSim, Session};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// Generous bounds for a loaded 2-core machine; every wait ends by itself.
const WAIT: Duration = Duration::from_secs(20);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(300);

fn msg(text: &str) -> ToDataplane {
    alp_felix::json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn ns(name: &str) -> ToDataplane {
    msg(&format!(
        r#"{{"namespaceUpdate": {{"id": {{"name": "{name}"}}}}}}"#
    ))
}

fn ns_remove(name: &str) -> ToDataplane {
    msg(&format!(
        r#"{{"namespaceRemove": {{"id": {{"name": "{name}"}}}}}}"#
    ))
}

/// An `ipsetUpdate` whose type number this proto does not know (JSON cannot say it).
fn unknown_set_type() -> ToDataplane {
    use alp_felix::wire::felix::IpSetUpdate;
    ToDataplane {
        sequence_number: 7,
        payload: Some(Payload::IpsetUpdate(IpSetUpdate {
            id: "t".into(),
            members: vec!["x".into()],
            r#type: 7,
        })),
    }
}

fn in_sync() -> ToDataplane {
    msg(r#"{"inSync": {}}"#)
}

fn names(snapshot: &Snapshot) -> Vec<&str> {
    snapshot
        .namespaces
        .iter()
        .map(|n| n.name.as_str())
        .collect()
}

struct Harness {
    policy: watch::Receiver<Policy>,
    in_sync: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the Felix source on `socket` with a short reconnect backoff.
fn follow(socket: &Path) -> Harness {
    let (out, policy, in_sync) = Outputs::new();
    let source = Box::new(
        Felix::new(socket.to_path_buf())
            .with_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    );
    let task = tokio::spawn(source.run(out));
    Harness {
        policy,
        in_sync,
        task,
    }
}

impl Harness {
    /// Waits until the published snapshot satisfies `pred`.
    async fn policy_where(
        &mut self,
        what: &str,
        pred: impl Fn(&Snapshot) -> bool,
    ) -> Arc<Snapshot> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.policy.borrow_and_update().clone().map(|r| r.snapshot) {
                if pred(&s) {
                    return s;
                }
            }
            match tokio::time::timeout_at(deadline, self.policy.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("source gone while waiting for {what}"),
                Err(_) => panic!(
                    "no snapshot with {what} within {WAIT:?}; last: {:?}",
                    self.policy
                        .borrow()
                        .as_ref()
                        .map(|r| names(&r.snapshot).join(","))
                ),
            }
        }
    }

    async fn names_become(&mut self, want: &[&str]) -> Arc<Snapshot> {
        self.policy_where(&format!("namespaces {want:?}"), |s| names(s) == want)
            .await
    }

    async fn in_sync_becomes(&mut self, want: bool) {
        tokio::time::timeout(WAIT, self.in_sync.wait_for(|v| *v == want))
            .await
            .unwrap_or_else(|_| panic!("in_sync never became {want}"))
            .expect("source alive");
    }

    /// Nothing new is published for `QUIET`, and the state is still `want`.
    async fn stays(&mut self, want: Option<&[&str]>, in_sync: bool) {
        tokio::time::sleep(QUIET).await;
        let now = self.policy.borrow().clone().map(|r| r.snapshot);
        assert_eq!(now.as_deref().map(names), want.map(<[&str]>::to_vec));
        assert_eq!(*self.in_sync.borrow(), in_sync);
    }
}

async fn accept(sim: &mut FelixSim) -> Session {
    sim.accept_within(WAIT).await.expect("control calls Sync")
}

async fn send(session: &Session, msgs: impl IntoIterator<Item = ToDataplane>) {
    session.send_all(msgs).await.expect("client connected");
}

#[tokio::test]
async fn nothing_before_in_sync_then_live_updates() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("felix.sock");
    let mut sim = FelixSim::start(&socket).await.unwrap();
    let mut h = follow(&socket);
    let session = accept(&mut sim).await;

    send(&session, [ns("a"), ns("b"), ns_remove("a")]).await;
    h.stays(None, false).await;

    send(&session, [in_sync()]).await;
    h.names_become(&["b"]).await;
    h.in_sync_becomes(true).await;

    // Live: every change reaches the published snapshot.
    send(&session, [ns("c")]).await;
    h.names_become(&["b", "c"]).await;
    send(&session, [ns_remove("b")]).await;
    h.names_become(&["c"]).await;
    // A repeated inSync on the same stream changes nothing.
    send(&session, [in_sync()]).await;
    h.stays(Some(&["c"]), true).await;
    assert_eq!(sim.syncs(), 1, "one stream throughout");
}

/// D8 with a clean end of stream and with Felix dying: the last in-sync snapshot stays served
/// (not in sync meanwhile) until the new stream's inSync, which replaces it whole.
#[tokio::test]
async fn reconnect_keeps_the_old_snapshot_until_the_new_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("felix.sock");
    let mut sim = FelixSim::start(&socket).await.unwrap();
    let mut h = follow(&socket);

    let first = accept(&mut sim).await;
    send(&first, [ns("stale"), ns("kept"), in_sync()]).await;
    h.names_become(&["kept", "stale"]).await;
    h.in_sync_becomes(true).await;

    // 1. The stream ends cleanly (Felix closed it).
    first.end();
    h.in_sync_becomes(false).await;
    let second = accept(&mut sim).await;
    send(&second, [ns("kept"), ns("new")]).await;
    h.stays(Some(&["kept", "stale"]), false).await;
    send(&second, [in_sync()]).await;
    h.names_become(&["kept", "new"]).await;
    h.in_sync_becomes(true).await;

    // 2. The stream fails with an error status.
    second
        .fail(tonic::Status::unavailable("felix restarting"))
        .await;
    h.in_sync_becomes(false).await;
    let third = accept(&mut sim).await;
    send(&third, [ns("third")]).await;
    h.stays(Some(&["kept", "new"]), false).await;
    // A stream that dies before its inSync leaves nothing behind.
    drop(third);
    let fourth = accept(&mut sim).await;
    send(&fourth, [ns("fourth"), in_sync()]).await;
    h.names_become(&["fourth"]).await;
    h.in_sync_becomes(true).await;

    // 3. Felix dies mid-stream (connections dropped, socket gone) and comes back later.
    send(&fourth, [ns("fifth")]).await;
    h.names_become(&["fifth", "fourth"]).await;
    sim.crash().await;
    h.in_sync_becomes(false).await;
    // Down for a while: control retries with backoff and keeps serving.
    h.stays(Some(&["fifth", "fourth"]), false).await;
    let mut sim = FelixSim::start(&socket).await.unwrap();
    let again = accept(&mut sim).await;
    send(&again, [ns("after-restart")]).await;
    h.stays(Some(&["fifth", "fourth"]), false).await;
    send(&again, [in_sync()]).await;
    h.names_become(&["after-restart"]).await;
    h.in_sync_becomes(true).await;
}

#[tokio::test]
async fn malformed_and_unknown_messages_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("felix.sock");
    let mut sim = FelixSim::start(&socket).await.unwrap();
    let mut h = follow(&socket);
    let session = accept(&mut sim).await;
    let endpoint = r#"{"workloadEndpointUpdate": {"id": {"workloadId": "default/pod"}, "endpoint": {"profileIds": ["p"]}}}"#;
    let profile = r#"{"activeProfileUpdate": {"id": {"name": "p"}, "profile": {"inboundRules": [{"action": "allow", "srcIpSetIds": ["s"]}]}}}"#;
    send(
        &session,
        [
            msg(endpoint),
            msg(profile),
            msg(r#"{"ipsetUpdate": {"id": "s", "members": ["10.0.0.1"]}}"#),
            // Malformed: no id; a delta for a set nobody sent; an unknown set type.
            msg(r#"{"namespaceUpdate": {"labels": {"x": "y"}}}"#),
            msg(r#"{"activePolicyRemove": {}}"#),
            msg(r#"{"ipsetDeltaUpdate": {"id": "nope", "addedMembers": ["10.0.0.9"]}}"#),
            unknown_set_type(),
            // Not for us: configUpdate, a payload outside our subset (arrives empty).
            msg(r#"{"configUpdate": {"config": {"k": "v"}}}"#),
            msg(r#"{"routeUpdate": {"dst": "10.0.0.0/8"}}"#),
            ToDataplane::default(),
            in_sync(),
        ],
    )
    .await;
    h.in_sync_becomes(true).await;
    let s = h
        .policy_where("the endpoint", |s| s.endpoint.is_some())
        .await;
    assert_eq!(s.ip_sets.len(), 1);
    assert_eq!(s.ip_sets[0].members, vec!["10.0.0.1"]);
    assert!(s.namespaces.is_empty());

    // Live, the same: the bad ones change nothing, the good ones still apply.
    send(
        &session,
        [
            msg(r#"{"ipsetDeltaUpdate": {"id": "", "addedMembers": ["10.0.0.7"]}}"#),
            msg(r#"{"ipsetDeltaUpdate": {"id": "s", "addedMembers": ["10.0.0.2"]}}"#),
            msg(r#"{"serviceAccountUpdate": {}}"#),
            ns("ok"),
        ],
    )
    .await;
    let s = h.names_become(&["ok"]).await;
    assert_eq!(s.ip_sets[0].members, vec!["10.0.0.1", "10.0.0.2"]);
    assert!(*h.in_sync.borrow());
    assert_eq!(
        sim.syncs(),
        1,
        "no reconnect: bad messages do not end the stream"
    );
}

/// A burst is applied in full; snapshots are built per batch, not per message.
#[tokio::test]
async fn a_burst_is_coalesced_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("felix.sock");
    let mut sim = FelixSim::start(&socket).await.unwrap();
    let mut h = follow(&socket);
    let session = accept(&mut sim).await;
    send(&session, [in_sync()]).await;
    h.in_sync_becomes(true).await;
    h.names_become(&[]).await;

    // Count every snapshot the source publishes (not just what a watch receiver would see).
    let mut seen = h.policy.clone();
    let published = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = tokio::spawn({
        let published = published.clone();
        async move {
            while seen.changed().await.is_ok() {
                published.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });

    const N: usize = 3000;
    let burst: Vec<ToDataplane> = (0..N)
        .flat_map(|i| {
            let name = format!("n{i:05}");
            // Each one added, some removed again, all in one burst.
            if i % 3 == 0 {
                vec![ns(&name), ns_remove(&name)]
            } else {
                vec![ns(&name)]
            }
        })
        .collect();
    let total = burst.len();
    send(&session, burst).await;
    let want: Vec<String> = (0..N)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("n{i:05}"))
        .collect();
    let s = h
        .policy_where("the whole burst", |s| {
            names(s) == want.iter().map(String::as_str).collect::<Vec<_>>()
        })
        .await;
    assert_eq!(s.namespaces.len(), N - N.div_ceil(3));
    counter.abort();
    let published = published.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("burst of {total} messages: {published} snapshots observed");
    assert!(published >= 1);
}

#[test]
fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut bases = vec![];
    for _ in 0..10 {
        let d = b.next_delay();
        bases.push(d);
    }
    let want_base = [100u64, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
    for (d, base) in bases.iter().zip(want_base) {
        let base = Duration::from_millis(base);
        assert!(
            *d >= base / 2 && *d <= base,
            "{d:?} outside [{:?}, {base:?}]",
            base / 2
        );
    }
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(100));
    // Jitter: not every delay at the cap is the same.
    let mut capped = Backoff::new(Duration::from_secs(5), Duration::from_secs(5));
    let delays: std::collections::BTreeSet<_> = (0..20).map(|_| capped.next_delay()).collect();
    assert!(delays.len() > 1);
}

#[tokio::test]
async fn no_felix_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("later.sock");
    let mut h = follow(&socket);
    h.stays(None, false).await;
    assert!(!h.task.is_finished(), "the source keeps retrying");
    // Felix appears later: control connects on a retry.
    let mut sim = FelixSim::start(&socket).await.unwrap();
    let session = accept(&mut sim).await;
    send(&session, [ns("late"), in_sync()]).await;
    h.names_become(&["late"]).await;
    h.in_sync_becomes(true).await;
}

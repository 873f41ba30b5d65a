//! What several targets share.

use alp_engine::{Engine, Http, Peer, Request};
use std::net::{IpAddr, Ipv4Addr};

/// A few requests to decide on: with and without HTTP, addresses and principals.
pub(crate) fn decide_some(engine: &Engine) {
    let source = Peer {
        principal: "spiffe://cluster.local/ns/default/sa/customer",
        address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        port: 40000,
    };
    let destination = Peer {
        principal: "spiffe://cluster.local/ns/default/sa/summary",
        address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        port: 8080,
    };
    let https = [
        None,
        Some(Http {
            method: "GET",
            path: "/",
            host: "",
        }),
        Some(Http {
            method: "POST",
            path: "/api/v1/items/../x;p?q=1",
            host: "",
        }),
    ];
    for http in https {
        for (source, destination) in [(source, destination), (Peer::default(), Peer::default())] {
            let request = Request {
                source,
                destination,
                protocol: 6,
                http,
            };
            let decision = engine.decide(&request);
            let _ = engine.explain(&decision);
            if let Some(staged) = engine.decide_staged(&request, &decision) {
                let _ = engine.explain_staged(&staged);
            }
        }
    }
}

/// Feeds decoded Policy Sync messages on to what control does with them: one stream into a
/// [`SyncState`], its snapshot through the envelope, and an engine (with the staged
/// rehearsal) deciding a few requests.
///
/// Invariant: replaying the messages at once leaves the same current store as applying them
/// one by one (`SyncState::replay`'s documented contract), and the snapshot survives the
/// envelope.
pub(crate) fn replay_and_decide(messages: &[alp_felix::ToDataplane]) {
    use alp_felix::SyncState;
    let mut all_at_once = SyncState::new();
    all_at_once.replay(messages);
    let mut one_by_one = SyncState::new();
    one_by_one.begin_stream();
    for message in messages {
        one_by_one.apply(message);
    }
    assert!(
        all_at_once.current() == one_by_one.current(),
        "replay and apply leave different current stores"
    );
    assert_eq!(all_at_once.in_sync(), one_by_one.in_sync());

    let Some((version, snapshot)) = all_at_once.snapshot() else {
        return;
    };
    let bytes = alp_engine::envelope::encode(version, &snapshot)
        .unwrap_or_else(|e| panic!("a store's snapshot does not encode: {e}"));
    assert_eq!(
        alp_engine::envelope::decode(&bytes),
        Ok((version, snapshot.clone())),
        "a store's snapshot does not survive the envelope"
    );
    let options = alp_engine::Options {
        staged: true,
        ..alp_engine::Options::default()
    };
    let engine = Engine::from_snapshot_with(version, &snapshot, &options);
    decide_some(&engine);
}

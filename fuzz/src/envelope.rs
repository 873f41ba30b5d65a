//! The snapshot envelope decoder (`alp_engine::envelope`), what a filter reads from the relay
//! and from Envoy's shared data, and the engine compiled from what it decodes.
//!
//! Invariants:
//! * `peek_version` agrees with `decode` (and fails whenever the header is bad);
//! * a decoded snapshot encodes again, and that encoding decodes to the same version and
//!   snapshot (byte equality with the input is not claimed: postcard reads some inputs that it
//!   would not write);
//! * the engine compiled from it decides without panicking.

use alp_engine::{envelope, Engine};

pub fn fuzz(data: &[u8]) {
    let peeked = envelope::peek_version(data);
    let (version, snapshot) = match envelope::decode(data) {
        Ok(decoded) => decoded,
        Err(err) => {
            if let Err(peek_err) = peeked {
                assert_eq!(peek_err, err, "peek and decode disagree");
            }
            return;
        }
    };
    assert_eq!(peeked, Ok(version));
    let bytes = envelope::encode(version, &snapshot)
        .unwrap_or_else(|e| panic!("a decoded snapshot does not encode: {e}"));
    assert_eq!(
        envelope::decode(&bytes).as_ref(),
        Ok(&(version, snapshot.clone())),
        "re-encoded snapshot decodes differently"
    );
    let engine = Engine::from_snapshot(version, &snapshot);
    assert_eq!(engine.version(), Some(version));
    crate::util::decide_some(&engine);
}

//! The Felix Policy Sync protobuf decoder (prost, `alp_felix::ToDataplane`, what control reads
//! from Felix's gRPC stream). Input: a stream of length-delimited messages; also the whole
//! input as one message.
//!
//! Invariants:
//! * a decoded message encodes to bytes that decode to an equal message, and encodes to
//!   those bytes again (prost's encoding is deterministic);
//! * see `util::replay_and_decide`, for the messages of the stream.

use alp_felix::ToDataplane;
use prost::Message;

pub fn fuzz(data: &[u8]) {
    if let Ok(message) = ToDataplane::decode(data) {
        round_trip(&message);
    }
    let mut rest = data;
    let mut messages = Vec::new();
    while !rest.is_empty() {
        match ToDataplane::decode_length_delimited(&mut rest) {
            Ok(message) => {
                round_trip(&message);
                messages.push(message);
            }
            Err(_) => break,
        }
    }
    crate::util::replay_and_decide(&messages);
}

fn round_trip(message: &ToDataplane) {
    let bytes = message.encode_to_vec();
    let again = ToDataplane::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("{message:?} re-encoded does not decode: {e}"));
    assert_eq!(&again, message);
    assert_eq!(again.encode_to_vec(), bytes, "{message:?}");
}

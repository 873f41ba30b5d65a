//! The Felix Policy Sync JSON decoders (`alp_felix::parse_updates`: JSON arrays and JSON Lines
//! of `ToDataplane` in the protobuf JSON mapping, through `alp_felix::json`), and what control
//! builds from the messages (store, snapshot, engine).
//!
//! Invariants:
//! * every decoded message serialises to protobuf JSON that decodes to an equal message, and
//!   so does the whole list as a JSON array;
//! * see `util::replay_and_decide`.

use alp_felix::{json, parse_updates, ToDataplane};

pub fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(messages) = parse_updates(&text) else {
        return;
    };
    for message in &messages {
        let value = serde_json::to_value(message)
            .unwrap_or_else(|e| panic!("{message:?} does not serialise: {e}"));
        let again: ToDataplane = json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{value} (from {message:?}) does not parse: {e}"));
        assert_eq!(&again, message, "{value}");
    }
    let array = serde_json::to_string(&messages).unwrap_or_default();
    let again = parse_updates(&array).unwrap_or_else(|e| panic!("{array} does not parse: {e}"));
    assert_eq!(again, messages, "{array}");
    crate::util::replay_and_decide(&messages);
}

//! Helpers shared by this crate's tests.

use crate::json;
use crate::wire::felix::ToDataplane;

/// One message from protobuf JSON; panics with the text on error (test input only).
pub fn msg(text: &str) -> ToDataplane {
    json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

//! Documents of `ToDataplane` messages in protobuf JSON: the file source of control and the
//! `updates` of conformance cases.
//!
//! Two layouts are accepted, told apart by the first non-blank character:
//! * a JSON array of messages (`[` ...);
//! * JSON Lines: one message per line; blank lines are skipped.

use crate::json::{self, MessageError};
use crate::wire::felix::ToDataplane;
use serde_json::Value;
use thiserror::Error;

/// Why an updates document was rejected. The caller adds the file name.
#[derive(Debug, Error)]
pub enum UpdatesError {
    /// A JSON Lines line (1-based) is not a valid message.
    #[error("line {line}: {source}")]
    Line {
        line: usize,
        #[source]
        source: MessageError,
    },
    /// An array element (0-based index) is not a valid message.
    #[error("element {index}: {source}")]
    Element {
        index: usize,
        #[source]
        source: MessageError,
    },
    /// The document starts with `[` but is not a JSON array.
    #[error("invalid JSON array: {0}")]
    Array(#[source] serde_json::Error),
}

/// Parses an updates document (JSON array or JSON Lines) into messages, in document order.
pub fn parse_updates(text: &str) -> Result<Vec<ToDataplane>, UpdatesError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('[') {
        parse_array(text)
    } else {
        parse_lines(text)
    }
}

fn parse_array(text: &str) -> Result<Vec<ToDataplane>, UpdatesError> {
    let items: Vec<Value> = serde_json::from_str(text).map_err(UpdatesError::Array)?;
    parse_values(items)
}

/// Parses already-decoded JSON values (e.g. the `updates` list of a conformance case).
/// Errors name the element index.
pub fn parse_values(items: Vec<Value>) -> Result<Vec<ToDataplane>, UpdatesError> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            json::from_value(item).map_err(|source| UpdatesError::Element { index, source })
        })
        .collect()
}

fn parse_lines(text: &str) -> Result<Vec<ToDataplane>, UpdatesError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            json::from_str(line).map_err(|source| UpdatesError::Line {
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::felix::to_dataplane::Payload;

    fn kinds(msgs: &[ToDataplane]) -> Vec<&'static str> {
        msgs.iter()
            .map(|m| match &m.payload {
                Some(Payload::InSync(_)) => "in_sync",
                Some(Payload::IpsetUpdate(_)) => "ipset_update",
                Some(Payload::NamespaceUpdate(_)) => "namespace_update",
                Some(_) => "other",
                None => "none",
            })
            .collect()
    }

    #[test]
    fn accepts_array_and_json_lines() {
        let ok = [
            (
                r#"[{"ipsetUpdate": {"id": "s"}}, {"inSync": {}}]"#,
                vec!["ipset_update", "in_sync"],
            ),
            ("  \n[\n {\"inSync\": {}}\n]\n", vec!["in_sync"]),
            ("[]", vec![]),
            ("", vec![]),
            ("\n  \n", vec![]),
            (
                "{\"ipsetUpdate\": {\"id\": \"s\"}}\n\n{\"routeUpdate\": {}}\r\n{\"inSync\": {}}",
                vec!["ipset_update", "none", "in_sync"],
            ),
            (
                "\u{feff}{\"namespaceUpdate\": {\"id\": {\"name\": \"n\"}}}\n",
                vec!["namespace_update"],
            ),
        ];
        for (text, want) in ok {
            match parse_updates(text) {
                Ok(msgs) => assert_eq!(kinds(&msgs), want, "{text:?}"),
                Err(e) => panic!("{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn errors_name_line_or_element_and_field() {
        let bad = [
            (
                "{\"inSync\": {}}\n\n{\"ipsetUpdate\": {\"members\": 3}}\n",
                "line 3: ipsetUpdate.members",
            ),
            ("{\"inSync\": {}}\n{\"inSync\": \n", "line 2: invalid JSON"),
            (
                r#"[{"inSync": {}}, {"ipsetUpdate": {"type": "X"}}]"#,
                "element 1: ipsetUpdate.type",
            ),
            (r#"[{"inSync": {}}, 3]"#, "element 1: invalid type: integer"),
            (r#"[{"inSync": {}},"#, "invalid JSON array"),
        ];
        for (text, want) in bad {
            match parse_updates(text) {
                Ok(msgs) => panic!("{text:?}: parsed {} messages", msgs.len()),
                Err(e) => assert!(e.to_string().starts_with(want), "{text:?}: {e}"),
            }
        }
    }
}

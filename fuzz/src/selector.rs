//! The label selector parser (`alp_engine::selector`). Input: the selector text, then
//! optionally a NUL byte and label lines `key=value` to evaluate it on.
//!
//! Invariants (those of the selector module's own tests, for any input):
//! * a parsed selector's canonical form (`Display`) parses to an equal selector and prints the
//!   same again;
//! * the selector and its re-parse decide alike on the labels given, and on no labels;
//! * an error's position is within the text.

use alp_engine::selector::Selector;
use std::collections::BTreeMap;

pub fn fuzz(data: &[u8]) {
    let (text, labels) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let labels = String::from_utf8_lossy(labels);
    let labels: BTreeMap<&str, &str> = labels
        .lines()
        .map(|line| line.split_once('=').unwrap_or((line, "")))
        .collect();

    let sel = match Selector::parse(&text) {
        Ok(sel) => sel,
        Err(err) => {
            assert!(
                err.position <= text.len(),
                "{text:?}: error position {} past the end: {err}",
                err.position
            );
            return;
        }
    };
    let canonical = sel.to_string();
    let again = Selector::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical {canonical:?} of {text:?} fails: {e}"));
    assert_eq!(again, sel, "{text:?} -> {canonical:?}");
    assert_eq!(again.to_string(), canonical, "{text:?}");
    let none: BTreeMap<&str, &str> = BTreeMap::new();
    assert_eq!(
        sel.matches(&labels),
        again.matches(&labels),
        "{canonical:?}"
    );
    assert_eq!(sel.matches(&none), again.matches(&none), "{canonical:?}");
    if sel.is_all() {
        assert!(sel.matches(&labels) && sel.matches(&none), "{canonical:?}");
    }
}

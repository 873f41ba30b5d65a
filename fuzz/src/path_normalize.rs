//! The request path normaliser (`alp_engine::path`): `normalize_request`, `forwarded_path`.
//!
//! Invariants (the engine's own property tests state them for generated paths; here for any):
//! * the matching form starts with `/`, has no `//`, no trailing `/` (but `/` itself), no `.`
//!   or `..` segment, no raw `;`, `\` or NUL;
//! * the canonical path (the raw path itself when canonical) is canonical and normalises to the
//!   same matching form;
//! * the matching form, as text ([`path_pattern::text_form`]), normalises to itself;
//! * `forwarded_path` is `None` exactly for a canonical path (or one not starting with `/`),
//!   else the canonical path plus the query.

use alp_engine::path::{self, forwarded_path, normalize_request};
use alp_engine::path_pattern::text_form;

pub fn fuzz(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let input: &str = &input;
    let normalized = normalize_request(input);
    let forwarded = forwarded_path(input);
    let Ok(out) = normalized else {
        if input.starts_with('/') {
            assert!(forwarded.is_err(), "{input:?}: forwarded {forwarded:?}");
        }
        return;
    };
    let matching: &[u8] = &out.matching;
    assert_matching_shape(matching, input);

    let raw_path = input.split(['?', '#']).next().unwrap_or("");
    let canonical = out.canonical.as_deref().unwrap_or(raw_path);
    let again = normalize_request(canonical)
        .unwrap_or_else(|e| panic!("canonical {canonical:?} of {input:?} fails: {e}"));
    assert_eq!(
        &*again.matching, matching,
        "canonical {canonical:?} of {input:?}"
    );
    assert!(
        again.is_canonical(),
        "canonical {canonical:?} of {input:?} is not canonical"
    );

    let text = text_form(matching);
    let twice = path::normalize(&text)
        .unwrap_or_else(|e| panic!("matching form {text:?} of {input:?} fails: {e}"));
    assert_eq!(twice, matching, "matching form {text:?} of {input:?}");

    match forwarded {
        Ok(Some(f)) => {
            let c = out.canonical.as_deref();
            assert!(
                c.is_some_and(|c| f.starts_with(c)),
                "{input:?}: forwarded {f:?}, canonical {c:?}"
            );
        }
        Ok(None) => assert!(
            out.is_canonical() || !input.starts_with('/'),
            "{input:?}: not forwarded but non-canonical"
        ),
        Err(e) => panic!("{input:?} normalises but forwarded_path fails: {e}"),
    }
}

fn assert_matching_shape(out: &[u8], input: &str) {
    assert_eq!(out.first(), Some(&b'/'), "{input:?} -> {out:?}");
    assert!(!out.windows(2).any(|w| w == b"//"), "{input:?} -> {out:?}");
    if out != b"/" {
        assert_ne!(out.last(), Some(&b'/'), "{input:?} -> {out:?}");
    }
    for segment in out.split(|&b| b == b'/').skip(1) {
        assert!(segment != b"." && segment != b"..", "{input:?} -> {out:?}");
    }
    assert!(
        !out.iter().any(|b| matches!(b, b';' | b'\\' | 0)),
        "{input:?} -> {out:?}"
    );
}

//! HTTP path normalisation and segment-boundary prefix matching (spec section 5, D7).
//!
//! [`normalize`] applies the eight steps of "Path normalisation" to a request path or a rule's
//! path value. The result is bytes, not a `String`: percent-decoding can produce any byte, and the
//! comparison the HTTP clause makes is byte-wise.

/// Why a path failed to normalise. Every failure of a request path is `BadRequestPath`; a rule
/// value that fails matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Step 2: a `%` at this byte offset of the input is not followed by two hex digits.
    #[error("bad percent-encoding at byte {offset}")]
    BadPercentEncoding { offset: usize },
    /// Step 3: after one round of decoding the path still holds `%2e`, `%2f` or `%5c`.
    #[error("double percent-encoding of '.', '/' or '\\'")]
    DoubleEncoding,
    /// Step 4: the decoded path holds a NUL byte.
    #[error("NUL byte in path")]
    NulByte,
    /// Step 6: the decoded path (with `\` read as `/`) does not start with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
}

/// Normalise `input` (spec section 5, steps 1-8, in order; the first failing step decides).
///
/// The result starts with `/`, holds no empty, `.` or `..` segment, no `;` parameters, and ends
/// with `/` only when it is exactly `/`.
pub fn normalize(input: &str) -> Result<Vec<u8>, PathError> {
    let bytes = input.as_bytes();

    // 1. Cut at the first `?` or `#` (of the raw text; decoded ones are kept).
    let end = bytes
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(bytes.len());
    let raw = bytes.get(..end).unwrap_or(bytes);

    // 2. Percent-decode once.
    let mut decoded = percent_decode(raw)?;

    // 3. Double encoding.
    if decoded.windows(3).any(is_encoded_separator) {
        return Err(PathError::DoubleEncoding);
    }

    // 4. NUL.
    if decoded.contains(&0) {
        return Err(PathError::NulByte);
    }

    // 5. Backslash is a separator.
    for b in decoded.iter_mut() {
        if *b == b'\\' {
            *b = b'/';
        }
    }

    // 6. Absolute only.
    if decoded.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }

    // 7 + 8. Strip `;` parameters per segment, then clean lexically.
    let mut kept: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|&b| b == b'/') {
        let segment = match segment.iter().position(|&b| b == b';') {
            Some(semi) => segment.get(..semi).unwrap_or(segment),
            None => segment,
        };
        match segment {
            b"" | b"." => {}
            b".." => {
                kept.pop();
            }
            _ => kept.push(segment),
        }
    }

    let mut out = Vec::with_capacity(decoded.len());
    if kept.is_empty() {
        out.push(b'/');
    }
    for segment in kept {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    Ok(out)
}

/// Segment-boundary prefix match of two normalised paths (spec section 5 HTTP clause, D7):
/// `/` matches every path; otherwise the path equals the prefix or continues it with `/`.
pub fn prefix_matches(normalized_prefix: &[u8], normalized_path: &[u8]) -> bool {
    if normalized_prefix == b"/" {
        return true;
    }
    match normalized_path.strip_prefix(normalized_prefix) {
        Some(rest) => rest.is_empty() || rest.first() == Some(&b'/'),
        None => false,
    }
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_value);
            let lo = raw.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 3;
                }
                _ => return Err(PathError::BadPercentEncoding { offset: i }),
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%2e`, `%2f` or `%5c` in any letter case.
fn is_encoded_separator(window: &[u8]) -> bool {
    matches!(
        window,
        [b'%', b'2', b'e' | b'E' | b'f' | b'F'] | [b'%', b'5', b'c' | b'C']
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UNIT_CASES: &str = include_str!("../../../../shared/conformance/unit_cases.json");

    #[test]
    fn conformance_normalize_http_path() {
        let all: serde_json::Value = serde_json::from_str(UNIT_CASES).expect("unit_cases.json");
        let cases = all["normalize_http_path"].as_array().expect("array");
        assert!(!cases.is_empty());
        for case in cases {
            let input = case["input"].as_str().expect("input");
            let ok = case["ok"].as_bool().expect("ok");
            let got = normalize(input);
            if ok {
                let want = case["normalized"].as_str().expect("normalized");
                assert_eq!(
                    got.as_deref(),
                    Ok(want.as_bytes()),
                    "input {input:?} should normalise to {want:?}"
                );
            } else {
                assert!(got.is_err(), "input {input:?} should fail, got {got:?}");
            }
        }
    }

    #[test]
    fn errors_name_the_failing_step() {
        let table: &[(&str, PathError)] = &[
            ("/%XY/admin", PathError::BadPercentEncoding { offset: 1 }),
            ("/ab%", PathError::BadPercentEncoding { offset: 3 }),
            ("/ab%4", PathError::BadPercentEncoding { offset: 3 }),
            ("/a%41%g0", PathError::BadPercentEncoding { offset: 5 }),
            ("/public%252fadmin", PathError::DoubleEncoding),
            ("/public%255Cadmin", PathError::DoubleEncoding),
            ("/%252E", PathError::DoubleEncoding),
            ("/public%00/admin", PathError::NulByte),
            ("/a\0b", PathError::NulByte),
            ("", PathError::NotAbsolute),
            ("a/b", PathError::NotAbsolute),
            ("?/a", PathError::NotAbsolute),
            ("#/a", PathError::NotAbsolute),
            ("http://example.com/", PathError::NotAbsolute),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input), Err(want.clone()), "input {input:?}");
        }
    }

    #[test]
    fn more_normalisation() {
        let table: &[(&str, &[u8])] = &[
            ("/%2Fadmin", b"/admin"),
            ("%2Fadmin", b"/admin"),
            ("%5Cadmin", b"/admin"),
            ("/a/b/../../../..", b"/"),
            ("/a/./././b", b"/a/b"),
            ("/...", b"/..."),
            ("/..a/.b", b"/..a/.b"),
            ("/a;b;c/d", b"/a/d"),
            ("/a/;", b"/a"),
            ("/a%23b", b"/a#b"),
            ("/a?x=%zz", b"/a"),
            ("/a#%00", b"/a"),
            ("/%ff%FE", &[b'/', 0xff, 0xfe]),
            ("/%2541", b"/%41"),
            ("/caf\u{e9}", "/caf\u{e9}".as_bytes()),
            ("///", b"/"),
            ("/foo/", b"/foo"),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input).as_deref(), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn prefix_table() {
        let table: &[(&str, &str, bool)] = &[
            ("/", "/", true),
            ("/", "/anything/at/all", true),
            ("/foo", "/foo", true),
            ("/foo", "/foo/bar", true),
            ("/foo", "/foobar", false),
            ("/foo", "/fo", false),
            ("/foo", "/", false),
            ("/foo/bar", "/foo", false),
            ("/foo/bar", "/foo/bar/baz", true),
            ("/Foo", "/foo", false),
        ];
        for (prefix, path, want) in table {
            assert_eq!(
                prefix_matches(prefix.as_bytes(), path.as_bytes()),
                *want,
                "prefix {prefix:?} path {path:?}"
            );
        }
        // A prefix with a trailing slash, normalised, is a segment prefix.
        let p = normalize("/foo/").expect("ok");
        assert!(prefix_matches(&p, b"/foo/x"));
        assert!(!prefix_matches(&p, b"/foox"));
    }

    fn check_shape(out: &[u8]) {
        assert_eq!(out.first(), Some(&b'/'));
        assert!(!out.windows(2).any(|w| w == b"//"), "{out:?}");
        if out != b"/" {
            assert_ne!(out.last(), Some(&b'/'));
        }
        for segment in out.split(|&b| b == b'/').skip(1) {
            assert!(segment != b"." && segment != b"..", "{out:?}");
            assert!(!segment.contains(&b';'));
        }
        assert!(!out.contains(&0));
        assert!(!out.contains(&b'\\'));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_any_string(s in ".*") {
            if let Ok(out) = normalize(&s) {
                check_shape(&out);
            }
        }

        #[test]
        fn shape_on_path_alphabet(s in "[/\\\\.;%?#a-c2eEfF5C0]{0,40}") {
            if let Ok(out) = normalize(&s) {
                check_shape(&out);
            }
        }

        #[test]
        fn idempotent_without_specials(s in "/[/\\\\.;a-c]{0,40}") {
            let once = normalize(&s).expect("always absolute");
            let text = String::from_utf8(once.clone()).expect("ascii");
            prop_assert_eq!(normalize(&text).expect("ok"), once);
        }

        #[test]
        fn prefix_reflexive_and_root(s in "/[a-c/]{0,20}", t in "/[a-c/]{0,20}") {
            let a = normalize(&s).expect("ok");
            let b = normalize(&t).expect("ok");
            prop_assert!(prefix_matches(&a, &a));
            prop_assert!(prefix_matches(b"/", &b));
            // Matching means segment-wise prefix.
            let mut joined = a.clone();
            joined.extend_from_slice(&b);
            let joined = normalize(std::str::from_utf8(&joined).expect("ascii")).expect("ok");
            prop_assert!(prefix_matches(&a, &joined));
        }
    }
}

use super::*;
use proptest::prelude::*;

fn unit_cases() -> serde_json::Value {
    let text =
        crate::testdata::shared_file("conformance/unit_cases.json").expect("unit_cases.json");
    serde_json::from_str(&text).expect("unit_cases.json is JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn conformance_normalize_http_path() {
    let all = unit_cases();
    let cases = all["normalize_http_path"].as_array().expect("array");
    assert!(cases.len() >= 50, "{} cases", cases.len());
    for case in cases {
        let input = case["input"].as_str().expect("input");
        let got = normalize_request(input);
        if !case["ok"].as_bool().expect("ok") {
            assert!(got.is_err(), "input {input:?} should fail, got {got:?}");
            assert!(
                !input.starts_with('/') || forwarded_path(input).is_err(),
                "input {input:?}"
            );
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("input {input:?} failed: {e}"));
        let want = match case["normalized"].as_str() {
            Some(text) => hex(text.as_bytes()),
            None => case["normalized_hex"]
                .as_str()
                .expect("normalized_hex")
                .to_string(),
        };
        assert_eq!(hex(&got.matching), want, "matching form of {input:?}");
        let non_canonical = case["non_canonical"].as_bool().expect("non_canonical");
        assert_eq!(
            !got.is_canonical(),
            non_canonical,
            "non_canonical of {input:?}"
        );
        let canonical = case["canonical"].as_str().expect("canonical");
        let raw = path_part(input);
        let forwarded = got.canonical.as_deref().map_or(raw, str::as_bytes);
        assert_eq!(forwarded, canonical.as_bytes(), "canonical of {input:?}");
    }
}

#[test]
fn errors_name_the_failing_step() {
    let table: &[(&str, PathError)] = &[
        ("/%XY/admin", PathError::BadPercentEncoding { offset: 1 }),
        ("/ab%", PathError::BadPercentEncoding { offset: 3 }),
        ("/ab%4", PathError::BadPercentEncoding { offset: 3 }),
        ("/a%41%g0", PathError::BadPercentEncoding { offset: 5 }),
        ("/a;x=%zz", PathError::BadPercentEncoding { offset: 5 }),
        ("/public%00/admin", PathError::NulByte),
        ("/a\0b", PathError::NulByte),
        ("/public%252fadmin", PathError::DoubleEncoding),
        ("/public%255Cadmin", PathError::DoubleEncoding),
        ("/%252E", PathError::DoubleEncoding),
        ("", PathError::NotAbsolute),
        ("a/b", PathError::NotAbsolute),
        ("?/a", PathError::NotAbsolute),
        ("#/a", PathError::NotAbsolute),
        ("http://example.com/", PathError::NotAbsolute),
        ("%2Fadmin", PathError::NotAbsolute),
        (
            "/admin/..%3B/public",
            PathError::AmbiguousSegment { index: 1 },
        ),
        ("/..%2F", PathError::AmbiguousSegment { index: 0 }),
        ("/a/b/x%2F..", PathError::AmbiguousSegment { index: 2 }),
        ("/a/%2E%2E%5C", PathError::AmbiguousSegment { index: 1 }),
    ];
    for (input, want) in table {
        assert_eq!(normalize(input), Err(want.clone()), "input {input:?}");
    }
}

#[test]
fn more_normalisation() {
    // (input, matching form, canonical path when non-canonical)
    let table: &[(&str, &[u8], Option<&str>)] = &[
        ("/%2Fadmin", b"/%2Fadmin", None),
        ("/a/b/../../../..", b"/", Some("/")),
        ("/a/./././b", b"/a/b", Some("/a/b")),
        ("/...", b"/...", None),
        ("/..a/.b", b"/..a/.b", None),
        ("/a;b;c/d", b"/a/d", None),
        ("/a/;", b"/a", Some("/a")),
        ("/a%23b", b"/a%23b", None),
        ("/a?x=%zz", b"/a", None),
        ("/a#%00", b"/a", None),
        ("/%ff%FE", &[b'/', 0xff, 0xfe], None),
        ("/%2541", b"/%2541", None),
        ("/caf\u{e9}", "/caf\u{e9}".as_bytes(), None),
        ("///", b"/", Some("/")),
        ("//", b"/", Some("/")),
        ("/foo/", b"/foo", None),
        ("/a//", b"/a", Some("/a/")),
        ("\\", b"/", Some("/")),
        ("/a\\b/", b"/a/b", Some("/a/b/")),
        ("/a/%2F/b", b"/a/%2F/b", None),
        ("/a/.;x", b"/a", Some("/a")),
        ("/a/b;p/..;q/c;r", b"/a/c", Some("/a/c;r")),
    ];
    for (input, want, canonical) in table {
        let got = normalize_request(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(&*got.matching, *want, "matching form of {input:?}");
        assert_eq!(
            got.canonical.as_deref(),
            *canonical,
            "canonical of {input:?}"
        );
    }
}

#[test]
fn forwarded_path_keeps_the_query_and_drops_the_fragment() {
    let table: &[(&str, Option<&str>)] = &[
        ("/public", None),
        ("/public?a=1", None),
        ("/public/../admin?q=1&r=%2e", Some("/admin?q=1&r=%2e")),
        ("/a//b?x#frag", Some("/a/b?x")),
        ("/a//b#frag?x", Some("/a/b")),
        ("/a/./b?", Some("/a/b?")),
    ];
    for (input, want) in table {
        assert_eq!(
            forwarded_path(input).expect("ok").as_deref(),
            *want,
            "{input:?}"
        );
    }
}

#[test]
fn plain_paths_borrow() {
    for input in ["/", "/public", "/a/b/c", "/a/b/", "/a.b/c..d?x=1"] {
        let got = normalize_request(input).expect("ok");
        assert!(matches!(got.matching, Cow::Borrowed(_)), "{input:?}");
        assert!(got.is_canonical());
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
        ("/public", "/public%2F..%2Fadmin", false),
    ];
    for (prefix, path, want) in table {
        assert_eq!(
            prefix_matches(prefix.as_bytes(), path.as_bytes()),
            *want,
            "prefix {prefix:?} path {path:?}"
        );
    }
    let p = normalize("/foo/").expect("ok");
    assert!(prefix_matches(&p, b"/foo/x"));
    assert!(!prefix_matches(&p, b"/foox"));
}

/// Paths built from segments, dot segments, escapes of every delimiter, parameters and bytes
/// that are not UTF-8 once decoded.
fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%2F".to_string()),
        Just("%2f".to_string()),
        Just("%5C".to_string()),
        Just("%3B".to_string()),
        Just("%3b".to_string()),
        Just("%3F".to_string()),
        Just("%23".to_string()),
        Just("%25".to_string()),
        Just("%252e".to_string()),
        Just("%ff".to_string()),
        Just("%C3%A9".to_string()),
        Just("%41".to_string()),
        Just(";".to_string()),
        Just(";p=1".to_string()),
        Just("\\".to_string()),
        Just("/".to_string()),
        Just("é".to_string()),
    ];
    (
        prop::collection::vec(piece, 0..12),
        prop::option::of("[?#][a-z=&%.]{0,6}"),
    )
        .prop_map(|(pieces, tail)| {
            let mut s = String::from("/");
            s.extend(pieces);
            s.push_str(tail.as_deref().unwrap_or(""));
            s
        })
}

fn assert_matching_shape(out: &[u8]) {
    assert_eq!(out.first(), Some(&b'/'));
    assert!(!out.windows(2).any(|w| w == b"//"), "{out:?}");
    if out != b"/" {
        assert_ne!(out.last(), Some(&b'/'));
    }
    for segment in out.split(|&b| b == b'/').skip(1) {
        assert!(
            segment != b"." && segment != b"..",
            "dot segment in {out:?}"
        );
        assert!(!segment.contains(&b';'), "raw ';' in {out:?}");
    }
    assert!(!out.contains(&0));
    assert!(!out.contains(&b'\\'));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_any_string(s in ".*") {
        if let Ok(out) = normalize_request(&s) {
            assert_matching_shape(&out.matching);
        }
        let _ = forwarded_path(&s);
    }

    /// (a) never panics, (b) no `.` or `..` segment in the matching form, (c) the canonical path
    /// normalises to the same matching form and is itself canonical.
    #[test]
    fn canonical_paths_are_fixed_points(s in path_strategy()) {
        let Ok(out) = normalize_request(&s) else { return Ok(()) };
        assert_matching_shape(&out.matching);
        let canonical = match &out.canonical {
            Some(c) => c.clone(),
            None => String::from_utf8(path_part(&s).to_vec()).expect("utf-8"),
        };
        let again = normalize_request(&canonical).expect("the canonical path normalises");
        prop_assert_eq!(&again.matching, &out.matching, "canonical {:?} of {:?}", canonical, s);
        prop_assert!(again.is_canonical(), "canonical {:?} of {:?} is not canonical", canonical, s);
        // The forwarded path is the canonical one with the query.
        match forwarded_path(&s).expect("ok") {
            Some(forwarded) => prop_assert!(forwarded.starts_with(&canonical)),
            None => prop_assert!(out.is_canonical()),
        }
    }

    #[test]
    fn idempotent_on_the_matching_form(s in "/[/\\\\.;a-c]{0,40}") {
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
        let mut joined = a.clone();
        joined.extend_from_slice(&b);
        let joined = normalize(std::str::from_utf8(&joined).expect("ascii")).expect("ok");
        prop_assert!(prefix_matches(&a, &joined));
    }
}

#[test]
fn non_canonical_path_modes_parse_by_name() {
    for mode in [NonCanonicalPath::Rewrite, NonCanonicalPath::Reject] {
        assert_eq!(mode.as_str().parse::<NonCanonicalPath>(), Ok(mode));
    }
    assert!("keep".parse::<NonCanonicalPath>().is_err());
    assert!("Reject".parse::<NonCanonicalPath>().is_err());
}

//! Tests: the shared conformance vectors, a table of tricky inputs, limits, error reporting, and
//! property tests (no panics; canonical form round-trips and is a fixed point).

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_json::Value;

use super::ast::{CompareOp, Node};
use super::{LabelSource, Selector, SelectorError, MAX_DEPTH, MAX_LABEL_LEN};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn canonical(text: &str) -> Result<String, SelectorError> {
    Selector::parse(text).map(|s| s.to_string())
}

/// Checks that the error is well formed: position inside the input on a character boundary,
/// Display prefixed with the position.
fn check_error(text: &str, err: &SelectorError) {
    assert!(
        err.position <= text.len(),
        "{text:?}: position {} out of range",
        err.position
    );
    assert!(
        text.is_char_boundary(err.position),
        "{text:?}: position {} not a boundary",
        err.position
    );
    assert!(!err.message.is_empty());
    assert_eq!(
        err.to_string(),
        format!("at position {}: {}", err.position, err.message)
    );
}

fn json_labels(value: &Value) -> BTreeMap<String, String> {
    let Some(map) = value.as_object() else {
        panic!("labels must be an object: {value}");
    };
    map.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("label values are strings").to_string(),
            )
        })
        .collect()
}

#[test]
fn conformance_selector_cases() {
    let rows: Vec<Value> = serde_json::from_str(
        &crate::testdata::shared_file("conformance/selector_cases.json")
            .expect("shared/conformance/selector_cases.json"),
    )
    .expect("selector_cases.json parses");
    assert!(!rows.is_empty());
    for row in &rows {
        let text = row["selector"].as_str().expect("selector");
        let want_match = row["match"].as_bool().expect("match");
        let want_canonical = row["canonical"].as_str().expect("canonical");
        let map = json_labels(&row["labels"]);
        let sel = Selector::parse(text).unwrap_or_else(|e| panic!("{text:?} must parse: {e}"));
        assert_eq!(sel.matches(&map), want_match, "{text:?} against {map:?}");
        let hash: HashMap<String, String> = map.clone().into_iter().collect();
        assert_eq!(
            sel.matches(&hash),
            want_match,
            "{text:?} against HashMap {hash:?}"
        );
        assert_eq!(
            sel.to_string(),
            want_canonical,
            "canonical form of {text:?}"
        );
        let again = Selector::parse(want_canonical).expect("canonical form parses");
        assert_eq!(
            again, sel,
            "canonical form of {text:?} parses to the same selector"
        );
        assert_eq!(
            again.to_string(),
            want_canonical,
            "canonical form is a fixed point"
        );
        assert_eq!(again.matches(&map), want_match);
    }
}

#[test]
fn conformance_selector_invalid() {
    let rows: Vec<Value> = serde_json::from_str(
        &crate::testdata::shared_file("conformance/selector_invalid.json")
            .expect("shared/conformance/selector_invalid.json"),
    )
    .expect("selector_invalid.json parses");
    assert!(!rows.is_empty());
    for row in &rows {
        let text = row["selector"].as_str().expect("selector");
        match Selector::parse(text) {
            Ok(sel) => panic!("{text:?} must be rejected, parsed as {sel}"),
            Err(err) => check_error(text, &err),
        }
    }
}

/// `(input, Some(canonical))` must parse to that canonical form; `(input, None)` must fail.
const TRICKY: &[(&str, Option<&str>)] = &[
    // Word-boundary operators.
    (r#"a in{"x"}"#, Some(r#"a in {"x"}"#)),
    (r#"a in {"x"}"#, Some(r#"a in {"x"}"#)),
    (r#"ain{"x"}"#, None),
    (r#"ain {"x"}"#, None),
    (r#"a inx {"x"}"#, None),
    (r#"a in-{"x"}"#, None),
    (r#"a IN {"x"}"#, None),
    (r#"a not in{"x"}"#, Some(r#"a not in {"x"}"#)),
    (r#"a notin{"x"}"#, Some(r#"a not in {"x"}"#)),
    (r#"a not	in {"x"}"#, Some(r#"a not in {"x"}"#)),
    (r#"a not  	 in {"x"}"#, Some(r#"a not in {"x"}"#)),
    (r#"a not inx {"x"}"#, None),
    (r#"a nott in {"x"}"#, None),
    (r#"a not{"x"}"#, None),
    (r#"a not"#, None),
    (r#"a starts  with "x""#, Some(r#"a starts with "x""#)),
    ("a starts\t\twith \"x\"", Some(r#"a starts with "x""#)),
    (r#"a startswith"x""#, Some(r#"a starts with "x""#)),
    (r#"a starts with"x""#, Some(r#"a starts with "x""#)),
    (r#"a startswithx "x""#, None),
    (r#"a starts withx "x""#, None),
    (r#"a starts-with "x""#, None),
    (r#"a starts"#, None),
    (r#"a startswith"#, None),
    (r#"a ends with 'x'"#, Some(r#"a ends with "x""#)),
    (r#"a endswith 'x'"#, Some(r#"a ends with "x""#)),
    (r#"a ends  with 'x'"#, Some(r#"a ends with "x""#)),
    (r#"a contains"x""#, Some(r#"a contains "x""#)),
    (r#"a containsx "x""#, None),
    (r#"a contain "x""#, None),
    // Keywords are not reserved as labels.
    (r#"contains contains "x""#, Some(r#"contains contains "x""#)),
    (r#"in in {"x"}"#, Some(r#"in in {"x"}"#)),
    (r#"not not in {"x"}"#, Some(r#"not not in {"x"}"#)),
    (r#"not notin {"x"}"#, Some(r#"not not in {"x"}"#)),
    (
        r#"starts starts with "x""#,
        Some(r#"starts starts with "x""#),
    ),
    (r#"has == "x""#, Some(r#"has == "x""#)),
    (r#"all == "x""#, Some(r#"all == "x""#)),
    (r#"global != "x""#, Some(r#"global != "x""#)),
    (r#"with == "x""#, Some(r#"with == "x""#)),
    // has(), all(), global().
    ("has( a )", Some("has(a)")),
    ("has(\ta\t)", Some("has(a)")),
    ("has(a.b/c-d_E9)", Some("has(a.b/c-d_E9)")),
    ("has (a)", None),
    ("has()", None),
    ("has( )", None),
    ("has(a", None),
    ("has(", None),
    ("has(a b)", None),
    ("has(\"a\")", None),
    ("all ()", None),
    ("all()x", None),
    ("all() && global()", Some("(all() && global())")),
    ("!all()", Some("!all()")),
    ("(all())", Some("all()")),
    // Negation.
    ("!!has(a)", Some("has(a)")),
    ("!!!!has(a)", Some("has(a)")),
    ("! ! ! has(a)", Some("!has(a)")),
    ("!(!has(a))", Some("has(a)")),
    ("!((!has(a)))", Some("has(a)")),
    ("!(!has(a) && has(b))", Some("!(!has(a) && has(b))")),
    ("!!", None),
    ("!", None),
    ("has(a) !", None),
    // Whitespace.
    ("", Some("all()")),
    (" \t ", Some("all()")),
    ("\ta == \"x\"\t", Some(r#"a == "x""#)),
    ("a == \"x\"\n", None),
    ("\na == \"x\"", None),
    ("a ==\r\"x\"", None),
    ("\u{a0}a == \"x\"", None),
    // Punctuation and structure.
    (r#"a=="b"&&c!="d""#, Some(r#"(a == "b" && c != "d")"#)),
    (r#"((a == "b"))"#, Some(r#"a == "b""#)),
    (
        r#"a == "x" || b == "y" || c == "z""#,
        Some(r#"(a == "x" || b == "y" || c == "z")"#),
    ),
    (
        r#"a == "1" && (b == "2" && c == "3")"#,
        Some(r#"(a == "1" && (b == "2" && c == "3"))"#),
    ),
    (
        r#"(a == "1" || b == "2") || c == "3""#,
        Some(r#"((a == "1" || b == "2") || c == "3")"#),
    ),
    (r#"a == "b" &&"#, None),
    (r#"|| a == "b""#, None),
    (r#"a == "b" &&& c == "d""#, None),
    (r#"a == "b" & c == "d""#, None),
    (r#"a == "b" | c == "d""#, None),
    (r#"a == "b" AND c == "d""#, None),
    (r#"a = "b""#, None),
    (r#"a === "b""#, None),
    (r#"a == b"#, None),
    (r#"a == "#, None),
    (r#"a"#, None),
    (r#"a "b""#, None),
    (r#""a" == "b""#, None),
    (r#"== "b""#, None),
    (r#"!= "b""#, None),
    ("=", None),
    ("()", None),
    (r#"(a == "b""#, None),
    (r#"a == "b")"#, None),
    (r#"a == "b" ()"#, None),
    (r#"a in "b""#, None),
    (r#"a == {"b"}"#, None),
    // Strings.
    (r#"a == ''"#, Some(r#"a == """#)),
    (r#"a == 'say "hi"'"#, Some(r#"a == 'say "hi"'"#)),
    (r#"a == "it's""#, Some(r#"a == "it's""#)),
    (r#"a == "日本 é""#, Some(r#"a == "日本 é""#)),
    (
        "a == \"tab\tand\nnewline\"",
        Some("a == \"tab\tand\nnewline\""),
    ),
    (r#"a == "x' "#, None),
    (r#"a == 'x" "#, None),
    (r#"é == "x""#, None),
    (r#"a == "x" && ü"#, None),
    (r#"a == `x`"#, None),
    // Sets.
    (r#"a in {}"#, Some(r#"a in {}"#)),
    (r#"a in { }"#, Some(r#"a in {}"#)),
    (r#"a not in {}"#, Some(r#"a not in {}"#)),
    (r#"a in {,}"#, None),
    (r#"a in {"x",}"#, Some(r#"a in {"x"}"#)),
    (r#"a in {"x", "y",}"#, Some(r#"a in {"x", "y"}"#)),
    (r#"a in {"x" , 'y' }"#, Some(r#"a in {"x", "y"}"#)),
    (r#"a in {"x",,}"#, None),
    (r#"a in {,"x"}"#, None),
    (r#"a in {"x" "y"}"#, None),
    (r#"a in {"x""#, None),
    (r#"a in {"x","#, None),
    (r#"a in {"#, None),
    (r#"a in {x}"#, None),
    (r#"a in {("x")}"#, None),
    (r#"a in {"b", "a", "b"}"#, Some(r#"a in {"a", "b"}"#)),
    (r#"a in {"z", 'x"y'}"#, Some(r#"a in {'x"y', "z"}"#)),
    (
        r#"a in {"b", "B", "", "a"}"#,
        Some(r#"a in {"", "B", "a", "b"}"#),
    ),
];

#[test]
fn tricky_table() {
    for (text, want) in TRICKY {
        match (Selector::parse(text), want) {
            (Ok(sel), Some(want)) => {
                assert_eq!(sel.to_string(), *want, "canonical form of {text:?}");
                assert_eq!(
                    canonical(want).as_deref(),
                    Ok(*want),
                    "{want:?} is a fixed point"
                );
            }
            (Ok(sel), None) => panic!("{text:?} must be rejected, parsed as {sel}"),
            (Err(err), Some(_)) => panic!("{text:?} must parse: {err}"),
            (Err(err), None) => check_error(text, &err),
        }
    }
}

/// `(selector, labels, expected match)`.
type SemanticsCase = (&'static str, &'static [(&'static str, &'static str)], bool);

#[test]
fn semantics_table() {
    let cases: &[SemanticsCase] = &[
        (r#"a != "x""#, &[], true),
        (r#"a != "x""#, &[("a", "x")], false),
        (r#"a != "x""#, &[("a", "X")], true),
        (r#"a == "x""#, &[("a", "X")], false),
        (r#"a == """#, &[("a", "")], true),
        (r#"a == """#, &[], false),
        (r#"a contains """#, &[], false),
        (r#"a contains "b""#, &[("a", "abc")], true),
        (r#"a contains "B""#, &[("a", "abc")], false),
        (r#"a ends with "c""#, &[("a", "abc")], true),
        (r#"a starts with "abcd""#, &[("a", "abc")], false),
        (r#"a in {}"#, &[("a", "")], false),
        (r#"a not in {}"#, &[("a", "")], true),
        (r#"a not in {}"#, &[], true),
        (r#"a not in {"x"}"#, &[], true),
        (r#"a not in {"x"}"#, &[("a", "x")], false),
        (r#"a in {"", "x"}"#, &[("a", "")], true),
        (r#"a in {"c", "a", "b", "d", "e"}"#, &[("a", "d")], true),
        (r#"a in {"c", "a", "b", "d", "e"}"#, &[("a", "f")], false),
        ("has(a)", &[("a", "")], true),
        ("has(a)", &[("A", "")], false),
        ("!has(a)", &[], true),
        ("all()", &[], true),
        ("!all()", &[("a", "b")], false),
        ("global()", &[], true),
        (r#"a == "1" || b == "2" && c == "3""#, &[("a", "1")], true),
        (r#"!a == "1" && b == "2""#, &[("b", "2")], true),
        (r#"!(a == "1" && b == "2")"#, &[("b", "2")], true),
        (r#"a == 'é'"#, &[("a", "é")], true),
    ];
    for (text, pairs, want) in cases {
        let sel = Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let map = labels(pairs);
        assert_eq!(sel.matches(&map), *want, "{text:?} against {map:?}");
        let hash: HashMap<String, String> = map.clone().into_iter().collect();
        assert_eq!(sel.matches(&hash), *want, "{text:?} against HashMap");
        assert_eq!(sel.matches(&&map), *want, "{text:?} against &BTreeMap");
        let borrowed: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        assert_eq!(
            sel.matches(&borrowed),
            *want,
            "{text:?} against BTreeMap<&str, &str>"
        );
    }
}

#[test]
fn is_all() {
    for text in ["", "  ", "all()", "global()", " ( all() ) ", "!!global()"] {
        assert!(Selector::parse(text).expect("parses").is_all(), "{text:?}");
    }
    for text in ["!all()", "has(a)", "all() && all()", "all() || has(a)"] {
        assert!(!Selector::parse(text).expect("parses").is_all(), "{text:?}");
    }
}

#[test]
fn equality_and_from_str() {
    let a: Selector = "a == 'x' && b in {'2', '1', '2'}".parse().expect("parses");
    let b = Selector::parse(r#"(a=="x")&&b in{"1","2",}"#).expect("parses");
    assert_eq!(a, b);
    assert_ne!(a, Selector::parse(r#"a == "x""#).expect("parses"));
    assert_eq!(a.clone(), a);
}

#[test]
fn label_length_limit() {
    let ok = "a".repeat(MAX_LABEL_LEN);
    let long = "a".repeat(MAX_LABEL_LEN + 1);
    let templates = [
        ("LBL == \"v\"", 0),
        ("has(LBL)", 4),
        ("has( LBL )", 5),
        ("x in {} && LBL == 'v'", 11),
    ];
    for (template, offset) in templates {
        let good = template.replace("LBL", &ok);
        let bad = template.replace("LBL", &long);
        assert!(
            Selector::parse(&good).is_ok(),
            "512-character label in {template:?}"
        );
        let err = Selector::parse(&bad).expect_err("513-character label");
        check_error(&bad, &err);
        assert_eq!(err.position, offset, "{template:?}: {err}");
        assert!(err.message.contains("too long"), "{err}");
    }
    // A long word in operator position is simply not an operator.
    let text = format!("a {long} \"v\"");
    let err = Selector::parse(&text).expect_err("not an operator");
    assert!(err.message.contains("expected an operator"), "{err}");
}

#[test]
fn nesting_limit() {
    let inner = r#"a == "b""#;
    let parens = |n: usize| format!("{}{inner}{}", "(".repeat(n), ")".repeat(n));
    assert_eq!(canonical(&parens(MAX_DEPTH)).as_deref(), Ok(inner));
    let err = Selector::parse(&parens(MAX_DEPTH + 1)).expect_err("too deep");
    assert!(err.message.contains("nested too deeply"), "{err}");
    assert_eq!(err.position, MAX_DEPTH);

    let nots = |n: usize| format!("{}has(a)", "!".repeat(n));
    assert_eq!(canonical(&nots(MAX_DEPTH)).as_deref(), Ok("has(a)"));
    assert_eq!(canonical(&nots(MAX_DEPTH - 1)).as_deref(), Ok("!has(a)"));
    let err = Selector::parse(&nots(MAX_DEPTH + 1)).expect_err("too deep");
    assert!(err.message.contains("nested too deeply"), "{err}");

    // Mixed: each "!(" is two levels.
    let half = MAX_DEPTH / 2;
    let mixed = format!("{}has(a){}", "!(".repeat(half), ")".repeat(half));
    assert!(Selector::parse(&mixed).is_ok());
    let mixed = format!("{}(has(a)){}", "!(".repeat(half), ")".repeat(half));
    assert!(Selector::parse(&mixed).is_err());

    // Found by fuzzing: each level of `(` here holds an `&&` chain inside an `||` chain, two
    // levels of the canonical form, which must parse too.
    let chains = |n: usize| {
        let mut text = r#"c == "3""#.to_string();
        for _ in 0..n {
            text = format!(r#"b == "2" && ({text}) || c == "3""#);
        }
        text
    };
    for n in [10, 40, 63, 64, 65, 100] {
        match Selector::parse(&chains(n)) {
            Ok(s) => assert_eq!(Selector::parse(&s.to_string()).as_ref(), Ok(&s), "{n}"),
            Err(err) => assert!(err.message.contains("canonical form"), "{n}: {err}"),
        }
    }
    assert!(Selector::parse(&chains(10)).is_ok());
    assert!(Selector::parse(&chains(65)).is_err());

    // Depth is per path, not cumulative: many sibling groups are fine.
    let siblings = vec![parens(MAX_DEPTH); 50].join(" && ");
    assert!(Selector::parse(&siblings).is_ok());

    // Huge inputs fail cleanly without exhausting the stack.
    for text in [
        "(".repeat(200_000),
        "!".repeat(200_000),
        "!(".repeat(100_000),
    ] {
        let err = Selector::parse(&text).expect_err("too deep");
        check_error(&text, &err);
    }
}

#[test]
fn long_flat_chains() {
    let text = vec![r#"a == "b""#; 20_000].join(" && ");
    let sel = Selector::parse(&text).expect("a long flat chain is not nesting");
    assert!(sel.matches(&labels(&[("a", "b")])));
    assert!(!sel.matches(&labels(&[])));
    let text = vec![r#"a == "b""#; 20_000].join(" || ");
    assert!(Selector::parse(&text)
        .expect("parses")
        .matches(&labels(&[("a", "b")])));
}

#[test]
fn error_messages() {
    let cases: &[(&str, usize, &str)] = &[
        ("a == 'FOO", 5, "unterminated string starting at position 5"),
        ("a AND b", 2, "after label \"a\", found \"AND\""),
        ("a ", 2, "after label \"a\", found end of input"),
        ("a => \"b\"", 2, "did you mean '=='"),
        ("a !in {\"b\"}", 2, "did you mean '!=' or 'not in'"),
        ("a not", 5, "expected 'in' after 'not'"),
        ("a starts \"x\"", 9, "expected 'with' after 'starts'"),
        ("has()", 4, "expected a label inside has(), found ')'"),
        (
            "has(a b)",
            6,
            "expected ')' to close has( at position 0, found \"b\"",
        ),
        ("'b1' == b", 0, "found the string \"b1\""),
        ("(", 1, "found end of input"),
        (
            "(a == \"b\" ",
            10,
            "expected ')' to close '(' at position 0",
        ),
        (")", 0, "found ')'"),
        (
            "a == \"b\" c == \"d\"",
            9,
            "expected '&&', '||' or end of input, found label \"c\"",
        ),
        ("a == \"b\" & c", 9, "single '&'"),
        ("a == \"b\" | c", 9, "single '|'"),
        (
            "a == b",
            5,
            "expected a quoted string after 'a ==', found label \"b\"",
        ),
        ("a in \"b\"", 5, "expected '{' after 'a in'"),
        (
            "a in {,}",
            6,
            "expected a quoted string or '}' in the set opened at position 5, found ','",
        ),
        (
            "a in {\"x\" \"y\"}",
            10,
            "expected ',' or '}' after a set member",
        ),
        ("a in {x}", 6, "found label \"x\""),
        ("a == `b`", 5, "unexpected character '`'"),
        ("a == \"b\"\n", 8, "unexpected character '\\n'"),
        ("a == \"é\" && ü", 13, "unexpected character 'ü'"),
        ("!!", 2, "found end of input"),
    ];
    for (text, position, fragment) in cases {
        let err = Selector::parse(text).expect_err(text);
        check_error(text, &err);
        assert_eq!(err.position, *position, "{text:?}: {err}");
        assert!(
            err.message.contains(fragment),
            "{text:?}: {err:?} lacks {fragment:?}"
        );
    }
    let long = format!("{} AND", "x".repeat(300));
    let err = Selector::parse(&long).expect_err("no operator");
    assert!(
        err.message.len() < 200,
        "long labels are shortened in messages: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// An independent reading of the semantics, for comparison with `Node::eval`.
fn reference(node: &Node, labels: &BTreeMap<String, String>) -> bool {
    let get = |l: &str| labels.get(l).map(String::as_str);
    match node {
        Node::All | Node::Global => true,
        Node::Has(l) => labels.contains_key(&**l),
        Node::Compare { label, op, value } => {
            let v = get(label);
            let value = &**value;
            match op {
                CompareOp::Eq => v == Some(value),
                CompareOp::Ne => v != Some(value),
                CompareOp::Contains => v.is_some_and(|v| v.contains(value)),
                CompareOp::StartsWith => v.is_some_and(|v| v.starts_with(value)),
                CompareOp::EndsWith => v.is_some_and(|v| v.ends_with(value)),
            }
        }
        Node::In {
            label,
            members,
            negated,
        } => {
            let inside = get(label).is_some_and(|v| members.iter().any(|m| &**m == v));
            if *negated {
                !inside
            } else {
                inside
            }
        }
        Node::Not(n) => !reference(n, labels),
        Node::And(ns) => ns.iter().all(|n| reference(n, labels)),
        Node::Or(ns) => ns.iter().any(|n| reference(n, labels)),
    }
}

const LABEL_POOL: &[&str] = &[
    "a", "b", "c", "in", "not", "contains", "starts", "ends", "has", "all", "global", "k8s/app",
];
const VALUE_POOL: &[&str] = &["", "x", "y", "xy", "yx", "a\"b", "it's", "é", " ", "\t\n"];

fn label_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(LABEL_POOL).prop_map(str::to_string),
        1 => "[A-Za-z0-9_./-]{1,12}",
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(VALUE_POOL).prop_map(str::to_string),
        1 => "[^\"]{0,6}",
        1 => "[^']{0,6}",
    ]
}

fn leaf_strategy() -> impl Strategy<Value = Node> {
    let op = prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Contains,
        CompareOp::StartsWith,
        CompareOp::EndsWith,
    ]);
    prop_oneof![
        Just(Node::All),
        Just(Node::Global),
        label_strategy().prop_map(|l| Node::Has(l.into())),
        (label_strategy(), op, value_strategy()).prop_map(|(l, op, v)| Node::Compare {
            label: l.into(),
            op,
            value: v.into()
        }),
        (
            label_strategy(),
            prop::collection::vec(value_strategy(), 0..5),
            any::<bool>()
        )
            .prop_map(|(l, members, negated)| {
                Node::set(
                    &l,
                    members.into_iter().map(String::into_boxed_str).collect(),
                    negated,
                )
            }),
    ]
}

/// Trees in the parser's normal form, built with the same constructors the parser uses.
fn node_strategy() -> impl Strategy<Value = Node> {
    leaf_strategy().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Node::negate),
            prop::collection::vec(inner.clone(), 2..5).prop_map(Node::and),
            prop::collection::vec(inner, 2..5).prop_map(Node::or),
        ]
    })
}

fn label_map_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(LABEL_POOL).prop_map(str::to_string),
        value_strategy(),
        0..8,
    )
}

/// Strings assembled from selector fragments, to reach deep into the parser.
fn selectorish_strategy() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a",
        "b",
        " ",
        "\t",
        "(",
        ")",
        "!",
        "&&",
        "||",
        "&",
        "|",
        "==",
        "!=",
        "=",
        "in",
        "not",
        "with",
        "starts",
        "ends",
        "contains",
        "startswith",
        "{",
        "}",
        ",",
        "\"x\"",
        "'y'",
        "\"",
        "'",
        "has(",
        "has(a)",
        "all()",
        "global()",
        "é",
        "\n",
        "-",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

fn check_parse_result(text: &str) {
    match Selector::parse(text) {
        Ok(sel) => {
            let canon = sel.to_string();
            let again = Selector::parse(&canon)
                .unwrap_or_else(|e| panic!("canonical {canon:?} of {text:?} fails: {e}"));
            assert_eq!(again, sel, "{text:?} -> {canon:?}");
            assert_eq!(again.to_string(), canon);
        }
        Err(err) => check_error(text, &err),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics(text in any::<String>()) {
        check_parse_result(&text);
    }

    #[test]
    fn parse_never_panics_on_selector_fragments(text in selectorish_strategy()) {
        check_parse_result(&text);
    }

    #[test]
    fn canonical_round_trips(node in node_strategy(), maps in prop::collection::vec(label_map_strategy(), 1..8)) {
        let original = Selector { root: node };
        let canon = original.to_string();
        let parsed = Selector::parse(&canon);
        prop_assert!(parsed.is_ok(), "{canon:?}: {parsed:?}");
        let parsed = parsed.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(&parsed, &original, "{}", canon);
        prop_assert_eq!(parsed.to_string(), canon.clone());
        for map in &maps {
            let want = reference(&original.root, map);
            prop_assert_eq!(original.matches(map), want, "{} on {:?}", canon, map);
            prop_assert_eq!(parsed.matches(map), want, "{} on {:?}", canon, map);
            let hash: HashMap<&str, &str> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(parsed.matches(&hash), want);
        }
    }
}

#[test]
fn label_source_impls() {
    fn lookup<L: LabelSource + ?Sized>(l: &L) -> Option<&str> {
        l.label("k")
    }
    let b = labels(&[("k", "v")]);
    let h: HashMap<String, String> = b.clone().into_iter().collect();
    assert_eq!(lookup(&b), Some("v"));
    assert_eq!(lookup(&h), Some("v"));
    assert_eq!(lookup(&&h), Some("v"));
    assert_eq!(lookup(&labels(&[])), None);
}

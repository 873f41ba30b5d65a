use super::*;
use proptest::prelude::*;

/// The reference: globset with the options `path_pattern` used; its errors as ours (the kinds
/// are the same, the wording is ours).
fn reference(pattern: &str) -> Result<globset::GlobMatcher, String> {
    use globset::ErrorKind as K;
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| match e.kind() {
            K::UnclosedClass => GlobError::UnclosedClass.to_string(),
            K::InvalidRange(a, b) => GlobError::InvalidRange(*a, *b).to_string(),
            K::UnopenedAlternates => GlobError::UnopenedAlternates.to_string(),
            K::UnclosedAlternates => GlobError::UnclosedAlternates.to_string(),
            K::DanglingEscape => GlobError::DanglingEscape.to_string(),
            other => format!("globset: {other}"),
        })
}

/// Ours, by both matchers: the small one (when the pattern fits) and the general one.
fn ours(pattern: &str) -> Result<[GlobMatcher; 2], GlobError> {
    Ok([
        GlobMatcher::new(pattern)?,
        GlobMatcher::new_general(pattern)?,
    ])
}

fn check(pattern: &str, path: &str, want: bool) {
    let ours = ours(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
    for m in &ours {
        assert_eq!(m.is_match(path), want, "{pattern:?} vs {path:?}");
    }
    let theirs = reference(pattern).unwrap_or_else(|e| panic!("globset {pattern:?}: {e}"));
    assert_eq!(
        theirs.is_match(path),
        want,
        "globset: {pattern:?} vs {path:?}"
    );
}

fn table(cases: &[(&str, &str, bool)]) {
    for (pattern, path, want) in cases {
        check(pattern, path, *want);
    }
}

#[test]
fn literals() {
    table(&[
        ("/a/b", "/a/b", true),
        ("/a/b", "/a/b/", false),
        ("/a/b", "/a", false),
        ("/a.b-c", "/a.b-c", true),
        ("/a.b", "/axb", false),
        ("", "", true),
        ("", "/", false),
        ("/é", "/é", true),
        ("/a,b", "/a,b", true),
        ("/a+b(c)|$^", "/a+b(c)|$^", true),
    ]);
}

#[test]
fn star_stays_within_a_segment() {
    table(&[
        ("/*", "/", true),
        ("/*", "/abc", true),
        ("/*", "/a/b", false),
        ("/a*", "/a", true),
        ("/a*c", "/abbbc", true),
        ("/a*c", "/ab/c", false),
        ("*", "abc", true),
        ("*", "a/b", false),
        ("/*/*", "/a/b", true),
        ("/*/*", "/a", false),
        ("/*.json", "/x.json", true),
        ("/*.json", "/.json", true),
        ("/*é", "/xé", true),
    ]);
}

#[test]
fn question_mark_is_one_byte_but_slash() {
    table(&[
        ("/a?c", "/abc", true),
        ("/a?c", "/a/c", false),
        ("/a?c", "/ac", false),
        // One byte, not one character.
        ("/?", "/é", false),
        ("/??", "/é", true),
    ]);
}

#[test]
fn double_star_as_a_component() {
    table(&[
        // `/**` at the end: `/` then anything.
        ("/a/**", "/a/", true),
        ("/a/**", "/a/b/c", true),
        ("/a/**", "/a", false),
        ("/a/**", "/ab", false),
        ("/**", "/", true),
        ("/**", "/a/b", true),
        ("/**", "", false),
        // `/**/` in the middle: one `/`, or `/` + anything + `/`.
        ("/a/**/b", "/a/b", true),
        ("/a/**/b", "/a/x/b", true),
        ("/a/**/b", "/a/x/y/b", true),
        ("/a/**/b", "/a//b", true),
        ("/a/**/b", "/ab", false),
        ("/a/**/b", "/a/xb", false),
        // `**/` at the start.
        ("**/a", "a", true),
        ("**/a", "/a", true),
        ("**/a", "x/y/a", true),
        ("**/a", "xa", false),
        // The whole pattern.
        ("**", "", true),
        ("**", "a/b/c", true),
        ("**/**", "a/b", true),
        // Repeated.
        ("/**/**", "/a/b", true),
        ("/**/**", "/", true),
        ("/a/**/**/b", "/a/b", true),
        ("/a/**/**/b", "/a/x/y/b", true),
        ("/**/a/**", "/x/a/y", true),
        ("/**/a/**", "/a/", true),
        ("/**/a/**", "/a", false),
        // Escaped `/` counts as a separator before `**`.
        ("/a\\/**", "/a/b/c", true),
    ]);
}

#[test]
fn double_star_elsewhere_is_two_stars() {
    table(&[
        ("/a**b", "/ab", true),
        ("/a**b", "/axyb", true),
        ("/a**b", "/a/b", false),
        ("/a/**b", "/a/b", true),
        ("/a/**b", "/a/xb", true),
        ("/a/**b", "/a/x/b", false),
        ("/a**/b", "/axy/b", true),
        ("/a**/b", "/a/x/b", false),
        ("/a**", "/axy", true),
        ("/a**", "/a/x", false),
        ("**a", "xa", true),
        ("**a", "x/a", false),
        ("/***", "/abc", true),
        ("/***", "/a/b", false),
        ("/a/***", "/a/bc", true),
        ("/a/***", "/a/b/c", false),
        ("/[a]**", "/ab", true),
        ("/[a]**", "/a/b", false),
    ]);
}

#[test]
fn double_star_inside_alternatives() {
    table(&[
        // At the start of an alternative, before `/`: a prefix.
        ("/{**/x,y}", "/x", true),
        ("/{**/x,y}", "/a/b/x", true),
        ("/{**/x,y}", "//x", true),
        ("/{**/x,y}", "/y", true),
        // At the start of an alternative but not before `/`: two stars.
        ("/{**,y}", "/abc", true),
        ("/{**,y}", "/a/b", false),
        ("/a{,**}", "/a", true),
        ("/a{,**}", "/a/b", false),
        // After `/` and before `,` or `}`: a suffix.
        ("/{a/**,b}", "/a/x/y", true),
        ("/{a/**,b}", "/a", false),
        ("/{b,a/**}", "/a/", true),
        // An escaped `,` or `{` before `**` in a group counts like a separator, and the
        // escaped character is replaced.
        ("/{a\\,**}", "/a/x", true),
        ("/{a\\,**}", "/a,x", false),
        ("/{\\{**}", "//x", true),
        ("/{\\{**}", "/{x", false),
    ]);
}

#[test]
fn classes() {
    table(&[
        ("/[abc]", "/b", true),
        ("/[abc]", "/d", false),
        ("/[abc]", "/ab", false),
        ("/v[0-9]", "/v7", true),
        ("/v[0-9]", "/v10", false),
        ("/[a-cx-z]", "/y", true),
        ("/[a-cx-z]", "/m", false),
        ("/[!a-c]", "/d", true),
        ("/[!a-c]", "/b", false),
        ("/[^a-c]", "/d", true),
        ("/[^a-c]", "/a", false),
        // `]` first is a member, also after `!`.
        ("/[]]", "/]", true),
        ("/[]a]", "/a", true),
        ("/[!]]", "/]", false),
        ("/[!]]", "/a", true),
        ("/[]-a]", "/^", true),
        // `-` first or last is a member.
        ("/[-a]", "/-", true),
        ("/[a-]", "/-", true),
        ("/[a-]", "/b", false),
        ("/[!-]", "/-", false),
        // `a-b-d` extends the range to `a-d`...
        ("/[a-b-d]", "/c", true),
        ("/[a-b-d]", "/-", false),
        // ...or changes its end, checked against the start.
        ("/[a-c-b]", "/b", true),
        ("/[a-c-b]", "/c", false),
        ("/[--/]", "/.", true),
        // `!` or `^` later is a member.
        ("/[a!]", "/!", true),
        ("/[a^]", "/^", true),
        // `\` is a member, not an escape.
        ("/[\\]a", "/\\a", true),
        ("/[\\]]", "/\\]", true),
        ("/[\\]]", "/]", false),
        // Other special characters are members.
        ("/[*]", "/*", true),
        ("/[*]", "/a", false),
        ("/[{,}]", "/,", true),
        ("/[[]", "/[", true),
        ("/[&&a]", "/&", true),
        ("/[~]", "/~", true),
        // A class may match `/`.
        ("/a[/]b", "/a/b", true),
        ("/a[!x]b", "/a/b", true),
        ("/[!a]", "//", true),
        // A class matches one byte: a non-ASCII member adds its UTF-8 bytes.
        ("/[é]", "/é", false),
        ("/[é][é]", "/é", true),
        ("/[!a]", "/é", false),
        ("/[!a][!a]", "/é", true),
        ("/[a-é]", "/\u{7f}", true),
        ("/[a-é][é]", "/é", true),
    ]);
}

#[test]
fn alternatives() {
    table(&[
        ("/{a,b}/x", "/a/x", true),
        ("/{a,b}/x", "/b/x", true),
        ("/{a,b}/x", "/c/x", false),
        ("/{a}", "/a", true),
        ("/{a/b,c}", "/a/b", true),
        ("/{*.json,*.yaml}", "/x.yaml", true),
        ("/{*.json,*.yaml}", "/x/y.yaml", false),
        // Nested.
        ("/{a,{b,c}}", "/c", true),
        ("/{a,{b,c}d}", "/cd", true),
        ("/{a,{b,c}d}", "/c", false),
        ("/{{a,b},{c,d}}", "/d", true),
        // An empty alternative is dropped...
        ("/x{,a}", "/xa", true),
        ("/x{,a}", "/x", false),
        ("/x{a,}", "/x", false),
        ("/x{{},a}", "/x", false),
        ("/x{{,},a}", "/x", false),
        // ...and a group of only empty alternatives matches nothing more.
        ("/x{}", "/x", true),
        ("/x{,}", "/x", true),
        ("/x{{}}", "/x", true),
        // `,` outside a group is literal.
        ("/a,b", "/a,b", true),
        ("/{a,b},c", "/b,c", true),
        // An escaped `,` in a group is literal.
        ("/{a\\,b}", "/a,b", true),
        ("/{a\\,b}", "/a", false),
    ]);
}

#[test]
fn escapes() {
    table(&[
        ("/\\*", "/*", true),
        ("/\\*", "/a", false),
        ("/\\[a]", "/[a]", true),
        ("/\\{a,b\\}", "/{a,b}", true),
        ("/\\{a,b\\}", "/a", false),
        ("/\\{a\\}", "/{a}", true),
        ("/\\?", "/?", true),
        ("/\\\\", "/\\", true),
        ("/\\a", "/a", true),
        ("/\\é", "/é", true),
        ("/a\\/b", "/a/b", true),
    ]);
}

#[test]
fn errors_name_what_is_wrong() {
    let cases: &[(&str, GlobError, &str)] = &[
        ("/[", GlobError::UnclosedClass, "unclosed character class"),
        ("/[]", GlobError::UnclosedClass, "without its ']'"),
        ("/[!", GlobError::UnclosedClass, "unclosed character class"),
        ("/[!]", GlobError::UnclosedClass, "unclosed character class"),
        (
            "/[abc",
            GlobError::UnclosedClass,
            "unclosed character class",
        ),
        (
            "/[a\\",
            GlobError::UnclosedClass,
            "unclosed character class",
        ),
        (
            "/[z-a]",
            GlobError::InvalidRange('z', 'a'),
            "invalid range: 'z' comes after 'a'",
        ),
        ("/[z--]", GlobError::InvalidRange('z', '-'), "invalid range"),
        (
            "/[c-d-a]",
            GlobError::InvalidRange('c', 'a'),
            "'c' comes after 'a'",
        ),
        ("/[é-a]", GlobError::InvalidRange('é', 'a'), "invalid range"),
        (
            "/{a,b",
            GlobError::UnclosedAlternates,
            "unclosed alternate group",
        ),
        (
            "/{a,{b,c}",
            GlobError::UnclosedAlternates,
            "without its '}'",
        ),
        (
            "/{",
            GlobError::UnclosedAlternates,
            "unclosed alternate group",
        ),
        (
            "/a,b}",
            GlobError::UnopenedAlternates,
            "unopened alternate group",
        ),
        ("/{a,b}}", GlobError::UnopenedAlternates, "without its '{'"),
        (
            "/}",
            GlobError::UnopenedAlternates,
            "unopened alternate group",
        ),
        ("/a\\", GlobError::DanglingEscape, "dangling '\\'"),
        ("/{a\\", GlobError::DanglingEscape, "dangling"),
        // The first error met, left to right.
        (
            "/[z-a]{",
            GlobError::InvalidRange('z', 'a'),
            "invalid range",
        ),
        ("/{[", GlobError::UnclosedClass, "unclosed character class"),
    ];
    for (pattern, want, words) in cases {
        let got = GlobMatcher::new(pattern).err();
        assert_eq!(got.as_ref(), Some(want), "{pattern:?}");
        assert_eq!(GlobMatcher::new_general(pattern).err().as_ref(), Some(want));
        let message = want.to_string();
        assert!(message.contains(words), "{pattern:?}: {message}");
        assert_eq!(
            reference(pattern).err(),
            Some(message),
            "globset's error kind for {pattern:?}"
        );
    }
}

/// Patterns that make a backtracking matcher exponential stay linear in the input here; these
/// would not finish if they were not.
#[test]
fn pathological_patterns_are_polynomial() {
    let long_a = format!("/{}", "a".repeat(4095));
    let deep = "/a".repeat(2048);
    let many_stars = format!("/{}b", "*a".repeat(40));
    let cases: Vec<(String, &str, bool)> = vec![
        ("/*a*a*a*a*a*a*a*a*b".into(), long_a.as_str(), false),
        (many_stars.clone(), long_a.as_str(), false),
        (format!("{}/b", "/**".repeat(40)), deep.as_str(), false),
        (format!("{}/a", "/**".repeat(40)), deep.as_str(), true),
        (
            "/{*a,*aa,a*}{*a,*aa,a*}{*a,*aa,a*}b".into(),
            long_a.as_str(),
            false,
        ),
        ("/**/*a*a*a*a*a*a*a*b/**".into(), deep.as_str(), false),
    ];
    for (pattern, path, want) in &cases {
        for m in ours(pattern).unwrap() {
            for _ in 0..20 {
                assert_eq!(m.is_match(path), *want, "{pattern}");
            }
        }
    }
}

#[test]
fn large_patterns_use_the_general_matcher() {
    assert!(GlobMatcher::new("/api/{a,b,c}/v[0-9]/*.json")
        .unwrap()
        .is_small());
    // 64 consuming states and the final one.
    let long = format!("/{}", "a".repeat(63));
    assert!(!GlobMatcher::new(&long).unwrap().is_small());
    assert!(GlobMatcher::new(&long[1..]).unwrap().is_small());
    let cases: Vec<(String, String, bool)> = vec![
        (long.clone(), long.clone(), true),
        (long.clone(), format!("{long}a"), false),
        (
            format!("/{}/**", "{a,b}*".repeat(30)),
            format!("/{}/x/y", "ab".repeat(30)),
            true,
        ),
        (
            format!("/{}/**", "{a,b}*".repeat(30)),
            format!("/{}/x/y", "a".repeat(29)),
            false,
        ),
        (
            format!("/{}/**", "{a,b}*".repeat(30)),
            format!("/{}/x/y", "a/".repeat(30)),
            false,
        ),
    ];
    for (pattern, path, want) in &cases {
        check(pattern, path, *want);
    }
}

/// A pattern element for the differential property test: both the pattern text and a path
/// likely to match it are drawn from these.
#[derive(Debug, Clone)]
enum Piece {
    Text(&'static str),
    Star,
    DoubleStar,
    Question,
    Class {
        negated: char,
        members: String,
    },
    Group(Vec<Vec<Piece>>),
    Escape(char),
    /// A character that may make the pattern fail to compile.
    Stray(char),
}

fn piece() -> impl Strategy<Value = Piece> {
    let leaf = prop_oneof![
        4 => prop::sample::select(vec!["/", "a", "b", ".", "-", "ab", "é", ","]).prop_map(Piece::Text),
        2 => Just(Piece::Star),
        2 => Just(Piece::DoubleStar),
        1 => Just(Piece::Question),
        2 => (
            prop::sample::select(vec![' ', ' ', '!', '^']),
            "[ab/\\-\\]!^é.\\\\*{,]{0,4}",
        )
            .prop_map(|(negated, members)| Piece::Class { negated, members }),
        1 => prop::sample::select(vec!['a', '*', '[', ']', '{', '}', ',', '\\', '/', '?', 'é']).prop_map(Piece::Escape),
        1 => prop::sample::select(vec!['[', ']', '{', '}', ',', '\\']).prop_map(Piece::Stray),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::vec(prop::collection::vec(inner, 0..4), 0..4).prop_map(Piece::Group)
    })
}

fn render(pieces: &[Piece], out: &mut String) {
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Star => out.push('*'),
            Piece::DoubleStar => out.push_str("**"),
            Piece::Question => out.push('?'),
            Piece::Class { negated, members } => {
                out.push('[');
                if *negated != ' ' {
                    out.push(*negated);
                }
                out.push_str(members);
                out.push(']');
            }
            Piece::Group(alternatives) => {
                out.push('{');
                for (i, alt) in alternatives.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render(alt, out);
                }
                out.push('}');
            }
            Piece::Escape(c) => {
                out.push('\\');
                out.push(*c);
            }
            Piece::Stray(c) => out.push(*c),
        }
    }
}

/// A path that the pieces would match read naively, with choices taken from `seed`.
fn sample(pieces: &[Piece], seed: &mut impl Iterator<Item = u8>, out: &mut String) {
    let mut pick = |n: usize| usize::from(seed.next().unwrap_or(0)) % n.max(1);
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Star => out.push_str(["", "a", "b.", "ab", "é"][pick(5)]),
            Piece::DoubleStar => out.push_str(["", "a", "a/b", "/", "b/"][pick(5)]),
            Piece::Question => out.push_str(["a", "/", "-"][pick(3)]),
            Piece::Class { members, .. } => {
                let chars: Vec<char> = members.chars().collect();
                match chars.get(pick(chars.len() + 1)) {
                    Some(c) => out.push(*c),
                    None => out.push('a'),
                }
            }
            Piece::Group(alternatives) => {
                if let Some(alt) = alternatives.get(pick(alternatives.len())) {
                    let mut rest: Vec<u8> = Vec::new();
                    rest.extend((0..8).map(|_| u8::try_from(pick(256)).unwrap_or(0)));
                    sample(alt, &mut rest.into_iter(), out);
                }
            }
            Piece::Escape(c) | Piece::Stray(c) => out.push(*c),
        }
    }
}

fn differential(pattern: &str, paths: &[String]) -> Result<(), TestCaseError> {
    let ours = ours(pattern);
    let theirs = reference(pattern);
    match (&ours, &theirs) {
        (Ok(ours), Ok(theirs)) => {
            for path in paths {
                let want = theirs.is_match(path);
                for m in ours {
                    prop_assert_eq!(
                        m.is_match(path),
                        want,
                        "pattern {:?} path {:?} small {}",
                        pattern,
                        path,
                        m.is_small()
                    );
                }
            }
        }
        (Err(ours), Err(theirs)) => {
            prop_assert_eq!(&ours.to_string(), theirs, "pattern {:?}", pattern)
        }
        _ => prop_assert!(
            false,
            "pattern {:?}: ours {:?}, globset {:?}",
            pattern,
            ours.as_ref().err(),
            theirs.as_ref().err()
        ),
    }
    Ok(())
}

proptest! {
    // The default case count (PROPTEST_CASES overrides it).
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Structured patterns (mostly valid) against paths drawn from them and random paths.
    #[test]
    fn agrees_with_globset(
        pieces in prop::collection::vec(piece(), 0..8),
        rooted in any::<bool>(),
        seeds in prop::collection::vec(prop::collection::vec(any::<u8>(), 16), 1..4),
        random in prop::collection::vec("[/ab.,é*\\-\\[\\]{}\\\\]{0,12}", 0..4),
    ) {
        let mut pattern = String::from(if rooted { "/" } else { "" });
        render(&pieces, &mut pattern);
        let mut paths = random;
        for seed in seeds {
            let mut path = String::from(if rooted { "/" } else { "" });
            sample(&pieces, &mut seed.into_iter(), &mut path);
            paths.push(path);
        }
        differential(&pattern, &paths)?;
    }

    /// Character soup: random strings of the pattern alphabet (often invalid).
    #[test]
    fn agrees_with_globset_on_soup(
        pattern in "[/ab.\\-*\\[\\]!^{},\\\\é?]{0,14}",
        paths in prop::collection::vec("[/ab.\\-*\\[\\]!^{},\\\\é]{0,10}", 1..6),
    ) {
        differential(&pattern, &paths)?;
    }
}

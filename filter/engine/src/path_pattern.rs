//! This project's path-pattern extension, beyond Calico's exact and prefix paths (the YAML
//! source only; Felix cannot carry it): segment-aware globs (`*` stays within a segment,
//! `**` spans segments, with globset's semantics under a literal separator: the crate's `glob`
//! module; `?` and `#` are refused because they end a path) and route templates
//! (`/accounts/{id}/summary`, `/files/{*rest}`, as matchit). Patterns go through the same path
//! normalisation as request paths, so `/a/./b/*` and `/a/b/*` are the same pattern.

use crate::glob::GlobMatcher;
use crate::path::{self, PathError};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern {0:?} must start with '/'")]
    NotAbsolute(String),
    #[error("pattern {0:?} contains '?' or '#', which end a path like a query or fragment; match one character with [...] instead")]
    QueryOrFragment(String),
    #[error("pattern {pattern:?} does not normalise: {error}")]
    Normalise { pattern: String, error: PathError },
    #[error("bad glob {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
    #[error("bad route template {pattern:?}: {message}")]
    Template { pattern: String, message: String },
}

/// A compiled glob: the pattern, and for a pattern ending in `/**` also its stem (`/admin/**`
/// matches `/admin`, spec section 5).
#[derive(Debug, Clone)]
pub struct Glob {
    full: GlobMatcher,
    stem: Option<GlobMatcher>,
}

/// The matching form as text for globs and matchit, without losing bytes
/// ([`path::escape_invalid_utf8`]). The mapping is one-to-one because in a matching form `%`
/// only starts a delimiter escape (`%2F %5C %3B %3F %23 %25`), never `%80`-`%FF`.
pub fn text_form(matching: &[u8]) -> Cow<'_, str> {
    path::escape_invalid_utf8(matching)
}

fn normalised(pattern: &str) -> Result<String, PatternError> {
    if !pattern.starts_with('/') {
        return Err(PatternError::NotAbsolute(pattern.to_string()));
    }
    if pattern.contains(['?', '#']) {
        return Err(PatternError::QueryOrFragment(pattern.to_string()));
    }
    let bytes = path::normalize(pattern).map_err(|error| PatternError::Normalise {
        pattern: pattern.to_string(),
        error,
    })?;
    Ok(text_form(&bytes).into_owned())
}

/// `text` without a final `/<last>` where `last` satisfies `is_rest` (`/` for a one-segment path).
fn stem(text: &str, is_rest: impl Fn(&str) -> bool) -> Option<&str> {
    let (head, last) = text.rsplit_once('/')?;
    is_rest(last).then_some(if head.is_empty() { "/" } else { head })
}

fn build_glob(text: &str, pattern: &str) -> Result<GlobMatcher, PatternError> {
    GlobMatcher::new(text).map_err(|e| PatternError::Glob {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}

/// A compiled glob over matching forms.
pub fn compile_glob(pattern: &str) -> Result<Glob, PatternError> {
    let text = normalised(pattern)?;
    let full = build_glob(&text, pattern)?;
    let stem = stem(&text, |last| last == "**")
        .map(|s| build_glob(s, pattern))
        .transpose()?;
    Ok(Glob { full, stem })
}

/// A compiled route template over matching forms; a template ending in `/{*name}` also matches
/// its stem (`/files/{*rest}` matches `/files`).
pub fn compile_template(pattern: &str) -> Result<matchit::Router<()>, PatternError> {
    let text = normalised(pattern)?;
    let bad = |e: matchit::InsertError| PatternError::Template {
        pattern: pattern.to_string(),
        message: e.to_string(),
    };
    // The router names parameters `a` to `z` and panics on a 26th (matchit 0.9).
    if template_params(&text) > MAX_TEMPLATE_PARAMS {
        return Err(PatternError::Template {
            pattern: pattern.to_string(),
            message: format!("more than {MAX_TEMPLATE_PARAMS} parameters"),
        });
    }
    let mut router = matchit::Router::new();
    router.insert(text.as_str(), ()).map_err(bad)?;
    if let Some(stem) = stem(&text, |last| last.starts_with("{*") && last.ends_with('}')) {
        router.insert(stem, ()).map_err(bad)?;
    }
    Ok(router)
}

/// Most `{name}` parameters a template may have (a catch-all `{*name}` not counted).
pub const MAX_TEMPLATE_PARAMS: usize = 25;

/// The `{name}` parameters of a template (`{{` is an escaped brace, `{*name}` a catch-all).
fn template_params(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'{', Some(b'{')) | (b'}', Some(b'}')) => i += 2,
            (b'{', Some(b'*')) => i += 2,
            (b'{', _) => {
                n += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    n
}

/// Whether a request's matching form matches a compiled glob.
pub fn glob_matches(glob: &Glob, normalized_path: &[u8]) -> bool {
    let text = text_form(normalized_path);
    glob.full.is_match(&text) || glob.stem.as_ref().is_some_and(|s| s.is_match(&text))
}

/// Whether a request's matching form matches a compiled template.
pub fn template_matches(template: &matchit::Router<()>, normalized_path: &[u8]) -> bool {
    template.at(&text_form(normalized_path)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Vec<u8> {
        path::normalize(p).unwrap()
    }

    #[test]
    fn globs_are_segment_aware() {
        let cases: &[(&str, &str, bool)] = &[
            ("/api/*/items", "/api/v1/items", true),
            ("/api/*/items", "/api/v1/x/items", false),
            ("/api/**/items", "/api/v1/x/items", true),
            ("/api/**", "/api/a/b", true),
            ("/api/v[0-9]", "/api/v1", true),
            ("/api/v[0-9]", "/api/v10", false),
            ("/api/{a,b}/x", "/api/b/x", true),
            ("/api/*.json", "/api/x.json", true),
            ("/api/*.json", "/api/x/y.json", false),
            ("/api/./v1/../v2/*", "/api/v2/z", true),
            ("/Api/*", "/api/x", false),
            // Bytes that are not UTF-8 once decoded are matched, never skipped.
            ("/admin/**", "/admin/%ff", true),
            ("/admin/*", "/admin/%c0%ff", true),
            ("/admin/%ff", "/admin/%FF", true),
            ("/admin/%ff", "/admin/%fe", false),
            // `X/**` also matches `X`, and so `X/`.
            ("/admin/**", "/admin", true),
            ("/admin/**", "/admin/", true),
            ("/admin/**", "/administrator", false),
            ("/**", "/", true),
            ("/a/%2F*", "/a/%2fb", true),
        ];
        for (pattern, p, want) in cases {
            let g = compile_glob(pattern).unwrap();
            assert_eq!(glob_matches(&g, &norm(p)), *want, "{pattern} vs {p}");
        }
    }

    #[test]
    fn templates_match_routes() {
        let cases: &[(&str, &str, bool)] = &[
            ("/accounts/{id}/summary", "/accounts/42/summary", true),
            ("/accounts/{id}/summary", "/accounts/42/x/summary", false),
            ("/accounts/{id}/summary", "/accounts//summary", false),
            ("/accounts/{id}", "/accounts/42", true),
            ("/accounts/{id}", "/accounts", false),
            ("/files/{*rest}", "/files/a/b/c", true),
            ("/accounts/{id}/summary/", "/accounts/1/summary", true),
            ("/secret/{*rest}", "/secret/%c0", true),
            ("/secret/{*rest}", "/secret", true),
            ("/secret/{*rest}", "/secret/", true),
            ("/secret/{*rest}", "/secretive", false),
            ("/{*rest}", "/", true),
            ("/accounts/{id}", "/accounts/%ff", true),
        ];
        for (pattern, p, want) in cases {
            let t = compile_template(pattern).unwrap();
            assert_eq!(template_matches(&t, &norm(p)), *want, "{pattern} vs {p}");
        }
    }

    #[test]
    fn bad_patterns_explain_themselves() {
        assert!(matches!(
            compile_glob("api/*"),
            Err(PatternError::NotAbsolute(_))
        ));
        assert!(matches!(
            compile_glob("/api/[a"),
            Err(PatternError::Glob { .. })
        ));
        assert!(matches!(
            compile_glob("/api/v?"),
            Err(PatternError::QueryOrFragment(_))
        ));
        assert!(matches!(
            compile_glob("/api/%zz"),
            Err(PatternError::Normalise { .. })
        ));
        assert!(matches!(
            compile_template("/a/{id"),
            Err(PatternError::Template { .. })
        ));
        assert!(matches!(
            compile_template("/a/{*rest}/b"),
            Err(PatternError::Template { .. })
        ));
        let message = compile_glob("/api/[a").unwrap_err().to_string();
        assert!(message.contains("/api/[a"), "{message}");
    }

    /// Found by fuzzing: the router panics on a 26th parameter; such a template is an error.
    #[test]
    fn templates_have_at_most_25_parameters() {
        let template = |n: usize| {
            let names: Vec<String> = (0..n).map(|i| format!("/{{p{i}}}")).collect();
            names.concat()
        };
        let t = compile_template(&template(MAX_TEMPLATE_PARAMS)).unwrap();
        assert!(template_matches(
            &t,
            &norm(&"/x".repeat(MAX_TEMPLATE_PARAMS))
        ));
        let err = compile_template(&template(MAX_TEMPLATE_PARAMS + 1)).unwrap_err();
        assert!(err.to_string().contains("more than 25 parameters"), "{err}");
        assert!(compile_template(&format!("{}/{{*rest}}", template(25))).is_ok());
        assert_eq!(template_params("/{{a}}/{b}/{*c}"), 1);
    }

    /// What `compile_glob` and `glob_matches` did when they were built on globset (with the
    /// same normalisation and stem): whether the pattern compiles, and whether `path` matches.
    fn globset_reference(pattern: &str, path: &[u8]) -> Result<bool, String> {
        let build = |text: &str| {
            globset::GlobBuilder::new(text)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| e.kind().to_string())
        };
        let text = normalised(pattern).map_err(|e| e.to_string())?;
        let full = build(&text)?;
        let stem = stem(&text, |last| last == "**").map(build).transpose()?;
        let path = text_form(path);
        Ok(full.is_match(&*path) || stem.is_some_and(|s| s.is_match(&*path)))
    }

    fn fragments(from: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(from), 0..8).prop_map(|parts| parts.concat())
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// End to end (normalisation, text form, stem) against the globset-based version.
        #[test]
        fn globs_match_as_with_globset(
            pattern in fragments(&[
                "/", "a", "b", "*", "**", "/**", "[a-b]", "[!a]", "{a,b}", "{", "}", ",", ".", "..",
                "%ff", "%2F", "%41", "%", "\\", "\\*", "[", "]", "é",
            ]),
            paths in prop::collection::vec(
                fragments(&["/", "a", "b", "ab", ".", "..", "%ff", "%2f", "%41", "*", "{", "é"]),
                1..5,
            ),
        ) {
            let pattern = format!("/{pattern}");
            let ours = compile_glob(&pattern);
            for path in paths {
                let Ok(path) = path::normalize(&format!("/{path}")) else { continue };
                let reference = globset_reference(&pattern, &path);
                match (&ours, reference) {
                    (Ok(glob), Ok(want)) => prop_assert_eq!(
                        glob_matches(glob, &path),
                        want,
                        "{:?} vs {:?}",
                        pattern,
                        text_form(&path)
                    ),
                    // Which error: `glob`'s own tests compare the kinds with globset's.
                    (Err(PatternError::Glob { .. }), Err(_)) => {}
                    (Err(PatternError::Glob { .. }), Ok(_)) | (Ok(_), Err(_)) => {
                        prop_assert!(false, "{:?}: ours {:?}", pattern, ours.as_ref().err())
                    }
                    // Refused before any glob is built, either way.
                    (Err(_), _) => {}
                }
            }
        }
    }
}

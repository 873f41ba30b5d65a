//! This project's path-pattern extension, beyond Calico's exact and prefix paths (the YAML
//! source only; Felix cannot carry it): segment-aware globs (`*` stays within a segment,
//! `**` spans segments, as globset with a literal separator; `?` and `#` are refused because they
//! end a path) and route templates
//! (`/accounts/{id}/summary`, `/files/{*rest}`, as matchit). Patterns go through the same path
//! normalisation as request paths, so `/a/./b/*` and `/a/b/*` are the same pattern.

use crate::path::{self, PathError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern {0:?} must start with '/'")]
    NotAbsolute(String),
    #[error("pattern {0:?} contains '?' or '#', which end a path like a query or fragment; match one character with [...] instead")]
    QueryOrFragment(String),
    #[error("pattern {pattern:?} does not normalise: {error}")]
    Normalise { pattern: String, error: PathError },
    #[error("pattern {0:?} is not valid UTF-8 once percent-decoded")]
    NotUtf8(String),
    #[error("bad glob {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
    #[error("bad route template {pattern:?}: {message}")]
    Template { pattern: String, message: String },
}

fn normalised(pattern: &str) -> Result<String, PatternError> {
    if !pattern.starts_with('/') {
        return Err(PatternError::NotAbsolute(pattern.to_string()));
    }
    if pattern.contains(['?', '#']) {
        return Err(PatternError::QueryOrFragment(pattern.to_string()));
    }
    let bytes = path::normalize(pattern)
        .map_err(|error| PatternError::Normalise { pattern: pattern.to_string(), error })?;
    String::from_utf8(bytes).map_err(|_| PatternError::NotUtf8(pattern.to_string()))
}

/// A compiled glob over normalised paths.
pub fn compile_glob(pattern: &str) -> Result<globset::GlobMatcher, PatternError> {
    let text = normalised(pattern)?;
    globset::GlobBuilder::new(&text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| PatternError::Glob { pattern: pattern.to_string(), message: e.kind().to_string() })
}

/// A compiled route template over normalised paths.
pub fn compile_template(pattern: &str) -> Result<matchit::Router<()>, PatternError> {
    let text = normalised(pattern)?;
    let mut router = matchit::Router::new();
    router
        .insert(text, ())
        .map_err(|e| PatternError::Template { pattern: pattern.to_string(), message: e.to_string() })?;
    Ok(router)
}

/// Whether a normalised request path matches a compiled glob.
pub fn glob_matches(glob: &globset::GlobMatcher, normalized_path: &[u8]) -> bool {
    std::str::from_utf8(normalized_path).is_ok_and(|p| glob.is_match(p))
}

/// Whether a normalised request path matches a compiled template.
pub fn template_matches(template: &matchit::Router<()>, normalized_path: &[u8]) -> bool {
    std::str::from_utf8(normalized_path).is_ok_and(|p| template.at(p).is_ok())
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
        ];
        for (pattern, p, want) in cases {
            let t = compile_template(pattern).unwrap();
            assert_eq!(template_matches(&t, &norm(p)), *want, "{pattern} vs {p}");
        }
    }

    #[test]
    fn bad_patterns_explain_themselves() {
        assert!(matches!(compile_glob("api/*"), Err(PatternError::NotAbsolute(_))));
        assert!(matches!(compile_glob("/api/[a"), Err(PatternError::Glob { .. })));
        assert!(matches!(compile_glob("/api/v?"), Err(PatternError::QueryOrFragment(_))));
        assert!(matches!(compile_glob("/api/%zz"), Err(PatternError::Normalise { .. })));
        assert!(matches!(compile_template("/a/{id"), Err(PatternError::Template { .. })));
        assert!(matches!(compile_template("/a/{*rest}/b"), Err(PatternError::Template { .. })));
        let message = compile_glob("/api/[a").unwrap_err().to_string();
        assert!(message.contains("/api/[a"), "{message}");
    }
}

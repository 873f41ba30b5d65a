//! The path matchers (`alp_engine::path_pattern`, over the engine's own glob module and
//! matchit): `compile_glob` / `glob_matches`, `compile_template` / `template_matches`, and
//! `path::prefix_matches`. Input: a pattern, a newline, then request paths one per line.
//!
//! Invariants:
//! * (feature `globset`) globs decide as globset 0.4 does with `literal_separator(true)` and
//!   `backslash_escape(true)` (what the glob module documents), with the same normalisation and
//!   the same `/**` stem; a pattern is refused by both or by neither;
//! * a pattern without glob or template syntax matches (as glob, as template and as prefix) its
//!   own normalised form;
//! * `prefix_matches` is reflexive, `/` is a prefix of everything, and a prefix match means the
//!   glob `<prefix>/**` matches too.

use alp_engine::path::{self, prefix_matches};
use alp_engine::path_pattern::{
    compile_glob, compile_template, glob_matches, template_matches, text_form, PatternError,
};

#[cfg(feature = "globset")]
/// Longer patterns skip the globset comparison: globset's regex grows with the pattern and
/// panics past its size limit, which is not the project's code.
const GLOBSET_MAX: usize = 256;

pub fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let pattern = lines.next().unwrap_or("");
    let paths: Vec<Vec<u8>> = lines
        .take(8)
        .filter_map(|p| path::normalize(p).ok())
        .collect();

    let glob = compile_glob(pattern);
    let template = compile_template(pattern);
    let reference = reference(pattern);
    match (&glob, &reference) {
        (Ok(_), Some(Err(e))) => panic!("{pattern:?}: ours compiles, globset refuses: {e}"),
        (Err(PatternError::Glob { message, .. }), Some(Ok(_))) => {
            panic!("{pattern:?}: ours refuses ({message}), globset compiles")
        }
        _ => {}
    }

    let own = path::normalize(pattern).ok();
    // Glob and template syntax is read after normalisation (`%2A` is a `*`).
    let literal = pattern.starts_with('/')
        && !pattern.contains(['?', '#'])
        && own
            .as_ref()
            .is_some_and(|own| !text_form(own).contains(['*', '?', '[', ']', '{', '}', '\\', ',']));
    let mut candidates = paths;
    if let Some(own) = &own {
        candidates.push(own.clone());
    }
    for p in &candidates {
        let text = text_form(p);
        if let Ok(g) = &glob {
            let ours = glob_matches(g, p);
            if let Some(Ok(reference)) = &reference {
                assert_eq!(
                    ours,
                    reference(&text),
                    "glob {pattern:?} vs {text:?}: ours {ours}"
                );
            }
        }
        if let Ok(t) = &template {
            let _ = template_matches(t, p);
        }
        assert!(prefix_matches(p, p), "{text:?} is not its own prefix");
        assert!(prefix_matches(b"/", p), "/ is not a prefix of {text:?}");
        if let Some(own) = &own {
            if literal && own.as_slice() != b"/" && prefix_matches(own, p) {
                let star = format!("{}/**", text_form(own));
                if let Ok(g) = compile_glob(&star) {
                    assert!(
                        glob_matches(&g, p),
                        "{text:?} has prefix {pattern:?} but {star:?} does not match it"
                    );
                }
            }
        }
    }

    if let (true, Some(own)) = (literal, &own) {
        let g = glob.unwrap_or_else(|e| panic!("literal {pattern:?} is not a glob: {e}"));
        assert!(glob_matches(&g, own), "literal glob {pattern:?}");
        if let Ok(t) = &template {
            assert!(template_matches(t, own), "literal template {pattern:?}");
        }
    }
}

type Matcher = Box<dyn Fn(&str) -> bool>;

#[cfg(feature = "globset")]
fn reference(pattern: &str) -> Option<Result<Matcher, String>> {
    (pattern.len() <= GLOBSET_MAX).then(|| globset_reference(pattern))
}

/// Without the feature `globset`, no reference.
#[cfg(not(feature = "globset"))]
fn reference(_: &str) -> Option<Result<Matcher, String>> {
    None
}

#[cfg(feature = "globset")]
/// What the glob module reproduces: globset over the normalised pattern, plus the `/**` stem.
fn globset_reference(pattern: &str) -> Result<Matcher, String> {
    let build = |text: &str| {
        globset::GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map(|g| g.compile_matcher())
            .map_err(|e| e.kind().to_string())
    };
    if !pattern.starts_with('/') || pattern.contains(['?', '#']) {
        return Err("refused before any glob".into());
    }
    let bytes = path::normalize(pattern).map_err(|e| e.to_string())?;
    let text = text_form(&bytes).into_owned();
    let full = build(&text)?;
    let stem = match text.rsplit_once('/') {
        Some((head, "**")) => Some(build(if head.is_empty() { "/" } else { head })?),
        _ => None,
    };
    Ok(Box::new(move |p: &str| {
        full.is_match(p) || stem.as_ref().is_some_and(|s| s.is_match(p))
    }))
}

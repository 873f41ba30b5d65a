//! The project's path rules (request path normalisation, the matching form, canonical paths),
//! written again, independently of the engine, as the oracle the end-to-end path tests judge
//! real Envoy against. `tests/tests/paths.rs` checks it against the conformance vectors when the
//! shared test material is beside the project.
//!
//! In order (any failure: the path is refused, `400 invalid request path`):
//! 1. cut at the first `?` or `#`;
//! 2. fail on a NUL byte, a `%` without two hex digits, or `%00`;
//! 3. fail if decoding every escape once leaves `%2e`, `%2f` or `%5c` (double encoding);
//! 4. raw `\` is `/`; the path must start with `/`;
//! 5. per `/`-separated segment: drop from the first raw `;` (parameters); decode every escape
//!    but the delimiter escapes `%2F %5C %3B %3F %23 %25` (kept, upper-case hex); fail if the
//!    segment is not `.`/`..` but would be one of its `/`/`\`-separated parts (cut at `;`) once
//!    its delimiter escapes are decoded too (`..%3B`, `..%2Fx`, `.%3B`: ambiguous);
//! 6. drop empty and `.` segments, `..` removes the previous one; join.
//!
//! The path is *non-canonical* when step 4 replaced a backslash or step 6 dropped or resolved a
//! segment (an empty one only counts when it is not the last segment a trailing `/` leaves; a
//! segment of parameters only is empty). The canonical path is the surviving raw segments as
//! sent, joined with `/`, with the trailing `/` kept if the path had one and something survived.

/// The result of normalising a request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The matching form (bytes: it need not be UTF-8).
    pub matching: Vec<u8>,
    /// The canonical path (without the query).
    pub canonical: String,
    /// Whether the filter must rewrite the path (or, configured to reject, refuse it).
    pub non_canonical: bool,
}

impl Normalized {
    /// Whether the matching form is `prefix` or below it, on segment boundaries (`prefix`
    /// without a trailing `/`; `/` is everything).
    pub fn under(&self, prefix: &str) -> bool {
        let p = prefix.as_bytes();
        prefix == "/"
            || self.matching == p
            || (self.matching.starts_with(p) && self.matching.get(p.len()) == Some(&b'/'))
    }
}

const DELIMITER_ESCAPES: [u8; 6] = [b'/', b'\\', b';', b'?', b'#', b'%'];

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes `%XY` escapes; `keep` says which decoded bytes stay escaped (upper-case hex).
/// Callers have checked that every `%` starts a valid escape.
fn decode(s: &[u8], keep: impl Fn(u8) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let digit = |j: usize| s.get(j).and_then(|&b| hex(b));
            if let (Some(h), Some(l)) = (digit(i + 1), digit(i + 2)) {
                let b = h << 4 | l;
                if keep(b) {
                    out.extend(format!("%{b:02X}").as_bytes());
                } else {
                    out.push(b);
                }
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn is_dot(s: &[u8]) -> bool {
    s == b"." || s == b".."
}

/// Normalises request path `path` (query allowed); `None` when it fails.
pub fn normalize(path: &str) -> Option<Normalized> {
    let raw = path.as_bytes();
    // 1.
    let p = raw
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .map_or(raw, |i| &raw[..i]);
    // 2.
    if p.contains(&0) {
        return None;
    }
    for (i, &b) in p.iter().enumerate() {
        if b == b'%' {
            let (h, l) = (p.get(i + 1).copied(), p.get(i + 2).copied());
            if !matches!((h.and_then(hex), l.and_then(hex)), (Some(_), Some(_))) {
                return None;
            }
            if h == Some(b'0') && l == Some(b'0') {
                return None;
            }
        }
    }
    // 3.
    let once = decode(p, |_| false);
    if [&b"%2e"[..], b"%2f", b"%5c"]
        .iter()
        .any(|n| contains_ci(&once, n))
    {
        return None;
    }
    // 4.
    let had_backslash = p.contains(&b'\\');
    let p: Vec<u8> = p
        .iter()
        .map(|&b| if b == b'\\' { b'/' } else { b })
        .collect();
    if p.first() != Some(&b'/') {
        return None;
    }
    // 5. and 6.
    let segments: Vec<&[u8]> = p[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    let mut non_canonical = had_backslash;
    let mut kept: Vec<(Vec<u8>, &[u8])> = vec![];
    for (i, raw_seg) in segments.iter().enumerate() {
        let name = raw_seg.split(|&b| b == b';').next().unwrap_or(b"");
        let seg = decode(name, |b| DELIMITER_ESCAPES.contains(&b));
        if !is_dot(&seg) {
            let full = decode(&seg, |_| false);
            let ambiguous = full
                .split(|&b| b == b'/' || b == b'\\')
                .any(|part| is_dot(part.split(|&b| b == b';').next().unwrap_or(b"")));
            if ambiguous {
                return None;
            }
        }
        match seg.as_slice() {
            b"" => {
                if !(i == last && raw_seg.is_empty()) {
                    non_canonical = true;
                }
            }
            b"." => non_canonical = true,
            b".." => {
                non_canonical = true;
                kept.pop();
            }
            _ => kept.push((seg, raw_seg)),
        }
    }
    let mut matching = vec![b'/'];
    matching.extend(
        kept.iter()
            .map(|(m, _)| m.as_slice())
            .collect::<Vec<_>>()
            .join(&b'/'),
    );
    let mut canonical = vec![b'/'];
    canonical.extend(kept.iter().map(|(_, r)| *r).collect::<Vec<_>>().join(&b'/'));
    if segments[last].is_empty() && !kept.is_empty() {
        canonical.push(b'/');
    }
    Some(Normalized {
        matching,
        canonical: String::from_utf8_lossy(&canonical).into_owned(),
        non_canonical,
    })
}

/// The path the filter forwards for request path `path` (no fragment) in its default mode: the
/// path as sent when canonical, else the canonical path plus the query as sent (`None` when
/// normalisation fails).
pub fn forwarded(path: &str) -> Option<String> {
    let n = normalize(path)?;
    if !n.non_canonical {
        return Some(path.to_string());
    }
    let query = path.find('?').map_or("", |i| &path[i..]);
    Some(format!("{}{query}", n.canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> (String, String, bool) {
        let n = normalize(p).unwrap_or_else(|| panic!("{p} must normalise"));
        (
            String::from_utf8_lossy(&n.matching).into_owned(),
            n.canonical,
            n.non_canonical,
        )
    }

    #[test]
    fn spec_examples() {
        assert_eq!(ok("/public/%2e%2e/admin").0, "/admin");
        assert_eq!(ok("/public/..;x/admin").0, "/admin");
        assert_eq!(ok("/public%3Ffoo").0, "/public%3Ffoo");
        assert_eq!(ok("/a%2fb").0, "/a%2Fb");
        assert_eq!(ok("/%70ublic").0, "/public");
        assert_eq!(ok("/foo/").0, "/foo");
        for bad in [
            "/admin/..%3Bx/public",
            "/public%2F..%2Fadmin",
            "/public%252fadmin",
            "/admin/..%3B/public",
            "/admin/.%3B/x",
            "/a%00",
            "/%zz",
            "/%4",
            "relative",
            "",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
        assert_eq!(ok("/a;x/../b;y"), ("/b".into(), "/b;y".into(), true));
        assert_eq!(ok("/;x/a"), ("/a".into(), "/a".into(), true));
        assert_eq!(ok("/public/"), ("/public".into(), "/public/".into(), false));
        assert_eq!(ok("/"), ("/".into(), "/".into(), false));
        assert_eq!(ok("/.."), ("/".into(), "/".into(), true));
        assert_eq!(ok("/x/..%2e"), ("/x/...".into(), "/x/..%2e".into(), false));
        assert_eq!(ok("\\public\\..\\admin").1, "/admin");
        assert_eq!(
            forwarded("/admin/../public/x?q=a/../b").as_deref(),
            Some("/public/x?q=a/../b")
        );
        assert_eq!(forwarded("/public/x?q=1").as_deref(), Some("/public/x?q=1"));
        assert!(normalize("/public/x").unwrap().under("/public"));
        assert!(!normalize("/publicx").unwrap().under("/public"));
    }
}

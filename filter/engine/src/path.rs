//! HTTP path normalisation (spec section 5 "Path normalisation" and "Forwarded path", D7, D10)
//! and segment-boundary prefix matching.
//!
//! One pass over the path yields two things:
//! * the *matching form* the HTTP clause compares against (bytes, not necessarily UTF-8):
//!   parameters cut at a raw `;`, escapes decoded except the delimiter escapes `%2F %5C %3B %3F
//!   %23 %25` (kept, upper-case hex), dot and empty segments resolved;
//! * whether the request path is *canonical*, and if not the canonical path the filter forwards
//!   instead: the surviving raw segments exactly as sent, so every server reads the forwarded
//!   path as the policy did.
//!
//! A segment that is a dot segment only once its delimiter escapes are decoded (`..%3B`,
//! `..%2F`) is ambiguous and fails: some servers read it as `..`, others as a file name.

use std::borrow::Cow;

/// Why a path failed to normalise. Every failure of a request path is `BadRequestPath`; a rule
/// value that fails matches nothing (and the YAML validator refuses it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Step 2: a `%` at this byte offset is not followed by two hex digits.
    #[error("bad percent-encoding at byte {offset}")]
    BadPercentEncoding { offset: usize },
    /// Step 2: a NUL byte, raw or as `%00`.
    #[error("NUL byte in path")]
    NulByte,
    /// Step 3: after one round of decoding the path still holds `%2e`, `%2f` or `%5c`.
    #[error("double percent-encoding of '.', '/' or '\\'")]
    DoubleEncoding,
    /// Step 4: the path (with `\` read as `/`) does not start with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
    /// Step 5.3: segment `index` (0 = first after the leading `/`) is a dot segment once its
    /// escaped delimiters are decoded, e.g. `..%3B` or `..%2F`.
    #[error(
        "segment {index} is ambiguous: a dot segment once its escaped '/', '\\' or ';' is decoded"
    )]
    AmbiguousSegment { index: usize },
}

/// What the filter does with a non-canonical request path (plugin setting
/// `non_canonical_path`; `control check --non-canonical-path`). `control ext-authz`, which
/// cannot change what Envoy forwards, always rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonCanonicalPath {
    /// Rewrite `:path` to the canonical path, and decide on it.
    #[default]
    Rewrite,
    /// Answer `BadRequestPath` (400 `invalid request path`).
    Reject,
}

impl NonCanonicalPath {
    pub fn as_str(self) -> &'static str {
        match self {
            NonCanonicalPath::Rewrite => "rewrite",
            NonCanonicalPath::Reject => "reject",
        }
    }
}

impl std::str::FromStr for NonCanonicalPath {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "rewrite" => Ok(NonCanonicalPath::Rewrite),
            "reject" => Ok(NonCanonicalPath::Reject),
            other => Err(format!("{other:?} is neither \"rewrite\" nor \"reject\"")),
        }
    }
}

/// The normalised form of a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath<'a> {
    /// What the HTTP clause matches (spec: the matching form).
    pub matching: Cow<'a, [u8]>,
    /// `Some`: the request path is non-canonical and this is the canonical path (without the
    /// query). `None`: the raw path is canonical and is forwarded unchanged.
    pub canonical: Option<String>,
}

impl NormalizedPath<'_> {
    pub fn is_canonical(&self) -> bool {
        self.canonical.is_none()
    }
}

/// The matching form of `input` (a request path or a rule value).
pub fn normalize(input: &str) -> Result<Vec<u8>, PathError> {
    normalize_request(input).map(|n| n.matching.into_owned())
}

/// Normalise a request path: its matching form and, when it is non-canonical, its canonical
/// path. A plain path (no `%`, `\`, `;`, empty or dot segment) allocates nothing.
pub fn normalize_request(input: &str) -> Result<NormalizedPath<'_>, PathError> {
    let raw = path_part(input);
    check_escapes(raw)?;
    if let Some(matching) = plain(raw) {
        return Ok(NormalizedPath {
            matching: Cow::Borrowed(matching),
            canonical: None,
        });
    }
    general(raw).map(|(matching, canonical)| NormalizedPath {
        matching: Cow::Owned(matching),
        canonical,
    })
}

/// The path the upstream must receive for a request path `input`: `Ok(None)` when `input` is
/// canonical (it is forwarded unchanged), else the canonical path plus `input`'s query string.
/// A request path that does not start with `/` is never rewritten (`Ok(None)`): the HTTP clause
/// refuses it wherever a path rule is reached.
pub fn forwarded_path(input: &str) -> Result<Option<String>, PathError> {
    if !input.starts_with('/') {
        return Ok(None);
    }
    let raw = path_part(input);
    check_escapes(raw)?;
    if plain(raw).is_some() {
        return Ok(None);
    }
    let (_, canonical) = general(raw)?;
    Ok(canonical.map(|mut path| {
        path.push_str(query(input));
        path
    }))
}

/// `bytes` as text without losing any: each byte that is not part of valid UTF-8 becomes its
/// `%XX` escape (upper-case hex), which percent-decodes back to the same byte. Valid UTF-8 is
/// borrowed as it is.
pub fn escape_invalid_utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                for b in chunk.invalid() {
                    out.push('%');
                    out.push(char::from(hex_digit(b >> 4)));
                    out.push(char::from(hex_digit(b & 0xf)));
                }
            }
            Cow::Owned(out)
        }
    }
}

/// Segment-boundary prefix match of two matching forms (spec section 5 HTTP clause, D7): `/`
/// matches every path; otherwise the path equals the prefix or continues it with `/`.
pub fn prefix_matches(normalized_prefix: &[u8], normalized_path: &[u8]) -> bool {
    if normalized_prefix == b"/" {
        return true;
    }
    match normalized_path.strip_prefix(normalized_prefix) {
        Some(rest) => rest.is_empty() || rest.first() == Some(&b'/'),
        None => false,
    }
}

/// Step 1: the path before the first `?` or `#`.
fn path_part(input: &str) -> &[u8] {
    let bytes = input.as_bytes();
    let end = bytes
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(bytes.len());
    bytes.get(..end).unwrap_or(bytes)
}

/// The query string of `input` with its `?` (up to a `#`), or `""`.
fn query(input: &str) -> &str {
    match input.find(['?', '#']) {
        Some(start) if input.as_bytes().get(start) == Some(&b'?') => {
            let rest = input.get(start..).unwrap_or("");
            rest.split('#').next().unwrap_or("")
        }
        _ => "",
    }
}

/// Steps 2 and 3 over the whole path (parameters included).
fn check_escapes(raw: &[u8]) -> Result<(), PathError> {
    if raw.contains(&0) {
        return Err(PathError::NulByte);
    }
    if !raw.contains(&b'%') {
        return Ok(());
    }
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let value = escape_at(raw, i).ok_or(PathError::BadPercentEncoding { offset: i })?;
            if value == 0 {
                return Err(PathError::NulByte);
            }
            decoded.push(value);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    if decoded.windows(3).any(is_encoded_dot_or_slash) {
        return Err(PathError::DoubleEncoding);
    }
    Ok(())
}

/// The matching form of a path that needs no decoding, splitting or cleaning (the common case),
/// borrowed: it starts with `/`, holds no `%`, `\` or `;`, and no empty (but a trailing one), `.`
/// or `..` segment. `None`: take the general path.
fn plain(raw: &[u8]) -> Option<&[u8]> {
    let rest = raw.strip_prefix(b"/")?;
    if raw.iter().any(|&b| matches!(b, b'%' | b'\\' | b';')) {
        return None;
    }
    if rest.is_empty() {
        return Some(b"/");
    }
    // `/a/` matches as `/a`.
    let body = rest.strip_suffix(b"/").unwrap_or(rest);
    if body
        .split(|&b| b == b'/')
        .any(|s| matches!(s, b"" | b"." | b".."))
    {
        return None;
    }
    raw.get(..=body.len())
}

/// One raw segment, classified after steps 5.1-5.3.
enum Segment {
    /// Empty once parameters are cut.
    Empty,
    Dot,
    DotDot,
    /// A name: its decoded form (delimiter escapes kept).
    Name(Vec<u8>),
}

/// Steps 4-6 for a path that [`plain`] declined: the matching form and, when non-canonical, the
/// canonical path. Escapes were checked already ([`check_escapes`]).
fn general(raw: &[u8]) -> Result<(Vec<u8>, Option<String>), PathError> {
    // 4. A raw backslash is a separator.
    let backslash = raw.contains(&b'\\');
    if !matches!(raw.first(), Some(b'/' | b'\\')) {
        return Err(PathError::NotAbsolute);
    }
    let rest = raw.get(1..).unwrap_or_default();
    let trailing_slash = matches!(rest.last(), Some(b'/' | b'\\'));
    let raw_segments: Vec<&[u8]> = rest.split(|&b| b == b'/' || b == b'\\').collect();
    let last = raw_segments.len().saturating_sub(1);

    let mut non_canonical = backslash;
    // Surviving segments: (raw, decoded).
    let mut kept: Vec<(&[u8], Vec<u8>)> = Vec::with_capacity(raw_segments.len());
    for (index, raw_segment) in raw_segments.iter().enumerate() {
        match classify(raw_segment, index)? {
            // The empty segment a trailing `/` leaves is canonical.
            Segment::Empty if index == last && raw_segment.is_empty() => {}
            Segment::Empty | Segment::Dot => non_canonical = true,
            Segment::DotDot => {
                non_canonical = true;
                kept.pop();
            }
            Segment::Name(decoded) => kept.push((raw_segment, decoded)),
        }
    }

    let mut matching = Vec::with_capacity(raw.len());
    if kept.is_empty() {
        matching.push(b'/');
    }
    for (_, decoded) in &kept {
        matching.push(b'/');
        matching.extend_from_slice(decoded);
    }
    if !non_canonical {
        return Ok((matching, None));
    }
    let mut canonical = Vec::with_capacity(raw.len());
    for (raw_segment, _) in &kept {
        canonical.push(b'/');
        canonical.extend_from_slice(raw_segment);
    }
    if kept.is_empty() || trailing_slash {
        canonical.push(b'/');
    }
    // Raw segments are slices of a `&str` cut at ASCII bytes, so they are UTF-8 (the lossy
    // conversion never replaces anything).
    let canonical = String::from_utf8(canonical)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok((matching, Some(canonical)))
}

/// Steps 5.1-5.3 for one raw segment.
fn classify(raw_segment: &[u8], index: usize) -> Result<Segment, PathError> {
    // 5.1 Parameters start at the first raw `;`.
    let name = match raw_segment.iter().position(|&b| b == b';') {
        Some(semi) => raw_segment.get(..semi).unwrap_or_default(),
        None => raw_segment,
    };
    // 5.2 Decode all but the delimiter escapes.
    let mut decoded = Vec::with_capacity(name.len());
    let mut escaped_delimiter = false;
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        match (b, escape_at(name, i)) {
            (b'%', Some(value)) if is_delimiter(value) => {
                escaped_delimiter = true;
                decoded.extend_from_slice(&[b'%', hex_digit(value >> 4), hex_digit(value & 0xf)]);
                i += 3;
            }
            (b'%', Some(value)) => {
                decoded.push(value);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let segment = match decoded.as_slice() {
        b"" => Segment::Empty,
        b"." => Segment::Dot,
        b".." => Segment::DotDot,
        _ => Segment::Name(decoded),
    };
    // 5.3 Ambiguity: decode the delimiter escapes too, split at `/` and `\`, cut each part at its
    // first `;`; a `.` or `..` part makes the segment ambiguous.
    if let Segment::Name(decoded) = &segment {
        if escaped_delimiter && is_ambiguous(decoded) {
            return Err(PathError::AmbiguousSegment { index });
        }
    }
    Ok(segment)
}

fn is_ambiguous(decoded: &[u8]) -> bool {
    let mut full = Vec::with_capacity(decoded.len());
    let mut i = 0;
    while let Some(&b) = decoded.get(i) {
        match escape_at(decoded, i) {
            Some(value) if b == b'%' => {
                full.push(value);
                i += 3;
            }
            _ => {
                full.push(b);
                i += 1;
            }
        }
    }
    full.split(|&b| b == b'/' || b == b'\\').any(|part| {
        let part = part.split(|&b| b == b';').next().unwrap_or_default();
        part == b"." || part == b".."
    })
}

/// The delimiter escapes that stay encoded: `/`, `\`, `;`, `?`, `#`, `%`.
fn is_delimiter(value: u8) -> bool {
    matches!(value, b'/' | b'\\' | b';' | b'?' | b'#' | b'%')
}

/// The byte a `%XY` escape at `i` stands for.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    if bytes.get(i) != Some(&b'%') {
        return None;
    }
    let hi = bytes.get(i + 1).copied().and_then(hex_value)?;
    let lo = bytes.get(i + 2).copied().and_then(hex_value)?;
    Some((hi << 4) | lo)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'A' + nibble - 10,
    }
}

/// `%2e`, `%2f` or `%5c` in any letter case.
fn is_encoded_dot_or_slash(window: &[u8]) -> bool {
    matches!(
        window,
        [b'%', b'2', b'e' | b'E' | b'f' | b'F'] | [b'%', b'5', b'c' | b'C']
    )
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;

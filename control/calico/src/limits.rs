//! Caps on hostile YAML, checked before the parser sees it: a file's size
//! (`--max-policy-bytes`) and a document's nesting depth (`--max-yaml-depth`).
//!
//! The parser's cost grows faster than linearly with nesting (a 20 000-level flow sequence took
//! seconds), and a reload that stalls keeps a good edit from taking effect; so the depth is
//! measured first by [`nesting`], a single pass that follows block indentation, `- ` entries
//! and flow collections, and skips quoted scalars, plain scalars, block scalars (`|`, `>`) and
//! comments. It does not under-count what the text nests (aliases, `*a`, are not followed); it
//! may over-count by one or two (a scalar after `- `, a continuation line of a plain scalar that
//! starts with `[`), which the generous default absorbs.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The caps the loader applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one file (or of standard input); a larger one is not read further.
    pub max_bytes: usize,
    /// Nesting of one YAML document (block and flow collections together).
    pub max_depth: usize,
}

/// `--max-policy-bytes`: 16 MiB.
pub const DEFAULT_MAX_POLICY_BYTES: usize = 16 << 20;
/// `--max-yaml-depth`: 64 (Calico resources nest about 8 deep).
pub const DEFAULT_MAX_YAML_DEPTH: usize = 64;

/// The flag and the environment variable that raise each cap, for messages.
pub const BYTES_SETTING: &str = "--max-policy-bytes / ALP_MAX_POLICY_BYTES";
pub const DEPTH_SETTING: &str = "--max-yaml-depth / ALP_MAX_YAML_DEPTH";

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_POLICY_BYTES,
            max_depth: DEFAULT_MAX_YAML_DEPTH,
        }
    }
}

static MAX_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_POLICY_BYTES);
static MAX_DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_YAML_DEPTH);

/// Sets the caps of every later load in this process (the CLI does, from its flags).
pub fn set_limits(limits: Limits) {
    MAX_BYTES.store(limits.max_bytes, Ordering::Relaxed);
    MAX_DEPTH.store(limits.max_depth, Ordering::Relaxed);
}

/// The caps in force.
pub fn limits() -> Limits {
    Limits {
        max_bytes: MAX_BYTES.load(Ordering::Relaxed),
        max_depth: MAX_DEPTH.load(Ordering::Relaxed),
    }
}

/// What [`nesting`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nesting {
    /// The deepest nesting of the document.
    pub depth: usize,
    /// The line (0-based, in the text scanned) where the depth first went over the cap.
    pub over_at: Option<usize>,
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

/// Whether `line` has a block sequence entry (`- `) at `at`.
fn is_entry(line: &[u8], at: usize) -> bool {
    line.get(at) == Some(&b'-') && line.get(at + 1).is_none_or(|&c| is_ws(c))
}

/// The nesting depth of one YAML document, and where it first exceeds `cap`, without parsing
/// it: O(length), no allocation beyond a stack of indentation columns.
pub fn nesting(text: &str, cap: usize) -> Nesting {
    let mut scan = Scan {
        cap,
        depth: 0,
        over_at: None,
        block: Vec::new(),
        flow: 0,
    };
    // Inside a quoted scalar (which may span lines): its quote.
    let mut quote: Option<u8> = None;
    // A block scalar's lines: those indented more than this (its owner's column) or blank.
    let mut block_scalar: Option<isize> = None;
    // The previous line ended inside a plain scalar owned at this column: a line indented
    // more continues it.
    let mut plain_cont: Option<isize> = None;
    // A node may start here (after indentation, `- `, `: `, `[`, `,`).
    let mut at_start = true;
    let mut in_plain = false;
    // A quoted scalar just ended (so `:` after it is a value indicator, JSON style).
    let mut after_quote = false;
    // The column of the block node that owns the node starting here (-1: the document).
    let mut owner: isize = -1;
    // The owner and the column of the scalar being read.
    let mut scalar_owner: isize = -1;
    let mut scalar_col: isize = -1;

    for (line_no, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw).as_bytes();
        let mut i = 0;
        if quote.is_none() && scan.flow == 0 {
            let indent = line.iter().take_while(|&&c| c == b' ').count();
            let rest = &line[indent..];
            let blank = rest.iter().all(|&c| is_ws(c));
            if let Some(parent) = block_scalar {
                if blank || indent as isize > parent {
                    continue;
                }
                block_scalar = None;
            }
            if blank {
                continue;
            }
            let first = rest.iter().position(|&c| !is_ws(c)).unwrap_or(0);
            if rest[first] == b'#' {
                plain_cont = None;
                continue;
            }
            i = indent;
            match plain_cont {
                Some(o) if indent as isize > o => {
                    // A continuation line: text of the scalar, whatever it starts with.
                    in_plain = true;
                    at_start = false;
                }
                _ => {
                    plain_cont = None;
                    while scan.block.last().is_some_and(|&(c, _)| c > indent) {
                        scan.block.pop();
                    }
                    let dash = is_entry(line, indent);
                    match scan.block.last().copied() {
                        // A sequence as the value of a key, at the key's column: one more level.
                        Some((c, false)) if c == indent && dash => {
                            scan.push((indent, true), line_no)
                        }
                        // The next key after that sequence.
                        Some((c, true)) if c == indent && !dash => {
                            let n = scan.block.len();
                            if n >= 2 && scan.block[n - 2] == (indent, false) {
                                scan.block.pop();
                            }
                        }
                        Some((c, _)) if c == indent => {}
                        _ => scan.push((indent, dash), line_no),
                    }
                    let n = scan.block.len();
                    owner = if n >= 2 {
                        scan.block[n - 2].0 as isize
                    } else {
                        -1
                    };
                    at_start = true;
                    in_plain = false;
                    after_quote = false;
                }
            }
        }
        while i < line.len() {
            let c = line[i];
            let next = line.get(i + 1).copied();
            let ends = |n: Option<u8>| n.is_none_or(is_ws);
            if let Some(q) = quote {
                if q == b'"' && c == b'\\' {
                    i += 2;
                    continue;
                }
                if c == q {
                    if q == b'\'' && next == Some(b'\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                    after_quote = true;
                    at_start = false;
                }
                i += 1;
                continue;
            }
            if is_ws(c) {
                i += 1;
                continue;
            }
            if c == b'#' && (i == 0 || is_ws(line[i - 1])) {
                break;
            }
            let was_after_quote = std::mem::take(&mut after_quote);
            if at_start {
                match c {
                    b'[' | b'{' => {
                        if scan.flow == 0 {
                            scalar_col = i as isize;
                            scalar_owner = owner;
                        }
                        scan.flow += 1;
                        scan.check(line_no);
                        in_plain = false;
                    }
                    b'\'' | b'"' => {
                        if scan.flow == 0 {
                            scalar_col = i as isize;
                            scalar_owner = owner;
                        }
                        quote = Some(c);
                        in_plain = false;
                    }
                    b'|' | b'>' if scan.flow == 0 => {
                        // The header and its comment end the line; the text follows.
                        block_scalar = Some(owner);
                        in_plain = false;
                        break;
                    }
                    b'-' | b'?' if scan.flow == 0 && ends(next) => {
                        owner = i as isize;
                        let j = (i + 1..line.len())
                            .find(|&j| !is_ws(line[j]))
                            .unwrap_or(line.len());
                        if j < line.len() && line[j] != b'#' {
                            scan.push((j, is_entry(line, j)), line_no);
                        }
                        i = j;
                        continue;
                    }
                    b'&' | b'!' => {
                        // An anchor or a tag: the node follows it.
                        while i < line.len() && !is_ws(line[i]) {
                            i += 1;
                        }
                        continue;
                    }
                    b',' if scan.flow > 0 => {}
                    b']' | b'}' if scan.flow > 0 => {
                        scan.flow -= 1;
                        at_start = false;
                    }
                    _ => {
                        if scan.flow == 0 {
                            scalar_col = i as isize;
                            scalar_owner = owner;
                        }
                        in_plain = true;
                        at_start = false;
                    }
                }
            } else if scan.flow > 0 {
                match c {
                    b',' => {
                        at_start = true;
                        in_plain = false;
                    }
                    b'[' | b'{' => {
                        scan.flow += 1;
                        scan.check(line_no);
                        at_start = true;
                        in_plain = false;
                    }
                    b']' | b'}' => {
                        scan.flow -= 1;
                        in_plain = false;
                    }
                    b':' if was_after_quote
                        || next.is_none_or(|n| is_ws(n) || is_flow_indicator(n)) =>
                    {
                        at_start = true;
                        in_plain = false;
                    }
                    _ => {}
                }
            } else if c == b':' && ends(next) {
                // A key ended: its value is owned by the key's column.
                at_start = true;
                in_plain = false;
                owner = scalar_col;
            }
            i += 1;
        }
        if quote.is_none() && scan.flow == 0 {
            plain_cont = in_plain.then_some(scalar_owner);
        }
    }
    Nesting {
        depth: scan.depth,
        over_at: scan.over_at,
    }
}

struct Scan {
    cap: usize,
    depth: usize,
    over_at: Option<usize>,
    /// Columns of the open block nodes, and whether each is a sequence (a `- ` entry).
    block: Vec<(usize, bool)>,
    /// Open flow collections.
    flow: usize,
}

impl Scan {
    fn push(&mut self, node: (usize, bool), line: usize) {
        self.block.push(node);
        self.check(line);
    }

    fn check(&mut self, line: usize) {
        let depth = self.block.len() + self.flow;
        if depth > self.depth {
            self.depth = depth;
            if depth > self.cap && self.over_at.is_none() {
                self.over_at = Some(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: p # a comment with [ and {
  labels: {app: a, 'k[': \"v{\"}
spec:
  selector: app == 'a' && role in {'x', 'y'}
  description: don't [stop
    here] or { there
  ingress:
    - action: Allow
      source:
        nets: [10.0.0.0/8, \"[\"]
      http:
        paths:
          - exact: /a
";

    fn depth(text: &str) -> usize {
        nesting(text, usize::MAX).depth
    }

    #[test]
    fn measures_nesting() {
        let deep_flow = |n: usize| format!("a: {}{}", "[".repeat(n), "]".repeat(n));
        let deep_block = |n: usize| {
            (0..n)
                .map(|k| format!("{}k{k}:\n", " ".repeat(2 * k)))
                .collect::<String>()
        };
        let table: &[(&str, String, usize)] = &[
            ("empty", String::new(), 0),
            ("scalar", "hello\n".into(), 1),
            ("mapping", "a: 1\nb: 2\n".into(), 1),
            ("nested mappings", "a:\n  b:\n    c: 1\n".into(), 3),
            // The Calico policy: 6 block levels and a flow sequence under them.
            ("policy", POLICY.into(), 7),
            ("flow", "a: [1, [2, [3]]]\n".into(), 4),
            ("flow, closed on later lines", "a: [1,\n  [2,\n  [3]],\n]\nb: 1\n".into(), 4),
            ("block sequence", "- a\n- b\n".into(), 2),
            ("sequence at its key's column", "a:\n- x\n- y\nb: 1\n".into(), 3),
            (
                "policy, sequences at their keys' columns",
                "spec:\n  ingress:\n  - action: Allow\n    http:\n      paths:\n      - exact: /a\n  egress: []\n"
                    .into(),
                7,
            ),
            ("compact sequences", "- - - x\n".into(), 4),
            ("sequence of mappings", "- a: 1\n  b: 2\n- c: 3\n".into(), 2),
            ("quoted brackets", "a: \"[[[[\"\nb: '{{{{'\nc: 'it''s [['\n".into(), 1),
            ("escaped quote", "a: \"\\\"[[[[\"\n".into(), 1),
            ("multi-line quoted", "a: \"x\n  [[[[\n  y\"\nb: 1\n".into(), 1),
            ("plain brackets", "a: x[[[[ and {{{\nb: don't [\n".into(), 1),
            ("comments", "# [[[[\na: 1 # {{{{\n  # [[[[\n".into(), 1),
            ("block scalar", "a: |\n  [[[[\n  {{{{\n\n  'x\nb: >-\n  [[\n".into(), 1),
            ("block scalar in a sequence", "- |\n  [[[[\n- x\n".into(), 2),
            ("json", "{\"a\": {\"b\": [1, {\"c\": \"]]]\"}]}}\n".into(), 5),
            ("json, no spaces", "{\"a\":[\"b\",{\"c\":1}]}\n".into(), 4),
            ("anchor and tag", "a: &x [1, [2]]\nb: !!seq [1]\n".into(), 3),
            ("deep flow, allowed", deep_flow(60), 61),
            ("deep flow", deep_flow(1000), 1001),
            ("deep block", deep_block(30), 30),
            (
                "quote after a plain scalar is text",
                "a: b\n  'x\n[[[[[]]]]]: 1\n".into(),
                6,
            ),
            ("quote in a plain scalar is text", "a: it's\nb: [[[[]]]]\n".into(), 5),
        ];
        for (name, text, want) in table {
            assert_eq!(depth(text), *want, "{name}: {text:?}");
        }
    }

    #[test]
    fn names_the_line_over_the_cap() {
        let text = "a: 1\nb:\n  - [[[\n    [x]]]]\n";
        assert_eq!(
            nesting(text, 4),
            Nesting {
                depth: 7,
                over_at: Some(2)
            }
        );
        assert_eq!(nesting(text, 7).over_at, None);
    }

    #[test]
    fn a_hundred_thousand_levels_are_measured_in_one_pass() {
        let n = 100_000;
        let text = format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(
            nesting(&text, DEFAULT_MAX_YAML_DEPTH),
            Nesting {
                depth: n + 1,
                over_at: Some(0)
            }
        );
        let text = "- ".repeat(n) + "x\n";
        assert_eq!(nesting(&text, DEFAULT_MAX_YAML_DEPTH).depth, n + 1);
    }
}

#[cfg(test)]
mod load_tests {
    use super::*;

    #[test]
    fn the_loader_refuses_deep_documents_before_parsing() {
        let n = 100_000;
        let deep = format!("{}{}\n", "[".repeat(n), "]".repeat(n));
        let problems = crate::load::load_texts(&[("policy.yaml", &deep)]).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].to_string(),
            format!("policy.yaml:1: nesting depth {} exceeds the limit of 64 (raise it with --max-yaml-depth / ALP_MAX_YAML_DEPTH); not parsed", n + 1)
        );
        // In a stream, the document is named; the others still load (and are checked).
        let stream = format!("a: 1\n---\n{deep}");
        let problems = crate::load::load_texts(&[("p.yaml", &stream)]).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.line == 3 && p.message.starts_with("document 2: nesting depth")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_loader_refuses_large_files_without_reading_them() {
        let dir = tempfile_dir();
        let path = dir.join("big.yaml");
        let size = DEFAULT_MAX_POLICY_BYTES + 1;
        std::fs::write(&path, vec![b'#'; size]).unwrap();
        let problems = crate::load::load_path(&path).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].message,
            format!("size {size} bytes exceeds the limit of {DEFAULT_MAX_POLICY_BYTES} bytes (raise it with --max-policy-bytes / ALP_MAX_POLICY_BYTES); not parsed")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("alp-calico-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

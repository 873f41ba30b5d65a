//! Where a field is in a YAML document: a light reading of the block structure (mappings,
//! sequences, `- key: value` items, flow collections as leaves, block scalars and continuation
//! lines skipped) that gives the line of each node, so that a problem about
//! `items[2].spec.ingress[0].destination.ports[1]` names the line of that port. Whatever this
//! reading does not understand falls back to the nearest enclosing node it found, and at worst to
//! the document's first line.

use std::fmt;

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A field path from a document's (or a resource's) root.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path followed by `key`.
    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_string()));
        p
    }

    /// This path followed by `[index]`.
    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }

    /// `prefix` followed by this path.
    pub fn under(&self, prefix: &FieldPath) -> Self {
        let mut p = prefix.clone();
        p.0.extend(self.0.iter().cloned());
        p
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A node of the block structure and the (0-based, within the document) line it starts on.
#[derive(Debug)]
enum Node {
    /// Entries with the line of their key.
    Map(usize, Vec<(String, usize, Node)>),
    Seq(usize, Vec<Node>),
    Leaf(usize),
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Map(l, _) | Node::Seq(l, _) | Node::Leaf(l) => *l,
        }
    }
}

#[derive(Debug, Clone)]
struct Line {
    no: usize,
    indent: usize,
    text: String,
}

/// The located structure of one document.
pub struct Locator {
    root: Option<Node>,
}

impl Locator {
    /// Reads the structure of `text` (one YAML document).
    pub fn new(text: &str) -> Self {
        let mut lines: Vec<Line> = text
            .lines()
            .enumerate()
            .filter_map(|(no, raw)| {
                let body = strip_comment(raw.trim_end_matches('\r'));
                let trimmed = body.trim_start_matches(' ');
                if trimmed.trim().is_empty() || raw.trim_start().starts_with('%') {
                    return None;
                }
                Some(Line {
                    no,
                    indent: body.len() - trimmed.len(),
                    text: trimmed.trim_end().to_string(),
                })
            })
            .collect();
        let mut i = 0;
        let root = (!lines.is_empty()).then(|| {
            let indent = lines[0].indent;
            block(&mut lines, &mut i, indent)
        });
        Locator { root }
    }

    /// The 0-based line of the deepest step of `path` found: a key's line, or an item's.
    pub fn line(&self, path: &FieldPath) -> Option<usize> {
        let mut node = self.root.as_ref()?;
        let mut line = node.line();
        for seg in &path.0 {
            let next = match (node, seg) {
                (Node::Map(_, entries), Seg::Key(k)) => entries
                    .iter()
                    .find(|(key, ..)| key == k)
                    .or_else(|| entries.iter().find(|(key, ..)| key.eq_ignore_ascii_case(k)))
                    .map(|(_, l, n)| (*l, n)),
                (Node::Seq(_, items), Seg::Index(n)) => items.get(*n).map(|n| (n.line(), n)),
                _ => None,
            };
            match next {
                Some((l, n)) => {
                    line = l;
                    node = n;
                }
                None => break,
            }
        }
        Some(line)
    }
}

/// `text` without a trailing `# comment` (a `#` at the start or after a space, outside quotes).
fn strip_comment(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => {
                // A quote only opens a quoted scalar at the start of a value.
                let before = text[..i].trim_end();
                if before.is_empty()
                    || before.ends_with(':')
                    || before.ends_with('-')
                    || before.ends_with('[')
                    || before.ends_with('{')
                    || before.ends_with(',')
                {
                    quote = Some(b);
                }
            }
            None if b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => {
                return &text[..i];
            }
            None => {}
        }
    }
    text
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ") || text.starts_with("-\t")
}

/// The key and the rest of a `key: rest` line, if it is one.
fn split_key(text: &str) -> Option<(String, &str)> {
    let bytes = text.as_bytes();
    let (key, after) = match bytes.first() {
        Some(&q @ (b'"' | b'\'')) => {
            let close = text[1..].find(char::from(q))? + 1;
            (text[1..close].to_string(), &text[close + 1..])
        }
        Some(b'[' | b'{') | None => return None,
        _ => {
            let mut end = None;
            for (i, &b) in bytes.iter().enumerate() {
                if b == b':'
                    && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t')
                {
                    end = Some(i);
                    break;
                }
            }
            let end = end?;
            (text[..end].trim_end().to_string(), &text[end..])
        }
    };
    let after = after.trim_start();
    let rest = after.strip_prefix(':')?;
    Some((key, rest.trim()))
}

/// A value that says nothing itself and is followed by a nested block (`key:`, `key: &anchor`,
/// `key: !!map`).
fn opens_block(rest: &str) -> bool {
    rest.is_empty()
        || rest
            .split_whitespace()
            .all(|w| w.starts_with('&') || w.starts_with('!'))
}

fn skip_deeper(lines: &[Line], i: &mut usize, indent: usize) {
    while *i < lines.len() && lines[*i].indent > indent {
        *i += 1;
    }
}

/// The block at `lines[*i]` (at `indent`), consuming its lines.
fn block(lines: &mut [Line], i: &mut usize, indent: usize) -> Node {
    let line = &lines[*i];
    if is_seq_item(&line.text) {
        seq(lines, i, indent)
    } else if split_key(&line.text).is_some() {
        map(lines, i, indent)
    } else {
        let no = line.no;
        *i += 1;
        skip_deeper(lines, i, indent);
        Node::Leaf(no)
    }
}

/// The value after `key:` on line `no` at `indent`, the line already consumed.
fn value(lines: &mut [Line], i: &mut usize, indent: usize, no: usize, rest: &str) -> Node {
    if opens_block(rest) {
        if *i < lines.len()
            && (lines[*i].indent > indent
                || (lines[*i].indent == indent && is_seq_item(&lines[*i].text)))
        {
            let child_indent = lines[*i].indent;
            return block(lines, i, child_indent);
        }
        return Node::Leaf(no);
    }
    // A scalar, a flow collection or a block scalar: what is deeper belongs to it.
    skip_deeper(lines, i, indent);
    Node::Leaf(no)
}

fn map(lines: &mut [Line], i: &mut usize, indent: usize) -> Node {
    let first = lines[*i].no;
    let mut entries = Vec::new();
    while *i < lines.len() && lines[*i].indent == indent && !is_seq_item(&lines[*i].text) {
        let Some((key, rest)) = split_key(&lines[*i].text) else {
            *i += 1;
            skip_deeper(lines, i, indent);
            continue;
        };
        let rest = rest.to_string();
        let no = lines[*i].no;
        *i += 1;
        let node = value(lines, i, indent, no, &rest);
        entries.push((key, no, node));
    }
    Node::Map(first, entries)
}

fn seq(lines: &mut [Line], i: &mut usize, indent: usize) -> Node {
    let first = lines[*i].no;
    let mut items = Vec::new();
    while *i < lines.len() && lines[*i].indent == indent && is_seq_item(&lines[*i].text) {
        let no = lines[*i].no;
        let content = lines[*i].text[1..].trim_start().to_string();
        if opens_block(&content) {
            *i += 1;
            if *i < lines.len() && lines[*i].indent > indent {
                let child_indent = lines[*i].indent;
                items.push(block(lines, i, child_indent));
            } else {
                items.push(Node::Leaf(no));
            }
            continue;
        }
        // `- key: value` or `- - x`: the content is a block starting inside this line.
        let offset = lines[*i].text.len() - content.len();
        lines[*i] = Line {
            no,
            indent: indent + offset,
            text: content,
        };
        let child_indent = indent + offset;
        items.push(block(lines, i, child_indent));
    }
    Node::Seq(first, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> FieldPath {
        let mut p = FieldPath::root();
        for part in text.split('.') {
            let (key, rest) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                p = p.key(key);
            }
            for idx in rest.split('[') {
                if let Some(n) = idx.strip_suffix(']') {
                    p = p.index(n.parse().unwrap());
                }
            }
        }
        p
    }

    const DOC: &str = "\
apiVersion: projectcalico.org/v3   # comment
kind: GlobalNetworkPolicy
metadata:
  name: p
  labels: {a: b}
spec:
  selector: \"app == 'x' # not a comment\"
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, 443]
      notPorts:
        - 1
        - 2
  -
    action: Deny
    http:
      paths:
      - exact: |
          /a
      - prefix: /b
  egress:
    - action: Allow
      source:
        nets:
        - 10.0.0.0/8
";

    #[test]
    fn finds_lines() {
        let loc = Locator::new(DOC);
        let line = |p: &str| loc.line(&path(p)).map(|l| l + 1);
        assert_eq!(line("kind"), Some(2));
        assert_eq!(line("metadata.name"), Some(4));
        assert_eq!(line("metadata.labels.a"), Some(5));
        assert_eq!(line("spec.selector"), Some(7));
        assert_eq!(line("spec.ingress[0]"), Some(9));
        assert_eq!(line("spec.ingress[0].protocol"), Some(10));
        assert_eq!(line("spec.ingress[0].destination.ports[1]"), Some(12));
        assert_eq!(line("spec.ingress[0].destination.notPorts[1]"), Some(15));
        assert_eq!(line("spec.ingress[1].action"), Some(17));
        assert_eq!(line("spec.ingress[1].http.paths[0].exact"), Some(20));
        assert_eq!(line("spec.ingress[1].http.paths[1].prefix"), Some(22));
        assert_eq!(line("spec.egress[0].source.nets[0]"), Some(27));
        assert_eq!(line("spec.egress[0].source.notNets"), Some(25));
        assert_eq!(line("spec.nothing.here"), Some(6));
    }

    #[test]
    fn lists_and_nested_sequences() {
        let text = "items:\n- kind: A\n  spec:\n    x: 1\n- - a\n  - b\n";
        let loc = Locator::new(text);
        let line = |p: &str| loc.line(&path(p)).map(|l| l + 1);
        assert_eq!(line("items[0].spec.x"), Some(4));
        assert_eq!(line("items[1][1]"), Some(6));
        assert_eq!(line("items[2]"), Some(1));
        assert_eq!(Locator::new("").line(&path("a")), None);
    }

    #[test]
    fn displays_paths() {
        assert_eq!(
            path("spec.ingress[0].ports[2]").to_string(),
            "spec.ingress[0].ports[2]"
        );
        assert_eq!(FieldPath::root().index(3).key("a").to_string(), "[3].a");
    }
}

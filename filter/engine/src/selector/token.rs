//! The tokenizer (spec section 6, "Tokens").
//!
//! Works on the input's bytes: every character with a meaning is ASCII, and string contents are
//! taken whole up to the closing quote, so positions always fall on character boundaries and
//! non-ASCII text only ever appears inside strings (anywhere else it is an error).
//!
//! A label is lexed together with the operator that must follow it, because whether a word is an
//! operator depends on that position (`contains contains "x"` is valid). A missing or unknown
//! operator is recorded in the label token and reported by the parser if the label is used as
//! a primary, so errors come out in input order with the parser's context.

use super::ast::CompareOp;
use super::error::SelectorError;

/// Longest label accepted, in characters (all label characters are ASCII).
pub const MAX_LABEL_LEN: usize = 512;

/// Longest piece of input quoted back in an error message.
const SHOWN_LEN: usize = 40;

/// The operator after a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Compare(CompareOp),
    In,
    NotIn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    And,
    Or,
    Not,
    /// `==` or `!=` not following a label (never valid, but a token).
    StrayOp(&'static str),
    /// String contents, without the quotes.
    Str(&'a str),
    /// `has(label)`.
    Has(&'a str),
    All,
    Global,
    /// A label and the operator after it, or why there is no valid operator.
    Label {
        label: &'a str,
        op: Result<Op, SelectorError>,
    },
    End,
}

impl Kind<'_> {
    /// How the token is named in error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Kind::LParen => "'('".to_string(),
            Kind::RParen => "')'".to_string(),
            Kind::LBrace => "'{'".to_string(),
            Kind::RBrace => "'}'".to_string(),
            Kind::Comma => "','".to_string(),
            Kind::And => "'&&'".to_string(),
            Kind::Or => "'||'".to_string(),
            Kind::Not => "'!'".to_string(),
            Kind::StrayOp(op) => format!("'{op}'"),
            Kind::Str(s) => format!("the string {:?}", shown(s)),
            Kind::Has(label) => format!("has({})", shown(label)),
            Kind::All => "all()".to_string(),
            Kind::Global => "global()".to_string(),
            Kind::Label { label, .. } => format!("label {:?}", shown(label)),
            Kind::End => "end of input".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: Kind<'a>,
    /// Byte offset of the token's first character.
    pub(crate) pos: usize,
}

/// At most `SHOWN_LEN` characters of `s`, for error messages.
pub(crate) fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_LEN) {
        Some((cut, _)) => format!("{}...", s.get(..cut).unwrap_or_default()),
        None => s.to_string(),
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.src.as_bytes().get(at).copied()
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.pos;
        while self.byte(self.pos).is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// The run of label characters at the current position (possibly empty), consumed.
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self.byte(self.pos).is_some_and(is_label_byte) {
            self.pos += 1;
        }
        self.src.get(start..self.pos).unwrap_or_default()
    }

    /// A label at the current position (possibly empty), consumed; too long is an error.
    fn label(&mut self) -> Result<&'a str, SelectorError> {
        let start = self.pos;
        let label = self.word();
        if label.len() > MAX_LABEL_LEN {
            return Err(SelectorError::new(
                start,
                format!(
                    "label {:?} is too long: {} characters, at most {MAX_LABEL_LEN} are allowed",
                    shown(label),
                    label.len()
                ),
            ));
        }
        Ok(label)
    }

    /// Names what is at `at`, for error messages.
    fn found_at(&self, at: usize) -> String {
        let rest = self.src.get(at..).unwrap_or_default();
        match rest.chars().next() {
            None => "end of input".to_string(),
            Some(c) if c.is_ascii() && is_label_byte(c as u8) => {
                let end = rest
                    .bytes()
                    .position(|b| !is_label_byte(b))
                    .unwrap_or(rest.len());
                format!("{:?}", shown(rest.get(..end).unwrap_or_default()))
            }
            Some(c) => format!("{c:?}"),
        }
    }

    /// The next token; `Kind::End` (repeatedly) at the end of the input.
    pub(crate) fn next_token(&mut self) -> Result<Token<'a>, SelectorError> {
        self.skip_spaces();
        let start = self.pos;
        let Some(b) = self.byte(start) else {
            return Ok(Token {
                kind: Kind::End,
                pos: start,
            });
        };
        let second = self.byte(start + 1);
        let (kind, len) = match b {
            b'(' => (Kind::LParen, 1),
            b')' => (Kind::RParen, 1),
            b'{' => (Kind::LBrace, 1),
            b'}' => (Kind::RBrace, 1),
            b',' => (Kind::Comma, 1),
            b'"' | b'\'' => return self.string(b),
            b'=' if second == Some(b'=') => (Kind::StrayOp("=="), 2),
            b'!' if second == Some(b'=') => (Kind::StrayOp("!="), 2),
            b'!' => (Kind::Not, 1),
            b'&' if second == Some(b'&') => (Kind::And, 2),
            b'|' if second == Some(b'|') => (Kind::Or, 2),
            b'=' => {
                return Err(SelectorError::new(
                    start,
                    "a single '=' is not an operator; use '=='",
                ))
            }
            b'&' => {
                return Err(SelectorError::new(
                    start,
                    "a single '&' is not an operator; use '&&'",
                ))
            }
            b'|' => {
                return Err(SelectorError::new(
                    start,
                    "a single '|' is not an operator; use '||'",
                ))
            }
            _ => return self.word_token(),
        };
        self.pos += len;
        Ok(Token { kind, pos: start })
    }

    /// A string literal starting with `quote` at the current position.
    fn string(&mut self, quote: u8) -> Result<Token<'a>, SelectorError> {
        let start = self.pos;
        let quote = char::from(quote);
        let body = self.src.get(start + 1..).unwrap_or_default();
        match body.split_once(quote) {
            Some((content, _)) => {
                self.pos = start + 1 + content.len() + 1;
                Ok(Token {
                    kind: Kind::Str(content),
                    pos: start,
                })
            }
            None => Err(SelectorError::new(
                start,
                format!("unterminated string starting at position {start}: no closing {quote}"),
            )),
        }
    }

    /// `has(...)`, `all()`, `global()` or a label with its operator.
    fn word_token(&mut self) -> Result<Token<'a>, SelectorError> {
        let start = self.pos;
        let rest = self.rest();
        if rest.starts_with("has(") {
            self.pos += 4;
            self.skip_spaces();
            let label_pos = self.pos;
            let label = self.label()?;
            if label.is_empty() {
                return Err(SelectorError::new(
                    label_pos,
                    format!(
                        "expected a label inside has(), found {}",
                        self.found_at(label_pos)
                    ),
                ));
            }
            self.skip_spaces();
            if self.byte(self.pos) != Some(b')') {
                return Err(SelectorError::new(
                    self.pos,
                    format!(
                        "expected ')' to close has( at position {start}, found {}",
                        self.found_at(self.pos)
                    ),
                ));
            }
            self.pos += 1;
            return Ok(Token {
                kind: Kind::Has(label),
                pos: start,
            });
        }
        // `all(` and `global(`, optional spaces or tabs, `)` (as upstream: `all( )` is all()).
        for (open, kind) in [("all(", Kind::All), ("global(", Kind::Global)] {
            if rest.starts_with(open) {
                self.pos += open.len();
                self.skip_spaces();
                if self.byte(self.pos) != Some(b')') {
                    return Err(SelectorError::new(
                        self.pos,
                        format!(
                            "expected ')' to close {open} at position {start}, found {}",
                            self.found_at(self.pos)
                        ),
                    ));
                }
                self.pos += 1;
                return Ok(Token { kind, pos: start });
            }
        }
        let label = self.label()?;
        if label.is_empty() {
            return Err(self.unexpected_character(start));
        }
        let op = self.operator(label);
        Ok(Token {
            kind: Kind::Label { label, op },
            pos: start,
        })
    }

    fn unexpected_character(&self, at: usize) -> SelectorError {
        let c = self
            .src
            .get(at..)
            .and_then(|s| s.chars().next())
            .unwrap_or(' ');
        let hint = match c {
            '`' => " (strings are quoted with \" or ')",
            '\n' | '\r' => " (only spaces and tabs separate tokens)",
            _ => "",
        };
        SelectorError::new(at, format!("unexpected character {c:?}{hint}"))
    }

    /// The operator after `label`, which has just been consumed.
    fn operator(&mut self, label: &str) -> Result<Op, SelectorError> {
        self.skip_spaces();
        let at = self.pos;
        let expected = |found: String| {
            SelectorError::new(
                at,
                format!(
                    "expected an operator (==, !=, contains, starts with, ends with, in, \
                     not in) after label {:?}, found {found}",
                    shown(label)
                ),
            )
        };
        match (self.byte(at), self.byte(at + 1)) {
            (Some(b'='), Some(b'=')) => {
                self.pos += 2;
                return Ok(Op::Compare(CompareOp::Eq));
            }
            (Some(b'!'), Some(b'=')) => {
                self.pos += 2;
                return Ok(Op::Compare(CompareOp::Ne));
            }
            (Some(b'='), _) => return Err(expected("'=' (did you mean '=='?)".to_string())),
            (Some(b'!'), _) => {
                return Err(expected("'!' (did you mean '!=' or 'not in'?)".to_string()))
            }
            _ => {}
        }
        let word = self.word();
        let (op, second) = match word {
            "contains" => return Ok(Op::Compare(CompareOp::Contains)),
            "startswith" => return Ok(Op::Compare(CompareOp::StartsWith)),
            "endswith" => return Ok(Op::Compare(CompareOp::EndsWith)),
            "in" => return Ok(Op::In),
            "notin" => return Ok(Op::NotIn),
            "starts" => (Op::Compare(CompareOp::StartsWith), "with"),
            "ends" => (Op::Compare(CompareOp::EndsWith), "with"),
            "not" => (Op::NotIn, "in"),
            _ => return Err(expected(self.found_at(at))),
        };
        let spaces = self.skip_spaces();
        let second_at = self.pos;
        if spaces > 0 && self.word() == second {
            return Ok(op);
        }
        Err(SelectorError::new(
            second_at,
            format!(
                "expected '{second}' after '{word}' (operator after label {:?}), found {}",
                shown(label),
                self.found_at(second_at)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::selector::Selector;

    #[test]
    fn all_and_global_take_spaces_inside() {
        for (text, canonical) in [
            ("all( )", "all()"),
            ("all(\t \t)", "all()"),
            ("global( )", "global()"),
            ("!all(  ) && has(a)", "(!all() && has(a))"),
        ] {
            let parsed = Selector::parse(text).expect(text);
            assert_eq!(parsed.to_string(), canonical, "{text:?}");
        }
        for text in [
            "all( x)",
            "all(",
            "all( ",
            "global(a)",
            "all (  )",
            "all(\n)",
        ] {
            assert!(Selector::parse(text).is_err(), "{text:?}");
        }
        let err = Selector::parse("all( x)").unwrap_err();
        assert_eq!(err.position, 5, "{err:?}");
    }
}

//! The parser (spec section 6, "Grammar"), recursive descent over the lazily lexed tokens:
//!
//! ```text
//! selector  := <empty or whitespace>  |  or <end>
//! or        := and { "||" and }
//! and       := unary { "&&" unary }
//! unary     := { "!" } primary
//! primary   := has | "all()" | "global()" | "(" or ")"
//!            | label ("==" | "!=" | "contains" | "starts with" | "ends with") string
//!            | label ("in" | "not in") "{" { string [ "," ] } "}"
//! ```
//!
//! Recursion only happens through `(`; every `(` and every `!` counts one level of nesting and
//! more than `MAX_DEPTH` levels on one path is an error, so neither parsing nor the evaluation
//! and printing of the resulting tree can exhaust the stack.

use super::ast::Node;
use super::error::SelectorError;
use super::token::{shown, Kind, Lexer, Op, Token};

/// Most `(` and `!` that may enclose any part of a selector.
pub const MAX_DEPTH: usize = 128;

/// The levels of `(` and `!` of `node`'s canonical form (`canonical`) on its deepest path. The
/// tree is at most about twice as deep as the parser allows, so the recursion is bounded.
fn canonical_depth(node: &Node) -> usize {
    match node {
        Node::Not(inner) => 1 + canonical_depth(inner),
        Node::And(operands) | Node::Or(operands) => {
            1 + operands.iter().map(canonical_depth).max().unwrap_or(0)
        }
        _ => 0,
    }
}

pub(crate) fn parse(text: &str) -> Result<Node, SelectorError> {
    let mut parser = Parser {
        lexer: Lexer::new(text),
        peeked: None,
    };
    if matches!(parser.peek()?, Kind::End) {
        return Ok(Node::All);
    }
    let node = parser.or(0)?;
    let next = parser.next()?;
    match next.kind {
        // The canonical form puts every `&&`/`||` chain in parentheses, so it can be nested
        // deeper than the text was: a selector whose canonical form would not parse is refused.
        Kind::End if canonical_depth(&node) > MAX_DEPTH => Err(SelectorError::new(
            0,
            format!(
                "selector nested too deeply: its canonical form has more than {MAX_DEPTH} \
                 levels of '(' and '!'"
            ),
        )),
        Kind::End => Ok(node),
        other => Err(SelectorError::new(
            next.pos,
            format!(
                "expected '&&', '||' or end of input, found {}",
                other.describe()
            ),
        )),
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token<'a>>,
}

fn too_deep(pos: usize) -> SelectorError {
    SelectorError::new(
        pos,
        format!("selector nested too deeply: more than {MAX_DEPTH} levels of '(' and '!'"),
    )
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Result<Token<'a>, SelectorError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    fn peek(&mut self) -> Result<&Kind<'a>, SelectorError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lexer.next_token()?,
        };
        Ok(&self.peeked.insert(token).kind)
    }

    fn or(&mut self, depth: usize) -> Result<Node, SelectorError> {
        let mut operands = vec![self.and(depth)?];
        while matches!(self.peek()?, Kind::Or) {
            self.next()?;
            operands.push(self.and(depth)?);
        }
        Ok(Node::or(operands))
    }

    fn and(&mut self, depth: usize) -> Result<Node, SelectorError> {
        let mut operands = vec![self.unary(depth)?];
        while matches!(self.peek()?, Kind::And) {
            self.next()?;
            operands.push(self.unary(depth)?);
        }
        Ok(Node::and(operands))
    }

    fn unary(&mut self, mut depth: usize) -> Result<Node, SelectorError> {
        let mut negated = false;
        while matches!(self.peek()?, Kind::Not) {
            let not = self.next()?;
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(too_deep(not.pos));
            }
            negated = !negated;
        }
        let node = self.primary(depth)?;
        Ok(if negated { node.negate() } else { node })
    }

    fn primary(&mut self, depth: usize) -> Result<Node, SelectorError> {
        let token = self.next()?;
        match token.kind {
            Kind::Has(label) => Ok(Node::Has(label.into())),
            Kind::All => Ok(Node::All),
            Kind::Global => Ok(Node::Global),
            Kind::LParen => {
                if depth + 1 > MAX_DEPTH {
                    return Err(too_deep(token.pos));
                }
                let inner = self.or(depth + 1)?;
                let close = self.next()?;
                match close.kind {
                    Kind::RParen => Ok(inner),
                    other => Err(SelectorError::new(
                        close.pos,
                        format!(
                            "expected ')' to close '(' at position {}, found {}",
                            token.pos,
                            other.describe()
                        ),
                    )),
                }
            }
            Kind::Label { label, op } => match op? {
                Op::Compare(op) => {
                    let value = self.next()?;
                    match value.kind {
                        Kind::Str(value) => Ok(Node::Compare {
                            label: label.into(),
                            op,
                            value: value.into(),
                        }),
                        other => Err(SelectorError::new(
                            value.pos,
                            format!(
                                "expected a quoted string after '{} {}', found {}",
                                shown(label),
                                op.as_str(),
                                other.describe()
                            ),
                        )),
                    }
                }
                Op::In => self.set(label, false),
                Op::NotIn => self.set(label, true),
            },
            Kind::Str(_) => Err(SelectorError::new(
                token.pos,
                format!(
                    "expected a label, has(), all(), global(), '!' or '(', found {} \
                     (a quoted value must follow a label and an operator)",
                    token.kind.describe()
                ),
            )),
            other => Err(SelectorError::new(
                token.pos,
                format!(
                    "expected a label, has(), all(), global(), '!' or '(', found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// `{ "a", "b" }` after `label in` / `label not in`.
    fn set(&mut self, label: &str, negated: bool) -> Result<Node, SelectorError> {
        let op = if negated { "not in" } else { "in" };
        let open = self.next()?;
        if open.kind != Kind::LBrace {
            return Err(SelectorError::new(
                open.pos,
                format!(
                    "expected '{{' after '{} {op}', found {}",
                    shown(label),
                    open.kind.describe()
                ),
            ));
        }
        let mut members: Vec<Box<str>> = Vec::new();
        loop {
            let token = self.next()?;
            match token.kind {
                Kind::RBrace => break,
                Kind::Str(member) => {
                    members.push(member.into());
                    let after = self.next()?;
                    match after.kind {
                        Kind::Comma => {}
                        Kind::RBrace => break,
                        other => {
                            return Err(SelectorError::new(
                                after.pos,
                                format!(
                                    "expected ',' or '}}' after a set member, found {}",
                                    other.describe()
                                ),
                            ))
                        }
                    }
                }
                other => {
                    return Err(SelectorError::new(
                        token.pos,
                        format!(
                            "expected a quoted string or '}}' in the set opened at position {}, \
                             found {}",
                            open.pos,
                            other.describe()
                        ),
                    ))
                }
            }
        }
        Ok(Node::set(label, members, negated))
    }
}

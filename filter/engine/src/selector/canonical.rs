//! The canonical string form (spec section 6, "Canonical form").
//!
//! `label == "v"` (likewise `!=`, `contains`, `starts with`, `ends with`), quoted with `'` when
//! the value contains `"`; `label in {"a", "b"}` / `label not in {...}` with members sorted and
//! de-duplicated; `has(label)`, `all()`, `global()`; `!` + operand; `&&`/`||` chains of two or
//! more operands in parentheses, nested groups kept. The empty selector prints as `all()`.

use std::fmt::{self, Display, Formatter, Write};

use super::ast::Node;

/// Writes `value` as a string literal. A value never contains both quote characters (the
/// language has no escapes), so the result always parses back to `value`.
fn write_quoted(f: &mut Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    f.write_char(quote)?;
    f.write_str(value)?;
    f.write_char(quote)
}

fn write_chain(f: &mut Formatter<'_>, operands: &[Node], joiner: &str) -> fmt::Result {
    f.write_char('(')?;
    for (i, operand) in operands.iter().enumerate() {
        if i > 0 {
            f.write_str(joiner)?;
        }
        Display::fmt(operand, f)?;
    }
    f.write_char(')')
}

impl Display for Node {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Node::All => f.write_str("all()"),
            Node::Global => f.write_str("global()"),
            Node::Has(label) => write!(f, "has({label})"),
            Node::Compare { label, op, value } => {
                write!(f, "{label} {} ", op.as_str())?;
                write_quoted(f, value)
            }
            Node::In {
                label,
                members,
                negated,
            } => {
                let op = if *negated { "not in" } else { "in" };
                write!(f, "{label} {op} {{")?;
                for (i, member) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, member)?;
                }
                f.write_char('}')
            }
            Node::Not(inner) => {
                f.write_char('!')?;
                Display::fmt(inner, f)
            }
            Node::And(operands) => write_chain(f, operands, " && "),
            Node::Or(operands) => write_chain(f, operands, " || "),
        }
    }
}

//! Calico's label selector language (the project's semantics, section 6: Calico's tokenizer and parser).
//!
//! * `token`: the tokenizer (bytes in, tokens with byte positions out).
//! * `parse`: the recursive-descent parser with a nesting limit.
//! * `ast`: the compact syntax tree and its allocation-free evaluation.
//! * `canonical`: the canonical string form (`Display`).
//! * `error`, `labels`: [`SelectorError`] and [`LabelSource`], which the parts share.
//!
//! ```
//! use alp_engine::selector::Selector;
//! use std::collections::BTreeMap;
//!
//! let sel = Selector::parse("app == 'web' && tier in {'a', \"b\"}").unwrap();
//! let labels: BTreeMap<String, String> =
//!     [("app".to_string(), "web".to_string()), ("tier".to_string(), "b".to_string())].into();
//! assert!(sel.matches(&labels));
//! assert_eq!(sel.to_string(), r#"(app == "web" && tier in {"a", "b"})"#);
//! ```

mod ast;
mod canonical;
mod error;
mod labels;
mod parse;
mod token;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use ast::Node;

pub use error::SelectorError;
pub use labels::LabelSource;
pub use parse::MAX_DEPTH;
pub use token::MAX_LABEL_LEN;

/// A parsed selector. Equality is structural on the parsed form, so selectors with the same
/// canonical string compare equal (`a == 'x'` equals `a == "x"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    root: Node,
}

impl Selector {
    /// Parses `text`. Empty or whitespace-only text is `all()`.
    ///
    /// # Errors
    ///
    /// A [`SelectorError`] naming the byte position and the problem when `text` is not a valid
    /// selector, including labels longer than [`MAX_LABEL_LEN`] and nesting deeper than
    /// [`MAX_DEPTH`].
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        parse::parse(text).map(|root| Selector { root })
    }

    /// Evaluates the selector against a label map. Never allocates.
    #[must_use]
    pub fn matches<L: LabelSource + ?Sized>(&self, labels: &L) -> bool {
        self.root.eval(labels)
    }

    /// True when the selector is `all()` or `global()` at the top (including the empty
    /// selector), i.e. it matches every label map.
    #[must_use]
    pub fn is_all(&self) -> bool {
        matches!(self.root, Node::All | Node::Global)
    }
}

impl fmt::Display for Selector {
    /// The canonical form (spec section 6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.root, f)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

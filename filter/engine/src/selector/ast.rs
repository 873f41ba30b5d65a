//! The parsed form of a selector and its evaluation.
//!
//! The tree is kept in a normal form so that the canonical string is a fixed point of
//! parse + print: `Not` never wraps another `Not` (an even count of `!` cancels), `And`/`Or`
//! always have at least two operands, and set members are sorted byte-wise without duplicates.
//! Evaluation walks the tree without allocating; set membership is a binary search.

use super::labels::LabelSource;

/// The comparison operators taking a single string operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

impl CompareOp {
    /// The operator as written in the canonical form.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Contains => "contains",
            CompareOp::StartsWith => "starts with",
            CompareOp::EndsWith => "ends with",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// `all()`, also the empty selector.
    All,
    /// `global()`.
    Global,
    /// `has(label)`.
    Has(Box<str>),
    /// `label <op> "value"`.
    Compare {
        label: Box<str>,
        op: CompareOp,
        value: Box<str>,
    },
    /// `label in {...}` (`negated`: `label not in {...}`). `members` is sorted and de-duplicated.
    In {
        label: Box<str>,
        members: Box<[Box<str>]>,
        negated: bool,
    },
    /// `!operand`; never directly wraps another `Not`.
    Not(Box<Node>),
    /// `(a && b && ...)`, two or more operands.
    And(Box<[Node]>),
    /// `(a || b || ...)`, two or more operands.
    Or(Box<[Node]>),
}

impl Node {
    /// Builds a set test, normalising the members (sorted byte-wise, de-duplicated).
    pub(crate) fn set(label: &str, mut members: Vec<Box<str>>, negated: bool) -> Node {
        members.sort_unstable();
        members.dedup();
        Node::In {
            label: label.into(),
            members: members.into_boxed_slice(),
            negated,
        }
    }

    /// The negation of `self`; `!!x` is `x`.
    pub(crate) fn negate(self) -> Node {
        match self {
            Node::Not(inner) => *inner,
            other => Node::Not(Box::new(other)),
        }
    }

    /// A conjunction; a single operand stands alone.
    pub(crate) fn and(mut operands: Vec<Node>) -> Node {
        if operands.len() == 1 {
            if let Some(only) = operands.pop() {
                return only;
            }
        }
        Node::And(operands.into_boxed_slice())
    }

    /// A disjunction; a single operand stands alone.
    pub(crate) fn or(mut operands: Vec<Node>) -> Node {
        if operands.len() == 1 {
            if let Some(only) = operands.pop() {
                return only;
            }
        }
        Node::Or(operands.into_boxed_slice())
    }

    /// Evaluates against `labels`. Recursion depth is bounded by the parser's nesting limit.
    pub(crate) fn eval<L: LabelSource + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Node::All | Node::Global => true,
            Node::Has(label) => labels.label(label).is_some(),
            Node::Compare { label, op, value } => match (labels.label(label), op) {
                (None, CompareOp::Ne) => true,
                (None, _) => false,
                (Some(v), CompareOp::Eq) => v == &**value,
                (Some(v), CompareOp::Ne) => v != &**value,
                (Some(v), CompareOp::Contains) => v.contains(&**value),
                (Some(v), CompareOp::StartsWith) => v.starts_with(&**value),
                (Some(v), CompareOp::EndsWith) => v.ends_with(&**value),
            },
            Node::In {
                label,
                members,
                negated,
            } => {
                let found = labels
                    .label(label)
                    .is_some_and(|v| members.binary_search_by(|m| (**m).cmp(v)).is_ok());
                found != *negated
            }
            Node::Not(inner) => !inner.eval(labels),
            Node::And(operands) => operands.iter().all(|n| n.eval(labels)),
            Node::Or(operands) => operands.iter().any(|n| n.eval(labels)),
        }
    }
}

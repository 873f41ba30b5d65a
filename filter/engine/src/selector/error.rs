//! Why a selector was rejected.

/// Why a selector was rejected. `position` is the byte offset in the input where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

impl SelectorError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        SelectorError {
            position,
            message: message.into(),
        }
    }
}

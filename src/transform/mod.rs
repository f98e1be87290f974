//! The message pipeline: small transforms, each a plain function of one
//! message that returns a message or refuses it, run in the order given by
//! `--transforms`.
//!
//! The POST handler calls [`Pipeline::apply`] exactly once, before the message
//! is published and stored; nothing else in the crate changes message text.
//! Because a pipeline is plain data and functions, it runs the same over a
//! `Vec` in a test as over live traffic.

use std::fmt;

use crate::message::Span;

/// The text of a message on its way through the pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Draft {
    /// The message text.
    pub text: String,
    /// Code spans, set by the `code` transform when the text holds code.
    pub spans: Option<Vec<Span>>,
}

impl Draft {
    /// A draft of plain text with no spans.
    pub fn new(text: impl Into<String>) -> Self {
        Draft {
            text: text.into(),
            spans: None,
        }
    }
}

/// A transform's refusal of a message: answered with `422`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The transform that refused.
    pub transform: &'static str,
    /// Why, in words a user understands.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.transform, self.reason)
    }
}

/// An ordered list of transforms.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {}

impl Pipeline {
    /// A pipeline that passes every message through unchanged.
    pub fn none() -> Self {
        Pipeline {}
    }

    /// Runs every transform in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::transform::{Draft, Pipeline};
    ///
    /// let out = Pipeline::none().apply(Draft::new("hi")).unwrap();
    /// assert_eq!(out.text, "hi");
    /// ```
    pub fn apply(&self, draft: Draft) -> Result<Draft, Refusal> {
        Ok(draft)
    }
}

//! The encoded text frame every outbox carries.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// How many other wire forms a frame can keep (see [`TextFrame::form`]).
pub const FORMS: usize = 4;

/// One encoded server message (a JSON reply or broadcast frame), shared by reference: a
/// broadcast is encoded once per channel identifier and the same frame is queued in every
/// subscriber's outbox, so a clone is one reference-count increment. Always valid UTF-8, so
/// the WebSocket writer takes its bytes and the SSE writer its text without checks.
#[derive(Clone)]
pub struct TextFrame(Arc<Inner>);

struct Inner {
    text: Box<str>,
    /// Other forms of the same message (the SSE events of each stream format), made by
    /// the first writer that needs one and then shared like the text: a broadcast is encoded
    /// once per form, not once per recipient.
    forms: [OnceLock<Box<str>>; FORMS],
}

impl TextFrame {
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// The frame's form number `index` (< [`FORMS`]), made with `make` on first use. The caller
    /// owns the numbering: the same index must always be made the same way.
    pub fn form(&self, index: usize, make: impl FnOnce(&str) -> String) -> &str {
        self.0.forms[index].get_or_init(|| make(&self.0.text).into_boxed_str())
    }
}

impl Deref for TextFrame {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0.text
    }
}

impl PartialEq for TextFrame {
    fn eq(&self, other: &TextFrame) -> bool {
        self.0.text == other.0.text
    }
}

impl Eq for TextFrame {}

impl From<String> for TextFrame {
    fn from(text: String) -> TextFrame {
        TextFrame(Arc::new(Inner {
            text: text.into_boxed_str(),
            forms: Default::default(),
        }))
    }
}

impl From<&str> for TextFrame {
    fn from(text: &str) -> TextFrame {
        TextFrame::from(text.to_string())
    }
}

impl fmt::Debug for TextFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0.text, f)
    }
}

impl fmt::Display for TextFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_made_once_and_shared_by_clones() {
        let frame = TextFrame::from("{}");
        let clone = frame.clone();
        assert_eq!(frame.form(1, |text| format!("data: {text}")), "data: {}");
        assert_eq!(
            clone.form(1, |_| unreachable!("made once")),
            "data: {}",
            "a clone shares the form"
        );
        assert_eq!(frame.form(0, |_| String::new()), "");
        assert_eq!(frame, TextFrame::from("{}"));
    }
}

//! The encoded text frame every outbox carries.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// One encoded server message (a JSON reply or broadcast frame), shared by reference: a
/// broadcast is encoded once per channel identifier and the same frame is queued in every
/// subscriber's outbox, so a clone is one reference-count increment. Always valid UTF-8, so
/// the WebSocket writer takes its bytes and the SSE writer its text without checks.
#[derive(Clone, PartialEq, Eq)]
pub struct TextFrame(Arc<str>);

impl TextFrame {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for TextFrame {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for TextFrame {
    fn from(text: String) -> TextFrame {
        TextFrame(text.into())
    }
}

impl From<&str> for TextFrame {
    fn from(text: &str) -> TextFrame {
        TextFrame(text.into())
    }
}

impl fmt::Debug for TextFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TextFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

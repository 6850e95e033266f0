//! The receive buffer of the benchmark's clients (WebSocket and SSE), with no IO.
//!
//! The clients read large chunks straight into it and their decoders take complete messages
//! from the front, borrowed; what is left (a partial message) stays for the next read.

pub struct ReadBuffer {
    bytes: Vec<u8>,
    /// Start of the first unconsumed byte.
    start: usize,
    /// End of the received bytes.
    end: usize,
}

impl ReadBuffer {
    pub fn with_capacity(capacity: usize) -> ReadBuffer {
        ReadBuffer {
            bytes: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// The free space to read into; moves a partial message to the front first, and grows
    /// the buffer when one message does not fit.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.bytes.len() {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.bytes.len() {
                let doubled = self.bytes.len() * 2;
                self.bytes.resize(doubled, 0);
            }
        }
        &mut self.bytes[self.end..]
    }

    /// Records that `n` bytes were read into [`ReadBuffer::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Appends bytes received outside [`ReadBuffer::spare`] (after the HTTP response head).
    pub fn extend(&mut self, bytes: &[u8]) {
        while self.spare().len() < bytes.len() {
            let doubled = self.bytes.len() * 2;
            self.bytes.resize(doubled, 0);
        }
        self.bytes[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// The received bytes not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Consumes `n` bytes from the front and returns them.
    pub fn take(&mut self, n: usize) -> &[u8] {
        let start = self.start;
        self.start += n;
        &self.bytes[start..self.start]
    }
}

/// Finds `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_partial_message_and_grows_for_a_large_one() {
        let mut buffer = ReadBuffer::with_capacity(4);
        buffer.spare()[..4].copy_from_slice(b"abcd");
        buffer.filled(4);
        assert_eq!(buffer.take(3), b"abc");
        // The partial "d" moves to the front; a full buffer of one partial message doubles.
        assert_eq!(buffer.spare().len(), 3);
        buffer.extend(b"efghij");
        assert_eq!(buffer.pending(), b"defghij");
        assert_eq!(find(buffer.pending(), b"gh"), Some(3));
    }
}

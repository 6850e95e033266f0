//! Benchmark clients over Server-Sent Events: `GET /events?...` on raw HTTP/1.1 from the same
//! loopback source addresses as the WebSocket clients (`client.rs`), events taken from the
//! response body as it arrives.
//!
//! The server streams the body with chunked transfer encoding (its length is unknown), one
//! chunk per batch of events. The chunk framing is removed into a second buffer, where events
//! end with a blank line; each event's lines are handed out as one message, in which the
//! stamp and the `"type":` are found in place as in a WebSocket frame.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::buffer::{find, ReadBuffer};
use crate::client::{expect_type, open, read_into, Message, Receive};

/// A chunk-size line longer than this is not one.
const MAX_SIZE_LINE: usize = 256;

/// An open event stream, subscribed.
pub struct EventStream {
    stream: TcpStream,
    decoder: EventDecoder,
}

/// Requests `path_and_query` (e.g. `/events?stream=bench`) and waits for the welcome and the
/// subscription's confirmation, which the server sends first.
pub async fn subscribe(server: SocketAddr, path_and_query: &str) -> Result<EventStream, String> {
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {server}\r\nAccept: text/event-stream\r\n\r\n"
    );
    let (stream, head, buffer) = open(server, &request, "HTTP/1.1 200")
        .await
        .map_err(|e| format!("SSE request: {e}"))?;
    let mut events = EventStream {
        stream,
        decoder: EventDecoder::new(buffer, is_chunked(&head)),
    };
    expect_type(&mut events, "welcome").await?;
    expect_type(&mut events, "confirm_subscription").await?;
    Ok(events)
}

impl Receive for EventStream {
    async fn receive(&mut self) -> Result<bool, String> {
        read_into(&mut self.stream, &mut self.decoder.raw).await
    }

    fn next_message(&mut self) -> Result<Option<Message<'_>>, String> {
        self.decoder.next_event()
    }
}

/// Whether the response head says `Transfer-Encoding: chunked`.
fn is_chunked(head: &str) -> bool {
    head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    })
}

/// Where the decoder is in the chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A `<hex size>[;extensions]\r\n` line comes next.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(usize),
    /// The `\r\n` after a chunk's data comes next.
    DataEnd,
    /// The last (empty) chunk arrived: the stream is over.
    Last,
}

/// Turns the bytes of a response body into events, with no IO.
struct EventDecoder {
    /// Bytes as received (framed when chunked).
    raw: ReadBuffer,
    /// `None` for a body that is not chunked (it runs until the connection closes).
    chunk: Option<Chunk>,
    /// Body bytes, unframed; complete events at the front.
    events: Vec<u8>,
    /// Start of the first event not handed out yet.
    events_start: usize,
}

impl EventDecoder {
    fn new(raw: ReadBuffer, chunked: bool) -> EventDecoder {
        EventDecoder {
            raw,
            chunk: chunked.then_some(Chunk::Size),
            events: Vec::new(),
            events_start: 0,
        }
    }

    /// The next complete event (its lines, without the blank line that ends it), or
    /// [`Message::Closed`] after the last chunk.
    fn next_event(&mut self) -> Result<Option<Message<'_>>, String> {
        loop {
            // The server ends lines with `\n` alone (src/transport/sse/encoder.rs).
            if let Some(end) = find(&self.events[self.events_start..], b"\n\n") {
                let start = self.events_start;
                self.events_start += end + 2;
                return Ok(Some(Message::Text(&self.events[start..start + end])));
            }
            // What is left is a partial event: keep it, then unframe what arrived since.
            self.events.drain(..self.events_start);
            self.events_start = 0;
            if !self.unframe()? {
                return Ok((self.chunk == Some(Chunk::Last)).then_some(Message::Closed));
            }
        }
    }

    /// Moves the body bytes received so far into `events`; false when there were none.
    fn unframe(&mut self) -> Result<bool, String> {
        let mut added = false;
        loop {
            let pending = self.raw.pending();
            if pending.is_empty() {
                return Ok(added);
            }
            match self.chunk {
                None => {
                    let n = pending.len();
                    self.events.extend_from_slice(self.raw.take(n));
                    added = true;
                }
                Some(Chunk::Size) => {
                    let Some(line_end) = find(pending, b"\r\n") else {
                        if pending.len() > MAX_SIZE_LINE {
                            return Err("chunked body: no chunk-size line".into());
                        }
                        return Ok(added);
                    };
                    let size = parse_chunk_size(&pending[..line_end])?;
                    self.raw.take(line_end + 2);
                    self.chunk = Some(if size == 0 {
                        Chunk::Last
                    } else {
                        Chunk::Data(size)
                    });
                }
                Some(Chunk::Data(left)) => {
                    let n = left.min(pending.len());
                    self.events.extend_from_slice(self.raw.take(n));
                    added = true;
                    self.chunk = Some(if n == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n)
                    });
                }
                Some(Chunk::DataEnd) => {
                    if pending.len() < 2 {
                        return Ok(added);
                    }
                    if !pending.starts_with(b"\r\n") {
                        return Err("chunked body: chunk data not followed by CRLF".into());
                    }
                    self.raw.take(2);
                    self.chunk = Some(Chunk::Size);
                }
                // Trailers, if any, do not matter.
                Some(Chunk::Last) => return Ok(added),
            }
        }
    }
}

/// The hexadecimal size at the start of a chunk-size line (extensions after `;` ignored).
fn parse_chunk_size(line: &[u8]) -> Result<usize, String> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits).unwrap_or_default().trim();
    usize::from_str_radix(digits, 16).map_err(|_| {
        format!(
            "chunked body: bad chunk size {:?}",
            String::from_utf8_lossy(line)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{parse_stamp, Stamp};

    /// What a client makes of `wire` received `step` bytes at a time: the stamps of data
    /// events, the types of the others, and "closed".
    fn decode(wire: &[u8], chunked: bool, step: usize) -> Result<Vec<String>, String> {
        let mut decoder = EventDecoder::new(ReadBuffer::with_capacity(16), chunked);
        let mut seen = Vec::new();
        for piece in wire.chunks(step) {
            decoder.raw.extend(piece);
            while let Some(message) = decoder.next_event()? {
                match message {
                    Message::Text(event) => seen.push(match parse_stamp(event) {
                        Some(Stamp { seq, sent_nanos }) => format!("{seq}@{sent_nanos}"),
                        None => String::from_utf8_lossy(event).into_owned(),
                    }),
                    Message::Closed => {
                        seen.push("closed".into());
                        return Ok(seen);
                    }
                    Message::Other => seen.push("other".into()),
                }
            }
        }
        Ok(seen)
    }

    const WELCOME: &str = "event: welcome\ndata: {\"type\":\"welcome\",\"sid\":\"s\"}";

    fn chunk(data: &str) -> String {
        format!("{:x}\r\n{data}\r\n", data.len())
    }

    #[test]
    fn unframes_chunks_split_anywhere() {
        // As the server sends it: a chunk per batch; here also an event split over two chunks
        // and a chunk extension.
        let first = format!("{WELCOME}\n\ndata: {{\"i\":0,\"t\":17}}\n\n");
        let wire = format!(
            "{}{}{}{}0\r\n\r\n",
            chunk(&first),
            chunk("data: {\"i\":1,"),
            chunk("\"t\":18}\n\nevent: ping\ndata: {\"type\":\"ping\",\"message\":5}\n\n")
                .replacen("\r\n", ";ext=1\r\n", 1),
            chunk("data: {\"i\":12345678901,\"t\":1733462400000000000}\n\n"),
        );
        let expected = [
            WELCOME,
            "0@17",
            "1@18",
            "event: ping\ndata: {\"type\":\"ping\",\"message\":5}",
            "12345678901@1733462400000000000",
            "closed",
        ];
        for step in [1, 2, 3, 7, wire.len()] {
            assert_eq!(
                decode(wire.as_bytes(), true, step).unwrap(),
                expected,
                "{step}"
            );
        }
    }

    #[test]
    fn reads_a_body_that_is_not_chunked() {
        let wire = format!("{WELCOME}\n\ndata: {{\"i\":3,\"t\":4}}\n\ndata: {{\"i\":5,");
        for step in [1, 5, wire.len()] {
            assert_eq!(
                decode(wire.as_bytes(), false, step).unwrap(),
                [WELCOME, "3@4"]
            );
        }
    }

    #[test]
    fn refuses_broken_framing() {
        assert!(decode(b"zz\r\ndata: x\n\n\r\n", true, 64).is_err());
        assert!(decode(b"3\r\nabcd\r\n", true, 64).is_err());
        assert!(decode(&[b'1'; MAX_SIZE_LINE + 1], true, 512).is_err());
    }

    #[test]
    fn finds_chunked_encoding_in_the_head() {
        let head = |header: &str| format!("HTTP/1.1 200 OK\r\n{header}\r\ndate: x\r\n\r\n");
        assert!(is_chunked(&head("transfer-encoding: chunked")));
        assert!(is_chunked(&head("Transfer-Encoding:Chunked")));
        assert!(!is_chunked(&head("content-length: 10")));
        assert!(!is_chunked(&head("x-note: transfer-encoding: chunked")));
    }
}

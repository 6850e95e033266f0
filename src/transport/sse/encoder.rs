//! Encoding of outgoing frames as Server-Sent Events.
//!
//! Every frame reaching an SSE connection is a JSON text exactly as a WebSocket client would
//! get it. Protocol messages (they have a `type`) become `event: <type>` with the whole JSON as
//! data; data messages become an unnamed event whose data is either the `message` value only
//! (GET) or the whole frame (POST), with an `id:` line when the frame carries a stream position.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Write;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::protocol::TextFrame;
use crate::session::{Framer, Outgoing};

/// `retry:` value (one year, in milliseconds) that keeps EventSource from reconnecting after a
/// disconnect that says `reconnect: false`.
pub const NO_RECONNECT_RETRY_MS: u64 = 31_536_000_000;

/// How a connection wants its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Data events carry the whole frame (POST) instead of the `message` value (GET).
    pub full_messages: bool,
    /// Only data events are written (`raw=1`).
    pub raw: bool,
}

/// The fields of a frame that decide its event.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    reconnect: Option<bool>,
}

/// The event of `frame` for `format`, made once per frame and format and then shared by every
/// stream the frame is queued for (a broadcast is encoded once, not once per subscriber).
/// Empty when nothing is written (typed frames in raw mode).
pub fn event(frame: &TextFrame, format: Format) -> &str {
    let form = usize::from(format.full_messages) * 2 + usize::from(format.raw);
    frame.form(form, |text| {
        let mut out = String::new();
        encode(text, format, &mut out);
        out
    })
}

/// The flusher's framing of an event stream in `format` (see [`frame_chunk`]).
pub fn framer(format: Format) -> Framer {
    match (format.full_messages, format.raw) {
        (false, false) => frame_chunk::<false, false>,
        (false, true) => frame_chunk::<false, true>,
        (true, false) => frame_chunk::<true, false>,
        (true, true) => frame_chunk::<true, true>,
    }
}

/// Frames a batch for a chunked HTTP/1.1 response: bytes already framed (handed back by the
/// flusher) as they are, then the events of the text frames up to the first close item as one
/// chunk. The close item and what follows stay in the batch. Returns the events and their bytes.
fn frame_chunk<const FULL: bool, const RAW: bool>(
    batch: &mut VecDeque<Outgoing>,
    out: &mut Vec<u8>,
) -> (u64, u64) {
    let format = Format {
        full_messages: FULL,
        raw: RAW,
    };
    while let Some(Outgoing::Framed(framed)) = batch.front() {
        out.extend_from_slice(framed);
        batch.pop_front();
    }
    let end = batch
        .iter()
        .position(|item| matches!(item, Outgoing::Close { .. }))
        .unwrap_or(batch.len());
    let texts = || {
        batch.iter().take(end).filter_map(|item| match item {
            Outgoing::Text(text) => Some(event(text, format)),
            // Items of WebSocket connections only.
            _ => None,
        })
    };
    let size: usize = texts().map(str::len).sum();
    let mut events = 0;
    if size > 0 {
        // Writing to a vector cannot fail.
        let _ = write!(out, "{size:x}\r\n");
        for event in texts().filter(|event| !event.is_empty()) {
            out.extend_from_slice(event.as_bytes());
            events += 1;
        }
        out.extend_from_slice(b"\r\n");
    }
    batch.drain(..end);
    (events, size as u64)
}

/// Appends the event for one frame to `out` (nothing for typed frames in raw mode).
pub fn encode(frame: &str, format: Format, out: &mut String) {
    let Ok(fields) = serde_json::from_str::<Fields>(frame) else {
        // Not produced by this server; pass it through rather than lose it.
        if !format.raw {
            push_data(out, frame);
            out.push('\n');
        }
        return;
    };
    match fields.kind.as_deref() {
        Some(kind) => {
            if format.raw {
                return;
            }
            out.push_str("event: ");
            out.push_str(kind);
            out.push('\n');
            push_data(out, frame);
        }
        None if format.full_messages => push_data(out, frame),
        None => match fields.message {
            Some(message) => push_message(out, message.get()),
            None => push_data(out, frame),
        },
    }
    if let (Some(offset), Some(epoch), Some(stream)) = (
        fields.offset.filter(|o| *o > 0),
        fields.epoch.as_deref().filter(|e| !e.is_empty()),
        fields.stream_id.as_deref().filter(|s| !s.is_empty()),
    ) {
        out.push_str(&format!("id: {offset}/{epoch}/{stream}\n"));
    }
    if fields.kind.as_deref() == Some("disconnect") && fields.reconnect == Some(false) {
        out.push_str(&format!("retry: {NO_RECONNECT_RETRY_MS}\n"));
    }
    out.push('\n');
}

/// The `message` of a data frame: a string is written as its raw text, anything else as
/// compact JSON.
fn push_message(out: &mut String, json: &str) {
    if json.starts_with('"') {
        if let Ok(text) = serde_json::from_str::<Cow<str>>(json) {
            push_data(out, &text);
            return;
        }
    }
    push_data(out, &compact_json(json));
}

/// One `data: ` line per line of `payload`; CR, LF and CRLF all end a line.
fn push_data(out: &mut String, payload: &str) {
    let mut rest = payload;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.push_str("data: ");
        out.push_str(&rest[..end]);
        out.push('\n');
        if end == rest.len() {
            return;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
}

/// Removes insignificant whitespace from valid JSON text (publishers may send pretty-printed
/// JSON, which the server passes through as is).
fn compact_json(json: &str) -> Cow<'_, str> {
    if !json.contains([' ', '\n', '\r', '\t']) {
        return Cow::Borrowed(json);
    }
    let mut compact = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            compact.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            compact.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            compact.push(c);
        }
    }
    Cow::Owned(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Format = Format {
        full_messages: false,
        raw: false,
    };
    const POST: Format = Format {
        full_messages: true,
        raw: false,
    };
    const RAW: Format = Format {
        full_messages: false,
        raw: true,
    };

    fn event(frame: &str, format: Format) -> String {
        let mut out = String::new();
        encode(frame, format, &mut out);
        out
    }

    #[test]
    fn batches_become_one_chunk_of_shared_events() {
        let welcome = TextFrame::from(r#"{"type":"welcome"}"#);
        let data = TextFrame::from(r#"{"identifier":"x","message":"hi"}"#);
        let mut batch = VecDeque::from([
            Outgoing::Framed(bytes::Bytes::from_static(b"2\r\nab\r\n")),
            Outgoing::Text(welcome.clone()),
            Outgoing::Text(data.clone()),
            Outgoing::Close {
                code: 1000,
                reason: "",
            },
            Outgoing::Text(data.clone()),
        ]);
        let mut out = Vec::new();
        assert_eq!(framer(RAW)(&mut batch, &mut out), (1, 10));
        assert_eq!(out, b"2\r\nab\r\na\r\ndata: hi\n\n\r\n");
        assert_eq!(batch.len(), 2, "the close item and what follows are left");
        // The events were made once per format and are shared by the frame's clones.
        assert_eq!(super::event(&data, RAW), "data: hi\n\n");
        assert_eq!(super::event(&welcome, RAW), "");
        assert_eq!(
            super::event(&welcome.clone(), GET),
            "event: welcome\ndata: {\"type\":\"welcome\"}\n\n"
        );
        let mut out = Vec::new();
        let mut only_typed = VecDeque::from([Outgoing::Text(welcome)]);
        assert_eq!(framer(RAW)(&mut only_typed, &mut out), (0, 0));
        assert!(out.is_empty(), "no empty chunk: it would end the response");
    }

    #[test]
    fn protocol_messages_are_named_events() {
        let welcome = r#"{"type":"welcome","sid":"abc"}"#;
        assert_eq!(
            event(welcome, GET),
            "event: welcome\ndata: {\"type\":\"welcome\",\"sid\":\"abc\"}\n\n"
        );
        assert_eq!(event(welcome, POST), event(welcome, GET));
        assert_eq!(event(welcome, RAW), "");
        assert_eq!(
            event(r#"{"type":"ping","message":17}"#, GET),
            "event: ping\ndata: {\"type\":\"ping\",\"message\":17}\n\n"
        );
    }

    #[test]
    fn disconnect_without_reconnect_sets_retry() {
        let frame = r#"{"type":"disconnect","reason":"remote","reconnect":false}"#;
        assert_eq!(
            event(frame, GET),
            format!("event: disconnect\ndata: {frame}\nretry: 31536000000\n\n")
        );
        let frame = r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#;
        assert_eq!(
            event(frame, GET),
            format!("event: disconnect\ndata: {frame}\n\n")
        );
        assert_eq!(event(frame, RAW), "");
    }

    #[test]
    fn get_data_events_carry_the_message_only() {
        assert_eq!(
            event(
                r#"{"identifier":"x","message":{"text": "a b",  "n":[1, 2]}}"#,
                GET
            ),
            "data: {\"text\":\"a b\",\"n\":[1,2]}\n\n"
        );
        assert_eq!(
            event(r#"{"identifier":"x","message":"Hello \"you\""}"#, GET),
            "data: Hello \"you\"\n\n"
        );
        assert_eq!(
            event(r#"{"identifier":"x","message":42}"#, RAW),
            "data: 42\n\n"
        );
        assert_eq!(
            event(r#"{"identifier":"x","message":""}"#, GET),
            "data: \n\n"
        );
    }

    #[test]
    fn line_breaks_split_data_lines() {
        let frame = serde_json::json!({"identifier":"x","message":"a\nb\r\nc\rd\n"}).to_string();
        assert_eq!(
            event(&frame, GET),
            "data: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
    }

    #[test]
    fn positions_become_ids() {
        let frame =
            r#"{"identifier":"x","message":"hi","stream_id":"a/b","epoch":"ep","offset":3}"#;
        assert_eq!(event(frame, GET), "data: hi\nid: 3/ep/a/b\n\n");
        assert_eq!(
            event(frame, POST),
            format!("data: {frame}\nid: 3/ep/a/b\n\n")
        );
        let unstored = r#"{"identifier":"x","message":"hi","stream_id":"a","epoch":"","offset":0}"#;
        assert_eq!(event(unstored, GET), "data: hi\n\n");
    }

    #[test]
    fn typed_data_messages_are_named_events() {
        let frame = r#"{"type":"presence","identifier":"x","message":{"type":"join"}}"#;
        assert_eq!(
            event(frame, GET),
            format!("event: presence\ndata: {frame}\n\n")
        );
        assert_eq!(event(frame, RAW), "");
    }
}

//! Server-to-client WebSocket framing (RFC 6455, section 5.2), with no IO.
//!
//! The writer frames every message of a batch straight into one buffer, so a batch leaves the
//! server with one write.

use std::collections::VecDeque;

use crate::session::Outgoing;

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// Frames queued items into `out`, up to the first close frame, which is left in `batch` with
/// whatever follows it. Returns how many text frames and payload bytes were framed.
pub fn frame_items(batch: &mut VecDeque<Outgoing>, out: &mut Vec<u8>) -> (u64, u64) {
    let (mut frames, mut bytes) = (0, 0);
    while let Some(item) = batch.front() {
        match item {
            Outgoing::Text(text) => {
                frames += 1;
                bytes += text.len() as u64;
                append_text_frame(text.as_bytes(), out);
            }
            Outgoing::Ping => append_frame(OP_PING, &[], out),
            Outgoing::Pong(payload) => append_frame(OP_PONG, payload, out),
            Outgoing::Framed(framed) => out.extend_from_slice(framed),
            Outgoing::Close { .. } => break,
        }
        batch.pop_front();
    }
    (frames, bytes)
}

/// Appends an unmasked, final text frame carrying `payload` to `out`.
pub fn append_text_frame(payload: &[u8], out: &mut Vec<u8>) {
    append_frame(OP_TEXT, payload, out);
}

/// Appends an unmasked, final frame to `out`.
pub fn append_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    const FIN: u8 = 0x80;
    let len = payload.len();
    out.push(FIN | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with a status code and a reason (at most 123 bytes, as control frames
/// carry at most 125).
pub fn append_close_frame(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    append_frame(OP_CLOSE, &payload, out);
}

/// Bytes [`append_text_frame`] writes for a payload of `len` bytes.
pub fn text_frame_len(len: usize) -> usize {
    let header = match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    header + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};

    /// The bytes tungstenite itself writes for the same message.
    fn reference(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true)
            .format(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn matches_tungstenite_for_every_length_class() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload = vec![b'a'; len];
            let mut out = Vec::new();
            append_text_frame(&payload, &mut out);
            assert_eq!(out, reference(&payload), "length {len}");
            assert_eq!(out.len(), text_frame_len(len));
        }
    }

    #[test]
    fn close_frames_match_tungstenite() {
        let mut out = Vec::new();
        append_close_frame(1001, "Server restart", &mut out);
        let mut expected = Vec::new();
        Frame::close(Some(CloseFrame {
            code: 1001.into(),
            reason: "Server restart".into(),
        }))
        .format(&mut expected)
        .unwrap();
        assert_eq!(out, expected);
    }
}

//! Client-to-server WebSocket frames (RFC 6455, section 5), with no IO.
//!
//! The decoder takes complete frames off the front of the connection's read buffer, unmasks them
//! in place and hands out their payloads without copying; fragmented messages are assembled up
//! to the message size limit.

use bytes::{Buf, Bytes, BytesMut};

/// A complete message from the client.
#[derive(Debug, PartialEq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The client's close frame, with its status code when it gave one.
    Close(Option<u16>),
}

/// Why the client's bytes cannot be read; each maps to the close code sent back.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooBig { size: u64, max: usize },
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
}

impl DecodeError {
    /// The close frame to answer with.
    pub fn close(&self) -> (u16, &'static str) {
        match self {
            DecodeError::Protocol(_) => (1002, "Protocol Error"),
            DecodeError::TooBig { .. } => (1009, "Message Too Big"),
            DecodeError::InvalidUtf8 => (1007, "Invalid UTF-8"),
        }
    }
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Header bytes, mask included.
    len: usize,
    payload_len: u64,
}

/// A fragmented message being assembled.
struct Fragments {
    text: bool,
    data: BytesMut,
}

pub struct Decoder {
    max_message: usize,
    fragments: Option<Fragments>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            fragments: None,
        }
    }

    /// Takes the next complete message off the front of `buffer`; `None` when more bytes are
    /// needed (a partial frame stays in `buffer`).
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        loop {
            let Some(header) = parse_header(buffer)? else {
                return Ok(None);
            };
            let assembled = self.fragments.as_ref().map_or(0, |f| f.data.len() as u64);
            let size = assembled.saturating_add(header.payload_len);
            if header.opcode < OP_CLOSE && size > self.max_message as u64 {
                return Err(DecodeError::TooBig {
                    size,
                    max: self.max_message,
                });
            }
            // The size check above bounds payload_len for data frames, parse_header for control
            // frames, so this cannot truncate.
            let frame_len = header.len + header.payload_len as usize;
            if buffer.len() < frame_len {
                return Ok(None);
            }
            let mut payload = buffer.split_to(frame_len);
            payload.advance(header.len);
            unmask(&mut payload, header.mask);
            if let Some(message) = self.frame(header.fin, header.opcode, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// Handles one unmasked frame; returns a message when it completes one.
    fn frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: BytesMut,
    ) -> Result<Option<Message>, DecodeError> {
        match opcode {
            OP_TEXT | OP_BINARY if self.fragments.is_some() => Err(DecodeError::Protocol(
                "new data frame before the fragmented message ended",
            )),
            OP_TEXT | OP_BINARY if !fin => {
                self.fragments = Some(Fragments {
                    text: opcode == OP_TEXT,
                    data: payload,
                });
                Ok(None)
            }
            OP_TEXT | OP_BINARY => data_message(opcode == OP_TEXT, payload).map(Some),
            OP_CONTINUATION => {
                let fragments = self
                    .fragments
                    .as_mut()
                    .ok_or(DecodeError::Protocol("continuation without a message"))?;
                fragments.data.extend_from_slice(&payload);
                if !fin {
                    return Ok(None);
                }
                let Fragments { text, data } = self.fragments.take().expect("checked above");
                data_message(text, data).map(Some)
            }
            OP_CLOSE => close_message(&payload).map(Some),
            OP_PING => Ok(Some(Message::Ping(payload.freeze()))),
            OP_PONG => Ok(Some(Message::Pong)),
            _ => Err(DecodeError::Protocol("unknown opcode")),
        }
    }
}

fn data_message(text: bool, payload: BytesMut) -> Result<Message, DecodeError> {
    if !text {
        return Ok(Message::Binary(payload.freeze()));
    }
    std::str::from_utf8(&payload).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(Message::Text(payload.freeze()))
}

fn close_message(payload: &[u8]) -> Result<Message, DecodeError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(DecodeError::Protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(DecodeError::Protocol("invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| DecodeError::InvalidUtf8)?;
            Ok(Message::Close(Some(code)))
        }
    }
}

/// Codes a peer may send (RFC 6455, section 7.4).
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

fn parse_header(bytes: &[u8]) -> Result<Option<Header>, DecodeError> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(DecodeError::Protocol(
            "reserved bits set without an extension",
        ));
    }
    if second & 0x80 == 0 {
        return Err(DecodeError::Protocol("client frame is not masked"));
    }
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0f;
    let (length_len, payload_len) = match second & 0x7f {
        126 => match bytes.get(2..4) {
            Some(len) => (2, u64::from(u16::from_be_bytes([len[0], len[1]]))),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(len) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(len);
                (8, u64::from_be_bytes(be))
            }
            None => return Ok(None),
        },
        short => (0, u64::from(short)),
    };
    if opcode >= OP_CLOSE && (!fin || payload_len > 125) {
        return Err(DecodeError::Protocol(
            "control frame fragmented or over 125 bytes",
        ));
    }
    let mask_at = 2 + length_len;
    let Some(mask) = bytes.get(mask_at..mask_at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        len: mask_at + 4,
        payload_len,
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            0..=125 => out.push(0x80 | payload.len() as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    fn decode_all(wire: &[u8], max: usize) -> Result<Vec<Message>, DecodeError> {
        let mut decoder = Decoder::new(max);
        let mut buffer = BytesMut::new();
        let mut messages = Vec::new();
        // One byte at a time: every partial state must wait for more.
        for byte in wire {
            buffer.extend_from_slice(&[*byte]);
            while let Some(message) = decoder.decode(&mut buffer)? {
                messages.push(message);
            }
        }
        assert!(buffer.is_empty());
        Ok(messages)
    }

    #[test]
    fn decodes_messages_of_every_length_class() {
        let medium = vec![b'm'; 300];
        let long = vec![b'l'; 70_000];
        let mut wire = client_frame(0x81, b"hello");
        wire.extend(client_frame(0x82, &medium));
        wire.extend(client_frame(0x81, &long));
        assert_eq!(
            decode_all(&wire, 100_000).unwrap(),
            [
                Message::Text(Bytes::from_static(b"hello")),
                Message::Binary(Bytes::from(medium)),
                Message::Text(Bytes::from(long)),
            ]
        );
    }

    #[test]
    fn assembles_fragments_around_a_ping() {
        let mut wire = client_frame(0x01, b"hel");
        wire.extend(client_frame(0x89, b"p"));
        wire.extend(client_frame(0x80, b"lo"));
        wire.extend(client_frame(0x8a, b""));
        wire.extend(client_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']));
        assert_eq!(
            decode_all(&wire, 100).unwrap(),
            [
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(Bytes::from_static(b"hello")),
                Message::Pong,
                Message::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn refuses_what_the_rfc_forbids() {
        let cases: [(Vec<u8>, u16); 7] = [
            (vec![0x81, 0x01, b'x'], 1002),            // unmasked
            (client_frame(0xc1, b"x"), 1002),          // RSV1 without an extension
            (client_frame(0x83, b"x"), 1002),          // reserved opcode
            (client_frame(0x80, b"x"), 1002),          // continuation of nothing
            (client_frame(0x09, b"x"), 1002),          // fragmented control frame
            (client_frame(0x81, &[0xff, 0xfe]), 1007), // invalid UTF-8
            (client_frame(0x88, &[0x03, 0xee]), 1002), // close code 1006 is reserved
        ];
        for (wire, code) in cases {
            let error = decode_all(&wire, 100).unwrap_err();
            assert_eq!(error.close().0, code, "{error}");
        }
    }

    #[test]
    fn refuses_messages_over_the_limit_from_the_header() {
        let mut decoder = Decoder::new(10);
        let mut buffer = BytesMut::from(&client_frame(0x81, &[b'a'; 11])[..8]);
        assert_eq!(
            decoder.decode(&mut buffer),
            Err(DecodeError::TooBig { size: 11, max: 10 })
        );
        let mut wire = client_frame(0x01, &[b'a'; 6]);
        wire.extend(client_frame(0x80, &[b'a'; 6]));
        assert_eq!(
            decode_all(&wire, 10).unwrap_err(),
            DecodeError::TooBig { size: 12, max: 10 }
        );
    }
}

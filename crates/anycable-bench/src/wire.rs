//! Just enough WebSocket framing for the benchmark's clients, with no IO.
//!
//! The load generator shares the machine's cores with the server, so its clients must cost far
//! less per received frame than the server does per sent one: they read large chunks, find frame
//! boundaries from the headers, and hand out borrowed payloads without copying or allocating.

use crate::buffer::ReadBuffer;

/// Opcodes the benchmark cares about (RFC 6455, section 5.2).
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_CLOSE: u8 = 0x8;

/// The mask clients must apply (RFC 6455 requires one; its value does not matter here).
const MASK: [u8; 4] = [0x5a, 0xa5, 0x3c, 0xc3];

/// One complete frame in the buffer.
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Appends a masked client text frame carrying `text` to `out`.
pub fn encode_client_text(text: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | OPCODE_TEXT);
    let len = text.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(text.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// Where the next frame starts and how long it is, when its header is complete.
struct Header {
    header_len: usize,
    payload_len: usize,
    opcode: u8,
}

fn parse_header(bytes: &[u8]) -> Result<Option<Header>, String> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err("the server sent a masked frame".into());
    }
    let (header_len, payload_len) = match second & 0x7f {
        126 => match bytes.get(2..4) {
            Some(len) => (4, u16::from_be_bytes([len[0], len[1]]) as usize),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(len) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(len);
                (10, u64::from_be_bytes(be) as usize)
            }
            None => return Ok(None),
        },
        short => (2, short as usize),
    };
    Ok(Some(Header {
        header_len,
        payload_len,
        opcode: first & 0x0f,
    }))
}

/// The next complete frame in `buffer`, consumed; `None` when more bytes are needed.
pub fn next_frame(buffer: &mut ReadBuffer) -> Result<Option<Frame<'_>>, String> {
    let buffered = buffer.pending();
    let Some(header) = parse_header(buffered)? else {
        return Ok(None);
    };
    let frame_len = header.header_len + header.payload_len;
    if buffered.len() < frame_len {
        return Ok(None);
    }
    Ok(Some(Frame {
        opcode: header.opcode,
        payload: &buffer.take(frame_len)[header.header_len..],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x81];
        if payload.len() < 126 {
            out.push(payload.len() as u8);
        } else {
            out.push(126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn yields_frames_split_across_reads() {
        let long = vec![b'x'; 300];
        let mut wire = server_frame(b"hello");
        wire.extend(server_frame(&long));
        let mut buffer = ReadBuffer::with_capacity(8);
        let mut seen = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let spare = buffer.spare();
            let n = spare.len().min(rest.len()).min(5);
            spare[..n].copy_from_slice(&rest[..n]);
            buffer.filled(n);
            rest = &rest[n..];
            while let Some(frame) = next_frame(&mut buffer).unwrap() {
                assert_eq!(frame.opcode, OPCODE_TEXT);
                seen.push(frame.payload.to_vec());
            }
        }
        assert_eq!(seen, [b"hello".to_vec(), long]);
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Vec::new();
        encode_client_text(b"abcd", &mut out);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x80 | 4);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .zip(MASK)
            .map(|(byte, mask)| byte ^ mask)
            .collect();
        assert_eq!(unmasked, b"abcd");
    }
}

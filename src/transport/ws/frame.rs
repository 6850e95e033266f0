//! Server-to-client WebSocket framing for the write path (RFC 6455, section 5.2).
//!
//! Queued text messages are framed here straight into one buffer per batch, so a batch leaves
//! with one write: tungstenite would copy each message into its own buffer first and write it
//! through a layer of per-poll wakers, which costs more than the framing itself.

/// Appends an unmasked, final text frame carrying `payload` to `out`.
pub fn append_text_frame(payload: &[u8], out: &mut Vec<u8>) {
    const FIN_TEXT: u8 = 0x81;
    let len = payload.len();
    out.push(FIN_TEXT);
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
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

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
}

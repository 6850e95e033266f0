//! Client WebSocket frames (our RFC 6455 decoder): the bytes a client sends after the upgrade,
//! arriving in arbitrary pieces, under a message size limit. What the connection task does with
//! each result is checked too: the close code it answers an error or a client close with.
#![no_main]

use anycable_rs::fuzzing::{FrameDecoder, FrameError, FrameMessage};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// Everything the decoder yields until it wants more bytes for good or refuses the connection.
fn decode(wire: &[u8], max: usize, piece: usize) -> (Vec<Result<FrameMessage, FrameError>>, usize) {
    let mut decoder = FrameDecoder::new(max);
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    for chunk in wire.chunks(piece) {
        buffer.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(message)) => out.push(Ok(message)),
                Ok(None) => break,
                Err(error) => {
                    out.push(Err(error));
                    return (out, buffer.len());
                }
            }
        }
    }
    (out, buffer.len())
}

fn check(result: &Result<FrameMessage, FrameError>, max: usize) {
    match result {
        Ok(FrameMessage::Text(text)) => {
            assert!(text.len() <= max);
            assert!(std::str::from_utf8(text).is_ok());
        }
        Ok(FrameMessage::Binary(data)) => assert!(data.len() <= max),
        Ok(FrameMessage::Ping(payload)) => assert!(payload.len() <= 125),
        Ok(FrameMessage::Pong) | Ok(FrameMessage::Close(None)) => {}
        // The task echoes the client's code: it must be one a peer may send.
        Ok(FrameMessage::Close(Some(code))) => {
            assert!(
                matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999),
                "{code}"
            )
        }
        Err(error) => {
            let (code, _) = error.close();
            assert!(matches!(code, 1002 | 1007 | 1009), "{code}");
            if let FrameError::TooBig { size, max: limit } = error {
                assert!(*size > *limit as u64 && *limit == max);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [limit, piece, wire @ ..] = data else {
        return;
    };
    // Small limits reach the size checks with small inputs.
    let max = usize::from(*limit) * 4;
    let piece = usize::from(*piece).max(1);
    let (whole, left_whole) = decode(wire, max, wire.len().max(1));
    for result in &whole {
        check(result, max);
    }
    // How the bytes are split across reads must not change what is decoded.
    let (pieces, left_pieces) = decode(wire, max, piece);
    assert_eq!(whole, pieces);
    // Bytes left undecoded are compared only when the connection was not refused: a refusal
    // stops reading wherever it happened.
    if !matches!(whole.last(), Some(Err(_))) {
        assert_eq!(left_whole, left_pieces);
    }
});

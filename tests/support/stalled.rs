//! Clients that stop reading: raw WebSocket connections with a small receive buffer.

use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A masked client text frame.
pub fn client_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads from `stream` until `needle` has been seen; returns everything read.
pub async fn read_raw_until(stream: &mut tokio::net::TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !seen.windows(needle.len()).any(|w| w == needle) {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "EOF before {:?}", String::from_utf8_lossy(needle));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("did not see {:?} in time", String::from_utf8_lossy(needle)));
    seen
}

/// A raw WebSocket client with a small receive buffer that completes the handshake, subscribes
/// to `stream`, and then stops reading.
pub async fn stalled_subscriber(server: &Server, stream: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket
        .connect(server.addr().parse().unwrap())
        .await
        .unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    slow.write_all(
        format!(
            "GET /cable?pi=0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    read_raw_until(&mut slow, b"\"welcome\"").await;
    let subscribe =
        serde_json::json!({"command": "subscribe", "identifier": public_id(stream)}).to_string();
    slow.write_all(&client_text_frame(subscribe.as_bytes()))
        .await
        .unwrap();
    read_raw_until(&mut slow, b"confirm_subscription").await;
    slow
}

/// Reads what the server sent until it hangs up (or `limit` passes: `None`).
pub async fn read_to_end(socket: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 65536];
    tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(received)
}

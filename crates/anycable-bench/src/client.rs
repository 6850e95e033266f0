//! Benchmark clients: Action Cable over WebSocket (here) or SSE (`sse.rs`), from many loopback
//! source addresses.
//!
//! The clients speak raw WebSocket (see `wire.rs`) and raw HTTP/1.1 rather than through a
//! library, so that on a shared machine the figures measure the server, not the load generator.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::buffer::{find, ReadBuffer};
use crate::wire::{encode_client_text, next_frame, OPCODE_CLOSE, OPCODE_TEXT};

/// Source addresses 127.0.0.1 ..= 127.0.0.SOURCES: each has its own ephemeral port range, so
/// tens of thousands of connections to one server port do not run out of ports.
const SOURCES: u8 = 16;
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// Large enough for many packed broadcast frames per read.
const READ_BUFFER: usize = 16 * 1024;

/// What a client received: an Action Cable message (a WebSocket text frame's payload, or an
/// SSE event's lines), the end of the stream, or something the benchmark ignores.
pub enum Message<'a> {
    Text(&'a [u8]),
    Closed,
    Other,
}

/// A connection that receives Action Cable messages, whatever the transport.
pub trait Receive {
    /// Reads whatever arrived (waiting for at least one byte); false when the server closed.
    async fn receive(&mut self) -> Result<bool, String>;

    /// The next complete message received so far.
    fn next_message(&mut self) -> Result<Option<Message<'_>>, String>;
}

/// Sends an HTTP/1.1 request from the next source address and reads the response head,
/// which must start with `expected` (e.g. `HTTP/1.1 101`). Returns the socket, the head and
/// a buffer holding what followed it.
pub async fn open(
    server: SocketAddr,
    request: &str,
    expected: &str,
) -> Result<(TcpStream, String, ReadBuffer), String> {
    let source = 1 + (NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % SOURCES as usize) as u8;
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
            0,
        ))
        .map_err(|e| format!("bind 127.0.0.{source}: {e}"))?;
    let mut stream = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let mut response = Vec::with_capacity(512);
    let head_end = loop {
        if let Some(at) = find(&response, b"\r\n\r\n") {
            break at + 4;
        }
        if response.len() > 16 * 1024 {
            return Err("response headers too long".into());
        }
        let read = stream
            .read_buf(&mut response)
            .await
            .map_err(|e| format!("response: {e}"))?;
        if read == 0 {
            return Err("closed before the response".into());
        }
    };
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    if !head.starts_with(expected) {
        return Err(format!("answered {}", head.lines().next().unwrap_or("")));
    }
    let mut buffer = ReadBuffer::with_capacity(READ_BUFFER);
    buffer.extend(&response[head_end..]);
    Ok((stream, head, buffer))
}

/// Reads what arrived on `stream` into `buffer`; false when the server closed.
pub async fn read_into(stream: &mut TcpStream, buffer: &mut ReadBuffer) -> Result<bool, String> {
    let read = stream
        .read(buffer.spare())
        .await
        .map_err(|e| e.to_string())?;
    buffer.filled(read);
    Ok(read > 0)
}

/// An open WebSocket connection.
pub struct Socket {
    stream: TcpStream,
    buffer: ReadBuffer,
}

/// Opens a WebSocket to `path_and_query` (e.g. `/cable?jid=...`).
pub async fn connect(server: SocketAddr, path_and_query: &str) -> Result<Socket, String> {
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let (stream, _, buffer) = open(server, &request, "HTTP/1.1 101")
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(Socket { stream, buffer })
}

impl Socket {
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        let mut frame = Vec::with_capacity(text.len() + 14);
        encode_client_text(text.as_bytes(), &mut frame);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Receive for Socket {
    async fn receive(&mut self) -> Result<bool, String> {
        read_into(&mut self.stream, &mut self.buffer).await
    }

    fn next_message(&mut self) -> Result<Option<Message<'_>>, String> {
        Ok(
            next_frame(&mut self.buffer)?.map(|frame| match frame.opcode {
                OPCODE_TEXT => Message::Text(frame.payload),
                OPCODE_CLOSE => Message::Closed,
                _ => Message::Other,
            }),
        )
    }
}

/// Waits for the welcome, subscribes to `identifier`, and waits for the confirmation.
pub async fn subscribe(ws: &mut Socket, identifier: &str) -> Result<(), String> {
    expect_type(ws, "welcome").await?;
    let command = serde_json::json!({"command": "subscribe", "identifier": identifier}).to_string();
    ws.send_text(&command).await?;
    expect_type(ws, "confirm_subscription").await
}

/// Waits for the message of type `kind`, skipping pings.
pub async fn expect_type(client: &mut impl Receive, kind: &str) -> Result<(), String> {
    let marker = format!("\"type\":\"{kind}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(message) = client.next_message()? {
            match message {
                Message::Text(text) if find(text, marker.as_bytes()).is_some() => return Ok(()),
                Message::Text(text) if find(text, b"\"type\":\"ping\"").is_some() => {}
                Message::Text(text) => {
                    let text = String::from_utf8_lossy(text);
                    return Err(format!("expected {kind}, got {text}"));
                }
                Message::Closed => return Err(format!("closed while waiting for {kind}")),
                Message::Other => {}
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, client.receive()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(format!("closed while waiting for {kind}")),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("timed out waiting for {kind}")),
        }
    }
}

/// A broadcast as the benchmark publishes it: `{"i":<sequence>,"t":<unix nanos at publish>}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub sent_nanos: u64,
}

/// Extracts the stamp from a broadcast frame without a full JSON parse (the benchmark's own
/// CPU time competes with the server's on the same machine).
pub fn parse_stamp(frame: &[u8]) -> Option<Stamp> {
    let number_after = |key: &[u8]| -> Option<u64> {
        let digits = &frame[find(frame, key)? + key.len()..];
        let end = digits
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end]
            .iter()
            .try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .filter(|_| end > 0)
    };
    Some(Stamp {
        seq: number_after(b"\"i\":")?,
        sent_nanos: number_after(b"\"t\":")?,
    })
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

//! Benchmark clients: Action Cable over WebSocket, from many loopback source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Socket = WebSocketStream<TcpStream>;

/// Source addresses 127.0.0.1 ..= 127.0.0.SOURCES: each has its own ephemeral port range, so
/// tens of thousands of connections to one server port do not run out of ports.
const SOURCES: u8 = 16;
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// Opens a WebSocket to `path_and_query` (e.g. `/cable?jid=...`).
pub async fn connect(server: SocketAddr, path_and_query: &str) -> Result<Socket, String> {
    let source = 1 + (NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % SOURCES as usize) as u8;
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
            0,
        ))
        .map_err(|e| format!("bind 127.0.0.{source}: {e}"))?;
    let stream = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{server}{path_and_query}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

/// Waits for the welcome, subscribes to `identifier`, and waits for the confirmation.
/// Returns the time the whole thing took.
pub async fn subscribe(ws: &mut Socket, identifier: &str) -> Result<(), String> {
    expect_type(ws, "welcome").await?;
    let command = serde_json::json!({"command": "subscribe", "identifier": identifier}).to_string();
    ws.send(Message::text(command))
        .await
        .map_err(|e| e.to_string())?;
    expect_type(ws, "confirm_subscription").await
}

async fn expect_type(ws: &mut Socket, kind: &str) -> Result<(), String> {
    let marker = format!("\"type\":\"{kind}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if text.contains(&marker) {
                    return Ok(());
                }
                if text.contains("\"type\":\"ping\"") {
                    continue;
                }
                return Err(format!("expected {kind}, got {text}"));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err(format!("closed while waiting for {kind}")),
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
pub fn parse_stamp(frame: &str) -> Option<Stamp> {
    let number_after = |key: &str| -> Option<u64> {
        let start = frame.find(key)? + key.len();
        let digits: &str = &frame[start..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    };
    Some(Stamp {
        seq: number_after("\"i\":")?,
        sent_nanos: number_after("\"t\":")?,
    })
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

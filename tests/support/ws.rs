//! WebSocket client.

use super::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// An upgrade request.
#[derive(Clone, Debug)]
pub struct WsRequest {
    /// Path with query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Sent as one `Sec-WebSocket-Protocol` header, comma-separated.
    pub protocols: Vec<String>,
}

impl WsRequest {
    pub fn new(path: &str) -> WsRequest {
        WsRequest {
            path: path.into(),
            headers: Vec::new(),
            protocols: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocols.push(protocol.into());
        self
    }
}

/// What the next frame from the server was.
#[derive(Debug)]
pub enum Frame {
    /// A text frame, parsed, with its raw text.
    Json(Value, String),
    /// A close frame (code, reason); `None` when the frame had no payload.
    Close(Option<(u16, String)>),
    /// The connection ended without (further) frames.
    Eof(String),
}

pub struct Ws {
    inner: WebSocketStream<Box<dyn Io>>,
    /// The `101 Switching Protocols` response.
    pub response: HttpResponse,
    /// Every frame received so far (raw text), for failure messages.
    pub log: Vec<String>,
}

pub async fn ws_connect(
    addr: &str,
    tls: Option<&TlsClient>,
    request: &WsRequest,
) -> std::io::Result<Result<Ws, HttpResponse>> {
    let mut stream = open_stream(addr, tls).await?;
    let key = generate_key();
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        request.path
    );
    if !request.protocols.is_empty() {
        head.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            request.protocols.join(", ")
        ));
    }
    for (k, v) in &request.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    let (response_head, rest) = tokio::time::timeout(RECV_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::other("no upgrade response in time"))??;
    let (status, headers) = parse_head(&response_head)?;
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    if status != 101 {
        let mut body = rest;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let length = response
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            let mut buf = [0u8; 4096];
            loop {
                if length.is_some_and(|l| body.len() >= l) {
                    break;
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        response.body = String::from_utf8_lossy(&body).into_owned();
        return Ok(Err(response));
    }
    let expected_accept = derive_accept_key(key.as_bytes());
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some(expected_accept.as_str()),
        "bad Sec-WebSocket-Accept in {response:?}"
    );
    let inner = WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
    Ok(Ok(Ws {
        inner,
        response,
        log: Vec::new(),
    }))
}

impl Ws {
    /// The next frame (pings included), or `None` on timeout.
    pub async fn next_frame(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.inner.next()).await;
            let item = match next {
                Err(_) => return None,
                Ok(item) => item,
            };
            match item {
                None => return Some(Frame::Eof("stream ended".into())),
                Some(Ok(Message::Text(text))) => {
                    let text = text.to_string();
                    self.log.push(text.clone());
                    let value: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("server sent non-JSON text {text:?}: {e}"));
                    return Some(Frame::Json(value, text));
                }
                Some(Ok(Message::Binary(data))) => {
                    panic!("server sent a binary frame: {data:?}")
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    self.log.push(format!("<close {frame:?}>"));
                    return Some(Frame::Close(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    ));
                }
                Some(Err(e)) => return Some(Frame::Eof(e.to_string())),
            }
        }
    }

    /// The next data or protocol message, skipping `ping`s; panics on timeout or close.
    pub async fn recv_json(&mut self) -> Value {
        self.recv_json_within(RECV_TIMEOUT).await
    }

    pub async fn recv_json_within(&mut self, limit: Duration) -> Value {
        self.recv_text_within(limit).await.0
    }

    /// Like [`Ws::recv_json`], also returning the frame's raw text.
    pub async fn recv_text(&mut self) -> (Value, String) {
        self.recv_text_within(RECV_TIMEOUT).await
    }

    async fn recv_text_within(&mut self, limit: Duration) -> (Value, String) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Some(Frame::Json(value, text)) => {
                    if value["type"] == "ping" {
                        continue;
                    }
                    return (value, text);
                }
                Some(other) => panic!(
                    "expected a message, got {other:?}; frames so far: {:?}",
                    self.log
                ),
                None => panic!("no message within {limit:?}; frames so far: {:?}", self.log),
            }
        }
    }

    /// The next message including `ping`s.
    pub async fn recv_json_with_pings(&mut self, limit: Duration) -> Value {
        match self.next_frame(limit).await {
            Some(Frame::Json(value, _)) => value,
            other => panic!(
                "expected a message within {limit:?}, got {other:?}; frames so far: {:?}",
                self.log
            ),
        }
    }

    /// Waits for the welcome and returns its `sid`.
    pub async fn expect_welcome(&mut self) -> String {
        let welcome = self.recv_json().await;
        assert_eq!(welcome["type"], "welcome", "expected a welcome: {welcome}");
        welcome["sid"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without a string sid: {welcome}"))
            .to_string()
    }

    /// Reads until the close frame (skipping pings; any other message fails the test) and
    /// returns its code and reason. A connection that ends without a close frame gives 1006.
    pub async fn expect_close(&mut self) -> (u16, String) {
        match self.next_non_ping(RECV_TIMEOUT).await {
            Some(Frame::Close(Some(close))) => close,
            Some(Frame::Close(None)) => (1005, String::new()),
            Some(Frame::Eof(_)) => (1006, String::new()),
            Some(Frame::Json(_, text)) => panic!(
                "expected a close, got message {text}; frames so far: {:?}",
                self.log
            ),
            None => panic!(
                "no close within {RECV_TIMEOUT:?}; frames so far: {:?}",
                self.log
            ),
        }
    }

    async fn next_non_ping(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Some(Frame::Json(value, _)) if value["type"] == "ping" => continue,
                other => return other,
            }
        }
    }

    /// Expects a `disconnect` message with this reason and reconnect flag, then a close with
    /// this code (and reason, when given).
    pub async fn expect_disconnect(
        &mut self,
        reason: &str,
        reconnect: bool,
        code: u16,
        close_reason: Option<&str>,
    ) {
        self.expect_disconnect_within(RECV_TIMEOUT, reason, reconnect, code, close_reason)
            .await
    }

    /// Like [`Ws::expect_disconnect`], waiting up to `limit` for the disconnect message.
    pub async fn expect_disconnect_within(
        &mut self,
        limit: Duration,
        reason: &str,
        reconnect: bool,
        code: u16,
        close_reason: Option<&str>,
    ) {
        let msg = self.recv_json_within(limit).await;
        assert_eq!(
            msg,
            serde_json::json!({"type": "disconnect", "reason": reason, "reconnect": reconnect}),
            "unexpected disconnect message"
        );
        let (got_code, got_reason) = self.expect_close().await;
        assert_eq!(got_code, code, "close code (reason {got_reason:?})");
        if let Some(close_reason) = close_reason {
            assert_eq!(got_reason, close_reason, "close reason");
        }
    }

    /// Asserts that no message other than pings arrives within `limit`.
    pub async fn expect_silence(&mut self, limit: Duration) {
        if let Some(frame) = self.next_non_ping(limit).await {
            panic!("expected nothing for {limit:?}, got {frame:?}");
        }
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.inner
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send text frame");
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.inner
            .send(Message::Binary(data.to_vec().into()))
            .await
            .expect("send binary frame");
    }

    /// Sends `frames` back to back while reading the replies, as a client pipelining its
    /// commands does (reading only afterwards would stall both ends once the socket buffers are
    /// full). Returns the first `replies` messages (`ping`s skipped); panics if they do not all
    /// arrive within `limit`.
    pub async fn pipeline(
        &mut self,
        frames: Vec<String>,
        replies: usize,
        limit: Duration,
    ) -> Vec<Value> {
        let (mut sink, mut stream) = (&mut self.inner).split();
        let send = async move {
            for frame in frames {
                sink.feed(Message::Text(frame.into()))
                    .await
                    .expect("send text frame");
            }
            sink.flush().await.expect("flush frames");
        };
        let receive = async move {
            let mut received = Vec::with_capacity(replies);
            while received.len() < replies {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let value: Value = serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("non-JSON text {text:?}: {e}"));
                        if value["type"] != "ping" {
                            received.push(value);
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("after {} replies: {other:?}", received.len()),
                }
            }
            received
        };
        let both = async { tokio::join!(send, receive).1 };
        match tokio::time::timeout(limit, both).await {
            Ok(received) => received,
            Err(_) => panic!("{replies} replies not received within {limit:?}"),
        }
    }

    /// Sends a raw send result (for tests that expect the server to have gone).
    pub async fn try_send_text(&mut self, text: &str) -> Result<(), tungstenite::Error> {
        self.inner
            .send(Message::Text(text.to_string().into()))
            .await
    }

    /// `subscribe` and return the reply.
    pub async fn subscribe(&mut self, identifier: &str) -> Value {
        self.send_json(&serde_json::json!({"command": "subscribe", "identifier": identifier}))
            .await;
        self.recv_json().await
    }

    /// `subscribe` and assert the exact `confirm_subscription`.
    pub async fn subscribe_ok(&mut self, identifier: &str) {
        let reply = self.subscribe(identifier).await;
        assert_eq!(
            reply,
            serde_json::json!({"type": "confirm_subscription", "identifier": identifier}),
            "subscription to {identifier} not confirmed"
        );
    }

    /// `subscribe` and assert the exact `reject_subscription`.
    pub async fn subscribe_rejected(&mut self, identifier: &str) {
        let reply = self.subscribe(identifier).await;
        assert_eq!(
            reply,
            serde_json::json!({"type": "reject_subscription", "identifier": identifier}),
            "subscription to {identifier} not rejected"
        );
    }

    /// Sends `{"command":"ping"}` and expects `{"type":"pong"}` as the very next message: the
    /// marker showing that everything sent before produced no (other) reply, and that the
    /// session still works.
    pub async fn expect_pong_next(&mut self) {
        self.send_json(&serde_json::json!({"command": "ping"}))
            .await;
        let msg = self.recv_json().await;
        assert_eq!(
            msg,
            serde_json::json!({"type": "pong"}),
            "expected the pong marker to be the next message"
        );
    }

    pub async fn close(mut self) {
        let _ = self.inner.close(None).await;
    }
}

//! A Server-Sent Events client for the SSE tests: HTTP/1.1 through hyper's low-level client
//! connection, the response body split into events on blank lines, each event's exact text
//! kept.

use super::*;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Rails' `ActiveSupport::MessageVerifier.new("s3Krit", digest: "SHA256", serializer: JSON)
/// .generate("chat/2023")`, the signed stream name format of AnyCable's docs/signed_streams.md.
pub const EXAMPLE_A: &str =
    "ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c";

/// The bytes of a `data: {"type":"ping","message":<ts>}` ping, up to the timestamp.
pub const PING_PREFIX: &str = "event: ping\ndata: {\"type\":\"ping\",\"message\":";

/// One parsed event, with its exact text (ending with the blank line).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub text: String,
    pub name: Option<String>,
    /// `data:` lines joined with `\n`, as EventSource does.
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<String>,
}

impl Event {
    pub fn parse(text: String) -> Event {
        let mut event = Event {
            text: text.clone(),
            name: None,
            data: String::new(),
            id: None,
            retry: None,
        };
        let mut data = Vec::new();
        for line in text.lines() {
            let (field, value) = line.split_once(": ").unwrap_or((line, ""));
            match field {
                "event" => event.name = Some(value.to_string()),
                "data" => data.push(value),
                "id" => event.id = Some(value.to_string()),
                "retry" => event.retry = Some(value.to_string()),
                "" => {}
                other => panic!("unexpected field {other:?} in event {text:?}"),
            }
        }
        event.data = data.join("\n");
        event
    }

    pub fn is_ping(&self) -> bool {
        self.name.as_deref() == Some("ping")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.text))
    }
}

/// An SSE response being read.
pub struct Sse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Incoming,
    pub buffer: String,
    pub ended: bool,
    /// The client connection task; aborted on drop, which closes the socket.
    pub connection: tokio::task::JoinHandle<()>,
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A request to the SSE endpoint.
pub struct SseRequest {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SseRequest {
    pub fn get(path: impl Into<String>) -> SseRequest {
        SseRequest {
            method: "GET",
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn post(path: impl Into<String>, body: impl Into<Vec<u8>>) -> SseRequest {
        SseRequest {
            method: "POST",
            path: path.into(),
            headers: vec![("Content-Type".into(), "application/x-ndjson".into())],
            body: body.into(),
        }
    }

    pub fn method(mut self, method: &'static str) -> SseRequest {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> SseRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub async fn send(self, server: &Server) -> Sse {
        tokio::time::timeout(RECV_TIMEOUT, self.send_to(server.addr()))
            .await
            .expect("no SSE response head in time")
    }

    pub async fn send_to(self, addr: String) -> Sse {
        let stream = TcpStream::connect(&addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .expect("HTTP handshake");
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = hyper::Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header("Host", &addr);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(self.body)))
            .expect("request");
        let response = sender.send_request(request).await.expect("SSE response");
        let (parts, body) = response.into_parts();
        Sse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            buffer: String::new(),
            ended: false,
            connection,
        }
    }
}

impl Sse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next event, waiting at most `limit`; `None` on timeout or end of the response.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                return Some(Event::parse(text));
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => self.ended = true,
                Ok(Some(Err(error))) => {
                    eprintln!("SSE body error: {error}");
                    self.ended = true;
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer
                            .push_str(std::str::from_utf8(&data).expect("UTF-8"));
                    }
                }
            }
        }
    }

    /// The next event, pings included.
    pub async fn next(&mut self) -> Event {
        match self.next_within(RECV_TIMEOUT).await {
            Some(event) => event,
            None if self.ended => panic!("SSE response ended (left: {:?})", self.buffer),
            None => panic!(
                "no SSE event within {RECV_TIMEOUT:?} (buffer: {:?})",
                self.buffer
            ),
        }
    }

    /// The next event that is not a ping.
    pub async fn recv(&mut self) -> Event {
        loop {
            let event = self.next().await;
            if !event.is_ping() {
                return event;
            }
        }
    }

    /// The next `n` events that are not pings.
    pub async fn recv_n(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.recv().await);
        }
        events
    }

    /// Skips the welcome and the confirmation(s).
    pub async fn expect_welcome_and_confirm(&mut self, confirmations: usize) {
        let welcome = self.recv().await;
        assert_eq!(welcome.name.as_deref(), Some("welcome"), "{welcome:?}");
        for _ in 0..confirmations {
            let confirm = self.recv().await;
            assert_eq!(
                confirm.name.as_deref(),
                Some("confirm_subscription"),
                "{confirm:?}"
            );
        }
    }

    /// Reads the rest of the response (it must end in time) and returns its events.
    pub async fn expect_end(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match self.next_within(RECV_TIMEOUT).await {
                Some(event) => events.push(event),
                None if self.ended => {
                    assert!(self.buffer.is_empty(), "partial event {:?}", self.buffer);
                    return events;
                }
                None => panic!("SSE response did not end within {RECV_TIMEOUT:?}: {events:?}"),
            }
        }
    }

    /// The whole body of an answer that is not a stream.
    pub async fn body_text(mut self) -> String {
        let body = &mut self.body;
        let mut text = std::mem::take(&mut self.buffer);
        let collected = tokio::time::timeout(RECV_TIMEOUT, async {
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.expect("body").into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
            }
        })
        .await;
        collected.expect("the body did not end in time");
        text
    }
}

pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub fn stream_id(stream: &str) -> String {
    public_id(stream)
}

pub async fn get(server: &Server, path: &str) -> Sse {
    SseRequest::get(path).send(server).await
}

/// Expects an error status with an empty body.
pub async fn expect_status(server: &Server, request: SseRequest, status: u16) {
    let description = format!("{} {}", request.method, request.path);
    let response = request.send(server).await;
    assert_eq!(response.status, status, "{description}");
    assert_eq!(response.body_text().await, "", "{description}");
}

pub async fn sse_server(args: &[&str]) -> Server {
    ServerBuilder::new()
        .arg("--sse")
        .args(args.iter().copied())
        .start()
        .await
}

/// The exact event of a protocol message about an identifier (`type` first, as the server
/// writes it).
pub fn typed_text(kind: &str, identifier: &str) -> String {
    let identifier = serde_json::to_string(identifier).unwrap();
    format!("event: {kind}\ndata: {{\"type\":\"{kind}\",\"identifier\":{identifier}}}\n\n")
}

pub fn confirm_text(identifier: &str) -> String {
    typed_text("confirm_subscription", identifier)
}

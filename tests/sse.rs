//! The Server-Sent Events transport (spec: sse.md), against the real binary over real sockets.
//!
//! The client below speaks HTTP/1.1 through hyper's low-level client connection and splits the
//! response body into events on blank lines, keeping each event's exact text. Tests wait for
//! events with timeouts; to show that something does not arrive they publish a later marker
//! and check that the marker comes next.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpStream;

/// streams.md §5, Example A: secret `s3Krit`, stream `chat/2023`.
const EXAMPLE_A: &str =
    "ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c";

/// The bytes of a `data: {"type":"ping","message":<ts>}` ping, up to the timestamp.
const PING_PREFIX: &str = "event: ping\ndata: {\"type\":\"ping\",\"message\":";

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// One parsed event, with its exact text (ending with the blank line).
#[derive(Debug, Clone, PartialEq)]
struct Event {
    text: String,
    name: Option<String>,
    /// `data:` lines joined with `\n`, as EventSource does.
    data: String,
    id: Option<String>,
    retry: Option<String>,
}

impl Event {
    fn parse(text: String) -> Event {
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

    fn is_ping(&self) -> bool {
        self.name.as_deref() == Some("ping")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.text))
    }
}

/// An SSE response being read.
struct Sse {
    status: u16,
    headers: hyper::HeaderMap,
    body: Incoming,
    buffer: String,
    ended: bool,
    /// The client connection task; aborted on drop, which closes the socket.
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A request to the SSE endpoint.
struct SseRequest {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl SseRequest {
    fn get(path: impl Into<String>) -> SseRequest {
        SseRequest {
            method: "GET",
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn post(path: impl Into<String>, body: impl Into<Vec<u8>>) -> SseRequest {
        SseRequest {
            method: "POST",
            path: path.into(),
            headers: vec![("Content-Type".into(), "application/x-ndjson".into())],
            body: body.into(),
        }
    }

    fn method(mut self, method: &'static str) -> SseRequest {
        self.method = method;
        self
    }

    fn header(mut self, name: &str, value: &str) -> SseRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    async fn send(self, server: &Server) -> Sse {
        tokio::time::timeout(RECV_TIMEOUT, self.send_to(server.addr()))
            .await
            .expect("no SSE response head in time")
    }

    async fn send_to(self, addr: String) -> Sse {
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
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next event, waiting at most `limit`; `None` on timeout or end of the response.
    async fn next_within(&mut self, limit: Duration) -> Option<Event> {
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
    async fn next(&mut self) -> Event {
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
    async fn recv(&mut self) -> Event {
        loop {
            let event = self.next().await;
            if !event.is_ping() {
                return event;
            }
        }
    }

    /// The next `n` events that are not pings.
    async fn recv_n(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.recv().await);
        }
        events
    }

    /// Skips the welcome and the confirmation(s).
    async fn expect_welcome_and_confirm(&mut self, confirmations: usize) {
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
    async fn expect_end(&mut self) -> Vec<Event> {
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
    async fn body_text(mut self) -> String {
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

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn stream_id(stream: &str) -> String {
    public_id(stream)
}

async fn get(server: &Server, path: &str) -> Sse {
    SseRequest::get(path).send(server).await
}

/// Expects an error status with an empty body.
async fn expect_status(server: &Server, request: SseRequest, status: u16) {
    let description = format!("{} {}", request.method, request.path);
    let response = request.send(server).await;
    assert_eq!(response.status, status, "{description}");
    assert_eq!(response.body_text().await, "", "{description}");
}

async fn sse_server(args: &[&str]) -> Server {
    ServerBuilder::new()
        .arg("--sse")
        .args(args.iter().copied())
        .start()
        .await
}

/// The exact event of a protocol message about an identifier (`type` first, as the server
/// writes it).
fn typed_text(kind: &str, identifier: &str) -> String {
    let identifier = serde_json::to_string(identifier).unwrap();
    format!("event: {kind}\ndata: {{\"type\":\"{kind}\",\"identifier\":{identifier}}}\n\n")
}

fn confirm_text(identifier: &str) -> String {
    typed_text("confirm_subscription", identifier)
}

// ---------------------------------------------------------------------------------------------
// Enabling, paths, methods, CORS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_sse_the_path_is_not_found() {
    let server = start(&["--public"]).await;
    let response = server.get("/events?stream=chat").await;
    assert_eq!(response.status, 404, "{response:?}");
    assert!(!server.startup_log().await.contains("Handle SSE requests"));
}

#[tokio::test]
async fn sse_path_is_configurable_and_logged() {
    let server = sse_server(&["--public", "--sse_path=/sse/stream"]).await;
    let log = server.startup_log().await;
    let expected = format!(
        "Handle SSE requests at http://127.0.0.1:{}/sse/stream",
        server.port
    );
    assert!(log.contains(&expected), "{log}");
    assert_eq!(server.get("/events?stream=chat").await.status, 404);
    let mut sse = get(&server, "/sse/stream?stream=chat").await;
    assert_eq!(sse.status, 200);
    sse.expect_welcome_and_confirm(1).await;
}

#[tokio::test]
async fn default_path_is_logged() {
    let server = sse_server(&["--public"]).await;
    let log = server.startup_log().await;
    let expected = format!(
        "Handle SSE requests at http://127.0.0.1:{}/events",
        server.port
    );
    assert!(log.contains(&expected), "{log}");
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    let server = sse_server(&["--public"]).await;
    for method in ["PUT", "DELETE", "PATCH"] {
        let request = SseRequest::get("/events?stream=chat").method(method);
        expect_status(&server, request, 405).await;
    }
}

#[tokio::test]
async fn preflight_and_cors_headers_without_allowed_origins() {
    let server = sse_server(&["--public"]).await;
    let request = SseRequest::get("/events?stream=chat")
        .method("OPTIONS")
        .header("Origin", "https://app.example.com");
    let response = request.send(&server).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        response.header("access-control-allow-headers"),
        Some("Origin, X-Requested-With, X-Request-ID, Content-Type, Accept, X-CSRF-Token, Authorization")
    );
    assert_eq!(response.body_text().await, "");

    // The stream itself carries them too.
    let sse = SseRequest::get("/events?stream=chat")
        .header("Origin", "https://app.example.com")
        .send(&server)
        .await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn allowed_origins_are_echoed_but_not_enforced() {
    let server = sse_server(&["--public", "--allowed_origins=*.example.com,localhost:3000"]).await;
    let preflight = SseRequest::get("/events")
        .method("OPTIONS")
        .header("Origin", "https://App.Example.com")
        .send(&server)
        .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );

    let mut other = SseRequest::get("/events?stream=chat")
        .header("Origin", "https://evil.test")
        .send(&server)
        .await;
    assert_eq!(other.status, 200, "origins are not enforced for SSE");
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(
        other.header("access-control-allow-credentials"),
        Some("true")
    );
    other.expect_welcome_and_confirm(1).await;

    let local = SseRequest::get("/events?stream=chat")
        .header("Origin", "http://localhost:3000")
        .send(&server)
        .await;
    assert_eq!(
        local.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}

// ---------------------------------------------------------------------------------------------
// Event format
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn exact_events_and_headers_of_a_get_stream() {
    let server = sse_server(&["--public", "--ping_interval=1"]).await;
    let mut sse = SseRequest::get("/events?stream=chat")
        .header("X-Request-ID", "sse-sid-1")
        .send(&server)
        .await;
    assert_eq!(sse.status, 200);
    for (name, value) in [
        ("content-type", "text/event-stream; charset=utf-8"),
        (
            "cache-control",
            "private, no-cache, no-store, must-revalidate, max-age=0",
        ),
        ("pragma", "no-cache"),
        ("expire", "0"),
        ("x-content-type-options", "nosniff"),
        ("x-accel-buffering", "no"),
        ("connection", "keep-alive"),
        ("access-control-allow-origin", "*"),
    ] {
        assert_eq!(sse.header(name), Some(value), "header {name}");
    }
    assert!(sse.header("x-anycable-version").is_some());
    assert_eq!(sse.header("transfer-encoding"), Some("chunked"));

    assert_eq!(
        sse.next().await.text,
        "event: welcome\ndata: {\"type\":\"welcome\",\"sid\":\"sse-sid-1\"}\n\n"
    );
    assert_eq!(sse.next().await.text, confirm_text(&stream_id("chat")));

    server.publish("chat", "hello").await;
    assert_eq!(sse.recv().await.text, "data: hello\n\n");
    server
        .publish("chat", r#"{"text": "hi",  "n": [1, 2]}"#)
        .await;
    assert_eq!(
        sse.recv().await.text,
        "data: {\"text\":\"hi\",\"n\":[1,2]}\n\n"
    );
    server.publish("chat", "42").await;
    assert_eq!(sse.recv().await.text, "data: 42\n\n");

    // Pings: within [0.5, 1.5) × 1 s, then every second.
    let ping = loop {
        let event = sse.next().await;
        if event.is_ping() {
            break event;
        }
    };
    let rest = ping
        .text
        .strip_prefix(PING_PREFIX)
        .and_then(|r| r.strip_suffix("}\n\n"))
        .unwrap_or_else(|| panic!("ping text {:?}", ping.text));
    let ts: i64 = rest.parse().expect("ping timestamp");
    assert!((ts - now_secs()).abs() <= 2, "ping timestamp {ts}");
    assert_eq!(ping.json(), json!({"type":"ping","message":ts}));
}

#[tokio::test]
async fn ping_precision_applies() {
    let server = sse_server(&[
        "--public",
        "--ping_interval=1",
        "--ping_timestamp_precision=ms",
    ])
    .await;
    let mut sse = get(&server, "/events?stream=chat").await;
    let ping = loop {
        let event = sse.next().await;
        if event.is_ping() {
            break event;
        }
    };
    let ts = ping.json()["message"].as_i64().expect("timestamp");
    assert!((ts - now_secs() * 1000).abs() < 5_000, "{ts}");
}

#[tokio::test]
async fn string_data_is_written_raw_one_line_per_data_field() {
    let server = sse_server(&["--public"]).await;
    let mut sse = get(&server, "/events?stream=turbo").await;
    sse.expect_welcome_and_confirm(1).await;
    let html = "<turbo-stream action=\"append\" target=\"messages\">\n<template><p>Hi</p></template>\r\n</turbo-stream>\rend";
    server.publish("turbo", html).await;
    let event = sse.recv().await;
    assert_eq!(
        event.text,
        "data: <turbo-stream action=\"append\" target=\"messages\">\n\
         data: <template><p>Hi</p></template>\n\
         data: </turbo-stream>\n\
         data: end\n\n"
    );
    server.publish("turbo", "").await;
    assert_eq!(sse.recv().await.text, "data: \n\n");
}

#[tokio::test]
async fn raw_mode_writes_only_data_events() {
    let server = sse_server(&["--public", "--ping_interval=1"]).await;
    for flag in ["1", "true", "T", "y"] {
        let mut sse = get(&server, &format!("/events?stream=raw{flag}&raw={flag}")).await;
        assert_eq!(sse.status, 200);
        server.publish(&format!("raw{flag}"), "first").await;
        // No welcome, no confirmation: the publication is the first event.
        assert_eq!(sse.next().await.text, "data: first\n\n", "raw={flag}");
    }
    // No pings either: nothing arrives for longer than a ping interval plus its jitter, and a
    // later publication comes next.
    let mut sse = get(&server, "/events?stream=quiet&raw=1").await;
    server.publish("quiet", "a").await;
    assert_eq!(sse.next().await.text, "data: a\n\n");
    assert_eq!(sse.next_within(Duration::from_millis(2_000)).await, None);
    server.publish("quiet", "b").await;
    assert_eq!(sse.next().await.text, "data: b\n\n");
}

// ---------------------------------------------------------------------------------------------
// GET parameters
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_get_parameter_form_subscribes() {
    let server = sse_server(&["--public", "--secret=s3Krit", "--turbo_streams"]).await;
    let signed = sign_stream("s3Krit", "chat/2023");
    assert_eq!(signed, EXAMPLE_A);
    let cases = [
        (
            format!("identifier={}", encode(&public_id("by-identifier"))),
            public_id("by-identifier"),
            "by-identifier",
        ),
        (
            "stream=by%2Fstream".to_string(),
            public_id("by/stream"),
            "by/stream",
        ),
        (
            format!("signed_stream={}", encode(&signed)),
            signed_id(&signed),
            "chat/2023",
        ),
        (
            format!("turbo_signed_stream_name={}", encode(&signed)),
            json!({"channel": "Turbo::StreamsChannel", "signed_stream_name": signed}).to_string(),
            "chat/2023",
        ),
        (
            "turbo_stream_name=cleartext".to_string(),
            public_id("cleartext"),
            "cleartext",
        ),
    ];
    for (query, identifier, stream) in cases {
        let mut sse = get(&server, &format!("/events?{query}")).await;
        assert_eq!(sse.status, 200, "{query}");
        let welcome = sse.recv().await;
        assert_eq!(welcome.name.as_deref(), Some("welcome"));
        assert_eq!(sse.recv().await.text, confirm_text(&identifier), "{query}");
        server.publish(stream, &format!("to {stream}")).await;
        assert_eq!(sse.recv().await.data, format!("to {stream}"), "{query}");
    }
}

#[tokio::test]
async fn first_non_empty_parameter_wins() {
    let server = sse_server(&["--public"]).await;
    // `channel` comes before `stream`: {"channel":"Nope"} has no backend, so it is refused.
    expect_status(
        &server,
        SseRequest::get("/events?channel=Nope&stream=chat"),
        400,
    )
    .await;
    // An empty `channel` is skipped.
    let mut sse = get(&server, "/events?channel=&stream=chat").await;
    assert_eq!(sse.status, 200);
    sse.recv().await;
    assert_eq!(sse.recv().await.text, confirm_text(&public_id("chat")));
    // `identifier` comes before `channel`.
    let query = format!("identifier={}&channel=Nope", encode(&public_id("x")));
    let mut sse = get(&server, &format!("/events?{query}")).await;
    assert_eq!(sse.status, 200);
    sse.recv().await;
    assert_eq!(sse.recv().await.text, confirm_text(&public_id("x")));
}

#[tokio::test]
async fn bad_requests_are_400() {
    let server = sse_server(&["--public", "--secret=s3Krit"]).await;
    let too_big = format!(
        "{}\n",
        json!({"identifier": public_id(&"x".repeat(70_000))})
    );
    let requests = [
        SseRequest::get("/events"),
        SseRequest::get("/events?raw=1&history_since=1"),
        SseRequest::get("/events?stream=chat&history_since=yesterday"),
        SseRequest::get("/events?stream=chat&history_since=1.5"),
        SseRequest::get("/events?stream=chat").header("Last-Event-ID", "x/epoch/chat"),
        SseRequest::get("/events?stream=chat").header("Last-Event-ID", "-1/epoch/chat"),
        SseRequest::get("/events?signed_stream=forged--0123"),
        SseRequest::get(format!(
            "/events?signed_stream={}",
            encode(&sign_stream("other", "chat"))
        )),
        SseRequest::get("/events?identifier=not-json"),
        SseRequest::post("/events", "not json\n"),
        SseRequest::post(
            "/events",
            format!(
                "{}\n{{\"identifier\":\n",
                json!({"command": "subscribe", "identifier": public_id("a")})
            ),
        ),
        // The same identifier twice.
        SseRequest::post(
            "/events",
            format!(
                "{0}\n{0}\n",
                json!({"command": "subscribe", "identifier": public_id("a")})
            ),
        ),
        SseRequest::post("/events", too_big),
    ];
    for request in requests {
        let description = format!("{} {} {:?}", request.method, request.path, request.headers);
        let response = request.send(&server).await;
        assert_eq!(response.status, 400, "{description}");
        assert_eq!(
            response.header("content-type"),
            Some("text/event-stream; charset=utf-8"),
            "{description}"
        );
        assert_eq!(response.body_text().await, "", "{description}");
    }
}

#[tokio::test]
async fn public_streams_need_public_streams_enabled() {
    let server = sse_server(&["--noauth", "--secret=s3Krit"]).await;
    expect_status(&server, SseRequest::get("/events?stream=chat"), 400).await;
    // The cleartext Turbo parameter is not even recognised.
    expect_status(
        &server,
        SseRequest::get("/events?turbo_stream_name=chat"),
        400,
    )
    .await;
    // Signed streams still work.
    let signed = sign_stream("s3Krit", "chat");
    let mut sse = get(
        &server,
        &format!("/events?signed_stream={}", encode(&signed)),
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.expect_welcome_and_confirm(1).await;
    // With --public_streams both forms work.
    let server = sse_server(&["--noauth", "--public_streams"]).await;
    for query in ["stream=chat", "turbo_stream_name=chat"] {
        let mut sse = get(&server, &format!("/events?{query}")).await;
        assert_eq!(sse.status, 200, "{query}");
        sse.expect_welcome_and_confirm(1).await;
    }
}

/// The Hotwire guide: with `--turbo_rails_cleartext` (and a JWT key, nothing else),
/// `<turbo-stream-source src=".../events?turbo_stream_name=<plain name>">` works.
#[tokio::test]
async fn turbo_stream_name_with_turbo_rails_cleartext() {
    let server = sse_server(&["--jwt_id_key=K", "--turbo_rails_cleartext"]).await;
    let valid = token("K", "{\"user\":1}");
    let name = "gid://app/Room/1";
    let path = format!(
        "/events?turbo_stream_name={}&jid={}",
        encode(name),
        encode(&valid)
    );
    let mut sse = get(&server, &path).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.recv().await.name.as_deref(), Some("welcome"));
    let identifier =
        json!({"channel": "Turbo::StreamsChannel", "signed_stream_name": name}).to_string();
    assert_eq!(sse.recv().await.text, confirm_text(&identifier));
    server.publish(name, "<turbo-stream></turbo-stream>").await;
    assert_eq!(sse.recv().await.data, "<turbo-stream></turbo-stream>");
    // JWT still authenticates: a token signed with another key gets no stream.
    let forged = token("other", "{\"user\":1}");
    let path = format!(
        "/events?turbo_stream_name={}&jid={}",
        encode(name),
        encode(&forged)
    );
    expect_status(&server, SseRequest::get(path), 401).await;
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rejected_authentication_is_401() {
    // No RPC backend: without a valid token there is no other way in.
    let server = sse_server(&["--secret=s3Krit", "--public_streams", "--norpc"]).await;
    let expired = jwt(
        "s3Krit",
        &json!({"ext": "{\"user\":1}", "exp": now_secs() - 60}),
    );
    let forged = token("wrong-secret", "{\"user\":1}");
    for path in [
        format!("/events?stream=chat&jid={}", encode(&forged)),
        format!("/events?stream=chat&jid={}", encode(&expired)),
        "/events?stream=chat&jid=garbage".to_string(),
        // No token and no other way in.
        "/events?stream=chat".to_string(),
    ] {
        let response = SseRequest::get(path.clone()).send(&server).await;
        assert_eq!(response.status, 401, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("text/event-stream; charset=utf-8")
        );
        assert_eq!(response.body_text().await, "", "{path}");
    }
    // A valid token, in the query or in the X-JID header.
    let valid = token("s3Krit", "{\"user\":1}");
    let mut sse = get(
        &server,
        &format!("/events?stream=chat&jid={}", encode(&valid)),
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.expect_welcome_and_confirm(1).await;
    let mut sse = SseRequest::get("/events?stream=chat")
        .header("X-JID", &valid)
        .send(&server)
        .await;
    assert_eq!(sse.status, 200);
    sse.expect_welcome_and_confirm(1).await;
    // A token without identifiers is the issuer's fault: an authentication error, 400.
    let no_ext = jwt("s3Krit", &json!({"exp": now_secs() + 60}));
    let path = format!("/events?stream=chat&jid={}", encode(&no_ext));
    expect_status(&server, SseRequest::get(path), 400).await;
}

#[tokio::test]
async fn enforced_jwt_requires_a_token() {
    let server = sse_server(&[
        "--secret=s3Krit",
        "--enforce_jwt",
        "--noauth",
        "--public_streams",
    ])
    .await;
    expect_status(&server, SseRequest::get("/events?stream=chat"), 401).await;
    let valid = token("s3Krit", "{\"user\":1}");
    let mut sse = get(
        &server,
        &format!("/events?stream=chat&jid={}", encode(&valid)),
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.expect_welcome_and_confirm(1).await;
}

// ---------------------------------------------------------------------------------------------
// POST (JSON Lines)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_subscribes_every_line_and_sends_full_messages() {
    let server = sse_server(&["--public"]).await;
    let body = format!(
        "{}\n\n{}\n",
        json!({"command": "subscribe", "identifier": public_id("a")}),
        json!({"command": "subscribe", "identifier": public_id("b")}),
    );
    let mut sse = SseRequest::post("/events", body)
        .header("X-Request-ID", "post-1")
        .send(&server)
        .await;
    assert_eq!(sse.status, 200);
    assert_eq!(
        sse.recv().await.text,
        "event: welcome\ndata: {\"type\":\"welcome\",\"sid\":\"post-1\"}\n\n"
    );
    assert_eq!(sse.recv().await.text, confirm_text(&public_id("a")));
    assert_eq!(sse.recv().await.text, confirm_text(&public_id("b")));
    server.publish("b", "to b").await;
    server.publish("a", r#"{"n":1}"#).await;
    let frame_b = json!({"identifier": public_id("b"), "message": "to b"}).to_string();
    let frame_a = json!({"identifier": public_id("a"), "message": {"n": 1}}).to_string();
    assert_eq!(sse.recv().await.text, format!("data: {frame_b}\n\n"));
    assert_eq!(sse.recv().await.text, format!("data: {frame_a}\n\n"));
}

#[tokio::test]
async fn post_with_an_empty_body_gets_a_welcome() {
    let server = sse_server(&["--public"]).await;
    let mut sse = SseRequest::post("/events", "").send(&server).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.recv().await.name.as_deref(), Some("welcome"));
}

// ---------------------------------------------------------------------------------------------
// Reliable streams: ids, resuming, history
// ---------------------------------------------------------------------------------------------

/// Publishes `1..=n` to `stream` and returns their event ids, as a subscriber saw them.
async fn publish_numbered(server: &Server, stream: &str, n: usize) -> Vec<String> {
    let mut sse = get(server, &format!("/events?stream={}", encode(stream))).await;
    sse.expect_welcome_and_confirm(1).await;
    let mut ids = Vec::new();
    for i in 1..=n {
        server.publish(stream, &i.to_string()).await;
        let event = sse.recv().await;
        assert_eq!(event.data, i.to_string());
        ids.push(event.id.expect("an id"));
    }
    ids
}

#[tokio::test]
async fn stored_messages_carry_ids() {
    let server = sse_server(&["--public", "--broker=memory"]).await;
    let mut sse = get(&server, "/events?stream=room%2F1").await;
    sse.expect_welcome_and_confirm(1).await;
    server.publish("room/1", "one").await;
    let first = sse.recv().await;
    let epoch = first
        .text
        .strip_prefix("data: one\nid: 1/")
        .and_then(|rest| rest.strip_suffix("/room/1\n\n"))
        .unwrap_or_else(|| panic!("unexpected event {:?}", first.text));
    assert!(!epoch.is_empty() && !epoch.contains('/'));
    server.publish("room/1", "two").await;
    assert_eq!(
        sse.recv().await.text,
        format!("data: two\nid: 2/{epoch}/room/1\n\n")
    );

    // POST: the whole frame, with its position, and the same id.
    let body = json!({"command": "subscribe", "identifier": public_id("room/1")}).to_string();
    let mut post = SseRequest::post("/events", body).send(&server).await;
    post.expect_welcome_and_confirm(1).await;
    server.publish("room/1", "three").await;
    let frame = json!({
        "identifier": public_id("room/1"),
        "message": "three",
        "stream_id": "room/1",
        "epoch": epoch,
        "offset": 3,
    });
    let event = post.recv().await;
    assert_eq!(event.json(), frame);
    assert_eq!(event.id.as_deref(), Some(&*format!("3/{epoch}/room/1")));
    // Transient publications are not stored: no id.
    let body = json!({"stream": "room/1", "data": "flash", "meta": {"transient": true}});
    assert_eq!(server.broadcast(&body.to_string()).await.status, 201);
    assert_eq!(
        sse.recv().await.text,
        "data: three\nid: 3/".to_string() + epoch + "/room/1\n\n"
    );
    assert_eq!(sse.recv().await.text, "data: flash\n\n");
}

#[tokio::test]
async fn without_a_broker_there_are_no_ids() {
    let server = sse_server(&["--public"]).await;
    let mut sse = get(&server, "/events?stream=chat").await;
    sse.expect_welcome_and_confirm(1).await;
    server.publish("chat", "x").await;
    assert_eq!(sse.recv().await.text, "data: x\n\n");
}

#[tokio::test]
async fn last_event_id_resumes_after_that_message() {
    let server = sse_server(&["--public", "--broker=memory"]).await;
    let ids = publish_numbered(&server, "feed", 5).await;
    let mut sse = SseRequest::get("/events?stream=feed")
        .header("Last-Event-ID", &ids[1])
        .send(&server)
        .await;
    assert_eq!(sse.status, 200);
    let events = sse.recv_n(6).await;
    let names: Vec<Option<&str>> = events.iter().map(|e| e.name.as_deref()).collect();
    assert_eq!(
        names,
        [
            Some("welcome"),
            Some("confirm_subscription"),
            None,
            None,
            None,
            Some("confirm_history")
        ]
    );
    let replayed: Vec<(&str, Option<&str>)> = events[2..5]
        .iter()
        .map(|e| (e.data.as_str(), e.id.as_deref()))
        .collect();
    assert_eq!(
        replayed,
        [
            ("3", Some(ids[2].as_str())),
            ("4", Some(ids[3].as_str())),
            ("5", Some(ids[4].as_str()))
        ]
    );
    assert_eq!(
        events[5].json(),
        json!({"type": "confirm_history", "identifier": public_id("feed")})
    );
    server.publish("feed", "6").await;
    let live = sse.recv().await;
    assert_eq!(live.data, "6", "no duplicates before the live message");
    assert!(live.id.as_deref().is_some_and(|id| id.starts_with("6/")));
}

#[tokio::test]
async fn history_since_replays_recent_messages() {
    let server = sse_server(&["--public", "--broker=memory"]).await;
    publish_numbered(&server, "news", 3).await;
    let since = now_secs() - 60;
    let mut sse = get(
        &server,
        &format!("/events?stream=news&history_since={since}"),
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.expect_welcome_and_confirm(1).await;
    let replayed: Vec<String> = sse.recv_n(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(replayed, ["1", "2", "3"]);
    assert_eq!(sse.recv().await.name.as_deref(), Some("confirm_history"));
    server.publish("news", "4").await;
    assert_eq!(sse.recv().await.data, "4");

    // A time in the future replays nothing.
    let mut sse = get(
        &server,
        &format!("/events?stream=news&history_since={}", now_secs() + 3600),
    )
    .await;
    sse.expect_welcome_and_confirm(1).await;
    assert_eq!(sse.recv().await.name.as_deref(), Some("confirm_history"));
}

#[tokio::test]
async fn history_since_with_last_event_id_uses_the_offset_for_its_stream() {
    let server = sse_server(&["--public", "--broker=memory"]).await;
    let ids = publish_numbered(&server, "both", 3).await;
    let path = format!("/events?stream=both&history_since={}", now_secs() - 60);
    let mut sse = SseRequest::get(path)
        .header("Last-Event-ID", &ids[0])
        .send(&server)
        .await;
    sse.expect_welcome_and_confirm(1).await;
    let replayed: Vec<String> = sse.recv_n(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(replayed, ["2", "3"]);
    assert_eq!(sse.recv().await.name.as_deref(), Some("confirm_history"));
}

#[tokio::test]
async fn unavailable_history_is_rejected_then_live_data_flows() {
    let server = sse_server(&["--public", "--broker=memory", "--history_limit=2"]).await;
    let ids = publish_numbered(&server, "old", 5).await;
    // Message 2 is no longer retained: resuming after 1 is impossible.
    let mut sse = SseRequest::get("/events?stream=old")
        .header("Last-Event-ID", &ids[0])
        .send(&server)
        .await;
    assert_eq!(sse.status, 200);
    sse.expect_welcome_and_confirm(1).await;
    let rejected = sse.recv().await;
    assert_eq!(
        rejected.text,
        typed_text("reject_history", &public_id("old"))
    );
    server.publish("old", "6").await;
    assert_eq!(sse.recv().await.data, "6");

    // An unknown epoch is rejected the same way; raw mode shows only the live data.
    let mut raw = SseRequest::get("/events?stream=old&raw=1")
        .header("Last-Event-ID", "3/not-the-epoch/old")
        .send(&server)
        .await;
    assert_eq!(raw.status, 200);
    server.publish("old", "7").await;
    let event = raw.next().await;
    assert_eq!(event.data, "7");
    assert_eq!(event.name, None);
}

#[tokio::test]
async fn without_a_broker_history_is_rejected() {
    let server = sse_server(&["--public"]).await;
    let mut sse = get(
        &server,
        &format!("/events?stream=chat&history_since={}", now_secs() - 10),
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.expect_welcome_and_confirm(1).await;
    assert_eq!(sse.recv().await.name.as_deref(), Some("reject_history"));
}

// ---------------------------------------------------------------------------------------------
// Ending a stream
// ---------------------------------------------------------------------------------------------

fn remote_disconnect(sid: &str, reconnect: bool) -> String {
    json!({
        "command": "disconnect",
        "payload": {"identifier": json!({"sid": sid}).to_string(), "reconnect": reconnect},
    })
    .to_string()
}

#[tokio::test]
async fn remote_disconnect_without_reconnect_sets_retry_and_ends() {
    let server = sse_server(&["--public"]).await;
    let mut sse = SseRequest::get("/events?stream=chat")
        .header("X-Request-ID", "remote-1")
        .send(&server)
        .await;
    sse.expect_welcome_and_confirm(1).await;
    let resp = server
        .broadcast(&remote_disconnect("remote-1", false))
        .await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let events = sse.expect_end().await;
    let texts: Vec<&str> = events
        .iter()
        .filter(|e| !e.is_ping())
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(
        texts,
        ["event: disconnect\ndata: {\"type\":\"disconnect\",\"reason\":\"remote\",\"reconnect\":false}\nretry: 31536000000\n\n"]
    );

    // With reconnect: true there is no retry line.
    let mut sse = SseRequest::get("/events?stream=chat")
        .header("X-Request-ID", "remote-2")
        .send(&server)
        .await;
    sse.expect_welcome_and_confirm(1).await;
    server.broadcast(&remote_disconnect("remote-2", true)).await;
    let events = sse.expect_end().await;
    let last = events.last().expect("a disconnect event");
    assert_eq!(
        last.text,
        "event: disconnect\ndata: {\"type\":\"disconnect\",\"reason\":\"remote\",\"reconnect\":true}\n\n"
    );

    // In raw mode the stream just ends.
    let mut raw = SseRequest::get("/events?stream=chat&raw=1")
        .header("X-Request-ID", "remote-3")
        .send(&server)
        .await;
    server.publish("chat", "before").await;
    assert_eq!(raw.next().await.data, "before");
    server
        .broadcast(&remote_disconnect("remote-3", false))
        .await;
    assert_eq!(raw.expect_end().await, vec![]);
}

#[tokio::test]
async fn shutdown_sends_server_restart_and_ends_the_stream() {
    let mut server = sse_server(&["--public"]).await;
    let mut get_stream = get(&server, "/events?stream=chat").await;
    get_stream.expect_welcome_and_confirm(1).await;
    let body = json!({"command": "subscribe", "identifier": public_id("chat")}).to_string();
    let mut post_stream = SseRequest::post("/events", body).send(&server).await;
    post_stream.expect_welcome_and_confirm(1).await;

    server.signal("TERM");
    let expected = "event: disconnect\ndata: {\"type\":\"disconnect\",\"reason\":\"server_restart\",\"reconnect\":true}\n\n";
    for sse in [&mut get_stream, &mut post_stream] {
        let events = sse.expect_end().await;
        let last = events.last().expect("a disconnect event");
        assert_eq!(last.text, expected);
    }
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test]
async fn a_client_that_goes_away_is_unsubscribed() {
    let server = sse_server(&["--public", "--log_level=debug"]).await;
    let mut sse = get(&server, "/events?stream=chat").await;
    sse.expect_welcome_and_confirm(1).await;
    drop(sse);
    assert!(
        server
            .wait_output("SSE client went away", RECV_TIMEOUT)
            .await,
        "the server did not notice the client leaving"
    );
    // The stream still works for others.
    let mut other = get(&server, "/events?stream=chat").await;
    other.expect_welcome_and_confirm(1).await;
    server.publish("chat", "still here").await;
    assert_eq!(other.recv().await.data, "still here");
}

#[tokio::test]
async fn a_client_that_stops_reading_has_its_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(&[
        "--sse",
        "--noauth",
        "--public_streams",
        "--norpc",
        "--debug",
        "--ws_max_pending_size=65536",
        "--ws_write_timeout=1",
    ])
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket
        .connect(server.addr().parse().unwrap())
        .await
        .unwrap();
    stalled
        .write_all(b"GET /events?stream=firehose HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("confirm_subscription") {
        let n = stalled.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    // Stop reading while ~6 MB are published: more than the kernel buffers hold.
    let filler = "x".repeat(20_000);
    for n in 0..300 {
        server
            .publish("firehose", &json!({"n": n, "filler": filler}).to_string())
            .await;
    }
    assert!(
        server
            .wait_output("aborted by its handler", Duration::from_secs(10))
            .await,
        "the server never gave up on the stalled client"
    );
    // Draining what the kernel buffered must end in EOF: the server closed the socket rather
    // than keeping a half-written response (or an idle keep-alive connection) open.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the stalled client's connection was left open"
    );
}

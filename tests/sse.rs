//! The Server-Sent Events transport (docs/sse.md), against the real binary over real sockets.
//!
//! The client below speaks HTTP/1.1 through hyper's low-level client connection and splits the
//! response body into events on blank lines, keeping each event's exact text. Tests wait for
//! events with timeouts; to show that something does not arrive they publish a later marker
//! and check that the marker comes next.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sse::*;
use support::*;

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

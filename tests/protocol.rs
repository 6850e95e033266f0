//! Action Cable protocol over WebSocket, as AnyCable-Go speaks it (node/node.go,
//! common/common.go; base-protocol conformance in anycable/anyt).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn open_server() -> Server {
    start(&["--noauth", "--public_streams"]).await
}

// --- Handshake ---------------------------------------------------------------------------------

#[tokio::test]
async fn welcome_carries_a_fresh_sid() {
    let server = open_server().await;
    let mut a = server.ws().await;
    let welcome = a.recv_json().await;
    assert_eq!(welcome["type"], "welcome");
    let sid_a = welcome["sid"]
        .as_str()
        .expect("sid is a string")
        .to_string();
    assert!(!sid_a.is_empty());
    assert_eq!(
        welcome.as_object().unwrap().len(),
        2,
        "welcome has only type and sid: {welcome}"
    );
    let (_b, sid_b) = server.ws_welcomed().await;
    assert_ne!(sid_a, sid_b, "every connection gets its own sid");
}

#[tokio::test]
async fn x_request_id_becomes_the_sid() {
    let server = open_server().await;
    let mut ws = server
        .ws_with(WsRequest::new("/cable").header("X-Request-ID", "req-42-abc"))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "welcome", "sid": "req-42-abc"})
    );
}

#[tokio::test]
async fn supported_subprotocol_is_echoed_with_version_header() {
    let server = open_server().await;
    let mut ws = server
        .ws_with(WsRequest::new("/cable").protocol("actioncable-v1-json"))
        .await;
    assert_eq!(ws.response.status, 101);
    assert_eq!(
        ws.response.header("sec-websocket-protocol"),
        Some("actioncable-v1-json")
    );
    let version = ws
        .response
        .header("x-anycable-version")
        .expect("X-AnyCable-Version header on the upgrade response");
    assert!(!version.is_empty());
    ws.expect_welcome().await;
}

#[tokio::test]
async fn first_supported_subprotocol_is_selected() {
    let server = open_server().await;
    let mut ws = server
        .ws_with(
            WsRequest::new("/cable")
                .protocol("mqtt")
                .protocol("actioncable-v1-json")
                .protocol("actioncable-v1-msgpack"),
        )
        .await;
    assert_eq!(
        ws.response.header("sec-websocket-protocol"),
        Some("actioncable-v1-json")
    );
    ws.expect_welcome().await;
}

#[tokio::test]
async fn ext_json_subprotocol_is_negotiated_when_offered_first() {
    let server = open_server().await;
    let mut ws = server
        .ws_with(
            WsRequest::new("/cable")
                .protocol("actioncable-v1-ext-json")
                .protocol("actioncable-v1-json"),
        )
        .await;
    assert_eq!(
        ws.response.header("sec-websocket-protocol"),
        Some("actioncable-v1-ext-json")
    );
    ws.expect_welcome().await;
}

#[tokio::test]
async fn unknown_subprotocol_is_not_echoed_but_upgrade_succeeds() {
    let server = open_server().await;
    let mut ws = server
        .ws_with(
            WsRequest::new("/cable")
                .protocol("actioncable-v1-msgpack")
                .protocol("chat"),
        )
        .await;
    assert_eq!(ws.response.status, 101);
    assert_eq!(
        ws.response.header("sec-websocket-protocol"),
        None,
        "no sub-protocol must be selected: {:?}",
        ws.response
    );
    ws.expect_welcome().await;
    ws.expect_pong_next().await;
}

// --- Subscriptions -----------------------------------------------------------------------------

#[tokio::test]
async fn subscribe_confirms_with_identifier_echoed_byte_for_byte() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    // Odd key order, spacing, an extra key and a unicode escape: must come back unchanged.
    let identifier =
        r#"{ "stream_name" : "odd/one",   "channel":"$pubsub", "z":[1, 2 ], "u":"\u00e9" }"#;
    ws.send_json(&json!({"command": "subscribe", "identifier": identifier}))
        .await;
    let (reply, raw) = ws.recv_text().await;
    assert_eq!(
        reply,
        json!({"type": "confirm_subscription", "identifier": identifier}),
        "confirm must be exactly type+identifier (raw: {raw})"
    );
    assert_eq!(reply["identifier"].as_str(), Some(identifier));

    // Broadcasts carry the same identifier string.
    server.publish("odd/one", r#"{"n":1}"#).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": identifier, "message": {"n": 1}})
    );
}

#[tokio::test]
async fn duplicate_subscribe_gets_no_reply_and_no_double_delivery() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("dup");
    ws.subscribe_ok(&id).await;
    ws.send_json(&json!({"command": "subscribe", "identifier": id}))
        .await;
    ws.expect_pong_next().await;

    server.publish("dup", "\"once\"").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": "once"})
    );
    ws.expect_pong_next().await;
}

#[tokio::test]
async fn unsubscribe_gets_no_reply_and_stops_broadcasts() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    let gone = public_id("gone");
    let marker = public_id("marker");
    ws.subscribe_ok(&gone).await;
    ws.subscribe_ok(&marker).await;

    server.publish("gone", "1").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": gone, "message": 1})
    );

    ws.send_json(&json!({"command": "unsubscribe", "identifier": gone}))
        .await;
    ws.expect_pong_next().await;

    server.publish("gone", "2").await;
    server.publish("marker", "3").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": marker, "message": 3}),
        "the unsubscribed stream must not be delivered any more"
    );

    // Subscribing again works (the subscription was really removed).
    ws.subscribe_ok(&gone).await;
    server.publish("gone", "4").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": gone, "message": 4})
    );
}

#[tokio::test]
async fn ignored_commands_leave_the_session_working() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("calm");
    ws.subscribe_ok(&id).await;

    for command in [
        // perform on a local channel: no backend, ignored
        json!({"command": "message", "identifier": id, "data": "{\"action\":\"speak\"}"}),
        // data not a string
        json!({"command": "message", "identifier": id, "data": {"action": "speak"}}),
        // unknown identifier
        json!({"command": "message", "identifier": public_id("nope"), "data": "{}"}),
        json!({"command": "unsubscribe", "identifier": public_id("nope")}),
        // unknown command
        json!({"command": "dance", "identifier": id}),
        json!({"command": "pong"}),
    ] {
        ws.send_json(&command).await;
    }
    ws.expect_pong_next().await;

    server.publish("calm", "\"still here\"").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": "still here"})
    );
}

#[tokio::test]
async fn client_ping_is_answered_with_pong() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.send_text(r#"{"command":"ping"}"#).await;
    assert_eq!(ws.recv_json().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn binary_frames_are_parsed_as_json() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("bin");
    let frame = json!({"command": "subscribe", "identifier": id}).to_string();
    ws.send_binary(frame.as_bytes()).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "confirm_subscription", "identifier": id})
    );
}

// --- Pings -------------------------------------------------------------------------------------

fn ping_value(msg: &Value) -> i64 {
    assert_eq!(msg["type"], "ping", "expected a ping: {msg}");
    assert_eq!(
        msg.as_object().unwrap().len(),
        2,
        "ping has type+message: {msg}"
    );
    assert!(
        msg["message"].is_i64() || msg["message"].is_u64(),
        "ping timestamp must be a JSON integer: {msg}"
    );
    msg["message"].as_i64().expect("timestamp fits i64")
}

async fn next_ping(ws: &mut Ws, limit: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = ws.recv_json_with_pings(left).await;
        if msg["type"] == "ping" {
            return ping_value(&msg);
        }
    }
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// Asserts that `value` is "now" in the given unit, within a few seconds.
fn assert_now_in(value: i64, unit_nanos: i128) {
    let now = now_nanos() / unit_nanos;
    let slack = 5 * 1_000_000_000 / unit_nanos;
    assert!(
        (value as i128 - now).abs() <= slack,
        "timestamp {value} is not now ({now}) in units of {unit_nanos} ns"
    );
}

#[tokio::test]
async fn pings_arrive_every_interval_with_increasing_second_timestamps() {
    let server = start(&["--noauth", "--ping_interval=1"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    // First ping within 1.5 × interval, then one per interval.
    let first = next_ping(&mut ws, Duration::from_millis(2500)).await;
    let t0 = std::time::Instant::now();
    let second = next_ping(&mut ws, Duration::from_millis(2500)).await;
    let gap = t0.elapsed();
    let third = next_ping(&mut ws, Duration::from_millis(2500)).await;
    assert_now_in(third, 1_000_000_000);
    assert!(first < second && second < third, "{first} {second} {third}");
    assert!(
        gap >= Duration::from_millis(600) && gap <= Duration::from_millis(2000),
        "pings {gap:?} apart with --ping_interval=1"
    );
}

#[tokio::test]
async fn ping_precision_flag_ms() {
    let server = start(&[
        "--noauth",
        "--ping_interval=1",
        "--ping_timestamp_precision=ms",
    ])
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    let a = next_ping(&mut ws, Duration::from_millis(2500)).await;
    let b = next_ping(&mut ws, Duration::from_millis(2500)).await;
    assert_now_in(a, 1_000_000);
    assert!(b > a);
}

#[tokio::test]
async fn ping_precision_query_overrides_flag() {
    let server = start(&[
        "--noauth",
        "--ping_interval=1",
        "--ping_timestamp_precision=ms",
    ])
    .await;
    let mut ns = server.ws_with(WsRequest::new("/cable?ptp=ns")).await;
    ns.expect_welcome().await;
    let mut s = server.ws_with(WsRequest::new("/cable?ptp=s")).await;
    s.expect_welcome().await;
    let mut other = server.ws_with(WsRequest::new("/cable?ptp=minutes")).await;
    other.expect_welcome().await;
    assert_now_in(next_ping(&mut ns, Duration::from_millis(2500)).await, 1);
    assert_now_in(
        next_ping(&mut s, Duration::from_millis(2500)).await,
        1_000_000_000,
    );
    // Any other value means seconds.
    assert_now_in(
        next_ping(&mut other, Duration::from_millis(2500)).await,
        1_000_000_000,
    );
}

#[tokio::test]
async fn pi_query_overrides_the_interval() {
    let server = start(&["--noauth", "--ping_interval=30"]).await;
    let mut ws = server.ws_with(WsRequest::new("/cable?pi=1")).await;
    ws.expect_welcome().await;
    let a = next_ping(&mut ws, Duration::from_millis(2500)).await;
    let b = next_ping(&mut ws, Duration::from_millis(2500)).await;
    assert!(b > a);
}

#[tokio::test]
async fn pi_zero_disables_pings() {
    let server = start(&["--noauth", "--ping_interval=1"]).await;
    let mut quiet = server.ws_with(WsRequest::new("/cable?pi=0")).await;
    quiet.expect_welcome().await;
    let mut control = server.ws().await;
    control.expect_welcome().await;
    // The control connection's pings (first at most 1.5 s, then 1 s) show time passing.
    next_ping(&mut control, Duration::from_millis(2500)).await;
    next_ping(&mut control, Duration::from_millis(2500)).await;
    if let Some(frame) = quiet.next_frame(Duration::from_millis(300)).await {
        panic!("?pi=0 connection received {frame:?}");
    }
    quiet.expect_pong_next().await;
}

#[tokio::test]
async fn negative_pi_disables_pings_and_non_integer_pi_is_ignored() {
    let server = start(&["--noauth", "--ping_interval=1"]).await;
    let mut negative = server.ws_with(WsRequest::new("/cable?pi=-1")).await;
    negative.expect_welcome().await;
    let mut garbage = server.ws_with(WsRequest::new("/cable?pi=abc")).await;
    garbage.expect_welcome().await;
    // A non-integer value falls back to --ping_interval=1.
    next_ping(&mut garbage, Duration::from_millis(2500)).await;
    next_ping(&mut garbage, Duration::from_millis(2500)).await;
    if let Some(frame) = negative.next_frame(Duration::from_millis(300)).await {
        panic!("?pi=-1 connection received {frame:?}");
    }
}

// --- Limits and malformed input ----------------------------------------------------------------

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let server = start(&["--noauth", "--max_message_size=1024"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    // Just under the limit is fine.
    let small = format!(r#"{{"command":"ping","pad":"{}"}}"#, "x".repeat(900));
    assert!(small.len() < 1024);
    ws.send_text(&small).await;
    assert_eq!(ws.recv_json().await, json!({"type": "pong"}));
    // Over the limit closes the connection.
    let big = format!(r#"{{"command":"ping","pad":"{}"}}"#, "x".repeat(2000));
    ws.send_text(&big).await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1009, "close reason {reason:?}");
}

#[tokio::test]
async fn malformed_frames_are_dropped_and_the_session_keeps_working() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.send_text("not json at all").await;
    ws.send_text(r#"{"command":"subscribe","identifier":42}"#)
        .await;
    ws.send_text(r#"{"command":"subscribe"}"#).await;
    ws.send_text("[1,2,3]").await;
    ws.send_text(r#"{"identifier":"x"}"#).await;
    ws.send_binary(&[0xff, 0x00, 0x12]).await;
    ws.expect_pong_next().await;
    ws.subscribe_ok(&public_id("after-garbage")).await;
}

#[tokio::test]
async fn sixteen_malformed_frames_disconnect_with_invalid_request() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    for i in 0..15 {
        ws.send_text(&format!("garbage {i}")).await;
    }
    // Fifteen are tolerated.
    ws.expect_pong_next().await;
    ws.send_text("garbage 16").await;
    ws.expect_disconnect("invalid_request", false, 1008, None)
        .await;
}

// --- HTTP routing ------------------------------------------------------------------------------

#[tokio::test]
async fn plain_get_on_the_cable_path_is_400() {
    let server = open_server().await;
    let resp = server.get("/cable").await;
    assert_eq!(resp.status, 400, "{resp:?}");
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = open_server().await;
    assert_eq!(server.get("/nope").await.status, 404);
    match server.try_ws(WsRequest::new("/nope")).await {
        Ok(_) => panic!("upgrade on an unknown path succeeded"),
        Err(resp) => assert_eq!(resp.status, 404, "{resp:?}"),
    }
}

#[tokio::test]
async fn multiple_paths_with_wildcard_and_placeholder() {
    let server = start(&["--noauth", "--path=/cable,/ws/*,/a/{id}/cable"]).await;
    for path in [
        "/cable",
        "/ws/anything",
        "/ws/deep/er",
        "/a/42/cable",
        "/a/x/cable?pi=0",
    ] {
        let mut ws = server.ws_with(WsRequest::new(path)).await;
        ws.expect_welcome().await;
    }
    for path in ["/a/cable", "/a/1/2/cable", "/other", "/cable/extra"] {
        match server.try_ws(WsRequest::new(path)).await {
            Ok(_) => panic!("upgrade on {path} succeeded"),
            Err(resp) => assert_eq!(resp.status, 404, "{path}: {resp:?}"),
        }
    }
}

#[tokio::test]
async fn custom_single_path_replaces_the_default() {
    let server = start(&["--noauth", "--path=/live"]).await;
    let mut ws = server.ws_with(WsRequest::new("/live")).await;
    ws.expect_welcome().await;
    match server.try_ws(WsRequest::new("/cable")).await {
        Ok(_) => panic!("/cable still served with --path=/live"),
        Err(resp) => assert_eq!(resp.status, 404),
    }
}

#[tokio::test]
async fn browser_style_upgrade_header_lists_are_accepted() {
    // Firefox sends `Connection: keep-alive, Upgrade`; header names and tokens are
    // case-insensitive.
    let server = open_server().await;
    let mut raw = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    raw.write_all(
        b"GET /cable HTTP/1.1\r\nHost: x\r\nconnection: keep-alive, Upgrade\r\nupgrade: WebSocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(RECV_TIMEOUT, raw.read(&mut buf))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "wrong Sec-WebSocket-Accept: {text}"
    );
}

//! Server-Sent Events and reliable streams (ids, `Last-Event-ID`, `history_since`), and how
//! an event stream ends (remote disconnect, shutdown, a client that leaves or stops reading),
//! against the real binary. The client is in `support::sse`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sse::*;
use support::*;

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
            .wait_output("SSE write timed out", Duration::from_secs(10))
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

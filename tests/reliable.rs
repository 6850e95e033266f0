//! Reliable streams through the real binary: positions on broadcasts, history on subscribe and
//! with the `history` command, session restore, the limits, and the seams between history and
//! live messages (publishing never stops while a client subscribes or resumes).

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test]
async fn broadcasts_carry_positions_with_a_broker_only() {
    let server = start(&["--noauth", "--public_streams", "--norpc", "--broker=memory"]).await;
    let (mut ws, _) = ext_client(&server, "").await;
    ws.subscribe_ok(&public_id("pos")).await;
    server.publish("pos", r#"{"n":1}"#).await;
    let frame = ws.recv_json().await;
    assert_eq!(frame["stream_id"], "pos");
    assert_eq!(frame["offset"], 1);
    assert_eq!(frame["epoch"].as_str().map(str::len), Some(4));

    let plain = start(&["--noauth", "--public_streams", "--norpc"]).await;
    let (mut ws, _) = ext_client(&plain, "").await;
    ws.subscribe_ok(&public_id("pos")).await;
    plain.publish("pos", r#"{"n":1}"#).await;
    let frame = ws.recv_json().await;
    assert!(
        frame.get("offset").is_none(),
        "no broker, no position: {frame}"
    );
}

#[tokio::test]
async fn subscribing_with_history_while_publishing_has_no_gap_and_no_duplicate() {
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        "--broker=memory",
        "--history_limit=100000",
    ])
    .await;
    let publisher = Publisher::start(&server, "seam");
    publisher.wait_accepted(20, PUBLISHING).await;
    let (mut ws, _) = ext_client(&server, "").await;
    let identifier = public_id("seam");
    ws.send_json(
        &json!({"command": "subscribe", "identifier": identifier, "history": {"since": 1}}),
    )
    .await;
    assert_eq!(ws.recv_json().await["type"], "confirm_subscription");
    // Keep publishing for a while after the subscription, then stop and read everything.
    publisher.wait_accepted(30, PUBLISHING).await;
    let last = publisher.stop_all_accepted().await;
    let mut seen = Vec::new();
    let mut confirmed_history = false;
    while seen.last() != Some(&last) {
        let frame = ws.recv_json().await;
        if frame["type"] == "confirm_history" {
            confirmed_history = true;
        } else if let Some(n) = frame["message"]["n"].as_u64() {
            seen.push(n);
        }
    }
    assert!(confirmed_history);
    assert_contiguous(&seen, 1);
}

#[tokio::test]
async fn restored_sessions_get_every_missed_message_once_while_publishing_continues() {
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        "--broker=memory",
        "--history_limit=100000",
    ])
    .await;
    resume_while_publishing("memory", &server, &server, &server, "resume").await;
}

#[tokio::test]
async fn history_beyond_the_limits_is_rejected_not_partially_replayed() {
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        "--broker=memory",
        "--history_limit=2",
    ])
    .await;
    let identifier = public_id("limited");
    let (mut ws, _) = ext_client(&server, "").await;
    ws.subscribe_ok(&identifier).await;
    server.publish("limited", r#"{"n":1}"#).await;
    let (_, position) = read_until(&mut ws, 1).await;
    for n in 2..=6 {
        server
            .publish("limited", &json!({ "n": n }).to_string())
            .await;
    }
    read_until(&mut ws, 6).await;
    ws.send_json(&json!({"command": "history", "identifier": identifier, "history": {"streams": {"limited": position}}}))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "reject_history", "identifier": identifier})
    );
    // A position from another epoch is rejected too; a current one replays what is retained.
    let stale = json!({"streams": {"limited": {"epoch": "nope", "offset": 5}}});
    ws.send_json(&json!({"command": "history", "identifier": identifier, "history": stale}))
        .await;
    assert_eq!(ws.recv_json().await["type"], "reject_history");
    let fresh = json!({"streams": {"limited": {"epoch": position["epoch"], "offset": 5}}});
    ws.send_json(&json!({"command": "history", "identifier": identifier, "history": fresh}))
        .await;
    assert_eq!(ws.recv_json().await["message"]["n"], 6);
    assert_eq!(ws.recv_json().await["type"], "confirm_history");
}

#[tokio::test]
async fn without_a_broker_history_is_rejected_and_sessions_are_not_restored() {
    let server = start(&["--noauth", "--public_streams", "--norpc"]).await;
    let identifier = public_id("nobroker");
    let (mut ws, sid) = ext_client(&server, "").await;
    ws.send_json(
        &json!({"command": "subscribe", "identifier": identifier, "history": {"since": 1}}),
    )
    .await;
    assert_eq!(ws.recv_json().await["type"], "confirm_subscription");
    assert_eq!(ws.recv_json().await["type"], "reject_history");
    drop(ws);
    let mut ws = server
        .ws_with(WsRequest::new(&format!("/cable?pi=0&sid={sid}")).protocol(EXT))
        .await;
    let welcome = ws.recv_json().await;
    assert_eq!(welcome["type"], "welcome");
    assert!(welcome.get("restored").is_none(), "{welcome}");
}

#[tokio::test]
async fn extended_sessions_must_answer_pings_when_a_pong_timeout_is_set() {
    let server = start(&[
        "--noauth",
        "--norpc",
        "--ping_interval=1",
        "--pong_timeout=1",
    ])
    .await;
    let mut ws = server.ws_with(WsRequest::new("/cable").protocol(EXT)).await;
    assert_eq!(ws.recv_json().await["type"], "welcome");
    ws.expect_disconnect("no_pong", true, 1000, Some("No Pong"))
        .await;
    // The base protocol has no pong requirement.
    let mut base = server
        .ws_with(WsRequest::new("/cable").protocol("actioncable-v1-json"))
        .await;
    assert_eq!(base.recv_json().await["type"], "welcome");
    base.expect_silence(Duration::from_millis(3500)).await;
}

/// A client whose last message is the one just below the oldest kept already has everything
/// before it: it gets the whole kept history (AnyCable-Go rejects it), with every broker that
/// keeps history. One below that is still rejected.
async fn history_from_just_below_the_oldest_kept(broker: &str) {
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        &format!("--broker={broker}"),
        "--broadcast_adapter=http",
        "--history_limit=3",
    ])
    .await;
    // Shared brokers (NATS, Redis) outlive the server: a fresh stream each run.
    let stream = unique("below-oldest");
    let identifier = public_id(&stream);
    let (mut ws, _) = ext_client(&server, "").await;
    ws.subscribe_ok(&identifier).await;
    let mut positions = Vec::new();
    for n in 1..=5 {
        server
            .publish(&stream, &json!({ "n": n }).to_string())
            .await;
        let (_, position) = read_until(&mut ws, n).await;
        positions.push(position);
    }
    // Kept: 3, 4, 5. The client last saw 2.
    request_history(&mut ws, &identifier, &stream, &positions[1]).await;
    let replay = read_until(&mut ws, 5).await.0;
    assert_eq!(replay, vec![3, 4, 5], "{broker}");
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "confirm_history", "identifier": identifier}),
        "{broker}"
    );
    // The client last saw 1: message 2 is gone, so the request fails as a whole.
    request_history(&mut ws, &identifier, &stream, &positions[0]).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "reject_history", "identifier": identifier}),
        "{broker}"
    );
}

#[tokio::test]
async fn history_from_just_below_the_oldest_kept_memory() {
    history_from_just_below_the_oldest_kept("memory").await;
}

/// Needs NATS JetStream on 127.0.0.1:4222 (started by scripts/test.sh).
#[tokio::test]
async fn history_from_just_below_the_oldest_kept_nats() {
    history_from_just_below_the_oldest_kept("nats").await;
}

/// Needs Redis on 127.0.0.1:6379 (started by scripts/test.sh).
#[tokio::test]
async fn history_from_just_below_the_oldest_kept_redis() {
    history_from_just_below_the_oldest_kept("redis").await;
}

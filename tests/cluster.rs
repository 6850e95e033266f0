//! Clusters of anycable-rs processes sharing a distributed broker (`--broker=nats`) and
//! node-to-node pub/sub, against the real NATS (JetStream) at 127.0.0.1:4222 that
//! `scripts/test.sh` starts: messages published on one node reach subscribers of every node
//! exactly once, with positions from the shared broker, and a client that reconnects to
//! another node resumes its session there with every missed message.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

async fn node(broker: &str, pubsub: &str) -> Server {
    start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        &format!("--broker={broker}"),
        &format!("--pubsub={pubsub}"),
        "--broadcast_adapter=http",
    ])
    .await
}

/// The next broadcast's `n` and position.
async fn next_n(ws: &mut Ws) -> (u64, Value) {
    loop {
        let frame = ws.recv_json().await;
        if let Some(n) = frame["message"]["n"].as_u64() {
            return (n, frame);
        }
    }
}

/// Waits until a publication on `publisher` reaches `ws` (the node of `ws` subscribes to the
/// stream's pub/sub channel in the background), then returns the `n` it got.
async fn publish_until_delivered(publisher: &Server, stream: &str, ws: &mut Ws) -> u64 {
    for n in 1.. {
        publisher
            .publish(stream, &json!({"probe": n}).to_string())
            .await;
        if let Some(Frame::Json(frame, _)) = ws.next_frame(Duration::from_millis(300)).await {
            if frame["message"]["probe"].is_number() {
                return n;
            }
        }
    }
    unreachable!()
}

#[tokio::test]
async fn nats_broker_shares_positions_and_sessions_across_nodes() {
    shares("nats", "nats").await;
}

#[tokio::test]
async fn redis_broker_shares_positions_and_sessions_across_nodes() {
    shares("redis", "redis").await;
}

#[tokio::test]
async fn redis_broker_with_nats_pubsub() {
    shares("redis", "nats").await;
}

async fn shares(broker: &str, pubsub: &str) {
    let (a, b) = (node(broker, pubsub).await, node(broker, pubsub).await);
    let stream = unique("shared");
    let identifier = public_id(&stream);
    let (mut ws, sid) = ext_client(&a, "").await;
    ws.subscribe_ok(&identifier).await;
    publish_until_delivered(&b, &stream, &mut ws).await;
    for n in 1..=3 {
        b.publish(&stream, &json!({ "n": n }).to_string()).await;
    }
    let mut position = Value::Null;
    for n in 1..=3 {
        let (got, frame) = next_n(&mut ws).await;
        assert_eq!(got, n);
        assert_eq!(frame["stream_id"], stream.as_str(), "{frame}");
        position = json!({"epoch": frame["epoch"], "offset": frame["offset"]});
    }
    drop(ws);
    for n in 4..=6 {
        a.publish(&stream, &json!({ "n": n }).to_string()).await;
    }
    // The session comes back on the other node, and the history there has what was missed.
    let mut ws = b
        .ws_with(WsRequest::new(&format!("/cable?pi=0&sid={sid}")).protocol(EXT))
        .await;
    let welcome = ws.recv_json().await;
    assert_eq!(welcome["restored"], true, "{welcome}");
    assert_eq!(welcome["restored_ids"], json!([identifier]));
    ws.send_json(&json!({"command": "history", "identifier": identifier, "history": {"streams": {stream.clone(): position}}}))
        .await;
    for n in 4..=6 {
        assert_eq!(next_n(&mut ws).await.0, n);
    }
    let confirm = ws.recv_json().await;
    assert_eq!(confirm["type"], "confirm_history", "{confirm}");
}

/// A node with no subscriber of a stream subscribes to it on the pub/sub only when a client
/// does: the client's confirmation waits for that, so a message published right after the
/// confirmation reaches it.
async fn first_subscriber_gets_what_follows_the_confirmation(pubsub: &str) {
    let (a, b) = (node("none", pubsub).await, node("none", pubsub).await);
    let (mut ws, _) = a.ws_welcomed().await;
    for round in 0..20 {
        let stream = unique("fresh");
        ws.subscribe_ok(&public_id(&stream)).await;
        b.publish(&stream, &json!({ "n": round }).to_string()).await;
        assert_eq!(next_n(&mut ws).await.0, round);
    }
}

#[tokio::test]
async fn first_subscriber_on_a_node_misses_nothing_with_redis_pubsub() {
    first_subscriber_gets_what_follows_the_confirmation("redis").await;
}

#[tokio::test]
async fn first_subscriber_on_a_node_misses_nothing_with_nats_pubsub() {
    first_subscriber_gets_what_follows_the_confirmation("nats").await;
}

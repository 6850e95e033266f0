//! Node-to-node pub/sub over real Redis and NATS: publications, whispers and remote commands
//! reach every node's clients (docs/broadcasting.md).

mod support;

use std::time::{Duration, Instant};

use anycable_rs::clients::redis::Connection;
use serde_json::json;
use support::publishing::*;
use support::*;

// --- node-to-node pub/sub ---------------------------------------------------------------------

/// Waits until `n` Redis connections subscribe to `channel` (a node subscribes to a stream's
/// channel in the background after its first client subscribed).
async fn wait_numsub(redis: &mut Connection, channel: &str, n: i64) {
    let deadline = Instant::now() + SUBSCRIBED_WITHIN;
    loop {
        let reply = call(redis, &["PUBSUB", "NUMSUB", channel]).await;
        let items = reply.into_array().unwrap();
        if int(&items[1]) == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel} did not get {n} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pubsub_node(extra: &[&str]) -> Server {
    ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            &format!("--redis_url={REDIS_URL}"),
        ])
        .args(extra.iter().copied())
        .start()
        .await
}

#[tokio::test]
async fn redis_pubsub_carries_http_publications_to_every_node() {
    let stream = unique("ps-stream");
    let a = pubsub_node(&["--broker=memory"]).await;
    let b = pubsub_node(&[]).await;
    let log = a.output.all();
    assert!(
        log.contains("Starting Redis pub/sub: 127.0.0.1:6379"),
        "{log}"
    );
    let (mut wa, _) = a.ws_welcomed().await;
    let (mut wb, _) = b.ws_welcomed().await;
    wa.subscribe_ok(&public_id(&stream)).await;
    wb.subscribe_ok(&public_id(&stream)).await;
    let mut redis = redis().await;
    wait_numsub(&mut redis, &stream, 2).await;

    a.publish(&stream, r#"{"n":1}"#).await;
    let on_a = wa.recv_json().await;
    let on_b = wb.recv_json().await;
    assert_eq!(
        on_a, on_b,
        "the same frame, with A's position, on both nodes"
    );
    assert_eq!(on_a["message"], json!({"n": 1}));
    assert_eq!(on_a["offset"], json!(1), "{on_a}");
    assert!(on_a["epoch"].is_string(), "{on_a}");
    wa.expect_silence(SILENCE).await;
    wb.expect_silence(Duration::from_millis(50)).await;

    // The last client leaving unsubscribes the node from the stream's channel.
    wb.close().await;
    wait_numsub(&mut redis, &stream, 1).await;
}

#[tokio::test]
async fn redis_pubsub_carries_remote_commands_to_every_node() {
    let a = pubsub_node(&[]).await;
    let b = pubsub_node(&[]).await;
    let (mut gone, sid) = b.ws_welcomed().await;
    let (mut stays, _) = a.ws_welcomed().await;
    let command = json!({
        "command": "disconnect",
        "payload": {"identifier": json!({"sid": sid}).to_string(), "reconnect": false}
    });
    // The control channel is subscribed in the background too.
    assert!(
        b.wait_output("connected context=pubsub", SUBSCRIBED_WITHIN)
            .await,
        "{}",
        b.output.all()
    );
    assert_eq!(a.broadcast(&command.to_string()).await.status, 201);
    gone.expect_disconnect("remote", false, 1000, Some("Closed remotely"))
        .await;
    stays.expect_pong_next().await;
}

#[tokio::test]
async fn redisx_with_redis_pubsub_reaches_every_node_once() {
    // `redisx` turns the Redis pub/sub on by itself (as in AnyCable-Go).
    let stream = unique("ac-redisx");
    let group = unique("g");
    let target = unique("ps-stream");
    let args = [
        "--broadcast_adapter=redisx".to_string(),
        format!("--redisx_stream={stream}"),
        format!("--redisx_group={group}"),
        "--redisx_read_block_milliseconds=300".to_string(),
    ];
    let a = ServerBuilder::new()
        .args(["--noauth", "--public_streams"])
        .args(args.iter().cloned())
        .start()
        .await;
    let b = ServerBuilder::new()
        .args(["--noauth", "--public_streams"])
        .args(args.iter().cloned())
        .start()
        .await;
    let mut redis = redis().await;
    wait_consumers(&mut redis, &stream, &group, 2).await;
    let (mut wa, _) = a.ws_welcomed().await;
    let (mut wb, _) = b.ws_welcomed().await;
    wa.subscribe_ok(&public_id(&target)).await;
    wb.subscribe_ok(&public_id(&target)).await;
    wait_numsub(&mut redis, &target, 2).await;
    for i in 0..5 {
        xadd(&mut redis, &stream, &publication(&target, &json!(i))).await;
    }
    // Two consumers handle entries concurrently, so the order across them is not kept.
    for ws in [&mut wa, &mut wb] {
        let mut got: Vec<u64> = recv_n(ws, 5)
            .await
            .iter()
            .map(|f| f["message"].as_u64().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }
    wa.expect_silence(SILENCE).await;
    wb.expect_silence(Duration::from_millis(50)).await;
    call(&mut redis, &["DEL", &stream]).await;
}

#[tokio::test]
async fn nats_pubsub_carries_http_publications_to_every_node() {
    let stream = unique("ps-nats");
    let args = [
        "--noauth",
        "--public_streams",
        "--pubsub=nats",
        &format!("--nats_servers={NATS_URL}"),
    ];
    let a = start(&args).await;
    let b = start(&args).await;
    assert!(
        a.output
            .all()
            .contains(&format!("Starting NATS pub/sub: {NATS_URL}")),
        "{}",
        a.output.all()
    );
    let (mut wa, _) = a.ws_welcomed().await;
    let (mut wb, _) = b.ws_welcomed().await;
    wa.subscribe_ok(&public_id(&stream)).await;
    wb.subscribe_ok(&public_id(&stream)).await;
    // Subscriptions are made in the background: publish until both nodes deliver.
    let mut got_a = None;
    let mut got_b = None;
    for attempt in 0..50 {
        a.publish(&stream, &json!({"attempt": attempt}).to_string())
            .await;
        if got_a.is_none() {
            got_a = next_broadcast(&mut wa, Duration::from_millis(100)).await;
        }
        if got_b.is_none() {
            got_b = next_broadcast(&mut wb, Duration::from_millis(100)).await;
        }
        if got_a.is_some() && got_b.is_some() {
            break;
        }
    }
    assert!(got_a.is_some() && got_b.is_some(), "{got_a:?} {got_b:?}");
    // Once subscribed: exactly one copy per node, in order.
    while next_broadcast(&mut wa, SILENCE).await.is_some() {}
    while next_broadcast(&mut wb, Duration::from_millis(50))
        .await
        .is_some()
    {}
    b.publish(&stream, "\"last\"").await;
    for ws in [&mut wa, &mut wb] {
        assert_eq!(
            ws.recv_json().await,
            json!({"identifier": public_id(&stream), "message": "last"})
        );
        ws.expect_silence(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn redis_pubsub_carries_whispers_to_every_node_but_the_author() {
    let stream = unique("ps-whisper");
    let a = pubsub_node(&[]).await;
    let b = pubsub_node(&[]).await;
    let id = public_id(&stream);
    let (mut alice, _) = a.ws_welcomed().await;
    let (mut carol, _) = a.ws_welcomed().await;
    let (mut bob, _) = b.ws_welcomed().await;
    for ws in [&mut alice, &mut carol, &mut bob] {
        ws.subscribe_ok(&id).await;
    }
    let mut redis = redis().await;
    wait_numsub(&mut redis, &stream, 2).await;
    for data in [json!({"typing": true}), json!("a string")] {
        alice
            .send_json(&json!({"command": "whisper", "identifier": id, "data": data}))
            .await;
        for ws in [&mut bob, &mut carol] {
            assert_eq!(
                ws.recv_json().await,
                json!({"identifier": id, "message": data})
            );
        }
    }
    alice.expect_pong_next().await;
}

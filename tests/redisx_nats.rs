//! The Redis Streams (`redisx`) and NATS (`nats`) broadcasters against the real binary and real
//! services (docs/broadcasting.md). Every test uses its own stream or subject name.

mod support;

use std::time::{Duration, Instant};

use anycable_rs::clients::redis::Value as RedisValue;
use serde_json::json;
use support::publishing::*;
use support::*;

// --- redisx (Streams) -----------------------------------------------------------------------

async fn redisx_server(stream: &str, group: &str, extra: &[&str]) -> Server {
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--broadcast_adapter=http,redisx",
            &format!("--redis_url={REDIS_URL}"),
            &format!("--redisx_stream={stream}"),
            &format!("--redisx_group={group}"),
            "--redisx_read_block_milliseconds=300",
            "--pubsub=none",
        ])
        .args(extra.iter().copied())
        .start()
        .await;
    server
}

#[tokio::test]
async fn redisx_each_entry_is_delivered_by_exactly_one_node() {
    let stream = unique("ac-redisx");
    let group = unique("g");
    let a = redisx_server(&stream, &group, &[]).await;
    let b = redisx_server(&stream, &group, &[]).await;
    let log = a.output.all();
    assert!(
        lines_containing(&log, "Starting Redis broadcaster at 127.0.0.1:6379")
            .iter()
            .any(|l| l.contains(&format!("stream={stream}")) && l.contains("consumer=")),
        "{log}"
    );
    let mut redis = redis().await;
    wait_consumers(&mut redis, &stream, &group, 2).await;
    let (mut wa, _) = a.ws_welcomed().await;
    let (mut wb, _) = b.ws_welcomed().await;
    wa.subscribe_ok(&public_id("s")).await;
    wb.subscribe_ok(&public_id("s")).await;

    const N: usize = 20;
    for i in 0..N {
        xadd(&mut redis, &stream, &publication("s", &json!(i))).await;
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < N && Instant::now() < deadline {
        for ws in [&mut wa, &mut wb] {
            if let Some(value) = next_broadcast(ws, Duration::from_millis(50)).await {
                seen.push(value["message"].as_u64().unwrap() as usize);
            }
        }
    }
    seen.sort();
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "each entry exactly once");
    wa.expect_silence(SILENCE).await;
    wb.expect_silence(Duration::from_millis(50)).await;
    // Handled entries are acknowledged and deleted.
    let pending = call(&mut redis, &["XPENDING", &stream, &group]).await;
    assert_eq!(int(&pending.into_array().unwrap()[0]), 0);
    assert_eq!(int(&call(&mut redis, &["XLEN", &stream]).await), 0);
    call(&mut redis, &["DEL", &stream]).await;
}

#[tokio::test]
async fn redisx_claims_entries_left_pending_by_a_dead_consumer() {
    let stream = unique("ac-redisx");
    let group = unique("g");
    let mut redis = redis().await;
    call(
        &mut redis,
        &["XGROUP", "CREATE", &stream, &group, "$", "MKSTREAM"],
    )
    .await;
    xadd(&mut redis, &stream, &publication("s", &json!("orphan"))).await;
    // A consumer reads the entry and dies without acknowledging it.
    let read = call(
        &mut redis,
        &[
            "XREADGROUP",
            "GROUP",
            &group,
            "dead",
            "COUNT",
            "10",
            "STREAMS",
            &stream,
            ">",
        ],
    )
    .await;
    assert_ne!(read, RedisValue::Nil);

    let server = redisx_server(&stream, &group, &[]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    assert_eq!(
        ws.recv_json_within(Duration::from_secs(10)).await,
        json!({"identifier": public_id("s"), "message": "orphan"})
    );
    let pending = call(&mut redis, &["XPENDING", &stream, &group]).await;
    assert_eq!(int(&pending.into_array().unwrap()[0]), 0);
    call(&mut redis, &["DEL", &stream]).await;
}

#[tokio::test]
async fn redisx_garbage_and_missing_payload_are_acknowledged() {
    let stream = unique("ac-redisx");
    let group = unique("g");
    let server = redisx_server(&stream, &group, &[]).await;
    let mut redis = redis().await;
    wait_consumers(&mut redis, &stream, &group, 1).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    xadd(&mut redis, &stream, "garbage").await;
    call(&mut redis, &["XADD", &stream, "*", "other", "x"]).await;
    xadd(&mut redis, &stream, &publication("s", &json!("ok"))).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": "ok"})
    );
    let pending = call(&mut redis, &["XPENDING", &stream, &group]).await;
    assert_eq!(int(&pending.into_array().unwrap()[0]), 0);
    call(&mut redis, &["DEL", &stream]).await;
}

#[tokio::test]
async fn redisx_consumer_leaves_the_group_on_shutdown() {
    let stream = unique("ac-redisx");
    let group = unique("g");
    let mut server = redisx_server(&stream, &group, &[]).await;
    let mut redis = redis().await;
    wait_consumers(&mut redis, &stream, &group, 1).await;
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        server.output.all()
    );
    wait_consumers(&mut redis, &stream, &group, 0).await;
    call(&mut redis, &["DEL", &stream]).await;
}

// --- nats -----------------------------------------------------------------------------------

#[tokio::test]
async fn nats_publish_reaches_a_websocket_subscriber() {
    let subject = unique("ac-nats");
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--broadcast_adapter=http,nats",
            &format!("--nats_servers={NATS_URL}"),
            &format!("--nats_channel={subject}"),
        ])
        .start()
        .await;
    assert!(
        server
            .wait_output("subscribing for broadcasts", SUBSCRIBED_WITHIN)
            .await
    );
    let log = server.output.all();
    assert!(
        lines_containing(&log, "subscribing for broadcasts")
            .iter()
            .any(|l| l.contains(&format!("channel={subject}")) && l.contains("provider=nats")),
        "{log}"
    );
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("n")).await;
    let client = async_nats::connect(NATS_URL)
        .await
        .expect("NATS at 127.0.0.1:4222 (scripts/test.sh starts it)");
    // The server's SUB may still be on its way: publish until the first one arrives.
    let received =
        nats_publish_until_delivered(&client, &subject, "n", &mut ws, Duration::from_secs(10))
            .await;
    assert_eq!(received["identifier"], json!(public_id("n")));
    assert!(received["message"]["attempt"].is_u64(), "{received}");
    // Garbage is ignored, a batch works.
    client
        .publish(subject.clone(), "garbage".into())
        .await
        .unwrap();
    let batch = json!([{"stream": "n", "data": "1"}, {"stream": "n", "data": "2"}]);
    client
        .publish(subject.clone(), batch.to_string().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let frame = ws.recv_json().await;
        if frame["message"].is_u64() {
            messages.push(frame["message"].clone());
        }
    }
    assert_eq!(messages, vec![json!(1), json!(2)]);
    assert!(
        server
            .wait_output("failed to parse pubsub message", RECV_TIMEOUT)
            .await
    );
}

#[tokio::test]
async fn unreachable_nats_does_not_stop_the_server() {
    let dead_port = free_port();
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--broadcast_adapter=http,nats",
            &format!("--nats_servers=nats://127.0.0.1:{dead_port}"),
            // The NATS client's connection errors are logged at debug level.
            "--log_level=debug",
        ])
        .start()
        .await;
    // The server has tried NATS and failed, and is still up.
    assert!(
        server
            .wait_output("client error: nats", SUBSCRIBED_WITHIN)
            .await,
        "{}",
        server.output.all()
    );
    assert_eq!(server.get("/health").await.status, 200);
    // HTTP broadcasting still works.
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("h")).await;
    server.publish("h", "1").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("h"), "message": 1})
    );
}

#[tokio::test]
async fn invalid_nats_server_address_fails_the_start() {
    let (code, log) = run_failing(
        "",
        &[
            "--broadcast_adapter=nats",
            "--nats_servers=nats://host:notaport",
        ],
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("invalid NATS server address"), "{log}");
}

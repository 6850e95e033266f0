//! Fault tests of the broadcasters: the Redis or NATS server a broadcaster reads from is
//! killed mid-stream and started again. Each test runs its own `redis-server` /
//! `nats-server` on a spare port (killed on drop, even on panic).
//!
//! What must hold: the server and its clients stay up, and delivery resumes by itself once the
//! service is back. The Redis Streams broadcaster (`redisx`) loses nothing: entries added
//! while it reconnects wait in the stream for it. Redis and NATS pub/sub (`redis`, `nats`)
//! drop what is published while no subscriber is connected; that is their contract.
//!
//! The `redis` broadcaster's restart is in `tests/redis_nats.rs`; the pub/sub and brokers'
//! in `tests/cluster_faults.rs`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::publishing::*;
use support::*;

/// How long the server may take to get going again after the service came back.
const RECOVERY: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_redisx_broadcaster_resumes_after_a_redis_restart_and_loses_no_entry() {
    let port = free_port();
    let dir = TempDir::new();
    // Persistent: the stream and its consumer group survive the restart, as in production.
    let mut redis = OwnRedis::start_persistent(port, &dir);
    let mut connection = redis.ready().await;
    let stream = unique("ac-redisx-restart");
    let group = unique("g");
    let server = ServerBuilder::new()
        .args([
            "--noauth".to_string(),
            "--public_streams".into(),
            "--norpc".into(),
            "--broadcast_adapter=redisx".into(),
            format!("--redis_url={}", redis.url()),
            format!("--redisx_stream={stream}"),
            format!("--redisx_group={group}"),
            "--redisx_read_block_milliseconds=300".into(),
            "--pubsub=none".into(),
        ])
        .start()
        .await;
    wait_consumers(&mut connection, &stream, &group, 1).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    for n in 1..=5 {
        xadd(&mut connection, &stream, &publication("s", &json!(n))).await;
    }
    expect_numbers(&mut ws, 1..=5).await;

    redis.stop();
    server
        .expect_output("lost the connection to Redis", RECV_TIMEOUT)
        .await;
    let redis = OwnRedis::start_persistent(port, &dir);
    let mut connection = redis.ready().await;
    // Added at once, before the broadcaster is back: they wait in the stream for it.
    for n in 6..=15 {
        xadd(&mut connection, &stream, &publication("s", &json!(n))).await;
    }
    expect_numbers(&mut ws, 6..=15).await;
    let back = format!("connected to Redis at {} after", redis.url());
    server.expect_output(&back, RECV_TIMEOUT).await;
    ws.expect_pong_next().await;
    assert_eq!(server.get("/health").await.status, 200);
}

#[tokio::test]
async fn the_nats_broadcaster_resumes_after_a_nats_restart() {
    let mut nats = OwnNats::start().await;
    let subject = unique("ac-nats-restart");
    let server = ServerBuilder::new()
        .args([
            "--noauth".to_string(),
            "--public_streams".into(),
            "--norpc".into(),
            "--broadcast_adapter=nats".into(),
            format!("--nats_servers={}", nats.url()),
            format!("--nats_channel={subject}"),
            "--pubsub=none".into(),
        ])
        .start()
        .await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let publisher = async_nats::connect(nats.url()).await.expect("own NATS");
    nats_publish_until_delivered(&publisher, &subject, "s", &mut ws, RECOVERY).await;
    drop(publisher);

    nats.stop();
    server
        .expect_output("disconnected from NATS", RECV_TIMEOUT)
        .await;
    nats.restart().await;
    let publisher = async_nats::connect(nats.url()).await.expect("own NATS");
    // Whatever is published before the server subscribed again is gone (core NATS): publish
    // until one arrives, then every later publication must.
    nats_publish_until_delivered(&publisher, &subject, "s", &mut ws, RECOVERY).await;
    for n in 1..=10 {
        publisher
            .publish(subject.clone(), publication("s", &json!(n)).into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    expect_numbers(&mut ws, 1..=10).await;
    ws.expect_pong_next().await;
    assert_eq!(server.get("/health").await.status, 200);
}

/// Expects the broadcasts `first..=last` (numbers) next, in order, skipping leftover probes
/// (`{"attempt": k}`).
async fn expect_numbers(ws: &mut Ws, numbers: std::ops::RangeInclusive<u64>) {
    let mut seen = Vec::new();
    while seen.len() < numbers.clone().count() {
        let frame = ws.recv_json_within(RECOVERY).await;
        if frame["message"]["attempt"].is_u64() {
            continue;
        }
        seen.push(
            frame["message"]
                .as_u64()
                .unwrap_or_else(|| panic!("unexpected frame {frame}")),
        );
    }
    assert_eq!(seen, numbers.collect::<Vec<_>>(), "in order, none lost");
}

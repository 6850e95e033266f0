//! Publishing to the real Redis and NATS of the broadcaster and pub/sub tests, and a server
//! with the `redis` broadcaster. Publishing goes through the server's own RESP client.

use super::*;
use std::time::{Duration, Instant};

use anycable_rs::clients::redis::{Connection, RedisOptions, Value as RedisValue};
use anycable_rs::config::RedisConfig;
use serde_json::{json, Value};

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
/// Redis and NATS subscriptions are made in the background after start.
pub const SUBSCRIBED_WITHIN: Duration = Duration::from_secs(10);

pub async fn redis_at(url: &str) -> Connection {
    let options = RedisOptions::from_config(&RedisConfig {
        url: url.into(),
        ..RedisConfig::default()
    })
    .expect("redis options");
    Connection::open(&options)
        .await
        .expect("Redis at 127.0.0.1:6379 (scripts/test.sh starts it)")
}

pub async fn redis() -> Connection {
    redis_at(REDIS_URL).await
}

pub async fn call(redis: &mut Connection, args: &[&str]) -> RedisValue {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    redis.call(&args).await.expect("redis command")
}

pub fn int(value: &RedisValue) -> i64 {
    match value {
        RedisValue::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// `PUBLISH`; returns the number of receivers.
pub async fn publish(redis: &mut Connection, channel: &str, body: &str) -> i64 {
    int(&call(redis, &["PUBLISH", channel, body]).await)
}

/// Publishes `text` to stream `s` on `channel`, which exactly one server must be subscribed to,
/// and expects it at `ws` (subscribed to `s`).
pub async fn publish_and_receive(redis: &mut Connection, channel: &str, ws: &mut Ws, text: &str) {
    assert_eq!(
        publish(redis, channel, &publication("s", &json!(text))).await,
        1
    );
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": text})
    );
}

pub fn publication(stream: &str, data: &Value) -> String {
    json!({"stream": stream, "data": data.to_string()}).to_string()
}

/// A server with the `redis` broadcaster on `channel`, subscribed.
pub async fn redis_server(channel: &str, extra: &[&str]) -> Server {
    redis_server_from(ServerBuilder::new(), REDIS_URL, channel, extra).await
}

/// [`redis_server`] started by `builder`, with Redis at `url`.
pub async fn redis_server_from(
    builder: ServerBuilder,
    url: &str,
    channel: &str,
    extra: &[&str],
) -> Server {
    let server = builder
        .args([
            "--noauth",
            "--public_streams",
            "--broadcast_adapter=http,redis",
            &format!("--redis_url={url}"),
            &format!("--redis_channel={channel}"),
            "--pubsub=none",
        ])
        .args(extra.iter().copied())
        .start()
        .await;
    assert!(
        server
            .wait_output("subscribed to Redis channel", SUBSCRIBED_WITHIN)
            .await,
        "no subscription log:\n{}",
        server.output.all()
    );
    server
}

/// Runs the server expecting it to stop by itself (it may fail before a health check could see
/// it up), with `toml` as its `anycable.toml`; returns the exit code and all its output.
pub fn run_failing(toml: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = TempDir::new();
    dir.write("anycable.toml", toml);
    let ports = [
        format!("--port={}", free_port()),
        format!("--http_broadcast_port={}", free_port()),
    ];
    let mut all = vec![
        "--host=127.0.0.1",
        "--noauth",
        "--pubsub=none",
        &ports[0],
        &ports[1],
    ];
    all.extend_from_slice(args);
    let out = run_to_exit(&all, &[], dir.path(), Duration::from_secs(15));
    (out.code(), format!("{}{}", out.stdout, out.stderr))
}

/// Waits until the consumer group exists and has `n` consumers.
pub async fn wait_consumers(redis: &mut Connection, stream: &str, group: &str, n: usize) {
    let deadline = Instant::now() + SUBSCRIBED_WITHIN;
    loop {
        let reply = redis
            .call(&[b"XINFO", b"CONSUMERS", stream.as_bytes(), group.as_bytes()])
            .await;
        if let Ok(RedisValue::Array(consumers)) = reply {
            if consumers.len() == n {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "consumer group {group} did not get {n} consumers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn xadd(redis: &mut Connection, stream: &str, payload: &str) -> String {
    match call(redis, &["XADD", stream, "*", "payload", payload]).await {
        RedisValue::Bulk(id) => String::from_utf8(id).unwrap(),
        other => panic!("XADD: {other:?}"),
    }
}

/// Publishes `{"attempt": k}` to `stream` on the NATS `subject` until one reaches `ws` (the
/// server's subscription may still be on its way), and returns that frame.
pub async fn nats_publish_until_delivered(
    client: &async_nats::Client,
    subject: &str,
    stream: &str,
    ws: &mut Ws,
    limit: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    for attempt in 0.. {
        let body = publication(stream, &json!({ "attempt": attempt }));
        // While the connection is being re-established the client buffers or refuses: keep
        // trying until the deadline.
        let _ = client.publish(subject.to_string(), body.into()).await;
        let _ = client.flush().await;
        if let Some(value) = next_broadcast(ws, Duration::from_millis(200)).await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "no NATS publication on {subject} reached the client within {limit:?}"
        );
    }
    unreachable!()
}

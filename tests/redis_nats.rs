//! The Redis Pub/Sub (`redis`), Redis Streams (`redisx`) and NATS (`nats`) broadcasters
//! against the real binary and real services (broadcasting.md §4–6): Redis at
//! 127.0.0.1:6379 and NATS at 127.0.0.1:4222 (`scripts/test.sh` starts them).
//!
//! Every test uses its own channel, subject or stream name, so tests can run in parallel and
//! next to other users of the same services. Publishing is done with the server's own RESP
//! client (`anycable_rs::clients::redis`) and with `async-nats`.

mod support;

use std::time::{Duration, Instant};

use anycable_rs::clients::redis::{Connection, RedisOptions, Value as RedisValue};
use anycable_rs::config::RedisConfig;
use serde_json::{json, Value};
use support::*;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const NATS_URL: &str = "nats://127.0.0.1:4222";
/// Redis and NATS subscriptions are made in the background after start.
const SUBSCRIBED_WITHIN: Duration = Duration::from_secs(10);

async fn redis_at(url: &str) -> Connection {
    let options = RedisOptions::from_config(&RedisConfig {
        url: url.into(),
        ..RedisConfig::default()
    })
    .expect("redis options");
    Connection::open(&options)
        .await
        .expect("Redis at 127.0.0.1:6379 (scripts/test.sh starts it)")
}

async fn redis() -> Connection {
    redis_at(REDIS_URL).await
}

async fn call(redis: &mut Connection, args: &[&str]) -> RedisValue {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    redis.call(&args).await.expect("redis command")
}

fn int(value: &RedisValue) -> i64 {
    match value {
        RedisValue::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// `PUBLISH`; returns the number of receivers.
async fn publish(redis: &mut Connection, channel: &str, body: &str) -> i64 {
    int(&call(redis, &["PUBLISH", channel, body]).await)
}

/// Publishes `text` to stream `s` on `channel`, which exactly one server must be subscribed to,
/// and expects it at `ws` (subscribed to `s`).
async fn publish_and_receive(redis: &mut Connection, channel: &str, ws: &mut Ws, text: &str) {
    assert_eq!(
        publish(redis, channel, &publication("s", &json!(text))).await,
        1
    );
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": text})
    );
}

fn publication(stream: &str, data: &Value) -> String {
    json!({"stream": stream, "data": data.to_string()}).to_string()
}

/// A server with the `redis` broadcaster on `channel`, subscribed.
async fn redis_server(channel: &str, extra: &[&str]) -> Server {
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--broadcast_adapter=http,redis",
            &format!("--redis_url={REDIS_URL}"),
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

// --- redis (Pub/Sub) ------------------------------------------------------------------------

#[tokio::test]
async fn redis_publish_reaches_a_websocket_subscriber() {
    let channel = unique("ac-redis");
    let server = redis_server(&channel, &[]).await;
    let log = server.output.all();
    assert!(
        lines_containing(&log, "subscribed to Redis channel")
            .iter()
            .any(|l| l.contains(&format!("channel={channel}")) && l.contains("provider=redis")),
        "{log}"
    );
    assert!(log.contains("Broadcasting adapters: http, redis"), "{log}");
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("chat")).await;
    let mut redis = redis().await;
    let receivers = publish(
        &mut redis,
        &channel,
        &publication("chat", &json!({"text": "hi"})),
    )
    .await;
    assert_eq!(receivers, 1);
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("chat"), "message": {"text": "hi"}})
    );
}

#[tokio::test]
async fn redis_batches_are_delivered_in_order() {
    let channel = unique("ac-redis");
    let server = redis_server(&channel, &[]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("a")).await;
    ws.subscribe_ok(&public_id("b")).await;
    let batch = json!([
        {"stream": "a", "data": "1"},
        {"stream": "b", "data": "2"},
        {"stream": "a", "data": "\"three\""},
    ]);
    publish(&mut redis().await, &channel, &batch.to_string()).await;
    assert_eq!(
        recv_n(&mut ws, 3).await,
        vec![
            json!({"identifier": public_id("a"), "message": 1}),
            json!({"identifier": public_id("b"), "message": 2}),
            json!({"identifier": public_id("a"), "message": "three"}),
        ]
    );
}

#[tokio::test]
async fn redis_remote_disconnect_command() {
    let channel = unique("ac-redis");
    let server = redis_server(&channel, &[]).await;
    let (mut gone, sid) = server.ws_welcomed().await;
    let (mut stays, _) = server.ws_welcomed().await;
    let command = json!({
        "command": "disconnect",
        "payload": {"identifier": json!({"sid": sid}).to_string(), "reconnect": true}
    });
    publish(&mut redis().await, &channel, &command.to_string()).await;
    gone.expect_disconnect("remote", true, 1000, Some("Closed remotely"))
        .await;
    stays.expect_pong_next().await;
}

#[tokio::test]
async fn redis_garbage_is_counted_and_ignored() {
    let channel = unique("ac-redis");
    let server = redis_server(&channel, &[]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let mut redis = redis().await;
    for garbage in [
        "not json",
        r#"{"stream":"s","data":{"object":"is invalid"}}"#,
        "[]",
        "",
    ] {
        publish(&mut redis, &channel, garbage).await;
    }
    publish(&mut redis, &channel, &publication("s", &json!("after"))).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": "after"})
    );
    ws.expect_silence(SILENCE).await;
    let log = server.output.all();
    assert_eq!(
        lines_containing(&log, "failed to parse pubsub message").len(),
        4,
        "{log}"
    );
    // The counter, when the metrics endpoint exists in this build.
    let metrics = server.get("/metrics").await;
    if metrics.status == 200 {
        assert!(
            metrics.body.contains("failed_broadcast_msg_total 4"),
            "{}",
            metrics.body
        );
    }
}

#[tokio::test]
async fn only_the_configured_redis_channel_is_heard() {
    let channel = unique("ac-redis-custom");
    let other = unique("ac-redis-other");
    let server = redis_server(&channel, &[]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let mut redis = redis().await;
    assert_eq!(
        publish(&mut redis, &other, &publication("s", &json!("no"))).await,
        0
    );
    publish(&mut redis, &channel, &publication("s", &json!("yes"))).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": "yes"})
    );
}

#[tokio::test]
async fn redis_publications_bypass_the_broker() {
    // Fan-out broadcasters deliver without registering: no stream position, no history.
    let channel = unique("ac-redis");
    let server = redis_server(&channel, &["--broker=memory"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    publish(&mut redis().await, &channel, &publication("s", &json!(1))).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": 1})
    );
    server.publish("s", "2").await;
    let frame = ws.recv_json().await;
    assert_eq!(frame["message"], json!(2));
    assert_eq!(frame["offset"], json!(1), "{frame}");
}

#[tokio::test]
async fn unreachable_redis_stops_the_server_after_the_reconnect_attempts() {
    // An explicit `redis.max_reconnect_attempts` gives the reference's behaviour: retries, then
    // exit status 1 (by default this server retries for as long as it runs). One attempt keeps
    // the test short.
    let dead_port = free_port();
    let (code, log) = run_failing(
        "[redis]\nmax_reconnect_attempts = 1\n",
        &[
            "--broadcast_adapter=http,redis",
            &format!("--redis_url=redis://127.0.0.1:{dead_port}"),
        ],
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "Redis at redis://127.0.0.1:{dead_port} is not available"
        )),
        "{log}"
    );
    assert!(log.contains("Redis reconnect attempts exceeded"), "{log}");
}

#[tokio::test]
async fn redis_restart_is_survived_with_a_resubscription() {
    let port = free_port();
    let mut own = OwnRedis::start(port);
    own.ready().await;
    let channel = unique("ac-redis");
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--broadcast_adapter=redis",
            &format!("--redis_url=redis://127.0.0.1:{port}/3"),
            &format!("--redis_channel={channel}"),
            "--pubsub=none",
        ])
        .start()
        .await;
    assert!(
        server
            .wait_output("subscribed to Redis channel", SUBSCRIBED_WITHIN)
            .await
    );
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;

    own.stop();
    assert!(
        server
            .wait_output("lost the connection to Redis", RECV_TIMEOUT)
            .await,
        "{}",
        server.output.all()
    );
    let mut own = OwnRedis::start(port);
    let mut redis = own.ready().await;
    assert!(
        server
            .wait_output(
                &format!("connected to Redis at redis://127.0.0.1:{port} after"),
                Duration::from_secs(20),
            )
            .await,
        "{}",
        server.output.all()
    );
    // The database index of the URL does not matter for Pub/Sub, but SELECT must have worked.
    publish_and_receive(&mut redis, &channel, &mut ws, "back").await;
    own.stop();
}

#[tokio::test]
async fn rediss_with_a_password_and_a_verified_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a self-signed certificate");
    let dir = TempDir::new();
    let cert = dir.write("redis.crt", certified.cert.pem());
    let key = dir.write("redis.key", certified.signing_key.serialize_pem());
    let port = free_port();
    let own = OwnRedis::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            cert.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cr3t pw",
        ],
    );
    let url = format!("rediss://:s3cr3t%20pw@localhost:{port}/2");
    let mut redis = own.ready_at(&url).await;
    let channel = unique("ac-rediss");
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--broadcast_adapter=redis",
            &format!("--redis_url={url}"),
            &format!("--redis_channel={channel}"),
            "--redis_tls_verify",
            &format!("--redis_tls_ca_cert_path={}", cert.display()),
            "--pubsub=none",
        ])
        .start()
        .await;
    assert!(
        server
            .wait_output("subscribed to Redis channel", SUBSCRIBED_WITHIN)
            .await,
        "{}",
        server.output.all()
    );
    assert!(
        !server.output.all().contains("s3cr3t"),
        "the password is never logged"
    );
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("tls")).await;
    publish(
        &mut redis,
        &channel,
        &publication("tls", &json!("over TLS")),
    )
    .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("tls"), "message": "over TLS"})
    );
}

#[tokio::test]
async fn rediss_verification_without_the_ca_fails() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = TempDir::new();
    let cert = dir.write("redis.crt", certified.cert.pem());
    let key = dir.write("redis.key", certified.signing_key.serialize_pem());
    let port = free_port();
    let own = OwnRedis::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            cert.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ],
    );
    own.ready_at(&format!("rediss://localhost:{port}")).await;
    let (code, log) = run_failing(
        "[redis]\nmax_reconnect_attempts = 1\n",
        &[
            "--broadcast_adapter=redis",
            &format!("--redis_url=rediss://localhost:{port}"),
            "--redis_tls_verify",
        ],
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("Redis TLS"), "{log}");
}

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

async fn xadd(redis: &mut Connection, stream: &str, payload: &str) -> String {
    match call(redis, &["XADD", stream, "*", "payload", payload]).await {
        RedisValue::Bulk(id) => String::from_utf8(id).unwrap(),
        other => panic!("XADD: {other:?}"),
    }
}

/// Waits until the consumer group exists and has `n` consumers.
async fn wait_consumers(redis: &mut Connection, stream: &str, group: &str, n: usize) {
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
    let mut received = None;
    for attempt in 0..50 {
        let body = publication("n", &json!({"attempt": attempt}));
        client
            .publish(subject.clone(), body.into())
            .await
            .expect("publish");
        client.flush().await.expect("flush");
        if let Some(value) = next_broadcast(&mut ws, Duration::from_millis(200)).await {
            received = Some(value);
            break;
        }
    }
    let received = received.expect("a NATS publication reached the client");
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

/// Runs the server expecting it to stop by itself (it may fail before a health check could see
/// it up), with `toml` as its `anycable.toml`; returns the exit code and all its output.
fn run_failing(toml: &str, args: &[&str]) -> (Option<i32>, String) {
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
    // `redisx` turns the Redis pub/sub on by itself (config.md §6.7).
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

// --- Redis Sentinel -------------------------------------------------------------------------

/// `SENTINEL get-master-addr-by-name` as the sentinel at `port` answers it.
async fn sentinel_master(port: u16, name: &str) -> Option<u16> {
    let mut sentinel = redis_at(&format!("redis://127.0.0.1:{port}")).await;
    let reply = call(
        &mut sentinel,
        &["SENTINEL", "get-master-addr-by-name", name],
    )
    .await;
    reply.into_array()?.get(1)?.as_str()?.parse().ok()
}

#[tokio::test]
async fn redis_sentinel_names_the_master_and_a_failover_is_followed() {
    let (master_port, replica_port, sentinel_port) = (free_port(), free_port(), free_port());
    let mut master = OwnRedis::start(master_port);
    master.ready().await;
    let replica = OwnRedis::start_with(
        replica_port,
        &[
            "--port",
            &replica_port.to_string(),
            "--replicaof",
            "127.0.0.1",
            &master_port.to_string(),
        ],
    );
    let mut replica_connection = replica.ready().await;
    // The sentinel learns about the replica from the master: the replica must be attached.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = call(&mut replica_connection, &["INFO", "replication"]).await;
        if info
            .as_str()
            .is_some_and(|i| i.contains("master_link_status:up"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not attach: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = TempDir::new();
    let config = dir.write(
        "sentinel.conf",
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\n\
             sentinel monitor ac-master 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds ac-master 500\n\
             sentinel failover-timeout ac-master 2000\n"
        ),
    );
    let _sentinel = OwnRedis::sentinel(sentinel_port, &config);
    _sentinel.ready().await;
    assert_eq!(
        sentinel_master(sentinel_port, "ac-master").await,
        Some(master_port)
    );

    let channel = unique("ac-sentinel");
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--broadcast_adapter=redis",
            "--redis_url=redis://ac-master",
            &format!("--redis_sentinels=127.0.0.1:{sentinel_port}"),
            &format!("--redis_channel={channel}"),
            "--pubsub=none",
        ])
        .start()
        .await;
    assert!(
        server
            .wait_output("subscribed to Redis channel", SUBSCRIBED_WITHIN)
            .await,
        "{}",
        server.output.all()
    );
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let mut on_master = master.ready().await;
    publish_and_receive(&mut on_master, &channel, &mut ws, "first").await;

    // The master dies; the sentinel promotes the replica and the server follows it.
    master.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sentinel_master(sentinel_port, "ac-master").await != Some(replica_port) {
        assert!(Instant::now() < deadline, "the sentinel did not fail over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server
            .wait_output("connected to Redis at", Duration::from_secs(30))
            .await,
        "{}",
        server.output.all()
    );
    let mut on_new_master = replica.ready().await;
    publish_and_receive(&mut on_new_master, &channel, &mut ws, "after failover").await;
}

//! The Redis Pub/Sub (`redis`) broadcaster and Redis Sentinel
//! against the real binary and real services (docs/broadcasting.md): Redis at
//! 127.0.0.1:6379 and NATS at 127.0.0.1:4222 (`scripts/test.sh` starts them).
//!
//! Every test uses its own channel, subject or stream name, so tests can run in parallel and
//! next to other users of the same services. Publishing is done with the server's own RESP
//! client (`anycable_rs::clients::redis`) and with `async-nats`.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::publishing::*;
use support::*;

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
    server
        .expect_output("lost the connection to Redis", RECV_TIMEOUT)
        .await;
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

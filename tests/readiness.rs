//! Readiness (`--readiness_path`, docs/operations.md "Readiness") against real Redis, NATS and
//! RPC backends of the tests' own: a silently killed Redis subscription, a stopped NATS and a
//! dead backend each make the node not ready, and it is ready again once they are back; the
//! canaries never reach a client nor count as broadcasts.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// The canary period of these tests: shorter than the first reconnection delay of a Redis
/// subscription (at least 187 ms, see clients/reconnect.rs), so that a canary is certainly sent
/// while a killed subscription is away, and lost.
const PERIOD_MS: u64 = 100;
/// How long a state change may take to show (a NATS reconnection takes about 2 s).
const CHANGE_WITHIN: Duration = Duration::from_secs(20);

/// Polls `GET /ready` (every 20 ms) until it answers `status`; returns the body.
async fn wait_ready_status(server: &Server, status: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let response = server.get("/ready").await;
        if response.status == status {
            return response.body;
        }
        assert!(
            Instant::now() < deadline,
            "GET /ready did not answer {status} within {limit:?}; last: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the output after `from` has a line with every one of `needles`.
async fn wait_line_after(server: &Server, from: usize, needles: &[&str], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let output = server.output.all();
        if output[from..]
            .lines()
            .any(|line| needles.iter().all(|n| line.contains(n)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?} within {limit:?}:\n{}",
            &output[from..]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the Prometheus exposition until `name` has `value` (a check may flap under load, so
/// its gauge is waited for rather than read once).
async fn wait_metric(server: &Server, name: &str, value: u64) {
    let deadline = Instant::now() + CHANGE_WITHIN;
    loop {
        let current = metric(server, name).await;
        if current == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed {current}, not {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a metric in the Prometheus exposition.
async fn metric(server: &Server, name: &str) -> u64 {
    let response = server.get("/metrics").await;
    let text = response.body;
    let prefixed = format!("anycable_go_{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefixed))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `CLIENT KILL TYPE pubsub` (the `redis` broadcaster's and the pub/sub's subscriptions), then
/// waits until both checks logged their failure and their recovery.
async fn kill_subscriptions_and_wait_recovery(server: &Server, redis: &OwnRedis) {
    let mark = server.output.all().len();
    let killed = redis_cli(redis.port, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert!(killed.parse::<u32>().unwrap() >= 2, "killed {killed}");
    for check in ["check=pubsub", "check=broadcast_redis"] {
        wait_line_after(server, mark, &[check, "check fails"], CHANGE_WITHIN).await;
        wait_line_after(server, mark, &[check, "check passes again"], CHANGE_WITHIN).await;
    }
}

#[tokio::test]
async fn a_killed_redis_subscription_makes_the_node_not_ready_until_it_is_back() {
    let redis = OwnRedis::start(free_port());
    redis.ready().await;
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--norpc",
            "--node_id=readyredis",
            "--broadcast_adapter=http,redis",
            "--pubsub=redis",
            "--metrics_http=/metrics",
            &format!("--redis_url={}", redis.url()),
            &format!("--readiness_interval_ms={PERIOD_MS}"),
        ])
        .start()
        .await;
    wait_ready_status(&server, 200, CHANGE_WITHIN).await;
    wait_metric(&server, "readiness_pubsub", 1).await;
    wait_metric(&server, "readiness_broadcast_redis", 1).await;

    // A client that names this node's canary stream and leaves it does not unsubscribe the
    // node's pub/sub from its canaries: after the kill they come back.
    let canaries = "__anycable_canary__/readyredis";
    let (mut leaver, _) = server.ws_welcomed().await;
    leaver.subscribe_ok(&public_id(canaries)).await;
    leaver.close().await;
    kill_subscriptions_and_wait_recovery(&server, &redis).await;

    // A client subscribed to it gets nothing from it: canaries went by after it subscribed (the
    // checks passed again), yet its next message is the marker.
    let (mut nosy, _) = server.ws_welcomed().await;
    nosy.subscribe_ok(&public_id(canaries)).await;
    kill_subscriptions_and_wait_recovery(&server, &redis).await;
    wait_ready_status(&server, 200, CHANGE_WITHIN).await;
    wait_metric(&server, "readiness_pubsub", 1).await;

    // The marker is its next message, and the only broadcast counted.
    let marker = unique("marker");
    nosy.subscribe_ok(&public_id(&marker)).await;
    server.publish(&marker, "1").await;
    let first = nosy.recv_json().await;
    assert_eq!(first["identifier"], json!(public_id(&marker)), "{first}");
    assert_eq!(metric(&server, "broadcast_msg_total").await, 1);
}

#[tokio::test]
async fn a_stopped_nats_makes_the_node_not_ready_until_it_is_back() {
    let mut nats = OwnNats::start().await;
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--norpc",
            "--broadcast_adapter=http,nats",
            "--pubsub=nats",
            "--broker=nats",
            &format!("--nats_servers={}", nats.url()),
            &format!("--readiness_interval_ms={PERIOD_MS}"),
        ])
        .start()
        .await;
    assert_eq!(
        wait_ready_status(&server, 200, CHANGE_WITHIN).await,
        "ready\n"
    );

    nats.stop();
    let body = wait_ready_status(&server, 503, CHANGE_WITHIN).await;
    for check in ["broadcast_nats", "pubsub", "broker"] {
        assert!(body.contains(check), "{body}");
    }
    assert_eq!(
        server.get("/health").await.status,
        200,
        "liveness is not readiness"
    );

    nats.restart().await;
    wait_ready_status(&server, 200, CHANGE_WITHIN).await;
}

/// A real HTTP server (Python's) standing in for the application's HTTP RPC endpoint: the
/// readiness probe only needs an answer (`HEAD` gets 404 from it, as from a Rails app).
fn python_http_server(port: u16) -> Guarded {
    Guarded::spawn(
        Command::new("python3").args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ]),
        "python3 -m http.server",
    )
}

#[tokio::test]
async fn a_dead_http_rpc_backend_makes_the_node_not_ready() {
    let port = free_port();
    let mut backend = python_http_server(port);
    wait_port(port, Duration::from_secs(10)).await;
    let server = ServerBuilder::new()
        .args([
            "--broadcast_adapter=http",
            &format!("--rpc_host=http://127.0.0.1:{port}/_anycable"),
            &format!("--readiness_interval_ms={PERIOD_MS}"),
        ])
        .start()
        .await;
    wait_ready_status(&server, 200, CHANGE_WITHIN).await;

    backend.stop_with("KILL");
    let body = wait_ready_status(&server, 503, CHANGE_WITHIN).await;
    assert_eq!(body, "not ready: rpc\n");

    let _backend = python_http_server(port);
    wait_ready_status(&server, 200, CHANGE_WITHIN).await;
}

#[tokio::test]
async fn a_dead_grpc_backend_makes_the_node_not_ready() {
    let backend = GrpcBackend::start(free_port()).await;
    let server = ServerBuilder::new()
        .args([
            "--broadcast_adapter=http",
            &format!("--rpc_host=127.0.0.1:{}", backend.port),
            &format!("--readiness_interval_ms={PERIOD_MS}"),
        ])
        .start()
        .await;
    wait_ready_status(&server, 200, CHANGE_WITHIN).await;
    assert!(
        backend.health_checks() > 0,
        "the gRPC health service was asked"
    );
    assert_eq!(backend.connects(), 0, "readiness never calls Connect");

    let port = backend.port;
    backend.stop().await;
    assert_eq!(
        wait_ready_status(&server, 503, CHANGE_WITHIN).await,
        "not ready: rpc\n"
    );

    // Back on the same address, without the health service: an UNIMPLEMENTED answer proves
    // the backend is up just as well.
    let _backend = GrpcBackend::start_without_health(port).await;
    wait_ready_status(&server, 200, CHANGE_WITHIN).await;
}

#[tokio::test]
async fn readiness_can_be_turned_off_and_checks_nothing_by_default_without_services() {
    let plain = start(&["--noauth", "--norpc", "--broadcast_adapter=http"]).await;
    assert_eq!(
        wait_ready_status(&plain, 200, CHANGE_WITHIN).await,
        "ready\n"
    );
    let log = plain.startup_log().await;
    let url = format!(
        "Handle readiness requests at http://127.0.0.1:{}/ready",
        plain.port
    );
    assert!(log.contains(&url), "{log}");
    assert!(log.contains("Readiness checks every 2000ms: none"), "{log}");
    let off = start(&["--noauth", "--norpc", "--readiness_path="]).await;
    assert_eq!(off.get("/ready").await.status, 404);
}

//! The server under a backend that slows down, fails or cannot keep up: the adaptive RPC
//! concurrency limit (`--rpc_concurrency=0`, read from `/metrics` as `rpc_capacity_num`), and
//! the admission of `Connect` calls (`--rpc_connect_max_wait`): established sessions' calls
//! first, a `disconnect` with `reconnect: true` for a client that would wait too long, and no
//! call for a client that left while its `Connect` waited.
//!
//! The backend is a real gRPC server (tests/support/grpc_backend.rs) steered by each test.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sse::SseRequest;
use support::*;
use tokio::time::{timeout, Instant};

/// How long a metric or a backend counter may take to reach the expected value.
const SETTLE: Duration = Duration::from_secs(20);
const CHANNEL: &str = r#"{"channel":"LoadChannel"}"#;
/// Calls held (or retried) by the backend must not hit the whole-call timeout while a test
/// looks at the queue or the limit.
const HELD: &str = "--rpc_command_timeout=30000";

async fn start_with(port: u16, args: &[&str]) -> Server {
    let rpc = format!("--rpc_host=127.0.0.1:{port}");
    let mut all = vec![
        rpc.as_str(),
        "--metrics_http=/metrics",
        "--disconnect_mode=never",
    ];
    all.extend_from_slice(args);
    start(&all).await
}

/// The value of `anycable_go_<name>` on `/metrics`.
async fn metric(server: &Server, name: &str) -> u64 {
    let body = server.get("/metrics").await.body;
    let line = format!("anycable_go_{name}");
    body.lines()
        .find(|l| l.starts_with(&line) && l[line.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

/// Polls a metric until `accept` takes it; returns it, or fails with what was seen.
async fn wait_metric(server: &Server, name: &str, what: &str, accept: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + SETTLE;
    let mut seen = Vec::new();
    loop {
        let value = metric(server, name).await;
        if accept(value) {
            return value;
        }
        if seen.last() != Some(&value) {
            seen.push(value);
        }
        assert!(
            Instant::now() < deadline,
            "{name}: expected {what}; saw {seen:?}"
        );
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

/// `clients` connections performing actions one after the other, for as long as the returned
/// handles live. A call that fails sends nothing back: the client tries again after a while.
async fn load(server: &Server, clients: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for _ in 0..clients {
        let mut ws = server.ws_with(WsRequest::new("/cable?pi=0")).await;
        ws.expect_welcome().await;
        ws.subscribe_ok(CHANNEL).await;
        handles.push(tokio::spawn(async move {
            loop {
                let perform = json!({"command": "message", "identifier": CHANNEL,
                                     "data": "{\"action\":\"work\"}"});
                ws.send_json(&perform).await;
                let _ = timeout(Duration::from_secs(1), ws.recv_json()).await;
            }
        }));
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_adaptive_limit_shrinks_when_the_backend_slows_or_fails_and_grows_back() {
    let (port, backend) = grpc_backend().await;
    backend.set_latency(Duration::from_millis(20));
    let server = start_with(
        port,
        &[
            "--rpc_concurrency=0",
            "--rpc_concurrency_initial=20",
            "--rpc_concurrency_min=2",
            "--rpc_concurrency_max=40",
            HELD,
        ],
    )
    .await;
    assert!(
        server
            .wait_output(
                "concurrency: auto (initial=20, min=2, max=40)",
                RECV_TIMEOUT
            )
            .await
    );
    assert_eq!(metric(&server, "rpc_capacity_num").await, 20);
    let _load = load(&server, 30).await;

    // Healthy and busy: the limit grows past its initial value.
    wait_metric(&server, "rpc_capacity_num", "above 20", |n| n > 20).await;
    assert!(metric(&server, "rpc_inflight_num").await <= 40);

    // 20 ms → 400 ms: the backend slows down and the limit follows it down.
    backend.set_latency(Duration::from_millis(400));
    wait_metric(&server, "rpc_capacity_num", "at most 12", |n| n <= 12).await;
    backend.set_latency(Duration::from_millis(20));
    wait_metric(&server, "rpc_capacity_num", "back above 20", |n| n > 20).await;

    // RESOURCE_EXHAUSTED for every call: far down (retries back off, so the last steps to
    // the floor take a while), then back up once it stops.
    backend.set_exhausted(true);
    wait_metric(&server, "rpc_capacity_num", "at most 8", |n| n <= 8).await;
    backend.set_exhausted(false);
    wait_metric(&server, "rpc_capacity_num", "back above 20", |n| n > 20).await;

    assert!(
        backend.peak() <= 40,
        "peak {} over the ceiling",
        backend.peak()
    );
}

#[tokio::test]
async fn a_fixed_limit_is_the_default_and_is_reported() {
    let (port, _backend) = grpc_backend().await;
    let server = start_with(port, &[]).await;
    assert!(server.wait_output("concurrency: 28,", RECV_TIMEOUT).await);
    assert_eq!(metric(&server, "rpc_capacity_num").await, 28);
}

#[tokio::test]
async fn adaptive_bounds_with_a_fixed_limit_are_called_out() {
    let (port, _backend) = grpc_backend().await;
    let server = start_with(port, &["--rpc_concurrency=10", "--rpc_concurrency_max=50"]).await;
    assert!(
        server
            .wait_output(
                "apply only with --rpc_concurrency=0 (adaptive); the limit stays 10",
                RECV_TIMEOUT
            )
            .await
    );
    assert_eq!(metric(&server, "rpc_capacity_num").await, 10);
}

#[tokio::test]
async fn adaptive_bounds_out_of_order_stop_the_server() {
    let dir = TempDir::new();
    let port = free_port().to_string();
    let out = run_to_exit(
        &[
            "--port",
            &port,
            "--rpc_concurrency=0",
            "--rpc_concurrency_min=10",
            "--rpc_concurrency_initial=5",
        ],
        &[],
        dir.path(),
        Duration::from_secs(15),
    );
    assert_ne!(out.code(), Some(0));
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("--rpc_concurrency_min (10) <= --rpc_concurrency_initial (5)"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_its_connect_waits_costs_no_call() {
    let (port, backend) = grpc_backend().await;
    backend.hold_connects(true);
    let server = start_with(
        port,
        &["--rpc_concurrency=1", "--rpc_connect_max_wait=0", HELD],
    )
    .await;
    // The only slot: a Connect the backend holds.
    let mut first = server.ws().await;
    wait_for(|| backend.connects() == 1).await;
    // Five more wait for the slot, then go away.
    let mut waiting = Vec::new();
    for _ in 0..5 {
        waiting.push(server.ws().await);
    }
    wait_metric(&server, "rpc_pending_num", "5 waiting", |n| n == 5).await;
    for ws in waiting {
        ws.close().await;
    }
    wait_metric(&server, "rpc_canceled_total", "5 canceled", |n| n == 5).await;
    assert_eq!(metric(&server, "rpc_pending_num").await, 0);
    backend.hold_connects(false);
    first.expect_welcome().await;
    // A later client is served next: nothing was left queued before it.
    let (_last, _) = server.ws_welcomed().await;
    assert_eq!(
        backend.connects(),
        2,
        "only the first and the last client were called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_waits_too_long_is_told_to_reconnect_later() {
    let (port, backend) = grpc_backend().await;
    backend.hold_connects(true);
    let server = start_with(
        port,
        &["--rpc_concurrency=1", "--rpc_connect_max_wait=300", HELD],
    )
    .await;
    let mut first = server.ws().await;
    wait_for(|| backend.connects() == 1).await;
    let started = Instant::now();
    let mut second = server.ws().await;
    second
        .expect_disconnect("server_busy", true, 1013, Some("Try Again Later"))
        .await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "refused after {waited:?}, not within the 300 ms bound"
    );
    assert_eq!(metric(&server, "rpc_connect_deferred_total").await, 1);
    backend.hold_connects(false);
    first.expect_welcome().await;
    let (_last, _) = server.ws_welcomed().await;
    assert_eq!(backend.connects(), 2, "the refused client was never called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_request_that_would_wait_too_long_gets_503() {
    let (port, backend) = grpc_backend().await;
    backend.hold_connects(true);
    let server = start_with(
        port,
        &[
            "--sse",
            "--public_streams",
            "--rpc_concurrency=1",
            "--rpc_connect_max_wait=300",
            HELD,
        ],
    )
    .await;
    let mut first = server.ws().await;
    wait_for(|| backend.connects() == 1).await;
    let refused = SseRequest::get("/events?stream=news").send(&server).await;
    assert_eq!(refused.status, 503);
    assert_eq!(metric(&server, "rpc_connect_deferred_total").await, 1);
    backend.hold_connects(false);
    first.expect_welcome().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_sessions_calls_go_before_new_connects() {
    let (port, backend) = grpc_backend().await;
    let server = start_with(
        port,
        &["--rpc_concurrency=1", "--rpc_connect_max_wait=10000", HELD],
    )
    .await;
    let mut session = server.ws_with(WsRequest::new("/cable?pi=0")).await;
    session.expect_welcome().await;
    session.subscribe_ok(CHANNEL).await;
    backend.set_latency(Duration::from_millis(500));
    // One Connect in flight, one waiting for the slot, then the session's action waits too.
    let _busy = server.ws().await;
    wait_for(|| backend.connects() == 2).await;
    let mut newcomer = server.ws_with(WsRequest::new("/cable?pi=0")).await;
    wait_metric(&server, "rpc_pending_num", "1 waiting", |n| n == 1).await;
    let perform = json!({"command": "message", "identifier": CHANNEL, "data": "{}"});
    session.send_json(&perform).await;
    wait_metric(&server, "rpc_pending_num", "2 waiting", |n| n == 2).await;
    // The action, queued last, is served first.
    let reply = session.recv_json_within(Duration::from_secs(5)).await;
    assert_eq!(reply["message"], "message", "{reply}");
    newcomer.expect_welcome().await;
    assert_eq!(
        backend.arrivals(),
        ["connect", "subscribe", "connect", "message", "connect"]
    );
}

/// Waits (polling) until `done` holds.
async fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {SETTLE:?}"
        );
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

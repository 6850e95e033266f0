//! Metrics against the real binary: the Prometheus endpoint (main and dedicated listeners,
//! tags), the interval gauges, the log writer and StatsD (docs/metrics.md).
//!
//! Gauges and writers work on intervals, so tests poll for the expected state with a deadline
//! instead of sleeping.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a test waits for a gauge refresh or a writer rotation (intervals are 1 s here).
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// GETs `path` on `addr` until the body satisfies `done`; panics with the last body after
/// [`METRICS_TIMEOUT`].
async fn scrape_until(addr: &str, path: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + METRICS_TIMEOUT;
    loop {
        let response = http_request_on(addr, None, "GET", path, &[], b"").await;
        assert_eq!(response.status, 200, "GET {path} on {addr}: {response:?}");
        if done(&response.body) {
            return response.body;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: not seen within {METRICS_TIMEOUT:?}; last scrape:\n{}",
                response.body
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The sample line of `name` (prefixed), e.g. `anycable_go_clients_num 1`.
fn sample<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let full = format!("anycable_go_{name}");
    body.lines().find(|l| {
        l.strip_prefix(&full)
            .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
    })
}

/// The value of an unlabelled counter in a Prometheus exposition.
fn counter(body: &str, name: &str) -> Option<u64> {
    sample(body, name)?.rsplit(' ').next()?.parse().ok()
}

fn has_sample(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

async fn wait_output(server: &Server, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + METRICS_TIMEOUT;
    loop {
        let out = server.output.all();
        if done(&out) {
            return out;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not in the server output within {METRICS_TIMEOUT:?}:\n{out}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Metrics log records (text format): lines with `context=metrics` and no message.
fn metric_records(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains(" INF  context=metrics "))
        .collect()
}

fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

// --- Prometheus ------------------------------------------------------------------------------

#[tokio::test]
async fn prometheus_counts_clients_and_broadcasts() {
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        "--metrics_http=/metrics",
        "--stats_refresh_interval=1",
    ])
    .await;
    let log = server.startup_log().await;
    assert!(
        log.contains(&format!(
            "Serve metrics at http://127.0.0.1:{}/metrics",
            server.port
        )),
        "{log}"
    );

    let first = server.get("/metrics").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(first.body.contains(
        "\n# TYPE anycable_go_broadcast_msg_total counter\nanycable_go_broadcast_msg_total 0\n"
    ));
    assert!(first
        .body
        .contains("\n# TYPE anycable_go_clients_num gauge\n"));
    for name in [
        "client_msg_total",
        "failed_client_msg_total",
        "failed_auths_total",
        "disconnected_slow_clients_total",
        "publications_total",
        "failed_broadcast_msg_total",
        "remote_commands_total",
        "clients_uniq_num",
        "broadcast_streams_num",
        "disconnect_queue_size",
        "goroutines_num",
        "mem_sys_bytes",
        "server_msg_total",
        "failed_server_msg_total",
        "timeout_server_msg_total",
        "data_sent_total",
        "data_rcvd_total",
    ] {
        assert!(
            sample(&first.body, name).is_some(),
            "{name} missing:\n{}",
            first.body
        );
    }
    // --norpc: no RPC metrics; no --sse: no SSE gauge.
    assert!(!first.body.contains("anycable_go_rpc_"), "{}", first.body);
    assert!(!first.body.contains("sse_clients_num"), "{}", first.body);

    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("metrics_stream");
    ws.subscribe_ok(&id).await;
    let body = scrape_until(&server.addr(), "/metrics", "one client", |b| {
        has_sample(b, "anycable_go_clients_num 1")
            && has_sample(b, "anycable_go_clients_uniq_num 1")
            && has_sample(b, "anycable_go_broadcast_streams_num 1")
    })
    .await;
    assert!(
        has_sample(&body, "anycable_go_client_msg_total 1"),
        "{body}"
    );
    let memory: u64 = sample(&body, "mem_sys_bytes")
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(memory > 1_000_000, "{body}");
    let tasks: u64 = sample(&body, "goroutines_num")
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(tasks >= 1, "{body}");

    server.publish("metrics_stream", "hello").await;
    ws.recv_json().await;
    // Counters are live: no refresh needed.
    let body = server.get("/metrics").await.body;
    assert!(
        has_sample(&body, "anycable_go_broadcast_msg_total 1"),
        "{body}"
    );
    assert!(
        has_sample(&body, "anycable_go_publications_total 1"),
        "{body}"
    );

    ws.close().await;
    scrape_until(&server.addr(), "/metrics", "client gone", |b| {
        has_sample(b, "anycable_go_clients_num 0")
            && has_sample(b, "anycable_go_broadcast_streams_num 0")
    })
    .await;
}

#[tokio::test]
async fn frames_and_bytes_written_and_read_are_counted() {
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        "--metrics_http=/metrics",
    ])
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("counted")).await;
    server.publish("counted", r#"{"n":1}"#).await;
    ws.recv_json().await;
    let value = |body: &str, name: &str| -> u64 {
        sample(body, name)
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // welcome + confirmation + broadcast = 3 frames written; the subscribe command was read.
    let body = scrape_until(&server.addr(), "/metrics", "frames written", |b| {
        value(b, "server_msg_total") >= 3
    })
    .await;
    assert!(value(&body, "data_sent_total") > 100, "{body}");
    assert!(value(&body, "data_rcvd_total") > 40, "{body}");
    assert_eq!(value(&body, "failed_server_msg_total"), 0, "{body}");
}

#[tokio::test]
async fn tags_become_labels() {
    let server = start(&[
        "--noauth",
        "--metrics_http=/prom",
        "--metrics_tags=env:test,node_id:xyz",
    ])
    .await;
    let body = server.get("/prom").await.body;
    assert!(
        has_sample(
            &body,
            "anycable_go_clients_num{env=\"test\", node_id=\"xyz\"} 0"
        ),
        "{body}"
    );
    assert!(
        has_sample(
            &body,
            "anycable_go_rpc_pending_num{env=\"test\", node_id=\"xyz\"} 0"
        ),
        "RPC is on by default:\n{body}"
    );
    assert_eq!(server.get("/metrics").await.status, 404);
}

#[tokio::test]
async fn without_metrics_http_there_is_no_endpoint() {
    let server = start(&["--noauth"]).await;
    assert_eq!(server.get("/metrics").await.status, 404);
    assert!(!server.startup_log().await.contains("Serve metrics"));
}

#[tokio::test]
async fn a_metrics_port_gets_its_own_listener() {
    let metrics_port = free_port();
    let server = start(&[
        "--noauth",
        "--metrics_http=/metrics",
        &format!("--metrics_port={metrics_port}"),
    ])
    .await;
    let log = server.startup_log().await;
    assert!(
        log.contains(&format!(
            "Serve metrics at http://127.0.0.1:{metrics_port}/metrics"
        )),
        "{log}"
    );
    let addr = format!("127.0.0.1:{metrics_port}");
    let response = http_request_on(&addr, None, "GET", "/metrics", &[], b"").await;
    assert_eq!(response.status, 200);
    assert!(sample(&response.body, "clients_num").is_some());
    // Only the metrics path there, and no metrics on the main port.
    let health = http_request_on(&addr, None, "GET", "/health", &[], b"").await;
    assert_eq!(health.status, 404);
    assert_eq!(server.get("/metrics").await.status, 404);
}

#[tokio::test]
async fn a_metrics_host_gets_a_dedicated_listener() {
    let metrics_port = free_port();
    let server = start(&[
        "--noauth",
        "--metrics_http=/metrics",
        "--metrics_host=localhost",
        &format!("--metrics_port={metrics_port}"),
    ])
    .await;
    let log = server.startup_log().await;
    assert!(
        log.contains(&format!(
            "Serve metrics at http://localhost:{metrics_port}/metrics"
        )),
        "{log}"
    );
    let addr = format!("127.0.0.1:{metrics_port}");
    let response = http_request_on(&addr, None, "GET", "/metrics", &[], b"").await;
    assert_eq!(response.status, 200);
    assert!(sample(&response.body, "broadcast_msg_total").is_some());
}

#[tokio::test]
async fn metrics_can_share_the_broadcast_port() {
    let broadcast_port = free_port();
    let server = ServerBuilder::new()
        .broadcast_port(BroadcastPort::Main)
        .args([
            "--noauth".to_string(),
            "--metrics_http=/metrics".to_string(),
            format!("--http_broadcast_port={broadcast_port}"),
            format!("--metrics_port={broadcast_port}"),
        ])
        .start()
        .await;
    let addr = format!("127.0.0.1:{broadcast_port}");
    let response = http_request_on(&addr, None, "GET", "/metrics", &[], b"").await;
    assert_eq!(response.status, 200, "{response:?}");
    let body = serde_json::json!({"stream": "s", "data": "x"}).to_string();
    let published = http_request_on(
        &addr,
        None,
        "POST",
        "/_broadcast",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(published.status, 201);
    let response = http_request_on(&addr, None, "GET", "/metrics", &[], b"").await;
    assert!(has_sample(
        &response.body,
        "anycable_go_broadcast_msg_total 1"
    ));
    assert_eq!(server.get("/metrics").await.status, 404);
}

#[tokio::test]
async fn sse_clients_are_a_live_gauge() {
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--sse",
        "--metrics_http=/metrics",
        "--stats_refresh_interval=0",
    ])
    .await;
    let body = server.get("/metrics").await.body;
    assert!(has_sample(&body, "anycable_go_sse_clients_num 0"), "{body}");

    let mut sse = TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "GET /events?stream=chat HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr()
    );
    sse.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(RECV_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sse.read(&mut buf).await.unwrap();
            assert!(n > 0, "SSE connection closed early");
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("SSE response head");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    scrape_until(&server.addr(), "/metrics", "one SSE client", |b| {
        has_sample(b, "anycable_go_sse_clients_num 1")
    })
    .await;
    drop(sse);
    let body = scrape_until(&server.addr(), "/metrics", "SSE client gone", |b| {
        has_sample(b, "anycable_go_sse_clients_num 0")
    })
    .await;
    // --stats_refresh_interval=0: interval gauges are never refreshed.
    assert!(has_sample(&body, "anycable_go_goroutines_num 0"), "{body}");
    assert!(has_sample(&body, "anycable_go_mem_sys_bytes 0"), "{body}");
}

// --- Log writer ------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_log_prints_a_record_per_rotation() {
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--metrics_log",
        "--metrics_rotate_interval=1",
        "--stats_refresh_interval=1",
    ])
    .await;
    let log = server.startup_log().await;
    assert!(
        log.contains("log metrics context=metrics interval=1"),
        "{log}"
    );

    let out = wait_output(&server, "a metrics record", |out| {
        !metric_records(out).is_empty()
    })
    .await;
    let record = metric_records(&out)[0];
    assert!(record.contains(" nodeid="), "{record}");
    let names: Vec<&str> = record
        .split_whitespace()
        .filter_map(|pair| pair.split_once('=').map(|(k, _)| k))
        .filter(|k| *k != "context" && *k != "nodeid")
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "attributes sorted by name: {record}");
    for name in [
        "broadcast_msg_total",
        "clients_num",
        "rpc_call_total",
        "mem_sys_bytes",
    ] {
        assert!(names.contains(&name), "{name} missing: {record}");
    }

    // Counters are deltas per rotation: one publication shows up once, then 0 again.
    server.publish("logged", "x").await;
    let out = wait_output(&server, "a record with the publication", |out| {
        metric_records(out)
            .iter()
            .any(|r| attribute(r, "broadcast_msg_total") == Some("1"))
    })
    .await;
    let seen = metric_records(&out)
        .iter()
        .position(|r| attribute(r, "broadcast_msg_total") == Some("1"))
        .unwrap();
    wait_output(&server, "the next record", |out| {
        metric_records(out).len() > seen + 1
    })
    .await;
    let out = server.output.all();
    let records = metric_records(&out);
    assert_eq!(
        records
            .iter()
            .filter(|r| attribute(r, "broadcast_msg_total") == Some("1"))
            .count(),
        1,
        "{out}"
    );
    assert_eq!(
        attribute(records[seen + 1], "broadcast_msg_total"),
        Some("0")
    );
}

#[tokio::test]
async fn metrics_log_filter_keeps_only_the_named_metrics() {
    let server = start(&[
        "--noauth",
        "--metrics_log",
        "--metrics_rotate_interval=1",
        "--metrics_log_filter=clients_num,failed_auths_total",
    ])
    .await;
    let log = server.startup_log().await;
    assert!(
        log.contains(
            "log metrics context=metrics interval=1 fields=clients_num,failed_auths_total"
        ),
        "{log}"
    );
    let out = wait_output(&server, "a metrics record", |out| {
        !metric_records(out).is_empty()
    })
    .await;
    let record = metric_records(&out)[0];
    let names: Vec<&str> = record
        .split_whitespace()
        .filter_map(|pair| pair.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(
        names,
        ["context", "clients_num", "failed_auths_total", "nodeid"],
        "{record}"
    );
}

// --- StatsD ----------------------------------------------------------------------------------

/// Receives StatsD packets until one line satisfies `done`; returns every packet seen.
async fn statsd_until(socket: &UdpSocket, what: &str, done: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + METRICS_TIMEOUT;
    let mut packets = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let packet = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 packet");
                let found = packet.lines().any(&done);
                packets.push(packet);
                if found {
                    return packets;
                }
            }
            Ok(Err(error)) => panic!("UDP receive failed: {error}"),
            Err(_) => {
                panic!("{what}: no such StatsD line within {METRICS_TIMEOUT:?}; got {packets:#?}")
            }
        }
    }
}

#[tokio::test]
async fn statsd_receives_counters_as_deltas_and_gauges() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = socket.local_addr().unwrap();
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        &format!("--statsd_host={target}"),
        "--metrics_rotate_interval=1",
        "--stats_refresh_interval=1",
        "--metrics_tags=env:test",
    ])
    .await;
    let log = server.startup_log().await;
    assert!(
        log.contains(&format!(
            "Send statsd metrics to {target} with every 1s (prefix=anycable_go., tags=map[env:test], style=datadog)"
        )),
        "{log}"
    );

    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("statsd")).await;
    statsd_until(&socket, "clients_num gauge", |l| {
        l == "anycable_go.clients_num:1|g|#env:test"
    })
    .await;
    server.publish("statsd", "x").await;
    ws.recv_json().await;
    let packets = statsd_until(&socket, "broadcast delta", |l| {
        l == "anycable_go.broadcast_msg_total:1|c|#env:test"
    })
    .await;
    let last = packets.last().unwrap();
    for line in last.lines() {
        assert!(
            line.starts_with("anycable_go.") && line.ends_with("|#env:test"),
            "{line}"
        );
        assert!(line.contains("|c|") || line.contains("|g|"), "{line}");
    }
    assert!(!last.contains("rpc_"), "--norpc: {last}");
    // The next rotation reports no new broadcast.
    statsd_until(&socket, "zero delta", |l| {
        l == "anycable_go.broadcast_msg_total:0|c|#env:test"
    })
    .await;
}

#[tokio::test]
async fn statsd_prefix_tags_format_and_packet_size() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = socket.local_addr().unwrap();
    let _server = start(&[
        "--noauth",
        &format!("--statsd_host={target}"),
        "--statsd_prefix=ac.",
        "--statsd_tags_format=influxdb",
        "--statsd_max_packet_size=200",
        "--metrics_rotate_interval=1",
        "--metrics_tags=env:test,region:eu",
    ])
    .await;
    // A whole rotation spans several packets: collect until the last gauge of the set.
    let packets = statsd_until(&socket, "a full rotation", |l| {
        l.starts_with("ac.rpc_pending_num,env=test,region=eu:")
    })
    .await;
    let lines: Vec<&str> = packets.iter().flat_map(|p| p.lines()).collect();
    assert!(
        lines.contains(&"ac.clients_num,env=test,region=eu:0|g"),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"ac.failed_auths_total,env=test,region=eu:0|c"),
        "{lines:#?}"
    );
    assert!(packets.len() > 1, "{packets:#?}");
    for packet in &packets {
        assert!(packet.len() <= 200, "{} bytes: {packet}", packet.len());
    }
}

// --- Refusals --------------------------------------------------------------------------------

#[test]
fn unknown_statsd_tags_format_refuses_to_start() {
    let dir = TempDir::new();
    let port = free_port().to_string();
    let out = run_to_exit(
        &[
            "--ignore-config-path",
            "--noauth",
            "--host=127.0.0.1",
            &format!("--port={port}"),
            &format!("--http_broadcast_port={}", free_port()),
            "--statsd_host=127.0.0.1:8125",
            "--statsd_tags_format=statsite",
        ],
        &[],
        dir.path(),
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stdout
            .contains("unknown --statsd_tags_format \"statsite\""),
        "{}",
        out.describe()
    );
}

#[test]
fn mruby_log_formatter_refuses_to_start() {
    let dir = TempDir::new();
    let out = run_to_exit(
        &[
            "--ignore-config-path",
            "--noauth",
            "--metrics_log",
            "--metrics_log_formatter=formatter.rb",
        ],
        &[],
        dir.path(),
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr
            .contains("--metrics_log_formatter=formatter.rb: mruby"),
        "{}",
        out.describe()
    );
}

/// A server with the Redis broker on `redis` and Prometheus metrics.
async fn redis_broker_server(redis: &OwnRedis, args: &[&str]) -> Server {
    let url = format!("--redis_url={}", redis.url());
    let mut all = vec![
        "--noauth",
        "--public_streams",
        "--norpc",
        "--broker=redis",
        "--metrics_http=/metrics",
        &url,
    ];
    all.extend_from_slice(args);
    start(&all).await
}

#[tokio::test]
async fn a_broker_outage_is_counted_and_refused_publications_are_reported() {
    let mut redis = OwnRedis::start(free_port());
    redis.ready().await;
    let server = redis_broker_server(&redis, &["--broadcast_adapter=http,redis"]).await;
    let value = |body: &str| counter(body, "broker_errors_total").unwrap_or(u64::MAX);
    let body = scrape_until(&server.addr(), "/metrics", "broker errors", |b| {
        value(b) == 0
    })
    .await;
    assert_eq!(value(&body), 0, "{body}");
    assert_eq!(
        server
            .broadcast(r#"{"stream":"s","data":"1"}"#)
            .await
            .status,
        201
    );
    redis.stop();
    assert_eq!(
        server
            .broadcast(r#"{"stream":"s","data":"2"}"#)
            .await
            .status,
        501
    );
    scrape_until(&server.addr(), "/metrics", "broker errors", |b| {
        value(b) >= 1
    })
    .await; // The Redis broadcaster lost its subscription and tries again: counted too.
    let reconnects =
        |body: &str| sample(body, "service_reconnects_total").is_some_and(|l| !l.ends_with(" 0"));
    scrape_until(&server.addr(), "/metrics", "service reconnects", reconnects).await;
}

#[tokio::test]
async fn the_redis_broker_counts_its_reconnections() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    redis.ready().await;
    // The broker is the only Redis client (no Redis pub/sub, which it would otherwise imply):
    // nothing else can move the counter.
    let server = redis_broker_server(&redis, &["--pubsub=none", "--broadcast_adapter=http"]).await;
    let publish = r#"{"stream":"s","data":"1"}"#;
    assert_eq!(server.broadcast(publish).await.status, 201);
    let reconnects = |body: &str| counter(body, "service_reconnects_total");
    let body = scrape_until(&server.addr(), "/metrics", "the counter", |b| {
        reconnects(b).is_some()
    })
    .await;
    assert_eq!(reconnects(&body), Some(0), "{body}");

    redis.stop();
    let redis = OwnRedis::start(port);
    redis.ready().await;
    // The next publication finds the kept connection dead and opens another one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.broadcast(publish).await.status != 201 {
        assert!(
            Instant::now() < deadline,
            "publications never accepted again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scrape_until(&server.addr(), "/metrics", "a reconnection", |b| {
        reconnects(b).is_some_and(|n| n >= 1)
    })
    .await;
}

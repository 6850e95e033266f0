//! Why clients were dropped or could not connect is in the log, at warning level, with counts
//! and rate-limited (`src/notices.rs`): slow clients disconnected with `too_slow`, and
//! connections that could not be accepted for lack of file descriptors. And the descriptors
//! the server may use: its soft open-files limit is raised to the hard one, as Go programs do.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::AsyncWriteExt;

/// The log's notices come at most one per kind every 10 s, the first one second after the
/// event: this is long enough for both.
const NOTICE_WITHIN: Duration = Duration::from_secs(15);

/// The `key=<number>` field of a log line.
fn field(line: &str, key: &str) -> u64 {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key}= in {line:?}"))
}

/// Waits for the first line containing `needle` and returns every such line so far.
async fn wait_lines(server: &Server, needle: &str) -> Vec<String> {
    server.expect_output(needle, NOTICE_WITHIN).await;
    server
        .output
        .all()
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_string)
        .collect()
}

/// A server whose slow clients can only be dropped by the pending-size limit (the write
/// timeout is far away).
async fn server_with_a_small_queue() -> Server {
    start(&[
        "--noauth",
        "--public_streams",
        "--norpc",
        "--broadcast_adapter=http",
        "--ws_max_pending_size=65536",
        "--ws_write_timeout=60",
    ])
    .await
}

/// Publishes about 6 MB to `stream`: more than the kernel buffers between the server and a
/// peer that does not read, so every stalled subscriber's queue overflows.
async fn flood(server: &Server, stream: &str) {
    let filler = "x".repeat(20_000);
    for n in 0..300 {
        server
            .publish(stream, &json!({"n": n, "filler": filler}).to_string())
            .await;
    }
}

const TOO_SLOW: &str = "disconnected with too_slow";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_dropped_and_logged_with_a_count() {
    let server = server_with_a_small_queue().await;
    let mut stalled = stalled_subscriber(&server, "flood").await;
    flood(&server, "flood").await;
    let lines = wait_lines(&server, TOO_SLOW).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(" WRN "), "{}", lines[0]);
    assert!(lines[0].contains("--ws_max_pending_size"), "{}", lines[0]);
    assert_eq!(
        (field(&lines[0], "count"), field(&lines[0], "total")),
        (1, 1)
    );
    // The client was really dropped: after what the kernel buffered, the too_slow notice and
    // the end of the connection.
    let received = read_to_end(&mut stalled, RECV_TIMEOUT)
        .await
        .expect("the stalled client's connection was left open");
    assert!(String::from_utf8_lossy(&received).contains(r#""reason":"too_slow""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stalled_readers_make_one_line() {
    const STALLED: usize = 12;
    let server = server_with_a_small_queue().await;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(stalled_subscriber(&server, "crowd").await);
    }
    // A client that reads is not counted.
    let (mut reader, _) = server.ws_welcomed().await;
    reader.subscribe_ok(&public_id("crowd")).await;
    let reading = tokio::spawn(async move {
        for _ in 0..300 {
            reader.recv_json().await;
        }
        reader
    });
    flood(&server, "crowd").await;
    let mut reader = reading.await.expect("the reading client got everything");
    let lines = wait_lines(&server, TOO_SLOW).await;
    assert_eq!(
        (lines.len(), field(&lines[0], "count")),
        (1, STALLED as u64),
        "one line for all of them: {lines:?}"
    );
    reader.expect_pong_next().await;
}

#[tokio::test]
async fn running_out_of_descriptors_is_logged_with_a_count_and_recovers() {
    const LIMIT: u64 = 64;
    let server = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--norpc",
            "--broadcast_adapter=http",
        ])
        .open_files_limit(LIMIT, LIMIT)
        .start()
        .await;
    // More connections than descriptors: those past the limit stay in the listen queue.
    let mut clients = Vec::new();
    for _ in 0..LIMIT {
        let mut socket = tokio::net::TcpStream::connect(server.addr())
            .await
            .expect("the kernel completes the handshake");
        socket
            .write_all(
                b"GET /cable HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        clients.push(socket);
    }
    let lines = wait_lines(&server, "cannot accept new connections").await;
    let line = &lines[0];
    assert!(line.contains(" WRN "), "{line}");
    assert!(
        line.contains("os error 24") && line.contains("ulimit -n"),
        "{line}"
    );
    // The server retries every 50 ms: the failures of a second are one line.
    assert!(field(line, "count") > 1, "{line}");
    assert_eq!(field(line, "count"), field(line, "total"), "{line}");

    // Once descriptors are free again, new clients are served.
    drop(clients);
    let (mut ws, _) = server.ws_welcomed().await;
    ws.expect_pong_next().await;
}

#[tokio::test]
async fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
    // systemd's defaults are 1024 soft and 524288 hard: AnyCable-Go (any Go program) raises
    // the soft limit at start-up and so takes far more than 1024 connections.
    let server = ServerBuilder::new()
        .args(["--noauth", "--broadcast_adapter=http"])
        .open_files_limit(64, 4096)
        .start()
        .await;
    let log = server.startup_log().await;
    assert!(log.contains("open file limit: 4096,"), "{log}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["4096", "4096"],
        "{open_files}"
    );
}

//! Operations: health, graceful shutdown, TLS, startup log, as AnyCable-Go does them
//! (server/health_handler.go, cli/cli.go, server/ssl_config.go); differences are in
//! docs/compatibility.md.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// --- Health ------------------------------------------------------------------------------------

#[tokio::test]
async fn health_answers_200_with_the_reference_body() {
    let server = start(&["--noauth"]).await;
    let resp = server.get("/health").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, HEALTH_BODY);
    // Any method.
    let resp = server.http("POST", "/health", &[], b"x").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, HEALTH_BODY);
}

#[tokio::test]
async fn health_path_flag_moves_the_endpoint() {
    let server = ServerBuilder::new()
        .args(["--noauth", "--health-path=/up"])
        .health_path("/up")
        .start()
        .await;
    let resp = server.get("/up").await;
    assert_eq!((resp.status, resp.body.as_str()), (200, HEALTH_BODY));
    assert_eq!(server.get("/health").await.status, 404);
}

#[tokio::test]
async fn health_works_in_default_secure_mode() {
    // Liveness does not depend on auth configuration.
    let server = start(&[]).await;
    assert_eq!(server.get("/health").await.status, 200);
}

// --- Graceful shutdown -------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_disconnects_clients_with_server_restart_and_exits_0() {
    let mut server = start(&["--noauth", "--public_streams", "--shutdown_timeout=5"]).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let (mut ws, _) = server.ws_welcomed().await;
        ws.subscribe_ok(&public_id(&format!("s{i}"))).await;
        clients.push(ws);
    }
    let started = Instant::now();
    server.signal("TERM");
    for ws in clients.iter_mut() {
        ws.expect_disconnect("server_restart", true, 1001, Some("Server restart"))
            .await;
    }
    let status = server
        .wait_exit(Duration::from_secs(7))
        .await
        .expect("the server did not exit within the shutdown timeout");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        server.wait_output("Shutting down", RECV_TIMEOUT).await,
        "no shutdown log line"
    );
}

#[tokio::test]
async fn sigint_without_clients_exits_0_promptly() {
    let mut server = start(&["--noauth"]).await;
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("no exit after SIGINT");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn shutdown_timeout_bounds_the_wait_for_unresponsive_clients() {
    let mut server = start(&["--noauth", "--shutdown_timeout=2"]).await;
    // A client that completes the handshake and then never answers (no close reply).
    let mut raw = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    raw.write_all(
        b"GET /cable?pi=0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("welcome") {
        let n = tokio::time::timeout(RECV_TIMEOUT, raw.read(&mut buf))
            .await
            .expect("welcome in time")
            .unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let started = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(6))
        .await
        .expect("the server did not exit although the shutdown timeout passed");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    drop(raw);
}

#[tokio::test]
async fn shutdown_delay_keeps_serving_before_disconnecting() {
    let mut server = start(&["--noauth", "--shutdown_delay=1", "--shutdown_timeout=5"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    let started = Instant::now();
    server.signal("TERM");
    // During the delay everything keeps working, health included.
    assert_eq!(server.get("/health").await.status, 200);
    ws.expect_pong_next().await;
    ws.expect_disconnect("server_restart", true, 1001, Some("Server restart"))
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "disconnected {:?} after SIGTERM despite --shutdown_delay=1",
        started.elapsed()
    );
    let status = server
        .wait_exit(Duration::from_secs(6))
        .await
        .expect("exit after the delay");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn second_signal_stops_immediately() {
    let mut server = start(&["--noauth", "--shutdown_delay=30", "--shutdown_timeout=60"]).await;
    server.signal("TERM");
    assert!(
        server.wait_output("Shutting down", RECV_TIMEOUT).await,
        "no shutdown log line after the first signal"
    );
    let started = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("a second SIGTERM should stop the server at once");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn port_in_use_exits_1() {
    let (_held, port) = hold_port();
    let dir = TempDir::new();
    let out = run_to_exit(
        &[
            "--ignore-config-path",
            "--noauth",
            "--host=127.0.0.1",
            &format!("--port={port}"),
            &format!("--http_broadcast_port={}", free_port()),
        ],
        &[],
        dir.path(),
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains(&port.to_string()),
        "the failure should name the address:\n{}",
        out.describe()
    );
}

#[tokio::test]
async fn new_connections_are_refused_after_shutdown() {
    let mut server = start(&["--noauth", "--shutdown_timeout=3"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    server.signal("TERM");
    ws.expect_disconnect("server_restart", true, 1001, Some("Server restart"))
        .await;
    server
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exit after SIGTERM");
    assert!(
        tokio::net::TcpStream::connect(server.addr()).await.is_err(),
        "the port still accepts connections after exit"
    );
}

// --- TLS ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tls_serves_wss_health_and_broadcasts() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a self-signed certificate");
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    let server = ServerBuilder::new()
        .args(["--noauth", "--public_streams"])
        .tls(&cert_pem, &key_pem)
        .start()
        .await; // the harness polls /health over HTTPS
                // wss:// handshake with a client that trusts only this certificate.
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("secure")).await;
    // The separate broadcast listener serves HTTPS too.
    server.publish("secure", "{\"tls\":true}").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("secure"), "message": {"tls": true}})
    );
    // Plain HTTP on the TLS port does not get a health answer.
    let plain = http_request(&server.addr(), None, "GET", "/health", &[], b"").await;
    assert!(
        !matches!(&plain, Ok(resp) if resp.status == 200),
        "plain HTTP answered on the TLS port: {plain:?}"
    );
    assert!(
        server.startup_log().await.contains("https://"),
        "URLs in the startup log should use https://"
    );
}

#[tokio::test]
async fn tls_with_an_untrusted_client_fails_the_handshake() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let server = ServerBuilder::new()
        .args(["--noauth"])
        .tls(
            &certified.cert.pem(),
            &certified.signing_key.serialize_pem(),
        )
        .start()
        .await;
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let untrusting = TlsClient::trusting(&other.cert.pem());
    let result = ws_connect(&server.addr(), Some(&untrusting), &WsRequest::new("/cable")).await;
    assert!(result.is_err(), "a client not trusting the cert connected");
}

#[tokio::test]
async fn half_tls_configuration_fails_to_start() {
    let dir = TempDir::new();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.write("cert.pem", certified.cert.pem());
    let port = free_port().to_string();
    let out = run_to_exit(
        &[
            "--ignore-config-path",
            "--noauth",
            &format!("--port={port}"),
            &format!("--http_broadcast_port={}", free_port()),
            &format!("--ssl_cert={}", cert.display()),
        ],
        &[],
        dir.path(),
        Duration::from_secs(10),
    );
    assert!(
        out.status.is_some() && out.code() != Some(0),
        "expected a failed start: {}",
        out.describe()
    );
}

// --- Startup log -------------------------------------------------------------------------------

#[tokio::test]
async fn startup_log_names_paths_broadcast_url_and_auth_mode() {
    let server = start(&["--noauth", "--path=/cable,/live"]).await;
    let log = server.startup_log().await;
    let port = server.port;
    let bport = server.broadcast_port;
    for path in ["/cable", "/live"] {
        assert!(
            log.lines()
                .any(|l| l.contains("WebSocket") && l.contains(&format!(":{port}{path}"))),
            "no log line for the WebSocket path {path}:\n{log}"
        );
    }
    assert!(
        log.lines().any(
            |l| l.contains(&format!("http://127.0.0.1:{bport}/_broadcast"))
                && l.contains("no authorization")
        ),
        "no broadcast URL line:\n{log}"
    );
    assert!(
        log.contains("connection authentication is disabled"),
        "auth mode not logged:\n{log}"
    );
    assert!(
        log.contains(&format!(":{port}/health")),
        "health URL not logged:\n{log}"
    );
}

#[tokio::test]
async fn piped_logs_have_no_ansi_colours() {
    // As AnyCable-Go's logger: colours only when stdout is a TTY; the harness pipes it.
    let server = start(&["--noauth"]).await;
    let log = server.startup_log().await;
    assert!(!log.is_empty());
    assert!(
        !log.contains('\u{1b}'),
        "log output to a pipe contains ANSI escape sequences:\n{log:?}"
    );
}

#[tokio::test]
async fn json_log_format_has_time_level_and_msg() {
    // As AnyCable-Go (docs/compatibility.md, Logging): `--log_format=json` writes one JSON
    // object per line with `time`, `level` (`INFO`, ...) and `msg`, plus attributes.
    let server = start(&["--noauth", "--log_format=json"]).await;
    let log = server.startup_log().await;
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        for key in ["time", "level", "msg"] {
            assert!(
                record.get(key).is_some(),
                "log record without {key:?}: {line}"
            );
        }
        lines += 1;
    }
    assert!(lines > 0);
    assert!(log.contains("\"level\":\"INFO\""), "{log}");
}

#[tokio::test]
async fn the_default_broadcasters_are_the_references() {
    // AnyCable-Go 1.6 listens on `http,redis` by default (tests/dropin.rs shows Redis
    // broadcasts arriving, and the server running without Redis).
    let server = start(&["--noauth"]).await;
    let log = server.startup_log().await;
    assert!(log.contains("Broadcasting adapters: http, redis"), "{log}");
}

#[tokio::test]
async fn startup_log_for_jwt_and_keyed_broadcasts() {
    let server = start(&["--secret=abc", "--enforce_jwt"]).await;
    let log = server.startup_log().await;
    assert!(
        log.contains("JWT authentication is enabled"),
        "JWT mode not logged:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!(":{}/_broadcast", server.port))
                && l.contains("authorization required")),
        "broadcast line with authorization not logged:\n{log}"
    );
}

#[tokio::test]
async fn startup_log_warns_when_no_auth_method_is_available() {
    let server = start(&["--norpc"]).await;
    let log = server.startup_log().await.to_lowercase();
    assert!(
        log.contains(" wrn ") && log.contains("authentication"),
        "the secure default mode should warn that every connection is rejected:\n{log}"
    );
}

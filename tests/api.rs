//! The REST API (docs/api.md): `POST /api/publish`, `GET /api/presence/...`,
//! bearer keys, `--api_port`, CORS, and when the API is not mounted.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// hex(HMAC-SHA256("s3cr3t", "api-cable")), the API key derived from `--secret=s3cr3t`
/// (docs/api.md).
const S3CR3T_API_KEY: &str = "e3b70326c38efad4042c57f65cc19e4ce2925e5aea5ea0c98dca248b837c17de";

#[test]
fn our_key_derivation_matches_the_spec_vector() {
    assert_eq!(hmac_hex("s3cr3t", "api-cable"), S3CR3T_API_KEY);
}

async fn api_post_on(
    addr: &str,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> support::HttpResponse {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = auth.as_deref() {
        headers.push(("Authorization", auth));
    }
    http_request_on(addr, None, "POST", path, &headers, body.as_bytes()).await
}

async fn api_publish(server: &Server, body: &str, key: Option<&str>) -> support::HttpResponse {
    api_post_on(&server.addr(), "/api/publish", body, key).await
}

#[tokio::test]
async fn publish_with_the_derived_key_reaches_a_subscriber() {
    let server = start(&["--noauth", "--public_streams", "--secret=s3cr3t"]).await;
    let log = server.startup_log().await;
    assert!(
        log.contains("Handle API requests at http://localhost:8080/api (authorization required)")
            || log.contains("/api (authorization required)"),
        "{log}"
    );
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("chat_1");
    ws.subscribe_ok(&id).await;
    let body = json!({"stream": "chat_1", "data": "{\"text\":\"hi\"}"}).to_string();
    let resp = api_publish(&server, &body, Some(S3CR3T_API_KEY)).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": {"text": "hi"}})
    );
}

#[tokio::test]
async fn batch_publications_are_delivered_in_order() {
    let server = start(&["--noauth", "--public_streams", "--api_secret=k"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    let a = public_id("a");
    let b = public_id("b");
    ws.subscribe_ok(&a).await;
    ws.subscribe_ok(&b).await;
    let body = json!([
        {"stream": "a", "data": "1"},
        {"stream": "b", "data": "2"},
        {"stream": "a", "data": "3"},
    ])
    .to_string();
    let resp = api_publish(&server, &body, Some("k")).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(ws.recv_json().await, json!({"identifier": a, "message": 1}));
    assert_eq!(ws.recv_json().await, json!({"identifier": b, "message": 2}));
    assert_eq!(ws.recv_json().await, json!({"identifier": a, "message": 3}));
}

#[tokio::test]
async fn wrong_or_missing_keys_get_401_and_publish_nothing() {
    let server = start(&["--noauth", "--public_streams", "--api_secret=right"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let body = json!({"stream": "s", "data": "x"}).to_string();
    for key in [None, Some("wrong"), Some("righ"), Some("rightt")] {
        let resp = api_publish(&server, &body, key).await;
        assert_eq!(resp.status, 401, "key {key:?}: {resp:?}");
    }
    let resp = server
        .http(
            "GET",
            "/api/presence/s/users",
            &[("Authorization", "Bearer wrong")],
            b"",
        )
        .await;
    assert_eq!(resp.status, 401, "{resp:?}");
    ws.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_literal_api_secret_wins_over_the_derived_one() {
    let server = start(&["--noauth", "--secret=s3cr3t", "--api_secret=none"]).await;
    let body = json!({"stream": "s", "data": "x"}).to_string();
    assert_eq!(
        api_publish(&server, &body, Some(S3CR3T_API_KEY))
            .await
            .status,
        401
    );
    assert_eq!(api_publish(&server, &body, Some("none")).await.status, 201);
}

#[tokio::test]
async fn methods_paths_and_invalid_bodies() {
    let server = start(&["--noauth", "--api_secret=k"]).await;
    let auth = [("Authorization", "Bearer k")];
    let resp = server.http("GET", "/api/publish", &auth, b"").await;
    assert_eq!(resp.status, 422, "{resp:?}");
    let resp = server.http("POST", "/api/other", &auth, b"").await;
    assert_eq!(resp.status, 404, "{resp:?}");
    let resp = api_publish(&server, "{broken", Some("k")).await;
    assert_eq!(resp.status, 422, "{resp:?}");
    let resp = server
        .http("POST", "/api/presence/s/users", &auth, b"")
        .await;
    assert_eq!(resp.status, 422, "{resp:?}");
    let resp = server.http("GET", "/api/presence//users", &auth, b"").await;
    assert_eq!(resp.status, 404, "{resp:?}");
}

/// Without the key, every path under the base answers 401, whether it exists or not (the
/// reference answers 404 first, telling strangers which paths exist).
#[tokio::test]
async fn unauthorized_requests_get_401_before_404_and_422() {
    let server = start(&["--noauth", "--api_secret=k"]).await;
    let wrong = [("Authorization", "Bearer wrong")];
    for (method, path) in [
        ("GET", "/api/other"),
        ("POST", "/api/other"),
        ("GET", "/api/presence//users"),
        ("GET", "/api/publish"),
        ("POST", "/api/presence/s/users"),
    ] {
        for headers in [&wrong[..], &[]] {
            let resp = server.http(method, path, headers, b"").await;
            assert_eq!(resp.status, 401, "{method} {path} {headers:?}: {resp:?}");
        }
    }
    let resp = server
        .http("GET", "/api/other", &[("Authorization", "Bearer k")], b"")
        .await;
    assert_eq!(resp.status, 404, "{resp:?}");
}

#[tokio::test]
async fn presence_without_a_broker_is_not_implemented() {
    let server = start(&["--noauth", "--api_secret=k", "--broker=none"]).await;
    let resp = server
        .http(
            "GET",
            "/api/presence/s/users",
            &[("Authorization", "Bearer k")],
            b"",
        )
        .await;
    assert_eq!(resp.status, 501, "{resp:?}");
}

#[tokio::test]
async fn api_port_gets_its_own_listener() {
    let port = free_port();
    let port_arg = format!("--api_port={port}");
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--api_secret=k",
        &port_arg,
        "--api_path=/rest",
    ])
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("p");
    ws.subscribe_ok(&id).await;
    let body = json!({"stream": "p", "data": "\"on the api port\""}).to_string();
    // Not on the main port.
    let resp = api_post_on(&server.addr(), "/rest/publish", &body, Some("k")).await;
    assert_eq!(resp.status, 404, "{resp:?}");
    let resp = api_post_on(
        &format!("127.0.0.1:{port}"),
        "/rest/publish",
        &body,
        Some("k"),
    )
    .await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": "on the api port"})
    );
}

#[tokio::test]
async fn without_a_secret_the_api_is_not_mounted() {
    let server = start(&["--noauth", "--public_streams"]).await;
    let log = server.startup_log().await;
    assert!(log.contains("API server is disabled"), "{log}");
    let body = json!({"stream": "s", "data": "x"}).to_string();
    assert_eq!(api_publish(&server, &body, None).await.status, 404);
}

#[tokio::test]
async fn public_mode_mounts_the_api_without_authentication() {
    let server = start(&["--public"]).await;
    let log = server.startup_log().await;
    assert!(
        log.contains("API server is running without authentication"),
        "{log}"
    );
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("open");
    ws.subscribe_ok(&id).await;
    let body = json!({"stream": "open", "data": "1"}).to_string();
    assert_eq!(api_publish(&server, &body, None).await.status, 201);
    let message: Value = ws.recv_json().await;
    assert_eq!(message, json!({"identifier": id, "message": 1}));
}

#[tokio::test]
async fn cors_preflight_and_headers_from_the_toml_settings() {
    let dir = tempfile_dir();
    let path = dir.join("anycable.toml");
    std::fs::write(
        &path,
        "[api]\nsecret = \"k\"\ncors_headers = true\ncors_hosts = \"example.com\"\n",
    )
    .unwrap();
    let server = ServerBuilder::new()
        .arg("--noauth")
        .arg(format!("--config-path={}", path.display()))
        .with_config_lookup()
        .start()
        .await;
    let resp = server
        .http(
            "OPTIONS",
            "/api/publish",
            &[("Origin", "http://example.com")],
            b"",
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("http://example.com"),
        "{resp:?}"
    );
    let resp = server
        .http(
            "OPTIONS",
            "/api/publish",
            &[("Origin", "http://evil.com")],
            b"",
        )
        .await;
    assert_eq!(resp.header("access-control-allow-origin"), None, "{resp:?}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "anycable-api-test-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

//! What operators see in the log: with `--debug`, the life of a session (accepted,
//! authenticated, subscribed, broadcast, unsubscribed, closed with reason and duration) and the
//! RPC calls it made, as AnyCable-Go logs them at debug level; dependencies' own debug traces
//! stay out unless `RUST_LOG` asks for them; JSON records carry an RFC 3339 `time`.

mod support;

use serde_json::{json, Value};
use support::*;

/// An HTTP RPC backend: every connection is accepted as `user=ann`; `ChatChannel` streams from
/// `chat`.
fn answer(path: &str, call: &Value) -> Value {
    if path.ends_with("/connect") {
        json!({"status": 1, "identifiers": "{\"user\":\"ann\"}",
               "transmissions": ["{\"type\":\"welcome\"}"]})
    } else if call["command"] == "subscribe" {
        let confirm = json!({"type": "confirm_subscription", "identifier": call["identifier"]});
        json!({"status": 1, "streams": ["chat"], "transmissions": [confirm.to_string()]})
    } else {
        json!({"status": 1})
    }
}

async fn backend() -> u16 {
    http_rpc_backend(answer).await
}

/// The debug line whose message is `message`, with every `key=value` in `attributes`.
fn debug_line<'a>(log: &'a str, message: &str, attributes: &[&str]) -> &'a str {
    log.lines()
        .find(|line| {
            line.contains(&format!(" DBG {message} "))
                && attributes.iter().all(|a| line.contains(&format!(" {a}")))
        })
        .unwrap_or_else(|| panic!("no debug line {message:?} with {attributes:?} in:\n{log}"))
}

/// The value of `key` in a text log line (`key=value` or `key="quoted value"`).
fn attribute<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 2;
    let rest = &line[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"').unwrap()],
        None => rest.split(' ').next().unwrap(),
    }
}

/// Messages that hyper, hyper-util, h2, tonic, tower and async-nats log at debug level.
const DEPENDENCY_MESSAGES: &[&str] = &[
    "connecting to",
    "connected to",
    "pooling idle connection",
    "reuse idle connection",
    "binding client connection",
    "client connection bound",
    "send frame=",
    "received frame=",
];

#[tokio::test]
async fn debug_logs_follow_a_session_and_leave_dependencies_out() {
    let port = backend().await;
    let server = start(&[
        "--debug",
        &format!("--rpc_host=http://127.0.0.1:{port}/_anycable"),
    ])
    .await;
    let mut ws = server.ws().await;
    assert_eq!(ws.recv_json().await["type"], "welcome");
    let identifier = r#"{"channel":"ChatChannel"}"#;
    ws.subscribe_ok(identifier).await;
    server.publish("chat", r#"{"text":"hello"}"#).await;
    assert_eq!(ws.recv_json().await["message"], json!({"text": "hello"}));
    ws.send_json(&json!({"command": "unsubscribe", "identifier": identifier}))
        .await;
    assert!(server.wait_output(" DBG unsubscribed ", RECV_TIMEOUT).await);
    ws.close().await;
    assert!(
        server
            .wait_output("WebSocket session completed", RECV_TIMEOUT)
            .await
    );
    assert!(server.wait_output("method=Disconnect", RECV_TIMEOUT).await);
    let log = server.output.all();

    assert!(log.contains("Debug mode is on"), "{log}");
    let established = debug_line(&log, "WebSocket session established", &["context=ws"]);
    let sid = attribute(established, "sid");
    let sid_attr = format!("sid={sid}");
    let connect = debug_line(
        &log,
        "RPC call",
        &["context=rpc", &sid_attr, "method=Connect", "status=success"],
    );
    assert!(!attribute(connect, "duration").is_empty(), "{connect}");
    debug_line(
        &log,
        "authenticated",
        &[&sid_attr, r#"identifiers={"user":"ann"}"#],
    );
    debug_line(
        &log,
        "RPC call",
        &[
            &sid_attr,
            "method=Command",
            "command=subscribe",
            "status=success",
        ],
    );
    debug_line(
        &log,
        "subscribed",
        &[
            &sid_attr,
            &format!("identifier={identifier}"),
            "streams=chat",
        ],
    );
    debug_line(&log, "broadcast received", &["stream=chat", "size=16"]);
    debug_line(
        &log,
        "broadcast delivered",
        &["stream=chat", "size=16", "recipients=1"],
    );
    debug_line(
        &log,
        "RPC call",
        &[&sid_attr, "command=unsubscribe", "status=success"],
    );
    debug_line(&log, "unsubscribed", &[&sid_attr]);
    let completed = debug_line(&log, "WebSocket session completed", &[&sid_attr]);
    assert!(
        attribute(completed, "reason").starts_with("closed by the client"),
        "{completed}"
    );
    assert!(!attribute(completed, "duration").is_empty(), "{completed}");
    debug_line(
        &log,
        "RPC call",
        &[&sid_attr, "method=Disconnect", "status=success"],
    );

    for message in DEPENDENCY_MESSAGES {
        assert!(
            !log.contains(message),
            "a dependency's debug line ({message:?}) got into the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn rust_log_lets_dependencies_trace_again() {
    let port = backend().await;
    let server = ServerBuilder::new()
        .arg("--log_level=info")
        .arg(format!("--rpc_host=http://127.0.0.1:{port}/_anycable"))
        .env("RUST_LOG", "hyper_util=debug")
        .start()
        .await;
    let mut ws = server.ws().await;
    assert_eq!(ws.recv_json().await["type"], "welcome");
    assert!(
        server.wait_output("connecting to", RECV_TIMEOUT).await,
        "hyper-util's debug lines were asked for:\n{}",
        server.output.all()
    );
    let log = server.output.all();
    assert!(!log.contains(" DBG WebSocket session"), "{log}");
}

#[tokio::test]
async fn only_the_debug_flag_announces_debug_mode() {
    let server = start(&["--noauth", "--log_level=debug"]).await;
    // The announcement would come before the startup lines this waits for.
    let log = server.startup_log().await;
    assert!(!log.contains("Debug mode is on"), "{log}");
    let mut ws = server.ws().await;
    ws.expect_welcome().await;
    assert!(
        server
            .wait_output("WebSocket session established", RECV_TIMEOUT)
            .await,
        "--log_level=debug shows debug lines:\n{}",
        server.output.all()
    );
}

#[tokio::test]
async fn json_records_have_an_rfc3339_time() {
    let server = start(&["--noauth", "--log_format=json"]).await;
    let log = server.startup_log().await;
    let mut checked = 0;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let record: Value = serde_json::from_str(line).unwrap();
        let time = record["time"].as_str().unwrap_or_default();
        let parsed =
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("`time` is not RFC 3339 ({e}): {line}"));
        let age = time::OffsetDateTime::now_utc() - parsed;
        assert!(age.abs() < time::Duration::minutes(1), "{line}");
        checked += 1;
    }
    assert!(checked > 0, "{log}");
}

#[tokio::test]
async fn a_rejected_connection_is_logged_with_its_reason() {
    let server = start(&["--debug", "--secret=abc", "--enforce_jwt"]).await;
    let mut ws = server.ws().await;
    ws.expect_disconnect("unauthorized", false, 1000, Some("Auth Failed"))
        .await;
    assert!(
        server
            .wait_output("WebSocket session completed", RECV_TIMEOUT)
            .await
    );
    let log = server.output.all();
    let rejected = debug_line(&log, "authentication rejected:", &["reason=unauthorized"]);
    let sid = attribute(rejected, "sid");
    let completed = debug_line(
        &log,
        "WebSocket session completed",
        &[&format!("sid={sid}")],
    );
    assert_eq!(
        attribute(completed, "reason"),
        "closed by the server (1000 Auth Failed)"
    );
}

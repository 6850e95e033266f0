//! Presence (docs/presence.md): join/leave events, info, the TTL after a
//! disconnect, and the REST API query.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const EXT: &str = "actioncable-v1-ext-json";

async fn memory_server(extra: &[&str]) -> Server {
    let mut args = vec!["--noauth", "--public_streams", "--broker=memory"];
    args.extend_from_slice(extra);
    start(&args).await
}

/// An extended-protocol client, welcomed.
async fn ext_client(server: &Server) -> Ws {
    let mut ws = server.ws_with(WsRequest::new("/cable").protocol(EXT)).await;
    ws.expect_welcome().await;
    ws
}

async fn join(ws: &mut Ws, identifier: &str, id: &str, info: Value) {
    ws.send_json(&json!({
        "command": "join",
        "identifier": identifier,
        "presence": {"id": id, "info": info},
    }))
    .await;
}

fn event(identifier: &str, message: Value) -> Value {
    json!({"type": "presence", "identifier": identifier, "message": message})
}

/// The `info` message with its records sorted by id (the server's order is unspecified).
async fn info(ws: &mut Ws, identifier: &str) -> Value {
    ws.send_json(
        &json!({"command": "presence", "identifier": identifier, "data": {"return_records": true}}),
    )
    .await;
    let mut reply = ws.recv_json().await;
    if let Some(records) = reply
        .get_mut("message")
        .and_then(|m| m.get_mut("records"))
        .and_then(Value::as_array_mut)
    {
        records.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    }
    reply
}

#[tokio::test]
async fn joins_are_seen_by_every_subscriber_once_per_id() {
    let server = memory_server(&[]).await;
    let id = public_id("room");
    let mut a = ext_client(&server).await;
    let mut b = ext_client(&server).await;
    a.subscribe_ok(&id).await;
    b.subscribe_ok(&id).await;

    join(&mut a, &id, "42", json!({"name": "Jack"})).await;
    let joined = event(
        &id,
        json!({"type": "join", "id": "42", "info": {"name": "Jack"}}),
    );
    assert_eq!(a.recv_json().await, joined, "the originator sees its join");
    assert_eq!(b.recv_json().await, joined);

    join(&mut b, &id, "13", json!({"name": "Mia"})).await;
    let joined = event(
        &id,
        json!({"type": "join", "id": "13", "info": {"name": "Mia"}}),
    );
    assert_eq!(a.recv_json().await, joined);
    assert_eq!(b.recv_json().await, joined);

    // A second session under an id already present is not announced.
    let mut a2 = ext_client(&server).await;
    a2.subscribe_ok(&id).await;
    join(&mut a2, &id, "42", json!({"name": "Jack", "tab": 2})).await;
    a.expect_silence(Duration::from_millis(300)).await;

    assert_eq!(
        info(&mut b, &id).await,
        event(
            &id,
            json!({"type": "info", "total": 2, "records": [
                {"id": "13", "info": {"name": "Mia"}},
                {"id": "42", "info": {"name": "Jack", "tab": 2}},
            ]})
        )
    );

    // Leaving: nothing while another session holds "42", then the leave.
    a2.send_json(&json!({"command": "leave", "identifier": id}))
        .await;
    b.expect_silence(Duration::from_millis(300)).await;
    // Unsubscribing leaves at once.
    a.send_json(&json!({"command": "unsubscribe", "identifier": id}))
        .await;
    assert_eq!(
        b.recv_json().await,
        event(&id, json!({"type": "leave", "id": "42"}))
    );
    assert_eq!(
        info(&mut b, &id).await,
        event(
            &id,
            json!({"type": "info", "total": 1, "records": [{"id": "13", "info": {"name": "Mia"}}]})
        )
    );
}

#[tokio::test]
async fn subscribe_with_presence_joins_after_the_confirmation() {
    let server = memory_server(&[]).await;
    let id = public_id("lobby");
    let mut a = ext_client(&server).await;
    a.send_json(&json!({
        "command": "subscribe",
        "identifier": id,
        "presence": {"id": "7", "info": "seven"},
    }))
    .await;
    assert_eq!(
        a.recv_json().await,
        json!({"type": "confirm_subscription", "identifier": id})
    );
    assert_eq!(
        a.recv_json().await,
        event(&id, json!({"type": "join", "id": "7", "info": "seven"}))
    );
}

#[tokio::test]
async fn empty_presence_and_commands_without_a_presence_stream() {
    let server = memory_server(&[]).await;
    let id = public_id("quiet");
    let mut a = ext_client(&server).await;
    a.subscribe_ok(&id).await;
    assert_eq!(
        info(&mut a, &id).await,
        event(&id, json!({"type": "info", "total": 0}))
    );
    // Not subscribed: no reply at all.
    let other = public_id("elsewhere");
    a.send_json(&json!({"command": "presence", "identifier": other}))
        .await;
    join(&mut a, &other, "1", json!(null)).await;
    a.expect_silence(Duration::from_millis(300)).await;
    // A non-string id makes the frame invalid: ignored.
    a.send_json(&json!({"command": "join", "identifier": id, "presence": {"id": 1}}))
        .await;
    a.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn without_a_broker_presence_answers_an_error() {
    let server = start(&["--noauth", "--public_streams"]).await;
    let id = public_id("room");
    let mut a = ext_client(&server).await;
    a.subscribe_ok(&id).await;
    join(&mut a, &id, "42", json!({})).await;
    a.send_json(&json!({"command": "presence", "identifier": id}))
        .await;
    assert_eq!(
        a.recv_json().await,
        event(&id, json!({"type": "error", "total": 0}))
    );
}

#[tokio::test]
async fn disconnected_sessions_leave_after_the_ttl_unless_the_id_is_still_held() {
    let server = memory_server(&["--presence_ttl=1"]).await;
    let id = public_id("room");
    let mut watcher = ext_client(&server).await;
    watcher.subscribe_ok(&id).await;

    let mut a = ext_client(&server).await;
    a.subscribe_ok(&id).await;
    join(&mut a, &id, "42", json!("a")).await;
    let joined = event(&id, json!({"type": "join", "id": "42", "info": "a"}));
    assert_eq!(watcher.recv_json().await, joined);
    assert_eq!(a.recv_json().await, joined);

    // A live extended session is kept alive by its touches well past the TTL.
    watcher.expect_silence(Duration::from_millis(2500)).await;

    // A reconnected tab holds the id: the first session's expiry is not announced.
    let mut a2 = ext_client(&server).await;
    a2.subscribe_ok(&id).await;
    join(&mut a2, &id, "42", json!("a")).await;
    drop(a);
    watcher.expect_silence(Duration::from_millis(2500)).await;

    // The last session goes: its record expires after about the TTL.
    drop(a2);
    let started = std::time::Instant::now();
    assert_eq!(
        watcher.recv_json().await,
        event(&id, json!({"type": "leave", "id": "42"}))
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "left at once: {:?}",
        started.elapsed()
    );
    assert_eq!(
        info(&mut watcher, &id).await,
        event(&id, json!({"type": "info", "total": 0}))
    );
}

#[tokio::test]
async fn base_protocol_records_expire_after_the_ttl() {
    let server = memory_server(&["--presence_ttl=1"]).await;
    let id = public_id("room");
    let (mut a, _) = server.ws_welcomed().await;
    a.subscribe_ok(&id).await;
    join(&mut a, &id, "9", json!(null)).await;
    assert_eq!(
        a.recv_json().await,
        event(&id, json!({"type": "join", "id": "9"})),
        "a null info is left out"
    );
    assert_eq!(
        a.recv_json_within(Duration::from_secs(4)).await,
        event(&id, json!({"type": "leave", "id": "9"}))
    );
}

#[tokio::test]
async fn the_rest_api_lists_the_records() {
    let server = memory_server(&["--api_secret=k"]).await;
    let id = public_id("room");
    let mut a = ext_client(&server).await;
    a.subscribe_ok(&id).await;
    join(&mut a, &id, "42", json!({"name": "Jack"})).await;
    a.recv_json().await;
    let auth = [("Authorization", "Bearer k")];
    let resp = server
        .http("GET", "/api/presence/room/users", &auth, b"")
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(
        body,
        json!({"type": "info", "total": 1, "records": [{"id": "42", "info": {"name": "Jack"}}]})
    );
    let resp = server
        .http("GET", "/api/presence/unknown/users", &auth, b"")
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&resp.body).unwrap(),
        json!({"type": "info", "total": 0})
    );
}

/// Turbo stream names contain `/` (`gid://app/Room/1`): percent-encoded in the path, they can
/// be queried (AnyCable-Go answers 404 for any `/` in the stream, even as `%2F`).
#[tokio::test]
async fn the_rest_api_answers_for_streams_with_slashes() {
    let server = memory_server(&["--api_secret=k"]).await;
    let stream = "gid://app/Room/1";
    let id = public_id(stream);
    let mut a = ext_client(&server).await;
    a.subscribe_ok(&id).await;
    join(&mut a, &id, "42", json!("Jack")).await;
    a.recv_json().await;
    let auth = [("Authorization", "Bearer k")];
    let encoded: String = url::form_urlencoded::byte_serialize(stream.as_bytes()).collect();
    assert_eq!(encoded, "gid%3A%2F%2Fapp%2FRoom%2F1");
    let resp = server
        .http("GET", &format!("/api/presence/{encoded}/users"), &auth, b"")
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&resp.body).unwrap(),
        json!({"type": "info", "total": 1, "records": [{"id": "42", "info": "Jack"}]})
    );
}

#[tokio::test]
async fn signed_streams_allow_presence_unless_disabled() {
    let stream = "chat/2023";
    let signed = sign_stream("s3Krit", stream);
    let id = signed_id(&signed);
    for (flag, allowed) in [
        ("--streams_presence=true", true),
        ("--streams_presence=false", false),
    ] {
        let server = start(&["--noauth", "--secret=s3Krit", "--broker=memory", flag]).await;
        let mut a = ext_client(&server).await;
        a.subscribe_ok(&id).await;
        join(&mut a, &id, "1", json!("x")).await;
        if allowed {
            assert_eq!(
                a.recv_json().await,
                event(&id, json!({"type": "join", "id": "1", "info": "x"})),
                "{flag}"
            );
        } else {
            a.expect_silence(Duration::from_millis(300)).await;
        }
    }
}

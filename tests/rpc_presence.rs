//! Presence requested by the application backend: a `Command` reply that carries
//! `presence: {type: "join", ...}` joins the session to the channel's presence stream (`$p` in the
//! channel state), and `leave` removes it.

mod support;

use serde_json::{json, Value};
use support::*;

/// An HTTP RPC backend: every connection is accepted; `RoomChannel` streams from `room`, marks it
/// as the presence stream and joins (subscribe) or leaves (action `leave`) presence.
fn answer(path: &str, call: &Value) -> Value {
    if path.ends_with("/connect") {
        json!({"status": 1, "identifiers": "{\"user\":\"ann\"}",
               "transmissions": ["{\"type\":\"welcome\"}"]})
    } else if call["command"] == "subscribe" {
        let confirm = json!({"type": "confirm_subscription", "identifier": call["identifier"]});
        json!({"status": 1, "streams": ["room"], "transmissions": [confirm.to_string()],
               "env": {"istate": {"$p": "room"}},
               "presence": {"type": "join", "id": "ann", "info": "{\"name\":\"Ann\"}"}})
    } else if call["command"] == "message" {
        json!({"status": 1, "presence": {"type": "leave", "id": "ann"}})
    } else {
        json!({"status": 1})
    }
}

async fn backend() -> u16 {
    http_rpc_backend(answer).await
}

#[tokio::test]
async fn a_command_reply_can_join_and_leave_presence() {
    let port = backend().await;
    let server = start(&[
        &format!("--rpc_host=http://127.0.0.1:{port}"),
        "--broker=memory",
    ])
    .await;
    let mut ws = server
        .ws_with(WsRequest::new("/cable?pi=0").protocol("actioncable-v1-ext-json"))
        .await;
    assert_eq!(ws.recv_json().await["type"], "welcome");
    let identifier = r#"{"channel":"RoomChannel"}"#;
    ws.send_json(&json!({"command": "subscribe", "identifier": identifier}))
        .await;
    assert_eq!(ws.recv_json().await["type"], "confirm_subscription");
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "presence", "identifier": identifier,
               "message": {"type": "join", "id": "ann", "info": {"name": "Ann"}}})
    );
    ws.send_json(&json!({"command": "presence", "identifier": identifier, "data": {}}))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "presence", "identifier": identifier,
               "message": {"type": "info", "total": 1, "records": [{"id": "ann", "info": {"name": "Ann"}}]}})
    );
    let leave = json!({"action": "leave"}).to_string();
    ws.send_json(&json!({"command": "message", "identifier": identifier, "data": leave}))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "presence", "identifier": identifier, "message": {"type": "leave", "id": "ann"}})
    );
}

//! Encoding of server messages.

use serde::Serialize;
use serde_json::value::RawValue;

/// Why the server closes a connection; the wire names are AnyCable's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    Unauthorized,
    TokenExpired,
    ServerRestart,
    Remote,
    NoPong,
    TooSlow,
    /// The client kept sending frames that are not commands (our addition; see
    /// docs/compatibility.md).
    InvalidRequest,
    /// The backend cannot take the connection's `Connect` now; sent with `reconnect: true`
    /// (admission control, our addition; see docs/compatibility.md).
    ServerBusy,
}

/// WebSocket close code 1013, "Try Again Later" (RFC 6455's registry): sent with
/// [`DisconnectReason::ServerBusy`].
pub const TRY_AGAIN_LATER: u16 = 1013;

/// A protocol message addressed to one connection.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply<'a> {
    Welcome {
        sid: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        restored: bool,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        restored_ids: &'a [&'a str],
    },
    Disconnect {
        reason: DisconnectReason,
        reconnect: bool,
    },
    Ping {
        message: i64,
    },
    Pong,
    ConfirmSubscription {
        identifier: &'a str,
    },
    RejectSubscription {
        identifier: &'a str,
    },
    ConfirmHistory {
        identifier: &'a str,
    },
    RejectHistory {
        identifier: &'a str,
    },
}

impl Reply<'_> {
    /// Encodes the reply as one JSON text frame.
    pub fn encode(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // failing Serialize impls.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `message` of a broadcast, prepared once per publication and shared by every frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// Shared: history keeps the same text the broadcast was framed from.
    json: std::sync::Arc<str>,
}

impl Payload {
    /// Applies AnyCable's rule: `data` that parses as a non-null JSON value is sent as that
    /// value; anything else is sent as a JSON string. The JSON text is passed through unchanged
    /// rather than re-serialized, so there is no parse-and-print cost on the hot path.
    pub fn from_data(data: &str) -> Payload {
        let is_json_value = matches!(
            serde_json::from_str::<&RawValue>(data),
            Ok(raw) if raw.get().trim() != "null"
        );
        let json = if is_json_value {
            data.trim().into()
        } else {
            serde_json::to_string(data).unwrap_or_default().into()
        };
        Payload { json }
    }

    /// Wraps JSON text that is already known to be valid (a whisper's `data`).
    pub fn from_json(json: &str) -> Payload {
        Payload { json: json.into() }
    }

    /// The JSON text of the payload.
    pub fn as_json(&self) -> &str {
        &self.json
    }
}

/// The stream position carried by broadcasts of stored messages.
#[derive(Debug, Clone, Copy)]
pub struct FramePosition<'a> {
    pub stream: &'a str,
    pub epoch: &'a str,
    pub offset: u64,
}

/// Frames a payload for one channel identifier:
/// `{"identifier":"<id>","message":<payload>}`, with `"type"` first when the publication asks
/// for one (presence events) and `stream_id`/`epoch`/`offset` when a broker stored it.
pub fn broadcast_frame(
    identifier: &str,
    payload: &Payload,
    broadcast_type: Option<&str>,
    position: Option<FramePosition>,
) -> String {
    let identifier = serde_json::to_string(identifier).unwrap_or_default();
    let mut frame = String::with_capacity(identifier.len() + payload.json.len() + 40);
    frame.push('{');
    if let Some(kind) = broadcast_type {
        frame.push_str("\"type\":");
        frame.push_str(&serde_json::to_string(kind).unwrap_or_default());
        frame.push(',');
    }
    frame.push_str("\"identifier\":");
    frame.push_str(&identifier);
    frame.push_str(",\"message\":");
    frame.push_str(&payload.json);
    if let Some(position) = position {
        frame.push_str(",\"stream_id\":");
        frame.push_str(&serde_json::to_string(position.stream).unwrap_or_default());
        frame.push_str(",\"epoch\":");
        frame.push_str(&serde_json::to_string(position.epoch).unwrap_or_default());
        frame.push_str(",\"offset\":");
        frame.push_str(&position.offset.to_string());
    }
    frame.push('}');
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn encodes_protocol_messages_exactly() {
        let welcome = Reply::Welcome {
            sid: "abc",
            restored: false,
            restored_ids: &[],
        };
        assert_eq!(welcome.encode(), r#"{"type":"welcome","sid":"abc"}"#);
        let restored = Reply::Welcome {
            sid: "n",
            restored: true,
            restored_ids: &["a"],
        };
        assert_eq!(
            restored.encode(),
            r#"{"type":"welcome","sid":"n","restored":true,"restored_ids":["a"]}"#
        );
        assert_eq!(
            Reply::Disconnect {
                reason: DisconnectReason::TokenExpired,
                reconnect: false
            }
            .encode(),
            r#"{"type":"disconnect","reason":"token_expired","reconnect":false}"#
        );
        assert_eq!(
            Reply::ConfirmSubscription {
                identifier: "{\"channel\":\"A\"}"
            }
            .encode(),
            r#"{"type":"confirm_subscription","identifier":"{\"channel\":\"A\"}"}"#
        );
        assert_eq!(
            Reply::Ping { message: 17 }.encode(),
            r#"{"type":"ping","message":17}"#
        );
        assert_eq!(Reply::Pong.encode(), r#"{"type":"pong"}"#);
    }

    fn frame_value(data: &str) -> Value {
        serde_json::from_str(&broadcast_frame(
            "id",
            &Payload::from_data(data),
            None,
            None,
        ))
        .unwrap()
    }

    #[test]
    fn broadcast_payload_rules() {
        assert_eq!(
            frame_value(r#"{"data":"X"}"#),
            json!({"identifier":"id","message":{"data":"X"}})
        );
        assert_eq!(
            frame_value(r#""<script>""#),
            json!({"identifier":"id","message":"<script>"})
        );
        assert_eq!(
            frame_value("Alice: Hey!"),
            json!({"identifier":"id","message":"Alice: Hey!"})
        );
        assert_eq!(
            frame_value("null"),
            json!({"identifier":"id","message":"null"})
        );
        assert_eq!(frame_value("42"), json!({"identifier":"id","message":42}));
        assert_eq!(frame_value(""), json!({"identifier":"id","message":""}));
    }

    #[test]
    fn broadcast_type_is_added() {
        let frame = broadcast_frame("id", &Payload::from_data("{}"), Some("presence"), None);
        assert_eq!(
            frame,
            r#"{"type":"presence","identifier":"id","message":{}}"#
        );
    }

    #[test]
    fn positions_are_appended() {
        let position = FramePosition {
            stream: "s",
            epoch: "e",
            offset: 7,
        };
        let frame = broadcast_frame("id", &Payload::from_data("1"), None, Some(position));
        assert_eq!(
            frame,
            r#"{"identifier":"id","message":1,"stream_id":"s","epoch":"e","offset":7}"#
        );
    }
}

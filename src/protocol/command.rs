//! Decoding of client commands.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// A decoded client command. Identifiers are kept as the exact strings the client sent, because
/// clients look their subscriptions up by byte-for-byte equality.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `history` asks for missed messages right after the confirmation.
    Subscribe {
        identifier: String,
        history: Option<HistoryRequest>,
        /// Join the subscription's presence stream right after the confirmation (and history).
        presence: Option<PresenceRequest>,
    },
    Unsubscribe {
        identifier: String,
    },
    /// `perform`: `data` is a JSON-encoded string. `None` when the client sent a non-string,
    /// which the reference ignores.
    Message {
        identifier: String,
        data: Option<String>,
    },
    /// Client-to-client transient message; `data` is the raw JSON text of any value, forwarded
    /// as is.
    Whisper {
        identifier: String,
        data: String,
    },
    /// Extended-protocol history request for an existing subscription; `None` when the
    /// request is empty (neither `since` nor `streams`), which is ignored.
    History {
        identifier: String,
        history: Option<HistoryRequest>,
    },
    /// Presence: add this connection under a presence id.
    Join {
        identifier: String,
        presence: PresenceRequest,
    },
    /// Presence: remove this connection's record (a `presence` field is ignored).
    Leave {
        identifier: String,
    },
    /// Presence: ask for the current records (`data` options are ignored, as in the reference).
    Presence {
        identifier: String,
    },
    /// Extended-protocol pong; it only proves liveness.
    Pong,
    /// `{"command":"ping"}`, answered with `{"type":"pong"}`.
    Ping,
    /// A well-formed command this server does not know (or does not implement yet).
    Unknown(String),
}

/// The `presence` field of `join` and `subscribe`: `id` must be a JSON string, `info` is any
/// JSON value, kept as its raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRequest {
    pub id: String,
    pub info: Option<String>,
}

#[derive(Deserialize)]
struct RawPresence {
    id: String,
    info: Option<Box<RawValue>>,
}

impl From<RawPresence> for PresenceRequest {
    fn from(raw: RawPresence) -> PresenceRequest {
        PresenceRequest {
            id: raw.id,
            info: raw.info.map(|i| i.get().to_string()),
        }
    }
}

/// What a client missed: per-stream positions, and/or a time for streams without one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct HistoryRequest {
    /// Unix seconds; 0 means "not given".
    #[serde(default)]
    pub since: i64,
    /// Stream name → last position the client saw.
    #[serde(default)]
    pub streams: Option<HashMap<String, StreamPosition>>,
}

impl HistoryRequest {
    /// A request exists iff it names a time or has a `streams` key (even an empty one).
    fn into_option(self) -> Option<HistoryRequest> {
        (self.since > 0 || self.streams.is_some()).then_some(self)
    }
}

/// A position in a stream, as clients remember it from broadcasts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamPosition {
    pub epoch: String,
    pub offset: u64,
}

/// Why a frame could not be decoded into a command.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not a valid command object: {0}")]
    Json(#[source] serde_json::Error),
    #[error("command {0:?} requires an identifier")]
    MissingIdentifier(String),
    #[error("whisper requires data")]
    MissingData,
    #[error("join requires presence")]
    MissingPresence,
}

/// The union of every command's fields; which ones matter depends on `command`.
#[derive(Deserialize)]
struct RawCommand<'a> {
    #[serde(borrow)]
    command: std::borrow::Cow<'a, str>,
    identifier: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    history: Option<HistoryRequest>,
    presence: Option<RawPresence>,
}

/// Decodes one client frame (text or binary, parsed as JSON either way).
pub fn decode(frame: &[u8]) -> Result<Command, DecodeError> {
    let raw: RawCommand = serde_json::from_slice(frame).map_err(DecodeError::Json)?;
    let identifier = |raw_identifier: Option<String>| {
        raw_identifier.ok_or_else(|| DecodeError::MissingIdentifier(raw.command.to_string()))
    };
    Ok(match raw.command.as_ref() {
        "subscribe" => Command::Subscribe {
            identifier: identifier(raw.identifier)?,
            history: raw.history.and_then(HistoryRequest::into_option),
            presence: raw.presence.map(PresenceRequest::from),
        },
        "unsubscribe" => Command::Unsubscribe {
            identifier: identifier(raw.identifier)?,
        },
        "message" => Command::Message {
            identifier: identifier(raw.identifier)?,
            data: raw
                .data
                .and_then(|d| serde_json::from_str::<String>(d.get()).ok()),
        },
        "whisper" => Command::Whisper {
            identifier: identifier(raw.identifier)?,
            data: raw.data.ok_or(DecodeError::MissingData)?.get().to_string(),
        },
        "history" => Command::History {
            identifier: identifier(raw.identifier)?,
            history: raw.history.and_then(HistoryRequest::into_option),
        },
        "join" => Command::Join {
            identifier: identifier(raw.identifier)?,
            presence: raw
                .presence
                .map(PresenceRequest::from)
                .ok_or(DecodeError::MissingPresence)?,
        },
        "leave" => Command::Leave {
            identifier: identifier(raw.identifier)?,
        },
        "presence" => Command::Presence {
            identifier: identifier(raw.identifier)?,
        },
        "pong" => Command::Pong,
        "ping" => Command::Ping,
        other => Command::Unknown(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_subscribe_keeping_identifier_bytes() {
        let id = r#"{"channel":"$pubsub","stream_name":"a","z":1}"#;
        let frame = serde_json::json!({"command": "subscribe", "identifier": id}).to_string();
        assert_eq!(
            decode(frame.as_bytes()).unwrap(),
            Command::Subscribe {
                identifier: id.into(),
                history: None,
                presence: None
            }
        );
    }

    #[test]
    fn decodes_history_requests() {
        let frame = br#"{"command":"subscribe","identifier":"x","history":{"since":17,"streams":{"a":{"epoch":"e","offset":3}}}}"#;
        let Command::Subscribe {
            history: Some(history),
            ..
        } = decode(frame).unwrap()
        else {
            panic!("no history")
        };
        assert_eq!(history.since, 17);
        assert_eq!(
            history.streams.unwrap()["a"],
            StreamPosition {
                epoch: "e".into(),
                offset: 3
            }
        );
        let empty_streams = br#"{"command":"history","identifier":"x","history":{"streams":{}}}"#;
        assert!(matches!(
            decode(empty_streams).unwrap(),
            Command::History {
                history: Some(_),
                ..
            }
        ));
        let nothing = br#"{"command":"history","identifier":"x","history":{"since":0}}"#;
        assert!(matches!(
            decode(nothing).unwrap(),
            Command::History { history: None, .. }
        ));
        let bad = br#"{"command":"subscribe","identifier":"x","history":{"since":"yesterday"}}"#;
        assert!(decode(bad).is_err());
    }

    #[test]
    fn message_data_must_be_a_string() {
        let ok = decode(br#"{"command":"message","identifier":"x","data":"{\"action\":\"a\"}"}"#);
        assert_eq!(
            ok.unwrap(),
            Command::Message {
                identifier: "x".into(),
                data: Some(r#"{"action":"a"}"#.into())
            }
        );
        let not_string = decode(br#"{"command":"message","identifier":"x","data":{"a":1}}"#);
        assert_eq!(
            not_string.unwrap(),
            Command::Message {
                identifier: "x".into(),
                data: None
            }
        );
    }

    #[test]
    fn whisper_keeps_raw_data() {
        match decode(br#"{"command":"whisper","identifier":"x","data":{"event":"typing"}}"#) {
            Ok(Command::Whisper { data, .. }) => assert_eq!(data, r#"{"event":"typing"}"#),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_frames() {
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"identifier":"x"}"#).is_err());
        assert!(decode(br#"{"command":"subscribe","identifier":42}"#).is_err());
        assert!(matches!(
            decode(br#"{"command":"subscribe"}"#),
            Err(DecodeError::MissingIdentifier(_))
        ));
        assert!(decode(br#"[1,2]"#).is_err());
    }

    #[test]
    fn decodes_presence_commands() {
        let join =
            br#"{"command":"join","identifier":"x","presence":{"id":"42","info":{"name":"Jack"}}}"#;
        assert_eq!(
            decode(join).unwrap(),
            Command::Join {
                identifier: "x".into(),
                presence: PresenceRequest {
                    id: "42".into(),
                    info: Some(r#"{"name":"Jack"}"#.into())
                }
            }
        );
        let bare = br#"{"command":"join","identifier":"x","presence":{"id":"7"}}"#;
        assert!(matches!(
            decode(bare).unwrap(),
            Command::Join {
                presence: PresenceRequest { info: None, .. },
                ..
            }
        ));
        assert!(decode(br#"{"command":"join","identifier":"x","presence":{"id":42}}"#).is_err());
        assert!(decode(br#"{"command":"join","identifier":"x"}"#).is_err());
        assert_eq!(
            decode(br#"{"command":"leave","identifier":"x"}"#).unwrap(),
            Command::Leave {
                identifier: "x".into()
            }
        );
        assert_eq!(
            decode(br#"{"command":"presence","identifier":"x","data":{"return_records":true}}"#)
                .unwrap(),
            Command::Presence {
                identifier: "x".into()
            }
        );
        let subscribe =
            br#"{"command":"subscribe","identifier":"x","presence":{"id":"1","info":"a"}}"#;
        assert!(matches!(
            decode(subscribe).unwrap(),
            Command::Subscribe {
                presence: Some(PresenceRequest { info: Some(_), .. }),
                ..
            }
        ));
    }

    #[test]
    fn unknown_and_simple_commands() {
        assert_eq!(
            decode(br#"{"command":"boom"}"#).unwrap(),
            Command::Unknown("boom".into())
        );
        assert_eq!(decode(br#"{"command":"pong"}"#).unwrap(), Command::Pong);
        assert_eq!(decode(br#"{"command":"ping"}"#).unwrap(), Command::Ping);
    }
}

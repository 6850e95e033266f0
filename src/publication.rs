//! The publication: what every source of broadcasts (HTTP, Redis Pub/Sub, Redis Streams, NATS,
//! the REST API, node-to-node pub/sub) produces and the node executes, and its wire form.
//! No IO; a leaf below every producer and consumer.

use serde::{Deserialize, Serialize};

/// One message for one stream. Serialized (empty fields left out) between nodes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Publication {
    pub stream: String,
    /// Always a string on the wire; parsed as JSON (or kept as a string) for clients.
    pub data: String,
    #[serde(default, skip_serializing_if = "PublicationMeta::is_empty")]
    pub meta: PublicationMeta,
    /// Position assigned by the broker of the node that registered the message; only
    /// meaningful on messages between nodes (pub/sub), ignored from publishers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// Delivery instructions of a publication. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PublicationMeta {
    /// `sid` of a connection that must not receive the message (usually its author).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_socket: Option<String>,
    /// Adds a `type` field to the client frame (presence events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_type: Option<String>,
    /// Not stored in history (whispers, presence); meaningful once a broker exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transient: bool,
}

impl PublicationMeta {
    pub fn is_empty(&self) -> bool {
        *self == PublicationMeta::default()
    }
}

/// A command executed by the server on behalf of the application.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteCommand {
    /// Disconnect every connection whose identifiers equal `identifiers`.
    Disconnect {
        identifiers: String,
        reconnect: bool,
    },
    /// A command this server does not implement; accepted and ignored like the reference.
    Other(String),
}

impl RemoteCommand {
    /// The wire form (`{"command":..,"payload":{..}}`), as node-to-node pub/sub sends it.
    pub fn to_json(&self) -> String {
        match self {
            RemoteCommand::Disconnect {
                identifiers,
                reconnect,
            } => serde_json::json!({
                "command": "disconnect",
                "payload": {"identifier": identifiers, "reconnect": reconnect},
            }),
            RemoteCommand::Other(name) => serde_json::json!({ "command": name }),
        }
        .to_string()
    }
}

/// A parsed broadcast message.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// One publication or a batch, in order.
    Publications(Vec<Publication>),
    Command(RemoteCommand),
}

#[derive(Debug, thiserror::Error)]
#[error("not a publication, a non-empty batch of publications or a remote command")]
pub struct ParseError;

#[derive(Deserialize)]
struct RawCommand {
    command: String,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// Parses a publication, a batch or a remote command, in AnyCable's order of attempts.
pub fn parse(body: &[u8]) -> Result<Inbound, ParseError> {
    if let Ok(publication) = serde_json::from_slice::<Publication>(body) {
        if !publication.stream.is_empty() {
            return Ok(Inbound::Publications(vec![publication]));
        }
    }
    if let Ok(batch) = serde_json::from_slice::<Vec<Publication>>(body) {
        if batch.first().is_some_and(|p| !p.stream.is_empty()) {
            return Ok(Inbound::Publications(batch));
        }
    }
    match serde_json::from_slice::<RawCommand>(body) {
        Ok(raw) if raw.command == "disconnect" => {
            let payload = raw.payload.unwrap_or_default();
            let identifiers = payload.get("identifier").and_then(|v| v.as_str());
            let reconnect = payload
                .get("reconnect")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            match identifiers {
                Some(identifiers) => Ok(Inbound::Command(RemoteCommand::Disconnect {
                    identifiers: identifiers.to_string(),
                    reconnect,
                })),
                None => Err(ParseError),
            }
        }
        Ok(raw) if !raw.command.is_empty() => {
            Ok(Inbound::Command(RemoteCommand::Other(raw.command)))
        }
        _ => Err(ParseError),
    }
}

/// Streams of readiness canaries (`src/readiness/`) start with this: the node hands their
/// publications to the readiness checks and never to the hub, the broker or the log of
/// broadcasts, and the pub/sub never follows a client's subscription to such a name.
pub const CANARY_PREFIX: &str = "__anycable_canary__/";

/// Whether `stream` carries readiness canaries rather than messages for clients.
pub fn is_canary(stream: &str) -> bool {
    stream.starts_with(CANARY_PREFIX)
}

/// The canary stream of one node: canaries come back to the node named in it only.
pub fn canary_stream(node_id: &str) -> String {
    format!("{CANARY_PREFIX}{node_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_publication_with_meta() {
        let parsed =
            parse(br#"{"stream":"a","data":"{\"x\":1}","meta":{"exclude_socket":"s1","other":1}}"#)
                .unwrap();
        let Inbound::Publications(list) = parsed else {
            panic!()
        };
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].stream, "a");
        assert_eq!(list[0].meta.exclude_socket.as_deref(), Some("s1"));
    }

    #[test]
    fn parses_batches() {
        let parsed = parse(br#"[{"stream":"a","data":"1"},{"stream":"b","data":"2"}]"#).unwrap();
        assert!(matches!(parsed, Inbound::Publications(list) if list.len() == 2));
    }

    #[test]
    fn parses_remote_commands() {
        let parsed = parse(
            br#"{"command":"disconnect","payload":{"identifier":"{\"u\":1}","reconnect":true}}"#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            Inbound::Command(RemoteCommand::Disconnect {
                identifiers: r#"{"u":1}"#.into(),
                reconnect: true
            })
        );
        assert!(matches!(
            parse(br#"{"command":"reload"}"#),
            Ok(Inbound::Command(RemoteCommand::Other(_)))
        ));
    }

    #[test]
    fn publications_and_commands_round_trip() {
        let publication = Publication {
            stream: "s".into(),
            data: "1".into(),
            meta: PublicationMeta {
                exclude_socket: Some("x".into()),
                ..PublicationMeta::default()
            },
            offset: Some(3),
            epoch: Some("e".into()),
        };
        let text = serde_json::to_string(&publication).unwrap();
        assert_eq!(
            text,
            r#"{"stream":"s","data":"1","meta":{"exclude_socket":"x"},"offset":3,"epoch":"e"}"#
        );
        assert_eq!(
            parse(text.as_bytes()).unwrap(),
            Inbound::Publications(vec![publication])
        );
        let plain = serde_json::to_string(&Publication {
            stream: "s".into(),
            data: "1".into(),
            meta: PublicationMeta::default(),
            offset: None,
            epoch: None,
        })
        .unwrap();
        assert_eq!(plain, r#"{"stream":"s","data":"1"}"#);
        let command = RemoteCommand::Disconnect {
            identifiers: "{}".into(),
            reconnect: true,
        };
        assert_eq!(
            parse(command.to_json().as_bytes()).unwrap(),
            Inbound::Command(command)
        );
    }

    #[test]
    fn rejects_invalid_bodies() {
        for body in [
            &br#"{"stream":"a","data":{"x":1}}"#[..],
            br#"{"stream":"","data":"x"}"#,
            br#"[]"#,
            br#"not json"#,
            br#"{"command":"disconnect"}"#,
            br#"{}"#,
        ] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}

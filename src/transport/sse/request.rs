//! Turning an SSE request into subscribe commands: the GET query parameters (with
//! `history_since` and `Last-Event-ID`) or the POST body (JSON Lines).

use std::collections::HashMap;

use serde::Deserialize;

use crate::config::StreamsConfig;
use crate::protocol::{HistoryRequest, StreamPosition};
use crate::transport::query_param;

/// Largest POST body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One subscription asked for by the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub identifier: String,
    pub history: Option<HistoryRequest>,
}

/// Why a request cannot start a stream; answered with 400 unless said otherwise.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no subscription parameter (identifier, channel, stream, signed_stream, turbo_signed_stream_name)")]
    NoSubscription,
    #[error("history_since is not an integer: {0:?}")]
    BadHistorySince(String),
    #[error("Last-Event-ID has a non-numeric offset: {0:?}")]
    BadLastEventId(String),
    #[error("line {0} of the body is not a subscribe command")]
    BadLine(usize),
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("the body could not be read")]
    BodyUnreadable,
    /// Answered with 408, not 400 (see [`crate::http::read_body`]).
    #[error("the body did not arrive in time")]
    BodyTimedOut,
    /// Answered with 503, not 400.
    #[error("too many slow request bodies")]
    BodyBusy,
}

/// `raw=1` (also `true`, `t`, `y`, any case): only data events are written.
pub fn raw_mode(query: Option<&str>) -> bool {
    query_param(query, "raw").is_some_and(|v| {
        let v = v.to_ascii_lowercase();
        matches!(v.as_str(), "1" | "true" | "t" | "y")
    })
}

/// What the cleartext `turbo_stream_name` parameter subscribes to (see docs/sse.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainTurboName {
    /// Not a subscription parameter.
    Refused,
    /// `Turbo::StreamsChannel` with the plain name (`--turbo_rails_cleartext`).
    Turbo,
    /// The `$pubsub` public stream of that name (`--public_streams`, an addition of ours).
    PublicStream,
}

impl PlainTurboName {
    pub fn from_config(streams: &StreamsConfig) -> PlainTurboName {
        if streams.turbo && streams.turbo_cleartext {
            PlainTurboName::Turbo
        } else if streams.public {
            PlainTurboName::PublicStream
        } else {
            PlainTurboName::Refused
        }
    }
}

/// The single subscription of a GET request.
pub fn from_query(
    query: Option<&str>,
    last_event_id: Option<&str>,
    plain_turbo_name: PlainTurboName,
) -> Result<Subscribe, RequestError> {
    let param = |name: &str| query_param(query, name).filter(|v| !v.is_empty());
    let pubsub = |key: &str, value: String| {
        serde_json::json!({"channel": "$pubsub", key: value}).to_string()
    };
    let turbo = |name: String| {
        serde_json::json!({"channel": "Turbo::StreamsChannel", "signed_stream_name": name})
            .to_string()
    };
    let plain_turbo = || match plain_turbo_name {
        PlainTurboName::Refused => None,
        PlainTurboName::Turbo => param("turbo_stream_name").map(turbo),
        PlainTurboName::PublicStream => {
            param("turbo_stream_name").map(|name| pubsub("stream_name", name))
        }
    };
    let identifier = if let Some(identifier) = param("identifier") {
        identifier
    } else if let Some(channel) = param("channel") {
        serde_json::json!({ "channel": channel }).to_string()
    } else if let Some(stream) = param("stream") {
        pubsub("stream_name", stream)
    } else if let Some(signed) = param("signed_stream") {
        pubsub("signed_stream_name", signed)
    } else if let Some(signed) = param("turbo_signed_stream_name") {
        turbo(signed)
    } else if let Some(identifier) = plain_turbo() {
        identifier
    } else {
        return Err(RequestError::NoSubscription);
    };

    let since = match param("history_since") {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| RequestError::BadHistorySince(text))?,
        None => 0,
    };
    let resume = match last_event_id {
        Some(id) => parse_event_id(id)?,
        None => None,
    };
    let history = match resume {
        Some((stream, position)) => Some(HistoryRequest {
            since,
            streams: Some(HashMap::from([(stream, position)])),
        }),
        None if since > 0 => Some(HistoryRequest {
            since,
            streams: None,
        }),
        None => None,
    };
    Ok(Subscribe {
        identifier,
        history,
    })
}

/// Parses an event id `<offset>/<epoch>/<stream>` (the stream may contain `/`). Ids with
/// fewer parts are ignored; a non-numeric offset is an error.
fn parse_event_id(id: &str) -> Result<Option<(String, StreamPosition)>, RequestError> {
    let mut parts = id.splitn(3, '/');
    let (Some(offset), Some(epoch), Some(stream)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let offset = offset
        .parse::<u64>()
        .map_err(|_| RequestError::BadLastEventId(id.to_string()))?;
    let position = StreamPosition {
        epoch: epoch.to_string(),
        offset,
    };
    Ok(Some((stream.to_string(), position)))
}

/// One line of a POST body. The `command` is not checked: every line subscribes.
#[derive(Deserialize)]
struct Line {
    identifier: String,
    #[serde(default)]
    history: Option<HistoryRequest>,
}

/// The subscriptions of a POST body: one JSON object per non-empty line, in order.
pub fn from_body(body: &[u8]) -> Result<Vec<Subscribe>, RequestError> {
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(index, line)| {
            let line: Line = serde_json::from_slice(line.trim_ascii())
                .map_err(|_| RequestError::BadLine(index + 1))?;
            // An empty history request (no time, no streams) is no request, as over WebSocket.
            let history = line.history.filter(|h| h.since > 0 || h.streams.is_some());
            Ok(Subscribe {
                identifier: line.identifier,
                history,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(query: &str) -> Result<Subscribe, RequestError> {
        from_query(Some(query), None, PlainTurboName::Refused)
    }

    fn identifier(query: &str) -> String {
        get(query).unwrap().identifier
    }

    #[test]
    fn identifier_sources_in_order() {
        assert_eq!(
            identifier("identifier=%7B%22channel%22%3A%22A%22%7D&stream=x"),
            r#"{"channel":"A"}"#
        );
        assert_eq!(identifier("channel=Chat&stream=x"), r#"{"channel":"Chat"}"#);
        assert_eq!(
            identifier("stream=chat%2F1&signed_stream=s"),
            r#"{"channel":"$pubsub","stream_name":"chat/1"}"#
        );
        assert_eq!(
            identifier("signed_stream=abc--01&turbo_signed_stream_name=t"),
            r#"{"channel":"$pubsub","signed_stream_name":"abc--01"}"#
        );
        assert_eq!(
            identifier("turbo_signed_stream_name=abc--01"),
            r#"{"channel":"Turbo::StreamsChannel","signed_stream_name":"abc--01"}"#
        );
        assert_eq!(identifier("identifier=&channel=C"), r#"{"channel":"C"}"#);
    }

    #[test]
    fn cleartext_turbo_name_needs_cleartext_or_public_streams() {
        let with = |query: &str, plain: PlainTurboName| from_query(Some(query), None, plain);
        assert_eq!(
            get("turbo_stream_name=x"),
            Err(RequestError::NoSubscription)
        );
        assert_eq!(
            with(
                "turbo_stream_name=gid%3A%2F%2Fa%2FRoom%2F1",
                PlainTurboName::Turbo
            )
            .unwrap()
            .identifier,
            r#"{"channel":"Turbo::StreamsChannel","signed_stream_name":"gid://a/Room/1"}"#
        );
        assert_eq!(
            with("turbo_stream_name=x", PlainTurboName::PublicStream)
                .unwrap()
                .identifier,
            r#"{"channel":"$pubsub","stream_name":"x"}"#
        );
        assert_eq!(get(""), Err(RequestError::NoSubscription));
        assert_eq!(
            from_query(None, None, PlainTurboName::Turbo),
            Err(RequestError::NoSubscription)
        );
    }

    #[test]
    fn plain_turbo_names_follow_the_config() {
        let plain = |streams: StreamsConfig| PlainTurboName::from_config(&streams);
        assert_eq!(plain(StreamsConfig::default()), PlainTurboName::Refused);
        let cleartext = StreamsConfig {
            turbo: true,
            turbo_cleartext: true,
            public: true,
            ..StreamsConfig::default()
        };
        assert_eq!(plain(cleartext.clone()), PlainTurboName::Turbo);
        let public = StreamsConfig {
            turbo_cleartext: false,
            ..cleartext
        };
        assert_eq!(plain(public), PlainTurboName::PublicStream);
    }

    #[test]
    fn history_since_and_last_event_id() {
        assert_eq!(get("stream=s").unwrap().history, None);
        assert_eq!(get("stream=s&history_since=0").unwrap().history, None);
        assert_eq!(
            get("stream=s&history_since=1700000000").unwrap().history,
            Some(HistoryRequest {
                since: 1_700_000_000,
                streams: None
            })
        );
        assert_eq!(
            get("stream=s&history_since=soon"),
            Err(RequestError::BadHistorySince("soon".into()))
        );
        let resumed = from_query(
            Some("stream=s&history_since=5"),
            Some("7/ep/a/b"),
            PlainTurboName::Refused,
        )
        .unwrap()
        .history
        .unwrap();
        assert_eq!(resumed.since, 5);
        assert_eq!(
            resumed.streams.unwrap()["a/b"],
            StreamPosition {
                epoch: "ep".into(),
                offset: 7
            }
        );
        assert_eq!(
            from_query(Some("stream=s"), Some("x/ep/a"), PlainTurboName::Refused),
            Err(RequestError::BadLastEventId("x/ep/a".into()))
        );
        // Fewer than three parts: ignored.
        assert_eq!(
            from_query(Some("stream=s"), Some("7/ep"), PlainTurboName::Refused)
                .unwrap()
                .history,
            None
        );
    }

    #[test]
    fn raw_flag_values() {
        for on in ["raw=1", "raw=true", "raw=T", "raw=y", "raw=Y"] {
            assert!(raw_mode(Some(on)), "{on}");
        }
        for off in ["raw=0", "raw=no", "raw=", "stream=x"] {
            assert!(!raw_mode(Some(off)), "{off}");
        }
        assert!(!raw_mode(None));
    }

    #[test]
    fn json_lines_body() {
        let body = b"{\"command\":\"subscribe\",\"identifier\":\"a\"}\n\n  {\"identifier\":\"b\",\"history\":{\"since\":3}}\r\n{\"identifier\":\"c\",\"history\":{}}\n";
        let subs = from_body(body).unwrap();
        assert_eq!(subs.len(), 3);
        assert_eq!(subs[0].identifier, "a");
        assert_eq!(subs[1].history.as_ref().unwrap().since, 3);
        assert_eq!(subs[2].history, None);
        assert_eq!(from_body(b"").unwrap(), vec![]);
        assert_eq!(
            from_body(b"{\"identifier\":\"a\"}\nnot json\n"),
            Err(RequestError::BadLine(2))
        );
        assert_eq!(from_body(b"{}"), Err(RequestError::BadLine(1)));
    }
}

//! Presence (docs/presence.md): `join`/`leave`/`presence` commands on
//! subscriptions with a presence stream, events broadcast on that stream, and the REST API query.

use std::sync::Arc;

use super::Node;
use crate::broker::{PresenceError, PresenceEvent, PresenceInfo};
use crate::protocol::PresenceRequest;
use crate::publication::{Publication, PublicationMeta};
use crate::session::Session;

/// Answer of a presence query for the REST API.
pub enum PresenceLookup {
    /// `{"type":"info","total":N,"records":[...]}` as JSON text.
    Found(String),
    /// The broker keeps no presence (NATS, Redis, or no broker).
    Unsupported,
}

impl Node {
    /// The presence records of `stream`, as the REST API answers them.
    pub fn presence_users(&self, stream: &str) -> PresenceLookup {
        match self.broker.presence.info(stream) {
            Ok(info) => PresenceLookup::Found(info_message(&info)),
            Err(_) => PresenceLookup::Unsupported,
        }
    }

    /// `join`: adds the session under `presence.id` to the subscription's presence stream.
    pub(super) fn presence_join(
        &self,
        session: &Session,
        identifier: &str,
        presence: &PresenceRequest,
    ) {
        let Some(stream) = self.presence_stream(session, identifier) else {
            tracing::debug!(sid = &*session.sid, identifier, "join: no presence here");
            return;
        };
        match self.broker.presence.join(
            &stream,
            &session.sid,
            &presence.id,
            presence.info.as_deref(),
        ) {
            Ok(Some(event)) => self.broadcast_presence(&stream, &event),
            Ok(None) => {}
            Err(error) => tracing::debug!(sid = &*session.sid, identifier, "join failed: {error}"),
        }
    }

    /// `leave` (also on unsubscribe): removes the session's record from the presence stream.
    pub(super) fn presence_leave(&self, session: &Session, identifier: &str) {
        let Some(stream) = self.presence_stream(session, identifier) else {
            return;
        };
        match self.broker.presence.leave(&stream, &session.sid) {
            Ok(Some(event)) => self.broadcast_presence(&stream, &event),
            Ok(None) => {}
            Err(error) => tracing::debug!(sid = &*session.sid, "leave failed: {error}"),
        }
    }

    /// `presence`: the current records, to the requester only. No reply at all without a
    /// presence stream; an `error` message when the broker cannot answer.
    pub(super) fn presence_query(&self, session: &Session, identifier: &str) {
        let Some(stream) = self.presence_stream(session, identifier) else {
            tracing::debug!(
                sid = &*session.sid,
                identifier,
                "presence: no presence here"
            );
            return;
        };
        let message = match self.broker.presence.info(&stream) {
            Ok(info) => info_message(&info),
            Err(PresenceError::IdMismatch | PresenceError::Unsupported) => {
                r#"{"type":"error","total":0}"#.to_string()
            }
        };
        self.send(session, presence_frame(identifier, &message));
    }

    /// Restarts the time to live of the session's presence records (extended-protocol
    /// sessions, every `presence_ttl / 2`, and once on disconnect).
    pub fn touch_presence(&self, session: &Session) {
        if session
            .subscriptions
            .values()
            .any(|s| s.presence_stream.is_some())
        {
            self.broker.presence.touch(&session.sid);
        }
    }

    /// Removes expired presence records and announces the `leave`s. Called every second.
    pub fn expire_presence(&self) {
        for (stream, event) in self.broker.presence.expire() {
            self.broadcast_presence(&stream, &event);
        }
    }

    fn presence_stream(&self, session: &Session, identifier: &str) -> Option<Arc<str>> {
        session
            .subscriptions
            .get(identifier)
            .and_then(|s| s.presence_stream.clone())
    }

    /// A transient publication with `broadcast_type: "presence"` on the presence stream: every
    /// subscriber (the originator included) gets `{"type":"presence",...}`.
    fn broadcast_presence(&self, stream: &str, event: &PresenceEvent) {
        let data = match event {
            PresenceEvent::Join { id, info } => match info {
                Some(info) => format!(
                    r#"{{"type":"join","id":{},"info":{info}}}"#,
                    json_string(id)
                ),
                None => format!(r#"{{"type":"join","id":{}}}"#, json_string(id)),
            },
            PresenceEvent::Leave { id } => {
                format!(r#"{{"type":"leave","id":{}}}"#, json_string(id))
            }
        };
        self.dispatch(&Publication {
            stream: stream.to_string(),
            data,
            meta: PublicationMeta {
                broadcast_type: Some("presence".to_string()),
                transient: true,
                ..PublicationMeta::default()
            },
            offset: None,
            epoch: None,
        });
    }
}

/// `{"type":"info","total":N,"records":[{"id":..,"info":..}]}`, `records` left out when empty.
fn info_message(info: &PresenceInfo) -> String {
    if info.records.is_empty() {
        return format!(r#"{{"type":"info","total":{}}}"#, info.total);
    }
    let records: Vec<String> = info
        .records
        .iter()
        .map(|r| match &r.info {
            Some(value) => format!(r#"{{"id":{},"info":{value}}}"#, json_string(&r.id)),
            None => format!(r#"{{"id":{}}}"#, json_string(&r.id)),
        })
        .collect();
    format!(
        r#"{{"type":"info","total":{},"records":[{}]}}"#,
        info.total,
        records.join(",")
    )
}

fn presence_frame(identifier: &str, message: &str) -> String {
    format!(
        r#"{{"type":"presence","identifier":{},"message":{message}}}"#,
        json_string(identifier)
    )
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::PresenceRecord;

    #[test]
    fn info_messages_leave_out_empty_records() {
        assert_eq!(
            info_message(&PresenceInfo::default()),
            r#"{"type":"info","total":0}"#
        );
        let info = PresenceInfo {
            total: 1,
            records: vec![PresenceRecord {
                id: "42".into(),
                info: Some(r#"{"name":"Jack"}"#.into()),
            }],
        };
        assert_eq!(
            presence_frame("x", &info_message(&info)),
            r#"{"type":"presence","identifier":"x","message":{"type":"info","total":1,"records":[{"id":"42","info":{"name":"Jack"}}]}}"#
        );
    }
}

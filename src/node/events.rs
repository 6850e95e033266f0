//! The node's debug records: what AnyCable-Go logs at debug level (sessions authenticated or
//! rejected, subscriptions, broadcasts, remote commands), with the same information. Kept
//! here so that the node's logic reads without them.

use crate::protocol::DisconnectReason;
use crate::publication::{Publication, RemoteCommand};
use crate::session::Session;

use super::Subscribed;

pub(super) fn authenticated(sid: &str, identifiers: &str) {
    tracing::debug!(context = "node", sid, identifiers, "authenticated");
}

/// The client is told `reason` (when there is one) and must not reconnect.
pub(super) fn rejected(sid: &str, reason: Option<DisconnectReason>, why: &str) {
    // The name the client sees in its `disconnect` message.
    let reason = reason
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    let reason = reason.as_deref();
    tracing::debug!(
        context = "node",
        sid,
        reason,
        "authentication rejected: {why}"
    );
}

pub(super) fn subscription(session: &Session, identifier: &str, outcome: Subscribed) {
    let sid = &*session.sid;
    match outcome {
        Subscribed::Confirmed => {
            let streams = session
                .subscriptions
                .get(identifier)
                .map(|s| s.streams.join(","))
                .unwrap_or_default();
            tracing::debug!(context = "node", sid, identifier, streams, "subscribed");
        }
        Subscribed::Rejected => {
            tracing::debug!(context = "node", sid, identifier, "subscription rejected");
        }
        // Logged where they happen.
        Subscribed::Duplicate | Subscribed::Failed => {}
    }
}

pub(super) fn unsubscribed(session: &Session, identifier: &str) {
    let sid = &*session.sid;
    tracing::debug!(context = "node", sid, identifier, "unsubscribed");
}

/// A publication from a publisher (HTTP, the REST API, `redisx`), before the broker.
pub(super) fn broadcast_received(publication: &Publication) {
    let (stream, size) = (&publication.stream, publication.data.len());
    tracing::debug!(context = "node", stream, size, "broadcast received");
}

/// A publication handed to this node's subscribers.
pub(super) fn broadcast_delivered(publication: &Publication, recipients: usize) {
    let (stream, size) = (&publication.stream, publication.data.len());
    let offset = publication.offset;
    tracing::debug!(
        context = "node",
        stream,
        size,
        offset,
        recipients,
        "broadcast delivered"
    );
}

pub(super) fn remote_command_received(command: &RemoteCommand) {
    tracing::debug!(
        context = "node",
        command = command.to_json(),
        "remote command received"
    );
}

pub(super) fn remote_disconnect(identifiers: &str, reconnect: bool, sessions: usize) {
    tracing::debug!(
        context = "node",
        identifiers,
        reconnect,
        sessions,
        "remote disconnect"
    );
}

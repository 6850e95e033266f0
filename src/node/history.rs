//! Reliable streams in the node: history replay (on subscribe and for the `history` command)
//! and session restore.

use std::sync::Arc;

use super::{subscriber, ConnectRequest, Node};
use crate::broker::{HistoryError, StoredMessage};
use crate::protocol::{self, FramePosition, HistoryRequest, Reply, StreamPosition};
use crate::session::{Outbox, Session, Subscription};

impl Node {
    /// Resumes a cached session without authenticating again. Its subscriptions come back
    /// detached, waiting for the client's `history` command (see [`Subscription`]).
    pub(super) fn try_restore(
        &self,
        request: &ConnectRequest,
        outbox: &Arc<Outbox>,
    ) -> Option<Session> {
        if !(request.extended && self.sessions_cache) {
            return None;
        }
        let broker = self.broker.as_ref()?;
        let snapshot = broker.restore_session(request.restore_sid?)?;
        let mut session = self.register(request, snapshot.identifiers.clone(), outbox.clone());
        session.state = snapshot.state;
        session.disconnectable = snapshot.disconnectable;
        for (identifier, saved) in snapshot.subscriptions {
            let offsets = saved
                .streams
                .iter()
                .map(|s| broker.last_offset(s))
                .collect();
            let subscription = Subscription {
                streams: saved.streams,
                whisper_stream: saved.whisper_stream,
                presence_stream: saved.presence_stream,
                awaiting_history: Some(offsets),
                remote: saved.remote,
                state: saved.state,
            };
            session.subscriptions.insert(identifier, subscription);
        }
        let restored_ids: Vec<&str> = session.subscriptions.keys().map(|k| &**k).collect();
        session.send(
            Reply::Welcome {
                sid: &session.sid,
                restored: true,
                restored_ids: &restored_ids,
            }
            .encode(),
        );
        self.save_snapshot(&session);
        tracing::debug!(sid = &*session.sid, "session restored");
        Some(session)
    }

    /// Attaches restored subscriptions whose client did not ask for history in time, replaying
    /// what was published to their streams since the restore.
    pub fn finish_restore(&self, session: &mut Session) {
        let waiting: Vec<Arc<str>> = session
            .subscriptions
            .iter()
            .filter(|(_, s)| s.awaiting_history.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for identifier in waiting {
            let Some(subscription) = session.subscriptions.get_mut(&identifier) else {
                continue;
            };
            let offsets = subscription.awaiting_history.take().unwrap_or_default();
            let streams = subscription.streams.clone();
            for (stream, offset) in streams.iter().zip(offsets) {
                let mut lock = self.hub.lock(stream);
                lock.attach(stream, &identifier, subscriber(session));
                let since_restore = match (&self.broker, offset) {
                    (Some(broker), Some(offset)) => broker.history_from(
                        stream,
                        &StreamPosition {
                            epoch: broker.epoch().to_string(),
                            offset,
                        },
                    ),
                    (Some(broker), None) => Ok(broker.history_since(stream, 0)),
                    (None, _) => Ok(Vec::new()),
                };
                self.send_history(
                    session,
                    &identifier,
                    stream,
                    &since_restore.unwrap_or_default(),
                );
            }
        }
    }

    /// Serves a history request for a subscription: all streams succeed or nothing is
    /// replayed. With `attach` (a new or restored subscription), each stream is attached in the
    /// same critical section as its read, so live messages continue exactly after the replayed
    /// ones.
    pub(super) fn replay_history(
        &self,
        session: &Session,
        identifier: &Arc<str>,
        request: &HistoryRequest,
        attach: bool,
    ) {
        let streams = session
            .subscriptions
            .get(identifier)
            .map(|s| s.streams.clone())
            .unwrap_or_default();
        let available = self.broker.is_some()
            && streams
                .iter()
                .all(|stream| self.read_history(stream, request).is_ok());
        for stream in &streams {
            let mut lock = self.hub.lock(stream);
            if attach {
                lock.attach(stream, identifier, subscriber(session));
            }
            if available {
                // Read again under the lock: it can only have grown since the check.
                let messages = self.read_history(stream, request).unwrap_or_default();
                self.send_history(session, identifier, stream, &messages);
            }
        }
        let reply = if available {
            Reply::ConfirmHistory { identifier }
        } else {
            Reply::RejectHistory { identifier }
        };
        self.send(session, reply.encode());
    }

    fn read_history(
        &self,
        stream: &str,
        request: &HistoryRequest,
    ) -> Result<Vec<StoredMessage>, HistoryError> {
        let broker = self.broker.as_ref().ok_or(HistoryError::UnknownStream)?;
        match request
            .streams
            .as_ref()
            .and_then(|streams| streams.get(stream))
        {
            Some(position) => broker.history_from(stream, position),
            None if request.since > 0 => Ok(broker.history_since(stream, request.since)),
            None => Ok(Vec::new()),
        }
    }

    fn send_history(
        &self,
        session: &Session,
        identifier: &str,
        stream: &str,
        messages: &[StoredMessage],
    ) {
        let Some(broker) = &self.broker else { return };
        let epoch = broker.epoch();
        for message in messages {
            let position = FramePosition {
                stream,
                epoch: &epoch,
                offset: message.offset,
            };
            self.send(
                session,
                protocol::broadcast_frame(identifier, &message.payload, None, Some(position)),
            );
        }
    }
}

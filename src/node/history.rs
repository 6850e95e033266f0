//! Reliable streams in the node: history replay (on subscribe and for the `history` command)
//! and session restore.
//!
//! The seam between history and live messages: a subscription is attached to its streams
//! behind the hub's gate *before* the broker is read, so every message is either in the replay
//! or held by the gate (or both). The replay is sent, then the gate opens and queues the held
//! messages the replay did not cover. No gap, no duplicate, in offset order.

use std::sync::Arc;

use super::{subscriber, ConnectRequest, Node};
use crate::broker::{HistoryError, StoredMessage};
use crate::hub::Covered;
use crate::protocol::{self, FramePosition, HistoryRequest, Reply};
use crate::session::{Outbox, Session, Subscription};

impl Node {
    /// Resumes a cached session without authenticating again. Its subscriptions come back
    /// attached behind the gate, waiting for the client's `history` command.
    pub(super) async fn try_restore(
        &self,
        request: &ConnectRequest<'_>,
        outbox: &Arc<Outbox>,
    ) -> Option<Session> {
        if !request.extended {
            return None;
        }
        let sessions = self.broker.sessions.as_ref()?;
        let snapshot = sessions.restore_session(request.restore_sid?).await?;
        let mut session = self.register(request, snapshot.identifiers.clone(), outbox.clone());
        session.state = snapshot.state;
        session.disconnectable = snapshot.disconnectable;
        for (identifier, saved) in snapshot.subscriptions {
            for stream in &saved.streams {
                self.hub.hold(stream, &identifier, subscriber(&session));
            }
            let subscription = Subscription {
                streams: saved.streams,
                whisper_stream: saved.whisper_stream,
                presence_stream: saved.presence_stream,
                awaiting_history: true,
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

    /// Lets through what restored subscriptions held since the restore when their client did
    /// not ask for history in time.
    pub fn finish_restore(&self, session: &mut Session) {
        for (identifier, subscription) in session.subscriptions.iter_mut() {
            if std::mem::take(&mut subscription.awaiting_history) {
                for stream in &subscription.streams {
                    let fan_out = self.hub.release(stream, identifier, session.id, None);
                    self.count_fan_out(&fan_out);
                }
            }
        }
    }

    /// Serves a history request for a subscription: all streams succeed or nothing is
    /// replayed. The subscription's streams are held (attached first, when new) for the time
    /// of the read, so live messages continue exactly after the replayed ones.
    pub(super) async fn replay_history(
        &self,
        session: &Session,
        identifier: &Arc<str>,
        request: &HistoryRequest,
    ) {
        let streams = session
            .subscriptions
            .get(identifier)
            .map(|s| s.streams.clone())
            .unwrap_or_default();
        for stream in &streams {
            self.hub.hold(stream, identifier, subscriber(session));
        }
        // Whatever is stored after the read must reach the gate.
        self.await_pubsub(&streams).await;
        let replay = self.read_histories(&streams, request).await;
        let epoch = self.broker.history.as_ref().map(|h| h.epoch());
        for (index, stream) in streams.iter().enumerate() {
            let covered = match (&replay, &epoch) {
                (Ok(replay), Some(epoch)) => {
                    self.send_history(session, identifier, stream, &replay[index]);
                    let requested = request.streams.as_ref().and_then(|s| s.get(&**stream));
                    replay[index]
                        .last()
                        .map(|m| m.offset)
                        .or(requested.map(|p| p.offset))
                        .map(|offset| Covered {
                            offset,
                            epoch: epoch.clone(),
                        })
                }
                _ => None,
            };
            let fan_out = self.hub.release(stream, identifier, session.id, covered);
            self.count_fan_out(&fan_out);
        }
        let reply = match replay {
            Ok(_) => Reply::ConfirmHistory { identifier },
            Err(error) => {
                if let HistoryError::Unavailable(_) = error {
                    self.metrics.inc(crate::metrics::Counter::BrokerErrors);
                    tracing::warn!(context = "broker", "history read failed: {error}");
                }
                tracing::debug!(sid = &*session.sid, %identifier, "history rejected: {error}");
                Reply::RejectHistory { identifier }
            }
        };
        self.send(session, reply.encode());
    }

    /// Each stream's part of a history request, in the order of `streams`.
    async fn read_histories(
        &self,
        streams: &[Arc<str>],
        request: &HistoryRequest,
    ) -> Result<Vec<Vec<StoredMessage>>, HistoryError> {
        let history = self
            .broker
            .history
            .as_ref()
            .ok_or(HistoryError::UnknownStream)?;
        let mut replay = Vec::with_capacity(streams.len());
        for stream in streams {
            let position = request.streams.as_ref().and_then(|s| s.get(&**stream));
            replay.push(match position {
                Some(position) => history.history_from(stream, position).await?,
                None if request.since > 0 => history.history_since(stream, request.since).await?,
                None => Vec::new(),
            });
        }
        Ok(replay)
    }

    fn send_history(
        &self,
        session: &Session,
        identifier: &str,
        stream: &str,
        messages: &[StoredMessage],
    ) {
        let Some(history) = &self.broker.history else {
            return;
        };
        let epoch = history.epoch();
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

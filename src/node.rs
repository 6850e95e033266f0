//! The node executes what clients and publishers ask for: it authenticates connections, runs
//! their commands against the local channels, the hub and the broker, and applies publications
//! and remote commands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::broadcast::{Inbound, Publication, RemoteCommand};
use crate::broker::{Broker, HistoryError, SessionSnapshot, StoredMessage, SubscriptionSnapshot};
use crate::hub::{Delivery, FanOut, Hub, Subscriber};
use crate::identity::{AuthOutcome, Authenticator};
use crate::metrics::{Counter, Metrics};
use crate::protocol::{
    self, Command, DisconnectReason, FramePosition, HistoryRequest, Payload, Reply, StreamPosition,
};
use crate::session::{Outbox, Pushed, Session, Subscription};
use crate::streams::{Route, StreamsRouter};

/// How many frames that are not valid commands a connection may send before it is
/// disconnected. Each one is dropped and counted; a well-behaved client sends none.
pub const MAX_MALFORMED_FRAMES: u32 = 16;

/// Live sessions by connection identifiers, for remote disconnects and gauges.
#[derive(Default)]
struct Registry {
    by_identifiers: HashMap<Arc<str>, HashMap<u64, Arc<Outbox>>>,
}

/// Outcome of a subscribe command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    Confirmed,
    Rejected,
    /// The identifier was already subscribed on this connection; nothing was sent.
    Duplicate,
}

/// How a new connection asks to be let in.
pub struct ConnectRequest<'a> {
    pub token: Option<&'a str>,
    pub sid: Arc<str>,
    /// The connection negotiated the extended protocol.
    pub extended: bool,
    /// `sid` of a previous session to resume (extended protocol only).
    pub restore_sid: Option<&'a str>,
}

pub struct Node {
    hub: Hub,
    registry: Mutex<Registry>,
    router: StreamsRouter,
    auth: Authenticator,
    broker: Option<Arc<dyn Broker>>,
    /// Sessions are cached (and can be restored) only when this is set.
    sessions_cache: bool,
    metrics: Arc<Metrics>,
    next_session_id: AtomicU64,
}

impl Node {
    pub fn new(
        hub: Hub,
        router: StreamsRouter,
        auth: Authenticator,
        broker: Option<Arc<dyn Broker>>,
        sessions_cache: bool,
        metrics: Arc<Metrics>,
    ) -> Node {
        Node {
            hub,
            registry: Mutex::default(),
            router,
            auth,
            sessions_cache: sessions_cache && broker.is_some(),
            broker,
            metrics,
            next_session_id: AtomicU64::new(1),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Restores or authenticates a new connection. Accepted connections are registered and
    /// get their welcome; otherwise the outbox receives the rejection and `None` is returned.
    pub fn connect(&self, request: ConnectRequest, outbox: Arc<Outbox>) -> Option<Session> {
        if let Some(session) = self.try_restore(&request, &outbox) {
            return Some(session);
        }
        match self.auth.authenticate(request.token, &request.sid) {
            AuthOutcome::Accepted { identifiers } => {
                let session =
                    self.register(request.sid, identifiers.into(), outbox, request.extended);
                session.send(
                    Reply::Welcome {
                        sid: &session.sid,
                        restored: false,
                        restored_ids: &[],
                    }
                    .encode(),
                );
                self.save_snapshot(&session);
                Some(session)
            }
            AuthOutcome::Rejected(reason) => {
                self.metrics.inc(Counter::FailedAuths);
                outbox.disconnect(reason, false, 1000, "Auth Failed");
                None
            }
            AuthOutcome::Failed => {
                self.metrics.inc(Counter::FailedAuths);
                outbox.close(1011, "Auth Error");
                None
            }
        }
    }

    fn register(
        &self,
        sid: Arc<str>,
        identifiers: Arc<str>,
        outbox: Arc<Outbox>,
        extended: bool,
    ) -> Session {
        let id = self.next_session_id.fetch_add(1, Ordering::Relaxed);
        let session = Session::new(id, sid, identifiers, outbox, extended);
        self.registry()
            .by_identifiers
            .entry(session.identifiers.clone())
            .or_default()
            .insert(id, session.outbox.clone());
        session
    }

    /// Resumes a cached session without authenticating again. Its subscriptions come back
    /// detached, waiting for the client's `history` command (see [`Subscription`]).
    fn try_restore(&self, request: &ConnectRequest, outbox: &Arc<Outbox>) -> Option<Session> {
        if !(request.extended && self.sessions_cache) {
            return None;
        }
        let broker = self.broker.as_ref()?;
        let snapshot = broker.restore_session(request.restore_sid?)?;
        let mut session = self.register(
            request.sid.clone(),
            snapshot.identifiers.clone(),
            outbox.clone(),
            true,
        );
        for (identifier, saved) in snapshot.subscriptions {
            let offsets = saved
                .streams
                .iter()
                .map(|s| broker.last_offset(s))
                .collect();
            let subscription = Subscription {
                streams: saved.streams,
                whisper_stream: saved.whisper_stream,
                awaiting_history: Some(offsets),
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

    /// Detaches a closed connection from every stream and forgets it. Its cached snapshot
    /// gets one more full time to live, so the client can resume it.
    pub fn disconnect(&self, session: &mut Session) {
        for (identifier, subscription) in session.subscriptions.drain() {
            if subscription.awaiting_history.is_some() {
                continue;
            }
            for stream in &subscription.streams {
                self.hub.unsubscribe(stream, &identifier, session.id);
            }
        }
        let mut registry = self.registry();
        if let Some(sessions) = registry.by_identifiers.get_mut(&session.identifiers) {
            sessions.remove(&session.id);
            if sessions.is_empty() {
                registry.by_identifiers.remove(&session.identifiers);
            }
        }
        drop(registry);
        self.touch_snapshot(session);
    }

    /// Keeps a live session's cached snapshot from expiring.
    pub fn touch_snapshot(&self, session: &Session) {
        if let (true, true, Some(broker)) = (session.extended, self.sessions_cache, &self.broker) {
            broker.touch_session(&session.sid);
        }
    }

    fn save_snapshot(&self, session: &Session) {
        let (true, true, Some(broker)) = (session.extended, self.sessions_cache, &self.broker)
        else {
            return;
        };
        let subscriptions = session
            .subscriptions
            .iter()
            .map(|(identifier, s)| {
                let saved = SubscriptionSnapshot {
                    streams: s.streams.clone(),
                    whisper_stream: s.whisper_stream.clone(),
                };
                (identifier.clone(), saved)
            })
            .collect();
        broker.save_session(
            &session.sid,
            SessionSnapshot {
                identifiers: session.identifiers.clone(),
                subscriptions,
            },
        );
    }

    /// Number of connected (authenticated) sessions.
    pub fn sessions_count(&self) -> usize {
        self.registry()
            .by_identifiers
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Handles one client frame. Malformed frames are dropped and counted; after
    /// [`MAX_MALFORMED_FRAMES`] the client is disconnected.
    pub fn handle_frame(&self, session: &mut Session, frame: &[u8]) {
        let command = match protocol::decode(frame) {
            Ok(command) => command,
            Err(error) => {
                self.metrics.inc(Counter::FailedClientMsg);
                session.malformed_frames += 1;
                tracing::debug!(sid = &*session.sid, "dropped a malformed frame: {error}");
                if session.malformed_frames >= MAX_MALFORMED_FRAMES {
                    tracing::info!(
                        sid = &*session.sid,
                        "disconnecting: too many malformed frames"
                    );
                    session.outbox.disconnect(
                        DisconnectReason::InvalidRequest,
                        false,
                        1008,
                        "Invalid Request",
                    );
                }
                return;
            }
        };
        self.metrics.inc(Counter::ClientMsg);
        match command {
            Command::Subscribe {
                identifier,
                history,
            } => {
                self.subscribe(session, identifier, history);
            }
            Command::Unsubscribe { identifier } => self.unsubscribe(session, &identifier),
            Command::Message { identifier, .. } => {
                // Local channels have no actions; without a backend there is nobody to run them.
                tracing::debug!(
                    sid = &*session.sid,
                    identifier,
                    "message ignored: no backend"
                );
            }
            Command::Whisper { identifier, data } => self.whisper(session, &identifier, &data),
            Command::History {
                identifier,
                history: Some(request),
            } => {
                let identifier: Arc<str> = identifier.into();
                if let Some(subscription) = session.subscriptions.get_mut(&identifier) {
                    let attach = subscription.awaiting_history.take().is_some();
                    self.replay_history(session, &identifier, &request, attach);
                }
            }
            Command::History { history: None, .. } | Command::Pong => {}
            Command::Ping => {
                self.send(session, Reply::Pong.encode());
            }
            Command::Unknown(name) => {
                self.metrics.inc(Counter::FailedClientMsg);
                tracing::debug!(sid = &*session.sid, command = name, "unknown command");
            }
        }
    }

    /// Subscribes a session to a channel identifier, replying on its outbox (confirmation
    /// or rejection, then history when requested). Transports without a command channel
    /// (SSE) use the outcome to choose their HTTP status.
    pub fn subscribe(
        &self,
        session: &mut Session,
        identifier: String,
        history: Option<HistoryRequest>,
    ) -> Subscribed {
        if session.subscriptions.contains_key(identifier.as_str()) {
            tracing::debug!(sid = &*session.sid, identifier, "already subscribed");
            return Subscribed::Duplicate;
        }
        match self.router.route(&identifier) {
            Route::Stream { stream, whisper } => {
                let identifier: Arc<str> = identifier.into();
                let stream: Arc<str> = stream.into();
                self.send(
                    session,
                    Reply::ConfirmSubscription {
                        identifier: &identifier,
                    }
                    .encode(),
                );
                let whisper_stream = whisper.then(|| stream.clone());
                let subscription = Subscription {
                    streams: vec![stream],
                    whisper_stream,
                    awaiting_history: None,
                };
                session
                    .subscriptions
                    .insert(identifier.clone(), subscription);
                match history {
                    // Attached inside the replay, atomically with reading the history.
                    Some(request) => self.replay_history(session, &identifier, &request, true),
                    None => self.attach_all(session, &identifier),
                }
                self.save_snapshot(session);
                Subscribed::Confirmed
            }
            Route::Reject | Route::Backend => {
                self.send(
                    session,
                    Reply::RejectSubscription {
                        identifier: &identifier,
                    }
                    .encode(),
                );
                Subscribed::Rejected
            }
        }
    }

    fn attach_all(&self, session: &Session, identifier: &Arc<str>) {
        if let Some(subscription) = session.subscriptions.get(identifier) {
            for stream in &subscription.streams {
                self.hub.subscribe(stream, identifier, subscriber(session));
            }
        }
    }

    /// Serves a history request for a subscription: all streams succeed or nothing is
    /// replayed. With `attach` (a new or restored subscription), each stream is attached in the
    /// same critical section as its read, so live messages continue exactly after the replayed
    /// ones.
    fn replay_history(
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

    fn unsubscribe(&self, session: &mut Session, identifier: &str) {
        if let Some(subscription) = session.subscriptions.remove(identifier) {
            if subscription.awaiting_history.is_none() {
                for stream in &subscription.streams {
                    self.hub.unsubscribe(stream, identifier, session.id);
                }
            }
            self.save_snapshot(session);
        }
    }

    fn whisper(&self, session: &Session, identifier: &str, data: &str) {
        let Some(stream) = session
            .subscriptions
            .get(identifier)
            .and_then(|s| s.whisper_stream.as_ref())
        else {
            tracing::debug!(sid = &*session.sid, identifier, "whisper not allowed");
            return;
        };
        let payload = Payload::from_json(data);
        let delivery = Delivery {
            payload: &payload,
            broadcast_type: None,
            exclude_sid: None,
            exclude_session: Some(session.id),
            position: None,
        };
        let fan_out = self.hub.broadcast(stream, &delivery);
        self.count_fan_out(&fan_out);
    }

    /// Applies a parsed broadcast message.
    pub fn publish(&self, inbound: Inbound) {
        match inbound {
            Inbound::Publications(publications) => {
                for publication in &publications {
                    self.deliver(publication);
                }
            }
            Inbound::Command(RemoteCommand::Disconnect {
                identifiers,
                reconnect,
            }) => {
                self.metrics.inc(Counter::RemoteCommands);
                self.metrics.inc(Counter::BroadcastMsg);
                let outboxes: Vec<Arc<Outbox>> = self
                    .registry()
                    .by_identifiers
                    .get(identifiers.as_str())
                    .map(|sessions| sessions.values().cloned().collect())
                    .unwrap_or_default();
                for outbox in outboxes {
                    outbox.disconnect(DisconnectReason::Remote, reconnect, 1000, "Closed remotely");
                }
            }
            Inbound::Command(RemoteCommand::Other(name)) => {
                tracing::debug!(command = name, "remote command ignored: not supported");
            }
        }
    }

    /// Stores (unless transient) and fans out one publication. Both happen under the stream's
    /// lock, so a concurrent history read sees the message either in history or live.
    fn deliver(&self, publication: &Publication) {
        self.metrics.inc(Counter::BroadcastMsg);
        let payload = Payload::from_data(&publication.data);
        let stream = publication.stream.as_str();
        let lock = self.hub.lock(stream);
        let stored = match &self.broker {
            Some(broker) if !publication.meta.transient => Some(broker.store(stream, &payload)),
            _ => None,
        };
        let delivery = Delivery {
            payload: &payload,
            broadcast_type: publication.meta.broadcast_type.as_deref(),
            exclude_sid: publication.meta.exclude_socket.as_deref(),
            exclude_session: None,
            position: stored.as_ref().map(|p| FramePosition {
                stream,
                epoch: &p.epoch,
                offset: p.offset,
            }),
        };
        let fan_out = lock.broadcast(&delivery);
        drop(lock);
        self.count_fan_out(&fan_out);
    }

    fn count_fan_out(&self, fan_out: &FanOut) {
        if fan_out.overflowed > 0 {
            self.metrics
                .add(Counter::DisconnectedSlowClients, fan_out.overflowed as u64);
        }
    }

    /// Queues a frame for a session, counting it as a slow client when its queue overflows.
    pub fn send(&self, session: &Session, frame: String) {
        if session.send(frame) == Pushed::Overflowed {
            self.metrics.inc(Counter::DisconnectedSlowClients);
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn subscriber(session: &Session) -> Subscriber {
    Subscriber {
        session_id: session.id,
        sid: session.sid.clone(),
        outbox: session.outbox.clone(),
    }
}

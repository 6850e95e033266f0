//! The node executes what clients and publishers ask for: it authenticates connections, runs
//! their commands against the local channels and the hub, and applies publications and remote
//! commands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::broadcast::{Inbound, Publication, RemoteCommand};
use crate::hub::{Delivery, FanOut, Hub, Subscriber};
use crate::identity::{AuthOutcome, Authenticator};
use crate::metrics::{Counter, Metrics};
use crate::protocol::{self, Command, DisconnectReason, Payload, Reply};
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

pub struct Node {
    hub: Hub,
    registry: Mutex<Registry>,
    router: StreamsRouter,
    auth: Authenticator,
    metrics: Arc<Metrics>,
    next_session_id: AtomicU64,
}

impl Node {
    pub fn new(
        hub: Hub,
        router: StreamsRouter,
        auth: Authenticator,
        metrics: Arc<Metrics>,
    ) -> Node {
        Node {
            hub,
            registry: Mutex::default(),
            router,
            auth,
            metrics,
            next_session_id: AtomicU64::new(1),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Authenticates a new connection and, when accepted, registers its session and queues the
    /// welcome message. Otherwise the outbox receives the rejection and `None` is returned.
    pub fn connect(
        &self,
        token: Option<&str>,
        sid: Arc<str>,
        outbox: Arc<Outbox>,
    ) -> Option<Session> {
        match self.auth.authenticate(token, &sid) {
            AuthOutcome::Accepted { identifiers } => {
                let id = self.next_session_id.fetch_add(1, Ordering::Relaxed);
                let session = Session::new(id, sid, identifiers.into(), outbox);
                let mut registry = self.registry();
                registry
                    .by_identifiers
                    .entry(session.identifiers.clone())
                    .or_default()
                    .insert(id, session.outbox.clone());
                drop(registry);
                session.send(Reply::Welcome { sid: &session.sid }.encode());
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

    /// Detaches a closed connection from every stream and forgets it.
    pub fn disconnect(&self, session: &mut Session) {
        for (identifier, subscription) in session.subscriptions.drain() {
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
            Command::Subscribe { identifier } => self.subscribe(session, identifier),
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
            Command::History { identifier } => {
                // No broker keeps history yet, so every history request fails.
                if session.subscriptions.contains_key(identifier.as_str()) {
                    self.send(
                        session,
                        Reply::RejectHistory {
                            identifier: &identifier,
                        }
                        .encode(),
                    );
                }
            }
            Command::Pong => {}
            Command::Ping => {
                self.send(session, Reply::Pong.encode());
            }
            Command::Unknown(name) => {
                self.metrics.inc(Counter::FailedClientMsg);
                tracing::debug!(sid = &*session.sid, command = name, "unknown command");
            }
        }
    }

    fn subscribe(&self, session: &mut Session, identifier: String) {
        if session.subscriptions.contains_key(identifier.as_str()) {
            tracing::debug!(sid = &*session.sid, identifier, "already subscribed");
            return;
        }
        match self.router.route(&identifier) {
            Route::Stream { stream, whisper } => {
                let identifier: Arc<str> = identifier.into();
                let stream: Arc<str> = stream.into();
                let subscriber = Subscriber {
                    session_id: session.id,
                    sid: session.sid.clone(),
                    outbox: session.outbox.clone(),
                };
                self.hub.subscribe(&stream, &identifier, subscriber);
                self.send(
                    session,
                    Reply::ConfirmSubscription {
                        identifier: &identifier,
                    }
                    .encode(),
                );
                let whisper_stream = whisper.then(|| stream.clone());
                session.subscriptions.insert(
                    identifier,
                    Subscription {
                        streams: vec![stream],
                        whisper_stream,
                    },
                );
            }
            Route::Reject | Route::Backend => {
                self.send(
                    session,
                    Reply::RejectSubscription {
                        identifier: &identifier,
                    }
                    .encode(),
                );
            }
        }
    }

    fn unsubscribe(&self, session: &mut Session, identifier: &str) {
        if let Some(subscription) = session.subscriptions.remove(identifier) {
            for stream in &subscription.streams {
                self.hub.unsubscribe(stream, identifier, session.id);
            }
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

    fn deliver(&self, publication: &Publication) {
        self.metrics.inc(Counter::BroadcastMsg);
        let payload = Payload::from_data(&publication.data);
        let delivery = Delivery {
            payload: &payload,
            broadcast_type: publication.meta.broadcast_type.as_deref(),
            exclude_sid: publication.meta.exclude_socket.as_deref(),
            exclude_session: None,
        };
        let fan_out = self.hub.broadcast(&publication.stream, &delivery);
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

//! The node executes what clients and publishers ask for: it authenticates connections, runs
//! their commands against the local channels, the backend (RPC), the hub and the broker, and
//! applies publications and remote commands.
//!
//! - `mod.rs`: sessions coming and going, command dispatch, publications;
//! - `history.rs`: history replay and session restore (reliable streams);
//! - `remote.rs`: channels that live in the application backend.

mod events;
mod history;
mod ports;
mod presence;
mod remote;

pub use ports::{CanaryInbox, PubSub, PublicationHandler, Ready};
pub use presence::PresenceLookup;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, SessionSnapshot, StoreError, SubscriptionSnapshot};
use crate::hub::{Delivery, FanOut, Hub, Subscriber};
use crate::identity::{AuthOutcome, Authenticator};
use crate::metrics::{Counter, Metrics};
use crate::notices::ClientDrops;
use crate::protocol::{
    self, Command, DisconnectReason, FramePosition, HistoryRequest, Payload, Reply,
};
use crate::publication::{is_canary, Inbound, Publication, PublicationMeta, RemoteCommand};
use crate::rpc::controller::{Controller, DisconnectMode};
use crate::session::{Outbox, Pushed, RequestEnv, Session, Subscription};
use crate::streams::{Route, StreamsRouter};

/// How many frames that are not valid commands a connection may send before it is
/// disconnected. Each one is dropped and counted; a well-behaved client sends none.
pub const MAX_MALFORMED_FRAMES: u32 = 16;

/// Outcome of a subscribe command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    Confirmed,
    Rejected,
    /// The identifier was already subscribed on this connection; nothing was sent.
    Duplicate,
    /// The backend failed; nothing was sent.
    Failed,
}

/// How a new connection asks to be let in.
pub struct ConnectRequest<'a> {
    pub token: Option<&'a str>,
    pub sid: Arc<str>,
    /// The connection negotiated the extended protocol.
    pub extended: bool,
    /// `sid` of a previous session to resume (extended protocol only).
    pub restore_sid: Option<&'a str>,
    /// The request as the backend sees it.
    pub env: Arc<RequestEnv>,
    /// Fires when the client goes away: a `Connect` call not made yet is then not made.
    pub left: &'a CancellationToken,
}

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
    /// History, the session cache (`None` unless `--sessions_ttl` is positive) and presence.
    broker: Broker,
    /// The application backend (a null object when RPC is off).
    backend: Arc<dyn Controller>,
    metrics: Arc<Metrics>,
    next_session_id: AtomicU64,
    /// Node-to-node pub/sub (`--pubsub`). Without one, publications, whispers and remote
    /// commands are delivered here directly; with one, they go through it (to every node,
    /// this one included) and subscriptions wait for its confirmation.
    pubsub: Option<Arc<dyn PubSub>>,
    /// Publications of one stream are stored and dispatched under one of these locks (picked
    /// by the stream's hash), so that their offsets and their delivery have the same order.
    publish_order: Box<[tokio::sync::Mutex<()>]>,
    /// `--max_subscriptions_per_connection` (0 = unlimited).
    max_subscriptions: usize,
    /// Rate-limited log lines about clients the server disconnected.
    drops: ClientDrops,
    /// Where readiness canaries that come back are handed (`--readiness_path`).
    canaries: Option<Arc<dyn CanaryInbox>>,
}

/// Streams stored concurrently with a broker (see `Node::publish_order`).
const PUBLISH_ORDER_LOCKS: usize = 64;

/// What the node is built from.
pub struct Parts {
    pub hub: Hub,
    pub router: StreamsRouter,
    pub auth: Authenticator,
    pub broker: Broker,
    pub backend: Arc<dyn Controller>,
    /// Sessions are cached (and can be restored) only when this is set.
    pub sessions_cache: bool,
    /// Subscriptions one connection may hold (0 = unlimited).
    pub max_subscriptions: usize,
    pub metrics: Arc<Metrics>,
    pub pubsub: Option<Arc<dyn PubSub>>,
    pub canaries: Option<Arc<dyn CanaryInbox>>,
}

impl Node {
    pub fn new(parts: Parts) -> Node {
        Node {
            hub: parts.hub,
            registry: Mutex::default(),
            router: parts.router,
            auth: parts.auth,
            broker: Broker {
                sessions: parts.broker.sessions.filter(|_| parts.sessions_cache),
                ..parts.broker
            },
            backend: parts.backend,
            metrics: parts.metrics,
            next_session_id: AtomicU64::new(1),
            pubsub: parts.pubsub,
            publish_order: (0..PUBLISH_ORDER_LOCKS)
                .map(|_| Default::default())
                .collect(),
            max_subscriptions: parts.max_subscriptions,
            drops: ClientDrops::new(),
            canaries: parts.canaries,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Why clients were disconnected, for the rate-limited log lines.
    pub fn drops(&self) -> &ClientDrops {
        &self.drops
    }

    /// The metrics, for components that outlive a borrow (NATS connection events).
    pub fn shared_metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Restores or authenticates a new connection. Accepted connections are registered and
    /// get their welcome; otherwise the outbox receives the rejection and `None` is returned.
    pub async fn connect(
        &self,
        request: ConnectRequest<'_>,
        outbox: Arc<Outbox>,
    ) -> Option<Session> {
        if let Some(session) = self.try_restore(&request, &outbox).await {
            return Some(session);
        }
        match self.auth.authenticate(request.token, &request.sid) {
            AuthOutcome::Accepted { identifiers } => {
                events::authenticated(&request.sid, &identifiers);
                let mut session = self.register(&request, identifiers.into(), outbox);
                session.disconnectable = self.backend.disconnect_mode() == DisconnectMode::Always;
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
                events::rejected(&request.sid, Some(reason), "by the JWT check");
                self.metrics.inc(Counter::FailedAuths);
                outbox.disconnect(reason, false, 1000, "Auth Failed");
                None
            }
            AuthOutcome::Failed => {
                events::rejected(&request.sid, None, "the token has no identifiers");
                self.metrics.inc(Counter::FailedAuths);
                outbox.close(1011, "Auth Error");
                None
            }
            AuthOutcome::Undecided => self.connect_remote(request, outbox).await,
        }
    }

    fn register(
        &self,
        request: &ConnectRequest,
        identifiers: Arc<str>,
        outbox: Arc<Outbox>,
    ) -> Session {
        let id = self.next_session_id.fetch_add(1, Ordering::Relaxed);
        let session = Session::new(
            id,
            request.sid.clone(),
            identifiers,
            outbox,
            request.extended,
            request.env.clone(),
        );
        self.registry()
            .by_identifiers
            .entry(session.identifiers.clone())
            .or_default()
            .insert(id, session.outbox.clone());
        session
    }

    /// Detaches a closed connection from every stream and forgets it; tells the backend when
    /// it must know. The cached snapshot gets one more full time to live, so the client can
    /// resume the session.
    pub async fn disconnect(&self, session: &mut Session) {
        for (identifier, subscription) in &session.subscriptions {
            for stream in &subscription.streams {
                self.hub.unsubscribe(stream, identifier, session.id);
            }
        }
        {
            let mut registry = self.registry();
            if let Some(sessions) = registry.by_identifiers.get_mut(&session.identifiers) {
                sessions.remove(&session.id);
                if sessions.is_empty() {
                    registry.by_identifiers.remove(&session.identifiers);
                }
            }
        }
        self.touch_snapshot(session);
        // Presence records stay until `--presence_ttl` passes (no flapping on reconnects).
        self.touch_presence(session);
        self.notify_backend_of_disconnect(session).await;
        session.subscriptions.clear();
    }

    /// Keeps a live session's cached snapshot from expiring.
    pub fn touch_snapshot(&self, session: &Session) {
        if let (true, Some(sessions)) = (session.extended, &self.broker.sessions) {
            sessions.touch_session(&session.sid);
        }
    }

    fn save_snapshot(&self, session: &Session) {
        let (true, Some(sessions)) = (session.extended, &self.broker.sessions) else {
            return;
        };
        let subscriptions = session
            .subscriptions
            .iter()
            .map(|(identifier, s)| {
                let saved = SubscriptionSnapshot {
                    streams: s.streams.clone(),
                    whisper_stream: s.whisper_stream.clone(),
                    presence_stream: s.presence_stream.clone(),
                    remote: s.remote,
                    state: s.state.clone(),
                };
                (identifier.clone(), saved)
            })
            .collect();
        let snapshot = SessionSnapshot {
            identifiers: session.identifiers.clone(),
            subscriptions,
            state: session.state.clone(),
            disconnectable: session.disconnectable,
        };
        sessions.save_session(&session.sid, snapshot);
    }

    /// Number of connected (authenticated) sessions.
    pub fn sessions_count(&self) -> usize {
        self.registry()
            .by_identifiers
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Sessions, distinct identifiers, streams and queued Disconnect calls, for the gauges.
    pub fn gauges(&self) -> crate::metrics::NodeGauges {
        let (clients, uniq_clients) = {
            let registry = self.registry();
            let sessions = registry.by_identifiers.values().map(HashMap::len).sum();
            (sessions, registry.by_identifiers.len())
        };
        crate::metrics::NodeGauges {
            clients,
            uniq_clients,
            streams: self.hub.streams_count(),
            disconnect_queue: self.backend.queued_disconnects(),
            grpc_connections: self.backend.active_connections(),
        }
    }

    /// Handles one client frame. Malformed frames are dropped and counted; after
    /// [`MAX_MALFORMED_FRAMES`] the client is disconnected.
    pub async fn handle_frame(&self, session: &mut Session, frame: &[u8]) {
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
                presence,
            } => {
                let joining = presence.map(|p| (identifier.clone(), p));
                let outcome = self.subscribe(session, identifier, history).await;
                if let (Subscribed::Confirmed, Some((identifier, presence))) = (outcome, joining) {
                    self.presence_join(session, &identifier, &presence);
                }
            }
            Command::Join {
                identifier,
                presence,
            } => self.presence_join(session, &identifier, &presence),
            Command::Leave { identifier } => self.presence_leave(session, &identifier),
            Command::Presence { identifier } => self.presence_query(session, &identifier),
            Command::Unsubscribe { identifier } => self.unsubscribe(session, &identifier).await,
            Command::Message { identifier, data } => self.perform(session, &identifier, data).await,
            Command::Whisper { identifier, data } => self.whisper(session, &identifier, &data),
            Command::History {
                identifier,
                history: Some(request),
            } => {
                let identifier: Arc<str> = identifier.into();
                if let Some(subscription) = session.subscriptions.get_mut(&identifier) {
                    subscription.awaiting_history = false;
                    self.replay_history(session, &identifier, &request).await;
                }
            }
            Command::History { history: None, .. } | Command::Pong => {}
            Command::Ping => self.send(session, Reply::Pong.encode()),
            Command::Unknown(name) => {
                self.metrics.inc(Counter::FailedClientMsg);
                tracing::debug!(sid = &*session.sid, command = name, "unknown command");
            }
        }
    }

    /// Subscribes a session to a channel identifier, replying on its outbox (confirmation
    /// or rejection, then history when requested). Transports without a command channel
    /// (SSE) use the outcome to choose their HTTP status.
    pub async fn subscribe(
        &self,
        session: &mut Session,
        identifier: String,
        history: Option<HistoryRequest>,
    ) -> Subscribed {
        let logged = identifier.clone();
        let outcome = self.route_subscription(session, identifier, history).await;
        events::subscription(session, &logged, outcome);
        outcome
    }

    async fn route_subscription(
        &self,
        session: &mut Session,
        identifier: String,
        history: Option<HistoryRequest>,
    ) -> Subscribed {
        if session.subscriptions.contains_key(identifier.as_str()) {
            self.metrics.inc(Counter::FailedClientMsg);
            tracing::debug!(sid = &*session.sid, identifier, "already subscribed");
            return Subscribed::Duplicate;
        }
        if self.max_subscriptions > 0 && session.subscriptions.len() >= self.max_subscriptions {
            return self.reject_over_limit(session, &identifier);
        }
        match self.router.route(&identifier) {
            Route::Stream {
                stream,
                whisper,
                presence,
            } => {
                let identifier: Arc<str> = identifier.into();
                let stream: Arc<str> = stream.into();
                let subscription = Subscription {
                    whisper_stream: whisper.then(|| stream.clone()),
                    presence_stream: presence.then(|| stream.clone()),
                    streams: vec![stream.clone()],
                    ..Subscription::default()
                };
                session
                    .subscriptions
                    .insert(identifier.clone(), subscription);
                let confirm = Reply::ConfirmSubscription {
                    identifier: &identifier,
                }
                .encode();
                match history {
                    // Attached inside the replay, behind the gate while history is read.
                    Some(request) => {
                        self.send(session, confirm);
                        self.replay_history(session, &identifier, &request).await;
                    }
                    // Held until this node receives the stream from the pub/sub, so that what
                    // is published after the confirmation reaches the client.
                    None if self.pubsub.is_some() => {
                        self.hub.hold(&stream, &identifier, subscriber(session));
                        self.await_pubsub(std::slice::from_ref(&stream)).await;
                        self.send(session, confirm);
                        let fan_out = self.hub.release(&stream, &identifier, session.id, None);
                        self.count_fan_out(&fan_out);
                    }
                    None => {
                        self.send(session, confirm);
                        self.attach_all(session, &identifier);
                    }
                }
                self.save_snapshot(session);
                Subscribed::Confirmed
            }
            Route::Backend => self.subscribe_remote(session, identifier, history).await,
            Route::Reject => self.reject_subscription(session, &identifier),
        }
    }

    /// A connection already holds `--max_subscriptions_per_connection` subscriptions: it could
    /// otherwise grow its state (and the work each of its commands costs) without bound. The
    /// first time is logged, later attempts only counted, so a client cannot flood the log.
    fn reject_over_limit(&self, session: &mut Session, identifier: &str) -> Subscribed {
        self.metrics.inc(Counter::SubscriptionsLimitExceeded);
        if !std::mem::replace(&mut session.subscription_limit_reached, true) {
            tracing::warn!(
                sid = &*session.sid,
                limit = self.max_subscriptions,
                identifier,
                "subscription limit reached: further subscriptions of this connection are rejected (--max_subscriptions_per_connection)"
            );
        }
        self.reject_subscription(session, identifier)
    }

    pub(super) fn reject_subscription(&self, session: &Session, identifier: &str) -> Subscribed {
        self.send(session, Reply::RejectSubscription { identifier }.encode());
        Subscribed::Rejected
    }

    /// Waits until the pub/sub delivers these streams to this node (bounded; at once without
    /// pub/sub or when already subscribed).
    async fn await_pubsub(&self, streams: &[Arc<str>]) {
        let Some(pubsub) = &self.pubsub else {
            return;
        };
        for stream in streams {
            match pubsub.subscribed(stream).await {
                Ready::Confirmed => {}
                Ready::TimedOut => tracing::warn!(
                    stream = &**stream,
                    "pub/sub subscription not confirmed in time"
                ),
                // The subscriber has already said so, once.
                Ready::Offline => tracing::debug!(
                    stream = &**stream,
                    "pub/sub is offline, subscription not confirmed"
                ),
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

    async fn unsubscribe(&self, session: &mut Session, identifier: &str) {
        let Some(subscription) = session.subscriptions.get(identifier) else {
            tracing::debug!(
                sid = &*session.sid,
                identifier,
                "unsubscribe from an unknown identifier"
            );
            return;
        };
        if subscription.remote && !self.unsubscribe_remote(session, identifier).await {
            return;
        }
        self.presence_leave(session, identifier);
        if let Some(subscription) = session.subscriptions.remove(identifier) {
            for stream in &subscription.streams {
                self.hub.unsubscribe(stream, identifier, session.id);
            }
            self.save_snapshot(session);
            events::unsubscribed(session, identifier);
        }
    }

    /// `message` (perform an action): only the backend runs actions.
    async fn perform(&self, session: &mut Session, identifier: &str, data: Option<String>) {
        if !session.subscriptions.contains_key(identifier) {
            tracing::debug!(
                sid = &*session.sid,
                identifier,
                "message for an unknown identifier"
            );
            return;
        }
        let Some(data) = data else {
            self.metrics.inc(Counter::FailedClientMsg);
            tracing::debug!(
                sid = &*session.sid,
                identifier,
                "message data is not a string"
            );
            return;
        };
        self.perform_remote(session, identifier, data).await;
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
        if let Some(pubsub) = &self.pubsub {
            // Every node's subscribers but the author, without a position (transient).
            pubsub.publish(&Publication {
                stream: stream.to_string(),
                data: data.to_string(),
                meta: PublicationMeta {
                    exclude_socket: Some(session.sid.to_string()),
                    transient: true,
                    ..PublicationMeta::default()
                },
                offset: None,
                epoch: None,
            });
            return;
        }
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

    /// Applies a message of a single-delivery source (HTTP, `redisx`, the REST API): each
    /// publication is registered with the broker (positions come from the broker, never from
    /// the publisher), then delivered here or, with node-to-node pub/sub, published so that
    /// every node with subscribers delivers it. Stops at the first publication the broker
    /// could not store; what came before it is delivered.
    pub async fn publish(&self, inbound: Inbound) -> Result<(), StoreError> {
        match inbound {
            Inbound::Publications(publications) => {
                for mut publication in publications {
                    if is_canary(&publication.stream) {
                        // Through the pub/sub (or here) like any publication, but never
                        // stored or logged as a broadcast.
                        self.dispatch(&publication);
                        continue;
                    }
                    events::broadcast_received(&publication);
                    publication.offset = None;
                    publication.epoch = None;
                    self.register_and_dispatch(publication).await?;
                }
            }
            Inbound::Command(RemoteCommand::Other(name)) => {
                tracing::debug!(command = name, "remote command ignored: not supported");
            }
            Inbound::Command(command) => {
                events::remote_command_received(&command);
                match &self.pubsub {
                    Some(pubsub) => pubsub.publish_command(&command),
                    None => self.apply_command(command),
                }
            }
        }
        Ok(())
    }

    /// Stores a publication (unless transient) and dispatches it with its position. One
    /// stream's publications are stored and dispatched one at a time, so that they are
    /// delivered in offset order.
    async fn register_and_dispatch(&self, mut publication: Publication) -> Result<(), StoreError> {
        let history = match &self.broker.history {
            Some(history) if !publication.meta.transient => history,
            _ => {
                self.dispatch(&publication);
                return Ok(());
            }
        };
        let _in_order = self.publish_order(&publication.stream).lock().await;
        let payload = Payload::from_data(&publication.data);
        let position = history
            .store(&publication.stream, &payload)
            .await
            .inspect_err(|error| {
                self.metrics.inc(Counter::BrokerErrors);
                tracing::error!(context = "broker", "{error}");
            })?;
        publication.offset = Some(position.offset);
        publication.epoch = Some(position.epoch.to_string());
        self.dispatch(&publication);
        Ok(())
    }

    fn publish_order(&self, stream: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(stream, &mut hasher);
        let index = std::hash::Hasher::finish(&hasher) as usize % self.publish_order.len();
        &self.publish_order[index]
    }

    /// Delivers a publication that is ready (registered, or needing no registration) to this
    /// node's subscribers, or through the pub/sub to every node's.
    fn dispatch(&self, publication: &Publication) {
        match &self.pubsub {
            Some(pubsub) => pubsub.publish(publication),
            None => self.deliver(publication),
        }
    }

    /// Applies a message of a fan-out source (the `redis` and `nats` broadcasters, and what
    /// other nodes publish on the pub/sub): delivered to this node's clients as is, without
    /// the broker, so it only has the position it already carries.
    pub fn publish_local(&self, inbound: Inbound) {
        match inbound {
            Inbound::Publications(publications) => {
                for publication in &publications {
                    self.deliver(publication);
                }
            }
            Inbound::Command(command) => self.apply_command(command),
        }
    }

    fn apply_command(&self, command: RemoteCommand) {
        match command {
            RemoteCommand::Disconnect {
                identifiers,
                reconnect,
            } => {
                self.metrics.inc(Counter::RemoteCommands);
                self.metrics.inc(Counter::BroadcastMsg);
                let outboxes: Vec<Arc<Outbox>> = self
                    .registry()
                    .by_identifiers
                    .get(identifiers.as_str())
                    .map(|sessions| sessions.values().cloned().collect())
                    .unwrap_or_default();
                events::remote_disconnect(&identifiers, reconnect, outboxes.len());
                for outbox in outboxes {
                    outbox.disconnect(DisconnectReason::Remote, reconnect, 1000, "Closed remotely");
                }
            }
            RemoteCommand::Other(name) => {
                tracing::debug!(command = name, "remote command ignored: not supported");
            }
        }
    }

    /// Fans out one publication to this node's subscribers, with the position it carries.
    fn deliver(&self, publication: &Publication) {
        if is_canary(&publication.stream) {
            // Not for clients, whatever they subscribed to: the readiness checks take it.
            if let Some(canaries) = &self.canaries {
                canaries.returned(&publication.stream, &publication.data);
            }
            return;
        }
        self.metrics.inc(Counter::BroadcastMsg);
        let payload = Payload::from_data(&publication.data);
        let stream = publication.stream.as_str();
        let position = match (&publication.epoch, publication.offset) {
            (Some(epoch), Some(offset)) => Some(FramePosition {
                stream,
                epoch,
                offset,
            }),
            _ => None,
        };
        let delivery = Delivery {
            payload: &payload,
            broadcast_type: publication.meta.broadcast_type.as_deref(),
            exclude_sid: publication.meta.exclude_socket.as_deref(),
            exclude_session: None,
            position,
        };
        let fan_out = self.hub.broadcast(stream, &delivery);
        events::broadcast_delivered(publication, fan_out.delivered);
        self.count_fan_out(&fan_out);
    }

    fn count_fan_out(&self, fan_out: &FanOut) {
        self.count_too_slow(fan_out.overflowed as u64);
    }

    fn count_too_slow(&self, disconnected: u64) {
        if disconnected > 0 {
            self.metrics
                .add(Counter::DisconnectedSlowClients, disconnected);
            self.drops.too_slow.record(disconnected);
        }
    }

    /// Queues a frame for a session, counting it as a slow client when its queue overflows.
    pub fn send(&self, session: &Session, frame: String) {
        self.send_to(&session.outbox, frame);
    }

    /// Queues a frame on an outbox, counting it as a slow client when the queue overflows.
    pub fn send_to(&self, outbox: &Arc<Outbox>, frame: String) {
        if outbox.push(frame.into()) == Pushed::Overflowed {
            self.count_too_slow(1);
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

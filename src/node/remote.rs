//! Channels and authentication that live in the application backend, reached through its
//! [`Controller`](crate::rpc::controller::Controller) (RPC, or nothing when RPC is off).

use std::collections::HashMap;
use std::sync::Arc;

use super::{ConnectRequest, Node, Subscribed};
use crate::metrics::Counter;
use crate::protocol::{DisconnectReason, HistoryRequest, TRY_AGAIN_LATER};
use crate::rpc::controller::{ControllerError, DisconnectMode};
use crate::rpc::{
    CommandMessage, CommandResponse, ConnectionRequest, DisconnectRequest, Env, RpcError, Status,
};
use crate::session::{merge_state, Outbox, Session, Subscription};

/// Channel-state key naming the stream clients may whisper to.
const WHISPER_STREAM_KEY: &str = "$w";

/// Channel-state key naming the stream presence commands apply to.
const PRESENCE_STREAM_KEY: &str = "$p";

/// The `Command` calls.
#[derive(Clone, Copy)]
enum CommandKind {
    Subscribe,
    Unsubscribe,
    Perform,
}

impl CommandKind {
    /// The command's name in logs (and on the wire).
    fn name(self) -> &'static str {
        match self {
            CommandKind::Subscribe => "subscribe",
            CommandKind::Unsubscribe => "unsubscribe",
            CommandKind::Perform => "message",
        }
    }
}

/// What a `Command` call came back with.
// A return value moved once, right after an RPC round trip: boxing the reply buys nothing.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Reply(CommandResponse),
    /// The call failed or the application reported an error (logged and counted).
    Failed,
    /// There is no backend.
    NoBackend,
}

impl Node {
    /// Authentication by the backend's `Connect`.
    pub(super) async fn connect_remote(
        &self,
        request: ConnectRequest<'_>,
        outbox: Arc<Outbox>,
    ) -> Option<Session> {
        let env = Env {
            url: request.env.url().to_string(),
            headers: request.env.headers(),
            ..Env::default()
        };
        let reply = self
            .backend
            .authenticate(
                &request.sid,
                ConnectionRequest { env: Some(env) },
                request.left,
            )
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(ControllerError::Rpc(RpcError::Busy)) => {
                super::events::rejected(
                    &request.sid,
                    Some(DisconnectReason::ServerBusy),
                    "for now: the backend is busy",
                );
                outbox.disconnect(
                    DisconnectReason::ServerBusy,
                    true,
                    TRY_AGAIN_LATER,
                    "Try Again Later",
                );
                return None;
            }
            Err(ControllerError::Rpc(RpcError::Canceled)) => {
                tracing::debug!(
                    context = "rpc",
                    sid = &*request.sid,
                    "Connect not made: the client left"
                );
                return None;
            }
            // Nobody can decide: rejected like a failed authentication.
            Err(ControllerError::NotConfigured) => {
                super::events::rejected(&request.sid, None, "no authentication method accepted it");
                self.metrics.inc(Counter::FailedAuths);
                outbox.disconnect(DisconnectReason::Unauthorized, false, 1000, "Auth Failed");
                return None;
            }
            Err(error) => {
                tracing::error!(
                    context = "rpc",
                    sid = &*request.sid,
                    "Connect failed: {error}"
                );
                outbox.close(1011, "Auth Error");
                return None;
            }
        };
        match Status::try_from(reply.status).unwrap_or(Status::Error) {
            Status::Success => {
                super::events::authenticated(&request.sid, &reply.identifiers);
                let mut session = self.register(&request, reply.identifiers.into(), outbox);
                if let Some(changes) = &reply.env {
                    merge_state(&mut session.state, &changes.cstate);
                }
                session.disconnectable = self.backend.disconnect_mode() != DisconnectMode::Never;
                for transmission in reply.transmissions {
                    self.send(&session, transmission);
                }
                self.save_snapshot(&session);
                Some(session)
            }
            Status::Failure => {
                super::events::rejected(&request.sid, None, "by the backend");
                self.metrics.inc(Counter::FailedAuths);
                for transmission in reply.transmissions {
                    self.send_to(&outbox, transmission);
                }
                outbox.close(1000, "Auth Failed");
                None
            }
            Status::Error => {
                tracing::error!(
                    context = "rpc",
                    sid = &*request.sid,
                    "Application error: {}",
                    reply.error_msg
                );
                outbox.close(1011, "Auth Error");
                None
            }
        }
    }

    /// `subscribe` to a backend channel.
    pub(super) async fn subscribe_remote(
        &self,
        session: &mut Session,
        identifier: String,
        history: Option<HistoryRequest>,
    ) -> Subscribed {
        let identifier: Arc<str> = identifier.into();
        let reply = match self
            .command(session, CommandKind::Subscribe, &identifier, String::new())
            .await
        {
            Answer::Reply(reply) => reply,
            Answer::Failed => return Subscribed::Failed,
            Answer::NoBackend => return self.reject_subscription(session, &identifier),
        };
        if reply.status == Status::Success as i32 {
            session.subscriptions.insert(
                identifier.clone(),
                Subscription {
                    remote: true,
                    ..Subscription::default()
                },
            );
            self.apply(session, &identifier, reply, history.as_ref())
                .await;
            self.save_snapshot(session);
            Subscribed::Confirmed
        } else {
            self.apply(session, &identifier, reply, None).await;
            Subscribed::Rejected
        }
    }

    /// `unsubscribe` from a backend channel. Returns false when the backend failed, in which
    /// case the subscription is kept, as the reference does.
    pub(super) async fn unsubscribe_remote(&self, session: &mut Session, identifier: &str) -> bool {
        let identifier: Arc<str> = identifier.into();
        let Answer::Reply(mut reply) = self
            .command(
                session,
                CommandKind::Unsubscribe,
                &identifier,
                String::new(),
            )
            .await
        else {
            return false;
        };
        reply.stop_streams = true;
        reply.streams.clear();
        self.apply(session, &identifier, reply, None).await;
        true
    }

    /// `message`: runs a channel action in the backend.
    pub(super) async fn perform_remote(
        &self,
        session: &mut Session,
        identifier: &str,
        data: String,
    ) {
        let identifier: Arc<str> = identifier.into();
        match self
            .command(session, CommandKind::Perform, &identifier, data)
            .await
        {
            Answer::Reply(reply) => {
                self.apply(session, &identifier, reply, None).await;
                self.save_snapshot(session);
            }
            Answer::Failed => {}
            Answer::NoBackend => tracing::debug!(
                sid = &*session.sid,
                %identifier,
                "message ignored: no backend"
            ),
        }
    }

    /// Makes one `Command` call; `Failed` (after logging and counting) when it failed or the
    /// application reported an error, in which case nothing of the reply is applied.
    async fn command(
        &self,
        session: &mut Session,
        kind: CommandKind,
        identifier: &Arc<str>,
        data: String,
    ) -> Answer {
        let command = kind.name();
        let env = Env {
            url: session.env.url().to_string(),
            headers: session.env.headers(),
            cstate: session.state.clone(),
            istate: session
                .subscriptions
                .get(identifier)
                .map(|s| s.state.clone())
                .unwrap_or_default(),
        };
        let message = CommandMessage {
            // Set by the controller's method.
            command: String::new(),
            identifier: identifier.to_string(),
            connection_identifiers: session.identifiers.to_string(),
            data,
            env: Some(env),
        };
        let sid = &session.sid;
        let call = match kind {
            CommandKind::Subscribe => self.backend.subscribe(sid, message),
            CommandKind::Unsubscribe => self.backend.unsubscribe(sid, message),
            CommandKind::Perform => self.backend.perform(sid, message),
        };
        match call.await {
            Ok(reply) if reply.status == Status::Error as i32 => {
                self.metrics.inc(Counter::FailedClientMsg);
                tracing::error!(
                    context = "rpc",
                    sid = &*session.sid,
                    command,
                    "Application error: {}",
                    reply.error_msg
                );
                Answer::Failed
            }
            Ok(reply) => {
                if self.backend.disconnect_mode() != DisconnectMode::Never {
                    session.disconnectable = true;
                }
                Answer::Reply(reply)
            }
            Err(ControllerError::NotConfigured) => Answer::NoBackend,
            Err(error) => {
                self.metrics.inc(Counter::FailedClientMsg);
                log_failure(&session.sid, command, &error);
                Answer::Failed
            }
        }
    }

    /// Applies a command reply in the reference's order: stop streams, add streams, merge
    /// states, send transmissions, then close if asked. With a history request (subscribe),
    /// the confirmation goes out first and the new streams are attached atomically with the
    /// replay.
    async fn apply(
        &self,
        session: &mut Session,
        identifier: &Arc<str>,
        reply: CommandResponse,
        history: Option<&HistoryRequest>,
    ) {
        let mut added = Vec::new();
        if let Some(subscription) = session.subscriptions.get_mut(identifier) {
            let stopped: Vec<Arc<str>> = if reply.stop_streams {
                std::mem::take(&mut subscription.streams)
            } else {
                let stop: Vec<Arc<str>> = subscription
                    .streams
                    .iter()
                    .filter(|s| reply.stopped_streams.iter().any(|r| r == &***s))
                    .cloned()
                    .collect();
                subscription.streams.retain(|s| !stop.contains(s));
                stop
            };
            for stream in &reply.streams {
                if !subscription.streams.iter().any(|s| &**s == stream.as_str()) {
                    let stream: Arc<str> = stream.as_str().into();
                    subscription.streams.push(stream.clone());
                    added.push(stream);
                }
            }
            if let Some(changes) = &reply.env {
                merge_state(&mut subscription.state, &changes.istate);
            }
            subscription.whisper_stream = subscription
                .state
                .get(WHISPER_STREAM_KEY)
                .map(|s| Arc::from(s.as_str()));
            subscription.presence_stream = subscription
                .state
                .get(PRESENCE_STREAM_KEY)
                .map(|s| Arc::from(s.as_str()));
            let waiting = subscription.awaiting_history;
            for stream in &stopped {
                self.hub.unsubscribe(stream, identifier, session.id);
            }
            if history.is_none() {
                for stream in &added {
                    let subscriber = super::subscriber(session);
                    if waiting {
                        self.hub.hold(stream, identifier, subscriber);
                    } else {
                        self.hub.subscribe(stream, identifier, subscriber);
                    }
                }
            }
        }
        if let Some(changes) = &reply.env {
            merge_state(&mut session.state, &changes.cstate);
        }
        // The confirmation is among the transmissions.
        self.await_pubsub(&added).await;
        for transmission in reply.transmissions {
            self.send(session, transmission);
        }
        if let Some(request) = history {
            self.replay_history(session, identifier, request).await;
        }
        if let Some(presence) = &reply.presence {
            match presence.kind.as_str() {
                "join" => {
                    let request = crate::protocol::PresenceRequest {
                        id: presence.id.clone(),
                        info: (!presence.info.is_empty()).then(|| json_text(&presence.info)),
                    };
                    self.presence_join(session, identifier, &request);
                }
                "leave" => self.presence_leave(session, identifier),
                _ => {}
            }
        }
        if reply.disconnect {
            // The reference closes with 1006, which RFC 6455 reserves; 1011 says the same.
            session.outbox.close(1011, "Command Failed");
        }
    }

    /// Tells the backend a session ended, when it must know (`--disconnect_mode`).
    pub(super) async fn notify_backend_of_disconnect(&self, session: &Session) {
        if !session.disconnectable || self.backend.disconnect_mode() == DisconnectMode::Never {
            return;
        }
        let istate: HashMap<String, String> = session
            .subscriptions
            .iter()
            .filter(|(_, s)| s.remote)
            .map(|(identifier, s)| {
                (
                    identifier.to_string(),
                    serde_json::to_string(&s.state).unwrap_or_else(|_| "{}".into()),
                )
            })
            .collect();
        let request = DisconnectRequest {
            identifiers: session.identifiers.to_string(),
            subscriptions: session
                .subscriptions
                .keys()
                .map(|k| k.to_string())
                .collect(),
            env: Some(Env {
                url: session.env.url().to_string(),
                headers: session.env.headers(),
                cstate: session.state.clone(),
                istate,
            }),
        };
        self.backend.disconnect(session.sid.clone(), request).await;
    }
}

fn log_failure(sid: &str, command: &str, error: &ControllerError) {
    tracing::error!(context = "rpc", sid, command, "RPC command failed: {error}");
}

/// `text` when it is valid JSON, otherwise `text` as a JSON string.
fn json_text(text: &str) -> String {
    match serde_json::from_str::<&serde_json::value::RawValue>(text) {
        Ok(_) => text.to_string(),
        Err(_) => serde_json::to_string(text).unwrap_or_default(),
    }
}

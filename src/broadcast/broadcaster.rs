//! The role of a broadcaster that runs as a task: it receives publications from a service
//! (Redis Pub/Sub, a Redis Stream, NATS) and hands them to the node.
//!
//! The HTTP broadcaster is not one of these: it is an endpoint the server routes requests to
//! (`http.rs`), with no connection of its own to lose and nothing to run; its failures are HTTP
//! answers to the publisher.

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::clients::reconnect::ATTEMPTS_EXCEEDED;
use crate::clients::redis::RedisError;

/// A broadcaster task.
///
/// Contract of [`Broadcaster::run`]:
/// - It starts at once and does not wait for its service: the server starts (and serves its
///   other broadcasters) while Redis or NATS is down.
/// - Connection loss is not an end: the broadcaster reconnects by itself (Redis: see
///   `reconnect.rs`, for as long as the server runs unless `redis.max_reconnect_attempts` is
///   set; NATS: the client's own reconnects, every 2 s, unless `nats.max_reconnect_attempts` is set), counting each
///   reconnection in `service_reconnects_total`. Publications sent while it is away are lost
///   (Pub/Sub, NATS) or wait in the stream (`redisx`).
/// - `Ok(())` only after `shutdown` was cancelled, once it has left its service cleanly
///   (unsubscribed, left the consumer group); the server cancels `shutdown` after every
///   connection is closed.
/// - `Err` when it stopped receiving for good before shutdown: its reconnect attempts are
///   exhausted, or the service ended its subscription. The caller logs the error and, when
///   [`BroadcastError::stops_server`] says so, stops the server with exit status 1.
/// - A message it cannot parse is counted (`failed_broadcast_msg_total`) and dropped; it never
///   ends the task.
pub trait Broadcaster: Send {
    /// The adapter name (`redis`, `redisx`, `nats`), for logs.
    fn provider(&self) -> &'static str;

    /// Receives and delivers until `shutdown` or until it gives up (see the trait).
    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), BroadcastError>>;
}

/// Why a broadcaster stopped receiving before shutdown.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// `redis`: an explicit `redis.max_reconnect_attempts` is exhausted; the server stops, as
    /// in the reference.
    #[error("{}", ATTEMPTS_EXCEEDED)]
    RedisAttemptsExceeded {
        #[source]
        last: RedisError,
    },
    /// `redisx`: an explicit `redis.max_reconnect_attempts` is exhausted; this consumer stops,
    /// the server goes on (as in the reference).
    #[error("failed to reconnect to Redis: attempts exceeded (consumer {consumer})")]
    RedisXAttemptsExceeded {
        consumer: String,
        #[source]
        last: RedisError,
    },
    /// `nats`: the client gave up connecting (its reconnect attempts are exhausted).
    #[error("failed to connect to NATS: {0}")]
    NatsConnect(#[source] async_nats::ConnectError),
    #[error("failed to subscribe to {subject}: {source}")]
    NatsSubscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    /// `nats`: the subscription ended (the client closed after its reconnect attempts).
    #[error("NATS subscription ended")]
    NatsSubscriptionEnded,
}

impl BroadcastError {
    /// Whether the whole server must stop (exit status 1) because this broadcaster did.
    pub fn stops_server(&self) -> bool {
        matches!(self, BroadcastError::RedisAttemptsExceeded { .. })
    }
}

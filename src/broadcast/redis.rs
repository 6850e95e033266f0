//! The `redis` broadcaster (legacy fan-out): `SUBSCRIBE <--redis_channel>` on a dedicated
//! connection; every node receives every message and delivers it to its own clients, without
//! the broker (docs/broadcasting.md).
//!
//! Publisher side: `PUBLISH __anycable__ '{"stream":"chat","data":"{\"text\":\"hi\"}"}'`.
//!
//! The broadcaster is on by default, so Redis is not required to be up: when the connection
//! fails it is reopened for as long as the server runs, and the operator sees one line per
//! state change (see [`crate::clients::reconnect`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::apply_fan_out;
use super::broadcaster::{BroadcastError, Broadcaster};
use crate::clients::reconnect::Reconnect;
use crate::clients::redis::{Connection, RedisError, RedisOptions, Value};
use crate::metrics::Counter;
use crate::node::PublicationHandler;

pub struct RedisBroadcaster {
    node: Arc<dyn PublicationHandler>,
    options: RedisOptions,
    channel: String,
}

/// Why a subscribed session ended.
enum Ended {
    Shutdown,
    Failed(RedisError),
}

impl RedisBroadcaster {
    pub fn new(
        node: Arc<dyn PublicationHandler>,
        options: RedisOptions,
        channel: String,
    ) -> RedisBroadcaster {
        RedisBroadcaster {
            node,
            options,
            channel,
        }
    }

    /// Subscribes and delivers until `shutdown`, reconnecting for as long as it runs; `Err`
    /// only when an explicit `redis.max_reconnect_attempts` is exhausted (the caller stops the
    /// server, as the reference does).
    async fn receive_until(self, shutdown: CancellationToken) -> Result<(), BroadcastError> {
        let mut reconnect = Reconnect::new(
            "broadcast",
            "redis",
            self.options.redacted_url(),
            "broadcasts published to Redis are not received",
            self.options.max_reconnect_attempts,
        );
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                result = self.subscribe() => result,
            };
            let error = match outcome {
                Ok(connection) => {
                    if reconnect.up() {
                        tracing::info!(
                            context = "broadcast",
                            provider = "redis",
                            channel = %self.channel,
                            "subscribed to Redis channel"
                        );
                    }
                    match self.receive(connection, &shutdown).await {
                        Ended::Shutdown => return Ok(()),
                        Ended::Failed(error) => error,
                    }
                }
                Err(error) => error,
            };
            let delay = reconnect
                .failed(&error)
                .map_err(|_| BroadcastError::RedisAttemptsExceeded { last: error })?;
            self.node.metrics().inc(Counter::ServiceReconnects);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn subscribe(&self) -> Result<Connection, RedisError> {
        let mut connection = Connection::open(&self.options).await?;
        connection
            .send(&[b"SUBSCRIBE", self.channel.as_bytes()])
            .await?;
        let reply = tokio::time::timeout(crate::clients::redis::CONNECT_TIMEOUT, connection.read())
            .await
            .map_err(|_| RedisError::Protocol("no answer to SUBSCRIBE".into()))??;
        match reply {
            Value::Error(message) => Err(RedisError::Server(message)),
            Value::Array(items) if items.first().and_then(Value::as_str) == Some("subscribe") => {
                Ok(connection)
            }
            other => Err(RedisError::Protocol(format!(
                "unexpected answer to SUBSCRIBE: {other:?}"
            ))),
        }
    }

    /// Reads messages until the connection fails or the server shuts down. An idle
    /// connection is checked with a PING every keepalive interval; a connection that
    /// answers nothing for two intervals is considered dead.
    async fn receive(&self, mut connection: Connection, shutdown: &CancellationToken) -> Ended {
        let keepalive = self.options.keepalive;
        let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ended::Shutdown,
                reply = connection.read() => {
                    last_seen = Instant::now();
                    match reply {
                        Ok(value) => self.handle(value),
                        Err(error) => return Ended::Failed(error),
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > keepalive * 2 + Duration::from_secs(1) {
                        return Ended::Failed(RedisError::Protocol("no answer to PING".into()));
                    }
                    if let Err(error) = connection.send(&[b"PING"]).await {
                        return Ended::Failed(error);
                    }
                }
            }
        }
    }

    fn handle(&self, value: Value) {
        let Some(mut items) = value.into_array() else {
            return;
        };
        if items.len() == 3 && items[0].as_str() == Some("message") {
            if let Some(body) = items.pop().as_ref().and_then(Value::as_bytes) {
                apply_fan_out(&*self.node, body, "redis");
            }
        }
        // `subscribe` confirmations and `pong` replies only prove the connection is alive.
    }
}

impl Broadcaster for RedisBroadcaster {
    fn provider(&self) -> &'static str {
        "redis"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), BroadcastError>> {
        Box::pin(self.receive_until(shutdown))
    }
}

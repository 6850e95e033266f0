//! Redis node-to-node pub/sub: one connection in subscriber mode (the control channel plus
//! one channel per locally needed stream) and one for `PUBLISH`.
//!
//! - Subscriber: reconnects with the reference's backoff and re-subscribes everything (in
//!   `SUBSCRIBE` batches of 256); after `redis.max_reconnect_attempts` consecutive failures
//!   [`run_subscriber`] returns an error and the server stops with exit status 1, as in the
//!   reference.
//! - Publisher: publications are pipelined; while Redis is unreachable they are dropped
//!   (logged), as in the reference.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{apply_change, Outgoing, Readiness, StreamChange};
use crate::broadcast::parse;
use crate::broadcast::resp::{
    backoff, go_duration, Connection, RedisError, RedisOptions, Value, CONNECT_TIMEOUT,
};
use crate::metrics::Counter;
use crate::node::Node;

/// Channels per `SUBSCRIBE` command when (re)subscribing.
const SUBSCRIBE_BATCH: usize = 256;
/// At most this many publications go out in one pipelined write.
const PUBLISH_BATCH: usize = 512;
/// After a failed connection attempt, publications are dropped for this long.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

/// The error [`run_subscriber`] ends with when Redis stays unreachable.
pub const ATTEMPTS_EXCEEDED: &str = "Redis reconnect attempts exceeded";

/// Receives from the control channel and from the channels of the streams this node needs
/// (`changes`), until `shutdown`.
pub async fn run_subscriber(
    node: Arc<Node>,
    options: RedisOptions,
    control: String,
    mut changes: mpsc::UnboundedReceiver<StreamChange>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut streams: HashSet<Arc<str>> = HashSet::new();
    let mut failures: u64 = 0;
    let mut connected_before = false;
    loop {
        while let Ok(change) = changes.try_recv() {
            apply_change(&mut streams, &change);
        }
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            opened = subscribe_all(&options, &control, &streams) => opened,
        };
        match opened {
            Ok(mut connection) => {
                failures = 0;
                let what = if connected_before {
                    "reconnected"
                } else {
                    "connected"
                };
                connected_before = true;
                tracing::info!(context = "pubsub", provider = "redis", "{what}");
                let ended = receive(
                    &node,
                    &options,
                    &mut connection,
                    (&mut streams, &mut changes, &readiness),
                    &shutdown,
                )
                .await;
                readiness.forget_all();
                match ended {
                    Ok(()) => return Ok(()),
                    Err(error) => tracing::warn!(
                        context = "pubsub",
                        provider = "redis",
                        "Redis pub/sub connection failed: {error}"
                    ),
                }
            }
            Err(error) => tracing::warn!(
                context = "pubsub",
                provider = "redis",
                "failed to connect to Redis: {error}"
            ),
        }
        if failures >= options.max_reconnect_attempts {
            return Err(ATTEMPTS_EXCEEDED.to_string());
        }
        let delay = backoff(failures);
        failures += 1;
        node.metrics().inc(Counter::ServiceReconnects);
        tracing::info!(
            context = "pubsub",
            provider = "redis",
            "next Redis reconnect attempt in {}",
            go_duration(delay)
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn subscribe_all(
    options: &RedisOptions,
    control: &str,
    streams: &HashSet<Arc<str>>,
) -> Result<Connection, RedisError> {
    let mut connection = Connection::open(options).await?;
    let mut channels: Vec<&[u8]> = vec![control.as_bytes()];
    channels.extend(streams.iter().map(|s| s.as_bytes()));
    let commands: Vec<Vec<&[u8]>> = channels
        .chunks(SUBSCRIBE_BATCH)
        .map(|batch| {
            let mut command: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            command.extend_from_slice(batch);
            command
        })
        .collect();
    connection.send_all(&commands).await?;
    // The first confirmation proves the connection works; the others are read as they come.
    let reply = tokio::time::timeout(CONNECT_TIMEOUT, connection.read())
        .await
        .map_err(|_| RedisError::Protocol("no answer to SUBSCRIBE".into()))??;
    match reply {
        Value::Error(message) => Err(RedisError::Server(message)),
        _ => Ok(connection),
    }
}

/// Reads messages and applies subscription changes until the connection fails (`Err`) or
/// the server shuts down (`Ok`).
async fn receive(
    node: &Node,
    options: &RedisOptions,
    connection: &mut Connection,
    (streams, changes, readiness): (
        &mut HashSet<Arc<str>>,
        &mut mpsc::UnboundedReceiver<StreamChange>,
        &Readiness,
    ),
    shutdown: &CancellationToken,
) -> Result<(), RedisError> {
    let keepalive = options.keepalive;
    let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            change = changes.recv() => {
                let Some(change) = change else { return Ok(()) };
                if apply_change(streams, &change) {
                    match &change {
                        StreamChange::Subscribe(s) => connection.send(&[b"SUBSCRIBE", s.as_bytes()]).await?,
                        StreamChange::Unsubscribe(s) => {
                            readiness.forget(s);
                            connection.send(&[b"UNSUBSCRIBE", s.as_bytes()]).await?
                        }
                    }
                }
            }
            reply = connection.read() => {
                last_seen = Instant::now();
                handle(node, readiness, reply?);
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > keepalive * 2 + Duration::from_secs(1) {
                    return Err(RedisError::Protocol("no answer to PING".into()));
                }
                connection.send(&[b"PING"]).await?;
            }
        }
    }
}

fn handle(node: &Node, readiness: &Readiness, value: Value) {
    let Some(mut items) = value.into_array() else {
        return;
    };
    if items.len() != 3 {
        return;
    }
    match items[0].as_str() {
        Some("message") => {}
        Some("subscribe") => {
            if let Some(channel) = items[1].as_str() {
                readiness.confirm(channel);
            }
            return;
        }
        _ => return,
    }
    let Some(body) = items.pop() else { return };
    let Some(body) = body.as_bytes() else { return };
    match parse(body) {
        Ok(inbound) => node.publish_local(inbound),
        Err(error) => {
            node.metrics().inc(Counter::FailedBroadcastMsg);
            tracing::warn!(
                context = "pubsub",
                provider = "redis",
                "failed to parse pubsub message: {error}"
            );
        }
    }
}

/// Publishes queued messages until `shutdown`.
pub async fn run_publisher(
    options: RedisOptions,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    shutdown: CancellationToken,
) {
    let mut connection: Option<Connection> = None;
    let mut retry_at: Option<Instant> = None;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            first = outgoing.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < PUBLISH_BATCH {
            match outgoing.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        if connection.is_none() {
            if retry_at.is_some_and(|at| Instant::now() < at) {
                tracing::debug!(
                    context = "pubsub",
                    "dropped {} messages: Redis is unreachable",
                    batch.len()
                );
                continue;
            }
            match Connection::open(&options).await {
                Ok(opened) => {
                    connection = Some(opened);
                    retry_at = None;
                }
                Err(error) => {
                    tracing::warn!(
                        context = "pubsub",
                        provider = "redis",
                        "cannot publish, dropped {} messages: {error}",
                        batch.len()
                    );
                    retry_at = Some(Instant::now() + PUBLISH_RETRY);
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        if let Err(error) = publish_batch(open, &batch).await {
            tracing::warn!(
                context = "pubsub",
                provider = "redis",
                "failed to publish {} messages: {error}",
                batch.len()
            );
            connection = None;
        }
    }
}

async fn publish_batch(connection: &mut Connection, batch: &[Outgoing]) -> Result<(), RedisError> {
    let commands: Vec<Vec<&[u8]>> = batch
        .iter()
        .map(|(channel, body)| vec![&b"PUBLISH"[..], channel.as_bytes(), body.as_bytes()])
        .collect();
    connection.send_all(&commands).await?;
    for _ in batch {
        let reply = tokio::time::timeout(Duration::from_secs(5), connection.read())
            .await
            .map_err(|_| RedisError::Protocol("no answer to PUBLISH".into()))??;
        if let Value::Error(message) = reply {
            return Err(RedisError::Server(message));
        }
    }
    Ok(())
}

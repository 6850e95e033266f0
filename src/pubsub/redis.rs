//! Redis node-to-node pub/sub: one connection in subscriber mode (the control channel plus
//! one channel per locally needed stream) and one for `PUBLISH`.
//!
//! - Subscriber: reconnects for as long as the server runs (see [`crate::clients::reconnect`])
//!   and re-subscribes everything (in `SUBSCRIBE` batches of 256).
//! - Publisher: publications are pipelined; while Redis is unreachable they are delivered to
//!   this node's own clients (see [`run_publisher`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{apply_change, Outgoing, Readiness, StreamChange};
use crate::clients::reconnect::Reconnect;
use crate::clients::redis::{Connection, RedisError, RedisOptions, Value, CONNECT_TIMEOUT};
use crate::metrics::Counter;
use crate::node::PublicationHandler;
use crate::publication::{is_canary, parse};

/// Channels per `SUBSCRIBE` command when (re)subscribing.
const SUBSCRIBE_BATCH: usize = 256;
/// At most this many publications go out in one pipelined write.
const PUBLISH_BATCH: usize = 512;
/// After a failed connection attempt, publications are delivered locally for at least this long.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

/// Receives from the control channel and from the channels of the streams this node needs
/// (`changes`), until `shutdown`.
pub async fn run_subscriber(
    node: Arc<dyn PublicationHandler>,
    options: RedisOptions,
    control: String,
    mut changes: mpsc::UnboundedReceiver<StreamChange>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), &'static str> {
    let mut streams: HashSet<Arc<str>> = HashSet::new();
    let mut reconnect = Reconnect::new(
        "pubsub",
        "redis",
        options.redacted_url(),
        "publications of other nodes are not received",
        options.max_reconnect_attempts,
    );
    loop {
        while let Ok(change) = changes.try_recv() {
            apply_change(&mut streams, &change);
        }
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            opened = subscribe_all(&options, &control, &streams) => opened,
        };
        let error = match opened {
            Ok(mut connection) => {
                readiness.set_offline(false);
                if reconnect.up() {
                    tracing::info!(context = "pubsub", provider = "redis", "connected");
                }
                let ended = receive(
                    &*node,
                    &options,
                    &mut connection,
                    (&mut streams, &mut changes, &readiness),
                    &shutdown,
                )
                .await;
                readiness.forget_all();
                match ended {
                    Ok(()) => return Ok(()),
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        readiness.set_offline(true);
        let delay = reconnect.failed(&error)?;
        node.metrics().inc(Counter::ServiceReconnects);
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
    node: &dyn PublicationHandler,
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

fn handle(node: &dyn PublicationHandler, readiness: &Readiness, value: Value) {
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
///
/// While Redis cannot be reached, messages are delivered to this node's own clients instead of
/// being dropped (the reference drops them): a node that lost Redis keeps serving its clients
/// what its own broadcasters receive, and other nodes miss them either way. Only messages that
/// certainly never reached Redis are delivered so; a batch whose write failed half-way may
/// have been relayed already and is dropped, so no client sees a message twice.
pub async fn run_publisher(
    node: Arc<dyn PublicationHandler>,
    options: RedisOptions,
    mut outgoing: mpsc::Receiver<Outgoing>,
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
                deliver_here(&*node, &batch);
                continue;
            }
            match Connection::open(&options).await {
                Ok(opened) => {
                    connection = Some(opened);
                    retry_at = None;
                }
                Err(error) => {
                    // The subscriber, on the same Redis, tells the operator once.
                    tracing::debug!(
                        context = "pubsub",
                        provider = "redis",
                        "cannot publish: {error}"
                    );
                    retry_at = Some(Instant::now() + PUBLISH_RETRY);
                    deliver_here(&*node, &batch);
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

/// Hands messages that never reached Redis to this node, as if Redis had relayed them.
/// Readiness canaries excepted: they are there to prove the way through Redis works.
fn deliver_here(node: &dyn PublicationHandler, batch: &[Outgoing]) {
    tracing::debug!(
        context = "pubsub",
        provider = "redis",
        "Redis is unreachable: {} messages delivered to this node only",
        batch.len()
    );
    for (_, body) in batch.iter().filter(|(channel, _)| !is_canary(channel)) {
        if let Ok(inbound) = parse(body.as_bytes()) {
            node.publish_local(inbound);
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

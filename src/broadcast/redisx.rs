//! The `redisx` broadcaster: publications are entries of a Redis Stream (`--redisx_stream`)
//! read through a consumer group (`--redisx_group`), so each one is handled by exactly one
//! node (docs/broadcasting.md). The node registers it (broker) and hands it to node-to-node
//! pub/sub when one is configured, like an HTTP publication.
//!
//! Publisher side: `XADD __anycable__ * payload '<publication JSON>'` (the field must be named
//! `payload`; other fields are ignored). Requires Redis ≥ 6.2 (`XAUTOCLAIM`).
//!
//! Per node, with a random consumer name:
//! 1. `XGROUP CREATE <stream> <group> $ MKSTREAM` (an existing group is fine), then
//!    `XGROUP CREATECONSUMER`;
//! 2. every `--redisx_read_block_milliseconds`: `XAUTOCLAIM` entries that stayed pending
//!    longer than that (their consumer died) and handle them;
//! 3. `XREADGROUP ... BLOCK <ms> STREAMS <stream> >` and handle the new entries;
//! 4. each handled entry is acknowledged and deleted (`XACK` + `XDEL`), so the stream does not
//!    grow; nothing else trims it.
//!
//! Errors reconnect for as long as the server runs (see [`crate::clients::reconnect`]); with an explicit
//! `redis.max_reconnect_attempts` the consumer gives up after that many consecutive failures
//! (logged) while the server keeps running, as in the reference. On shutdown the consumer leaves the group (`XGROUP DELCONSUMER`) unless it
//! still owns pending entries, which are then left for another node to claim.
//!
//! Deliberate difference: an entry without a `payload` field is acknowledged, deleted and
//! counted as a failed broadcast, instead of staying pending (and being re-claimed) forever.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::distr::{Alphanumeric, SampleString};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::broadcaster::{BroadcastError, Broadcaster};
use crate::clients::reconnect::Reconnect;
use crate::clients::redis::{Connection, RedisError, RedisOptions, Value};
use crate::config::RedisXConfig;
use crate::metrics::Counter;
use crate::node::PublicationHandler;
use crate::publication::parse;

/// Extra time allowed on top of the block time before a silent XREADGROUP counts as a failure.
const READ_GRACE: Duration = Duration::from_secs(5);

pub struct RedisXBroadcaster {
    node: Arc<dyn PublicationHandler>,
    options: RedisOptions,
    stream: String,
    group: String,
    block: Duration,
    consumer: String,
}

/// One stream entry.
struct Entry {
    id: Vec<u8>,
    payload: Option<Vec<u8>>,
}

impl RedisXBroadcaster {
    pub fn new(
        node: Arc<dyn PublicationHandler>,
        options: RedisOptions,
        config: &RedisXConfig,
    ) -> Self {
        RedisXBroadcaster {
            node,
            options,
            stream: config.stream.clone(),
            group: config.group.clone(),
            block: Duration::from_millis(config.read_block_ms.max(1)),
            consumer: Alphanumeric.sample_string(&mut rand::rng(), 6),
        }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Consumes until `shutdown`, then leaves the group; `Err` only when an explicit
    /// `redis.max_reconnect_attempts` is exhausted (the server goes on).
    async fn consume_until(self, shutdown: CancellationToken) -> Result<(), BroadcastError> {
        let mut reconnect = Reconnect::new(
            "broadcast",
            "redisx",
            self.options.redacted_url(),
            "broadcasts added to the Redis stream wait there",
            self.options.max_reconnect_attempts,
        );
        loop {
            let error = match self.session(&shutdown, &mut reconnect).await {
                Ok(()) => {
                    self.leave().await;
                    return Ok(());
                }
                Err(error) => error,
            };
            if shutdown.is_cancelled() {
                self.leave().await;
                return Ok(());
            }
            let Ok(delay) = reconnect.failed(&error) else {
                return Err(BroadcastError::RedisXAttemptsExceeded {
                    consumer: self.consumer.clone(),
                    last: error,
                });
            };
            self.node.metrics().inc(Counter::ServiceReconnects);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection's life: `Ok` on shutdown, `Err` when the connection fails.
    async fn session(
        &self,
        shutdown: &CancellationToken,
        reconnect: &mut Reconnect,
    ) -> Result<(), RedisError> {
        let mut connection = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            connection = Connection::open(&self.options) => connection?,
        };
        let created = connection
            .call(&[
                b"XGROUP",
                b"CREATE",
                self.stream.as_bytes(),
                self.group.as_bytes(),
                b"$",
                b"MKSTREAM",
            ])
            .await;
        match created {
            Ok(_) => {}
            Err(RedisError::Server(message)) if message.starts_with("BUSYGROUP") => {}
            Err(error) => return Err(error),
        }
        // Visible in XINFO CONSUMERS at once (otherwise only once it has read something).
        connection
            .call(&[
                b"XGROUP",
                b"CREATECONSUMER",
                self.stream.as_bytes(),
                self.group.as_bytes(),
                self.consumer.as_bytes(),
            ])
            .await?;
        reconnect.up();
        let block_ms = self.block.as_millis().to_string();
        let mut last_claim: Option<Instant> = None;
        loop {
            if last_claim.is_none_or(|at| at.elapsed() >= self.block) {
                last_claim = Some(Instant::now());
                let reply = connection
                    .call(&[
                        b"XAUTOCLAIM",
                        self.stream.as_bytes(),
                        self.group.as_bytes(),
                        self.consumer.as_bytes(),
                        block_ms.as_bytes(),
                        b"0-0",
                    ])
                    .await?;
                let entries = claimed_entries(reply)?;
                if !entries.is_empty() {
                    tracing::debug!(
                        context = "broadcast",
                        provider = "redisx",
                        "claimed {} stale entries",
                        entries.len()
                    );
                }
                self.handle(&mut connection, entries).await?;
            }
            connection
                .send(&[
                    b"XREADGROUP",
                    b"GROUP",
                    self.group.as_bytes(),
                    self.consumer.as_bytes(),
                    b"BLOCK",
                    block_ms.as_bytes(),
                    b"STREAMS",
                    self.stream.as_bytes(),
                    b">",
                ])
                .await?;
            let reply = tokio::select! {
                // The connection is dropped with the read in flight; whatever Redis handed to
                // this consumer meanwhile stays pending and is claimed by another node.
                _ = shutdown.cancelled() => return Ok(()),
                reply = tokio::time::timeout(self.block + READ_GRACE, connection.read()) => {
                    reply.map_err(|_| RedisError::Protocol("no answer to XREADGROUP".into()))??
                }
            };
            if let Value::Error(message) = reply {
                return Err(RedisError::Server(message));
            }
            let entries = read_entries(reply)?;
            self.handle(&mut connection, entries).await?;
        }
    }

    /// Hands each entry to the node, then acknowledges and deletes those handled (one round
    /// trip). An entry the broker could not store ends the batch unacknowledged: it and the
    /// rest stay pending and are claimed again once idle, so none is lost while the broker is
    /// away.
    async fn handle(
        &self,
        connection: &mut Connection,
        entries: Vec<Entry>,
    ) -> Result<(), RedisError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut handled = entries.len();
        for (index, entry) in entries.iter().enumerate() {
            let metrics = self.node.metrics();
            metrics.inc(Counter::Publications);
            let Some(payload) = &entry.payload else {
                metrics.inc(Counter::FailedBroadcastMsg);
                tracing::warn!(
                    context = "broadcast",
                    provider = "redisx",
                    id = %String::from_utf8_lossy(&entry.id),
                    "stream entry has no payload field"
                );
                continue;
            };
            match parse(payload) {
                Ok(inbound) => {
                    if self.node.publish(inbound).await.is_err() {
                        handled = index;
                        break;
                    }
                }
                Err(error) => {
                    metrics.inc(Counter::FailedBroadcastMsg);
                    tracing::warn!(
                        context = "broadcast",
                        provider = "redisx",
                        "failed to parse broadcast message: {error}"
                    );
                }
            }
        }
        let mut ack: Vec<&[u8]> = vec![b"XACK", self.stream.as_bytes(), self.group.as_bytes()];
        let mut del: Vec<&[u8]> = vec![b"XDEL", self.stream.as_bytes()];
        if handled == 0 {
            return Ok(());
        }
        for entry in &entries[..handled] {
            ack.push(&entry.id);
            del.push(&entry.id);
        }
        connection.send_all(&[ack, del]).await?;
        for _ in 0..2 {
            if let Value::Error(message) = connection.read().await? {
                return Err(RedisError::Server(message));
            }
        }
        Ok(())
    }

    /// Removes this consumer from the group, unless it still owns pending entries (deleting
    /// it would drop them; left alone, another node claims them).
    async fn leave(&self) {
        let result = tokio::time::timeout(Duration::from_secs(2), async {
            let mut connection = Connection::open(&self.options).await?;
            let pending = connection
                .call(&[
                    b"XPENDING",
                    self.stream.as_bytes(),
                    self.group.as_bytes(),
                    b"-",
                    b"+",
                    b"1",
                    self.consumer.as_bytes(),
                ])
                .await?;
            if pending.into_array().is_some_and(|items| !items.is_empty()) {
                return Ok::<bool, RedisError>(false);
            }
            connection
                .call(&[
                    b"XGROUP",
                    b"DELCONSUMER",
                    self.stream.as_bytes(),
                    self.group.as_bytes(),
                    self.consumer.as_bytes(),
                ])
                .await?;
            Ok(true)
        })
        .await;
        match result {
            Ok(Ok(true)) => tracing::debug!(
                context = "broadcast",
                provider = "redisx",
                consumer = %self.consumer,
                "left the consumer group"
            ),
            Ok(Ok(false)) => tracing::info!(
                context = "broadcast",
                provider = "redisx",
                consumer = %self.consumer,
                "pending entries are left for another consumer"
            ),
            Ok(Err(error)) => tracing::warn!(
                context = "broadcast",
                provider = "redisx",
                "failed to leave the consumer group: {error}"
            ),
            Err(_) => tracing::warn!(
                context = "broadcast",
                provider = "redisx",
                "failed to leave the consumer group: timeout"
            ),
        }
    }
}

fn protocol(what: &str) -> RedisError {
    RedisError::Protocol(format!("unexpected {what} reply"))
}

/// `XREADGROUP` reply: nil (timeout) or `[[stream, [entry, ...]], ...]`.
fn read_entries(reply: Value) -> Result<Vec<Entry>, RedisError> {
    let Value::Array(streams) = reply else {
        return match reply {
            Value::Nil => Ok(Vec::new()),
            _ => Err(protocol("XREADGROUP")),
        };
    };
    let mut entries = Vec::new();
    for stream in streams {
        let mut pair = stream.into_array().ok_or_else(|| protocol("XREADGROUP"))?;
        if pair.len() != 2 {
            return Err(protocol("XREADGROUP"));
        }
        entries.extend(parse_entries(pair.pop().expect("two items"))?);
    }
    Ok(entries)
}

/// `XAUTOCLAIM` reply: `[next-id, [entry, ...]]` (Redis 7 adds deleted ids).
fn claimed_entries(reply: Value) -> Result<Vec<Entry>, RedisError> {
    let mut items = reply.into_array().ok_or_else(|| protocol("XAUTOCLAIM"))?;
    if items.len() < 2 {
        return Err(protocol("XAUTOCLAIM"));
    }
    parse_entries(items.swap_remove(1))
}

/// `[[id, [field, value, ...]], ...]`; fields are nil for entries deleted meanwhile.
fn parse_entries(list: Value) -> Result<Vec<Entry>, RedisError> {
    let list = match list {
        Value::Nil => return Ok(Vec::new()),
        other => other
            .into_array()
            .ok_or_else(|| protocol("stream entries"))?,
    };
    let mut entries = Vec::with_capacity(list.len());
    for entry in list {
        let mut parts = entry.into_array().ok_or_else(|| protocol("stream entry"))?;
        if parts.len() != 2 {
            return Err(protocol("stream entry"));
        }
        let fields = parts.pop().expect("two items");
        let id = match parts.pop() {
            Some(Value::Bulk(id)) => id,
            _ => return Err(protocol("stream entry id")),
        };
        let payload = fields.into_array().and_then(|fields| {
            fields
                .chunks(2)
                .find(|kv| kv[0].as_bytes() == Some(b"payload"))
                .and_then(|kv| kv.get(1))
                .and_then(Value::as_bytes)
                .map(<[u8]>::to_vec)
        });
        entries.push(Entry { id, payload });
    }
    Ok(entries)
}

impl Broadcaster for RedisXBroadcaster {
    fn provider(&self) -> &'static str {
        "redisx"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), BroadcastError>> {
        Box::pin(self.consume_until(shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_read_and_claim_replies() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("other"), bulk("x"), bulk("payload"), bulk("{}")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("x"), bulk("y")])]),
            ]),
        ])]);
        let entries = read_entries(reply).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, b"1-0");
        assert_eq!(entries[0].payload.as_deref(), Some(&b"{}"[..]));
        assert!(entries[1].payload.is_none());
        assert!(read_entries(Value::Nil).unwrap().is_empty());

        let claim = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![Value::Array(vec![bulk("3-0"), Value::Nil])]),
            Value::Array(vec![]),
        ]);
        let entries = claimed_entries(claim).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].payload.is_none());
        assert!(claimed_entries(Value::Int(1)).is_err());
    }
}

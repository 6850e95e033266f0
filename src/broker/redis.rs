//! The Redis broker (`--broker=redis`): history and sessions in Redis, shared by every node of
//! a cluster, so a client can resume its session on any node and get the messages it missed.
//!
//! Keys (`{stream}` is the AnyCable stream name):
//! - `_ac_history:{stream}`: a Redis stream of the retained messages, capped at
//!   `--history_limit` entries (`MAXLEN`), entry id `0-<offset>`, fields `d` (the data) and `t`
//!   (Unix seconds when stored). It expires `--history_ttl` after the last message; a message
//!   older than the TTL is treated as gone even while its stream still holds it.
//! - `_ac_offset:{stream}`: the stream's offset counter. It lives 10 × `--history_ttl` after the
//!   last message, like the memory broker's; a counter created again later starts above any
//!   offset issued before in the same epoch (one per microsecond since the epoch began), so an
//!   old position can never point into new messages.
//! - `_ac_session:{sid}`: a session snapshot (JSON), expiring `--sessions_ttl` after the last
//!   save or touch.
//! - `_ac_epoch`: `<epoch>:<Unix microseconds when it began>`, created by the first node and
//!   adopted by the others; it lives 10 × max(history TTL, sessions TTL) after the last check.
//!
//! Storing is one Lua script (counter, append, trim, expiry: atomic), reading one command.
//! Memory: about (message size + 60 bytes) × `--history_limit` per active stream, plus one
//! snapshot per session seen within `--sessions_ttl`.
//! Presence is not kept by this broker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::session_writes::{self, SessionStore, SessionWrites};
use super::{
    check_history_from, History, HistoryError, Position, Retention, ServiceError, SessionCache,
    SessionSnapshot, StoreError, StoredMessage, StreamPosition,
};
use crate::clients::redis::{Connection, RedisError, RedisOptions, Value};
use crate::metrics::{Counter, Metrics};
use crate::protocol::Payload;
use crate::transport::random_id;

const EPOCH_KEY: &str = "_ac_epoch";
/// A stream's counter outlives its messages by this factor of `--history_ttl`.
const COUNTER_TTL_FACTOR: u64 = 10;
/// How often each node checks the shared epoch.
const EPOCH_CHECK: Duration = Duration::from_secs(60);
/// One command (connecting included) must be answered within this time.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// KEYS: history stream, offset counter. ARGV: data, Unix seconds, history limit, history TTL,
/// counter TTL, the first offset minus one for a new counter.
const STORE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[6]) end
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '0-' .. offset, 'd', ARGV[1], 't', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return offset
";

/// KEYS: history stream, offset counter. Returns the counter and every entry.
const READ_SCRIPT: &str = r"
return {redis.call('GET', KEYS[2]), redis.call('XRANGE', KEYS[1], '-', '+')}
";

#[derive(Debug, thiserror::Error)]
#[error("Redis is unavailable: {0}")]
pub struct StartError(#[source] RedisError);

/// One Redis connection shared by the callers of a task, opened on demand and dropped after
/// an IO error or a timeout (its state is unknown then); the next call opens a new one, which
/// counts as a reconnection (`service_reconnects_total`).
struct Link {
    options: RedisOptions,
    connection: Mutex<Option<Connection>>,
    /// A connection was opened before.
    opened: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Link {
    fn new(options: RedisOptions, metrics: Arc<Metrics>) -> Link {
        Link {
            options,
            connection: Mutex::new(None),
            opened: AtomicBool::new(false),
            metrics,
        }
    }

    async fn call(&self, args: &[&[u8]]) -> Result<Value, RedisError> {
        let mut slot = self.connection.lock().await;
        let reused = slot.is_some();
        let result = self.attempt(&mut slot, args).await;
        match result {
            // A kept connection found dead (Redis restarted meanwhile): the command never ran,
            // try once more on a new one.
            Err(RedisError::Io(_) | RedisError::Closed) if reused => {
                self.attempt(&mut slot, args).await
            }
            result => result,
        }
    }

    async fn attempt(
        &self,
        slot: &mut Option<Connection>,
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        let attempt = async {
            if slot.is_none() {
                *slot = Some(Connection::open(&self.options).await?);
                if self.opened.swap(true, Ordering::Relaxed) {
                    self.metrics.inc(Counter::ServiceReconnects);
                }
            }
            let connection = slot.as_mut().expect("just opened");
            connection.call(args).await
        };
        let result = tokio::time::timeout(CALL_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(RedisError::Protocol("no answer in time".into())));
        if matches!(&result, Err(error) if !matches!(error, RedisError::Server(_))) {
            *slot = None;
        }
        result
    }
}

/// The shared epoch and when it began.
#[derive(Clone)]
struct Epoch {
    id: Arc<str>,
    began_micros: u64,
}

impl Epoch {
    fn parse(value: &str) -> Option<Epoch> {
        let (id, began) = value.split_once(':')?;
        Some(Epoch {
            id: id.into(),
            began_micros: began.parse().ok()?,
        })
    }
}

pub struct RedisBroker {
    link: Link,
    epoch: RwLock<Epoch>,
    retention: Retention,
    session_writes: SessionWrites,
}

impl RedisBroker {
    /// Connects, adopts or creates the epoch, and starts the session writer and the epoch
    /// check (both stop with `shutdown`).
    pub async fn start(
        options: &RedisOptions,
        retention: Retention,
        metrics: Arc<Metrics>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<RedisBroker>, StartError> {
        let link = Link::new(options.clone(), metrics.clone());
        let epoch = shared_epoch(&link, epoch_ttl(&retention))
            .await
            .map_err(StartError)?;
        // Session writes have a connection of their own.
        let sessions = Sessions {
            link: Link::new(options.clone(), metrics),
            ttl_secs: retention.sessions_ttl.as_secs().max(1).to_string(),
        };
        let broker = Arc::new(RedisBroker {
            link,
            epoch: RwLock::new(epoch),
            retention,
            session_writes: SessionWrites::start(sessions, "redis", shutdown, tracker),
        });
        tracker.spawn(check_epoch(broker.clone(), shutdown.clone()));
        Ok(broker)
    }

    fn current_epoch(&self) -> Epoch {
        self.epoch
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The counter and the retained messages of a stream; `None` when it has no counter.
    async fn read(&self, stream: &str) -> Result<Option<(u64, Vec<Retained>)>, HistoryError> {
        let (history, counter) = keys(stream);
        let reply = self
            .link
            .call(&[
                b"EVAL",
                READ_SCRIPT.as_bytes(),
                b"2",
                history.as_bytes(),
                counter.as_bytes(),
            ])
            .await
            .map_err(|e| HistoryError::Unavailable(e.into()))?;
        let invalid = |reply: &dyn std::fmt::Debug| {
            HistoryError::Unavailable(ServiceError::UnexpectedReply(format!(
                "to a history read: {reply:?}"
            )))
        };
        let Value::Array(parts) = reply else {
            return Err(invalid(&reply));
        };
        let mut parts = parts.into_iter();
        let last = match parts.next() {
            Some(Value::Nil) | None => return Ok(None),
            Some(value) => value
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| invalid(&value))?,
        };
        let oldest_kept = unix_now().saturating_sub(self.retention.history_ttl.as_secs() as i64);
        let entries = parts
            .next()
            .and_then(Value::into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Retained::parse)
            .filter(|m| m.unix_secs > oldest_kept || self.retention.history_ttl.is_zero())
            .collect();
        Ok(Some((last, entries)))
    }
}

/// A message read back from a history stream.
struct Retained {
    offset: u64,
    unix_secs: i64,
    data: String,
}

impl Retained {
    /// `[id, [field, value, ...]]` → the message (offset from the id `0-<offset>`).
    fn parse(entry: Value) -> Option<Retained> {
        let mut parts = entry.into_array()?.into_iter();
        let offset = parts.next()?.as_str()?.strip_prefix("0-")?.parse().ok()?;
        let fields = parts.next()?.into_array()?;
        let (mut data, mut unix_secs) = (None, 0);
        for pair in fields.chunks(2) {
            match (pair[0].as_str(), pair.get(1).and_then(Value::as_str)) {
                (Some("d"), Some(value)) => data = Some(value.to_string()),
                (Some("t"), Some(value)) => unix_secs = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        Some(Retained {
            offset,
            unix_secs,
            data: data?,
        })
    }

    fn into_stored(self) -> StoredMessage {
        StoredMessage {
            offset: self.offset,
            payload: Payload::from_json(&self.data),
        }
    }
}

impl History for RedisBroker {
    fn epoch(&self) -> Arc<str> {
        self.current_epoch().id
    }

    fn store<'a>(
        &'a self,
        stream: &'a str,
        payload: &'a Payload,
    ) -> BoxFuture<'a, Result<Position, StoreError>> {
        Box::pin(async move {
            let epoch = self.current_epoch();
            let (history, counter) = keys(stream);
            let history_ttl = self.retention.history_ttl.as_secs().max(1);
            let counter_ttl = history_ttl * COUNTER_TTL_FACTOR;
            // A counter created after an idle period longer than its TTL starts above every
            // offset that may have been issued in this epoch.
            let age_micros = unix_micros().saturating_sub(epoch.began_micros);
            let base = if age_micros / 1_000_000 < counter_ttl {
                0
            } else {
                age_micros
            };
            let args = [
                history_ttl.to_string(),
                counter_ttl.to_string(),
                base.to_string(),
                unix_now().to_string(),
                self.retention.history_limit.max(1).to_string(),
            ];
            let reply = self
                .link
                .call(&[
                    b"EVAL",
                    STORE_SCRIPT.as_bytes(),
                    b"2",
                    history.as_bytes(),
                    counter.as_bytes(),
                    payload.as_json().as_bytes(),
                    args[3].as_bytes(),
                    args[4].as_bytes(),
                    args[0].as_bytes(),
                    args[1].as_bytes(),
                    args[2].as_bytes(),
                ])
                .await;
            match reply {
                Ok(Value::Int(offset)) if offset > 0 => Ok(Position {
                    offset: offset as u64,
                    epoch: epoch.id,
                }),
                other => Err(StoreError {
                    stream: stream.to_string(),
                    source: match other {
                        Err(error) => error.into(),
                        Ok(value) => ServiceError::UnexpectedReply(format!("{value:?}")),
                    },
                }),
            }
        })
    }

    fn history_from<'a>(
        &'a self,
        stream: &'a str,
        from: &'a StreamPosition,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, HistoryError>> {
        Box::pin(async move {
            if from.epoch != *self.epoch() {
                return Err(HistoryError::EpochMismatch);
            }
            let (last, retained) = self
                .read(stream)
                .await?
                .ok_or(HistoryError::UnknownStream)?;
            check_history_from(from.offset, retained.first().map(|m| m.offset), last)?;
            Ok(retained
                .into_iter()
                .filter(|m| m.offset > from.offset)
                .map(Retained::into_stored)
                .collect())
        })
    }

    fn history_since<'a>(
        &'a self,
        stream: &'a str,
        since: i64,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, HistoryError>> {
        Box::pin(async move {
            let Some((_, retained)) = self.read(stream).await? else {
                return Ok(Vec::new());
            };
            Ok(retained
                .into_iter()
                .filter(|m| m.unix_secs >= since)
                .map(Retained::into_stored)
                .collect())
        })
    }
}

impl SessionCache for RedisBroker {
    fn save_session(&self, sid: &str, snapshot: SessionSnapshot) {
        self.session_writes.save(sid, &snapshot);
    }

    fn touch_session(&self, sid: &str) {
        self.session_writes.touch(sid);
    }

    fn restore_session<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Option<SessionSnapshot>> {
        Box::pin(async move {
            let key = session_key(sid);
            let read = self.link.call(&[b"GET", key.as_bytes()]).await;
            let read = read.map_err(ServiceError::from);
            session_writes::decode("redis", read.as_ref().map(Value::as_bytes))
        })
    }
}

/// The history stream's and the counter's keys of `stream`.
fn keys(stream: &str) -> (String, String) {
    (
        format!("_ac_history:{stream}"),
        format!("_ac_offset:{stream}"),
    )
}

fn session_key(sid: &str) -> String {
    format!("_ac_session:{sid}")
}

fn epoch_ttl(retention: &Retention) -> Duration {
    10 * retention
        .history_ttl
        .max(retention.sessions_ttl)
        .max(Duration::from_secs(1))
}

/// The cluster's epoch: created with a new random id when there is none.
async fn shared_epoch(link: &Link, ttl: Duration) -> Result<Epoch, RedisError> {
    let fresh = format!("{}:{}", &random_id()[..4], unix_micros());
    let ttl = ttl.as_secs().to_string();
    link.call(&[
        b"SET",
        EPOCH_KEY.as_bytes(),
        fresh.as_bytes(),
        b"NX",
        b"EX",
        ttl.as_bytes(),
    ])
    .await?;
    let value = link.call(&[b"GET", EPOCH_KEY.as_bytes()]).await?;
    value
        .as_str()
        .and_then(Epoch::parse)
        .ok_or_else(|| RedisError::Protocol(format!("{EPOCH_KEY} holds no epoch: {value:?}")))
}

/// Keeps the epoch alive and adopts a changed one.
async fn check_epoch(broker: Arc<RedisBroker>, shutdown: CancellationToken) {
    let ttl = epoch_ttl(&broker.retention);
    let mut tick = tokio::time::interval(EPOCH_CHECK);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(shared) = shared_epoch(&broker.link, ttl).await else {
            continue;
        };
        let seconds = ttl.as_secs().to_string();
        let _ = broker
            .link
            .call(&[b"EXPIRE", EPOCH_KEY.as_bytes(), seconds.as_bytes()])
            .await;
        let mut current = broker
            .epoch
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.id != shared.id {
            tracing::warn!(context = "broker", provider = "redis", epoch = %shared.id, "epoch changed");
            *current = shared;
        }
    }
}

/// Session snapshots as keys with a time to live.
struct Sessions {
    link: Link,
    ttl_secs: String,
}

impl SessionStore for Sessions {
    fn save<'a>(
        &'a self,
        sid: &'a str,
        snapshot: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let key = session_key(sid);
            let ttl = self.ttl_secs.as_bytes();
            self.link
                .call(&[b"SET", key.as_bytes(), &snapshot, b"EX", ttl])
                .await
                .map(drop)
                .map_err(ServiceError::from)
        })
    }

    fn touch<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let key = session_key(sid);
            let ttl = self.ttl_secs.as_bytes();
            self.link
                .call(&[b"EXPIRE", key.as_bytes(), ttl])
                .await
                .map(drop)
                .map_err(ServiceError::from)
        })
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_carry_their_start() {
        let epoch = Epoch::parse("ab_9:1700000000000000").unwrap();
        assert_eq!(
            (&*epoch.id, epoch.began_micros),
            ("ab_9", 1_700_000_000_000_000)
        );
        assert!(Epoch::parse("nocolon").is_none());
    }

    #[test]
    fn entries_parse_into_offsets_and_data() {
        let entry = Value::Array(vec![
            Value::Bulk(b"0-42".to_vec()),
            Value::Array(vec![
                Value::Bulk(b"d".to_vec()),
                Value::Bulk(br#"{"n":1}"#.to_vec()),
                Value::Bulk(b"t".to_vec()),
                Value::Bulk(b"1700000000".to_vec()),
            ]),
        ]);
        let retained = Retained::parse(entry).unwrap();
        assert_eq!((retained.offset, retained.unix_secs), (42, 1_700_000_000));
        assert_eq!(retained.data, r#"{"n":1}"#);
    }
}

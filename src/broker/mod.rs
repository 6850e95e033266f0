//! Brokers keep what reliable delivery needs, in three roles the node uses separately:
//!
//! - [`History`]: per-stream history with positions (offset and epoch);
//! - [`SessionCache`]: snapshots of disconnected sessions, so clients can resume them;
//! - [`Presence`]: who is present on a stream (join, leave, list).
//!
//! Each trait's documentation is its contract. [`Broker`] is what the configured broker plays
//! of each role: `memory` plays all three, `nats` and `redis` keep history and sessions but no
//! presence (as in the reference), and without a broker (`--broker=none`, the reference's
//! "legacy" broker) there is no history, no session cache, and presence answers
//! `Unsupported`.
//!
//! Implementations: `memory` (one node; `presence.rs`: its presence records), `nats`
//! (JetStream), `redis` (Redis Streams and keys); `session_writes.rs` is the ordered, bounded
//! session-write queue of the distributed two.

pub mod memory;
pub mod nats;
mod presence;
pub mod redis;
mod session_writes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::protocol::Payload;
pub use crate::protocol::StreamPosition;

pub use memory::MemoryBroker;
pub use presence::MemoryPresence;

/// How much history and how long sessions are kept (`--history_limit`, `--history_ttl`,
/// `--sessions_ttl`).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub history_limit: usize,
    pub history_ttl: Duration,
    pub sessions_ttl: Duration,
}

/// Where a stored message sits in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// A message kept in a stream's history.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub offset: u64,
    pub payload: Payload,
}

/// A failure of the service a distributed broker keeps its data in: it cannot be reached, it
/// refused the request, or it answered something this broker does not understand.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Redis(#[from] crate::clients::redis::RedisError),
    #[error(transparent)]
    Nats(#[from] nats::NatsError),
    /// A reply of the right kind but not the expected shape (the text is the reply).
    #[error("unexpected reply {0}")]
    UnexpectedReply(String),
}

/// Why history could not be served. Any of these makes the whole request fail (`reject_history`):
/// there is no partial replay.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the epoch changed (the stream's history was lost)")]
    EpochMismatch,
    #[error("no history is known for this stream")]
    UnknownStream,
    #[error("messages after the requested offset are no longer retained")]
    Expired,
    #[error("the requested offset is ahead of the stream")]
    OffsetAhead,
    #[error("the broker cannot be reached: {0}")]
    Unavailable(#[source] ServiceError),
}

/// Whether messages after `from` can be served from a stream whose kept messages span
/// `oldest..=last` (`oldest` is `None` when none is kept). Shared by every broker.
///
/// Deliberate difference from AnyCable-Go: a client whose last message is the one just below
/// the oldest kept (`oldest - 1`) already has everything before it, so it gets the whole kept
/// history; the reference rejects it because that message itself is gone.
pub(crate) fn check_history_from(
    from: u64,
    oldest: Option<u64>,
    last: u64,
) -> Result<(), HistoryError> {
    let oldest = oldest.ok_or(HistoryError::Expired)?;
    if from.saturating_add(1) < oldest {
        return Err(HistoryError::Expired);
    }
    if from > last {
        return Err(HistoryError::OffsetAhead);
    }
    Ok(())
}

/// A message could not be stored (the broker cannot be reached or refused it).
#[derive(Debug, thiserror::Error)]
#[error("cannot store a message of stream {stream:?}: {source}")]
pub struct StoreError {
    pub stream: String,
    #[source]
    pub source: ServiceError,
}

/// What a session looked like, kept so that a reconnecting client can resume it. Distributed
/// brokers keep it as JSON (an internal format: only anycable-rs nodes read it).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SessionSnapshot {
    pub identifiers: Arc<str>,
    /// Channel identifier → its streams, whisper stream and state.
    pub subscriptions: HashMap<Arc<str>, SubscriptionSnapshot>,
    /// Connection state (`cstate`) of a backend-authenticated session.
    pub state: HashMap<String, String>,
    /// The backend must be told when the session ends.
    pub disconnectable: bool,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SubscriptionSnapshot {
    pub streams: Vec<Arc<str>>,
    pub whisper_stream: Option<Arc<str>>,
    pub presence_stream: Option<Arc<str>>,
    /// The channel lives in the backend.
    pub remote: bool,
    /// Channel state (`istate`).
    pub state: HashMap<String, String>,
}

/// A presence change to broadcast on the presence stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// `info` is raw JSON text.
    Join {
        id: String,
        info: Option<String>,
    },
    Leave {
        id: String,
    },
}

/// One presence id of a stream; `info` is raw JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRecord {
    pub id: String,
    pub info: Option<String>,
}

/// The presence of a stream: `total` distinct ids and their records (unordered).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceInfo {
    pub total: usize,
    pub records: Vec<PresenceRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("the broker does not keep presence")]
    Unsupported,
    #[error("this session already joined the stream under another presence id")]
    IdMismatch,
}

/// Reliable-stream history: every stored message gets a position, and a client that knows its
/// last position can read what it missed.
///
/// Contract:
/// - Ordering: `store` assigns strictly increasing offsets per stream within one epoch. The node
///   stores one stream's messages one at a time (it awaits each `store` before the next of the
///   same stream) and delivers them in offset order; an implementation need not order
///   concurrent stores of one stream.
/// - Atomicity: a `store` that returns a position has stored the message; it is returned by
///   every read that starts after that `store` completed, until it expires (`--history_limit`,
///   `--history_ttl`). Offset assignment and append are one step: no offset is skipped or given
///   twice by a successful store.
/// - Failure: `store` fails with [`StoreError`] when the message may not have been stored (the
///   node counts it in `broker_errors_total`, does not deliver it, and reports the failure to the
///   publisher); it is never retried by the broker, because a retry could store it twice. A
///   read fails as a whole ([`HistoryError`]): there is no partial history.
/// - Epoch: [`History::epoch`] changes whenever previously issued offsets become meaningless
///   (memory: per process; NATS and Redis: shared by the cluster, re-created when lost). Reads
///   from a position of another epoch fail with `EpochMismatch`.
/// - The node may assume reads and stores wait only on IO (bounded by the implementation's own
///   timeouts), and makes "attach to a stream" and "read its history" seamless itself, by
///   holding live messages back (the hub's gate) until the replay is sent.
pub trait History: Send + Sync {
    /// The current epoch.
    fn epoch(&self) -> Arc<str>;

    /// Stores a message and returns its position.
    fn store<'a>(
        &'a self,
        stream: &'a str,
        payload: &'a Payload,
    ) -> BoxFuture<'a, Result<Position, StoreError>>;

    /// Messages after `from.offset` (exclusive), oldest first.
    fn history_from<'a>(
        &'a self,
        stream: &'a str,
        from: &'a StreamPosition,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, HistoryError>>;

    /// Retained messages stored at or after the Unix second `since`, oldest first. An unknown
    /// stream has none; only an unreachable broker is an error.
    fn history_since<'a>(
        &'a self,
        stream: &'a str,
        since: i64,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, HistoryError>>;
}

/// Snapshots of sessions, kept for `--sessions_ttl` so that a client reconnecting with its old
/// `sid` can resume where it was (extended protocol only).
///
/// Contract:
/// - Saving and touching never wait and never fail from the caller's point of view: the node
///   calls them from connection tasks. An implementation that writes over the network queues
///   the writes (bounded) and applies one session's writes in order, so an older snapshot never
///   overwrites a newer one; a write that cannot be applied (queue full, service down) is
///   dropped and logged, and that session simply cannot be resumed.
/// - Atomicity: a snapshot is replaced as a whole; a restore sees some complete snapshot.
/// - `restore_session` waits on IO; a snapshot that cannot be read or decoded is reported (in the
///   log) and treated as missing: the client then connects as a new session.
/// - A restored snapshot stays available until it expires, so a session can be resumed more
///   than once (and from any node sharing the store).
pub trait SessionCache: Send + Sync {
    /// Saves (or replaces) the snapshot of a session and restarts its time to live.
    fn save_session(&self, sid: &str, snapshot: SessionSnapshot);

    /// Restarts the time to live of a saved session.
    fn touch_session(&self, sid: &str);

    /// The snapshot saved under `sid`, if it has not expired.
    fn restore_session<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Option<SessionSnapshot>>;
}

/// Who is present on a presence stream: records of presence ids (with their `info`), held by
/// sessions, expiring `--presence_ttl` after their session's last touch.
///
/// Contract:
/// - Every call is synchronous and short (no IO): the node calls them while handling a client
///   command and broadcasts the returned events itself, on the presence stream.
/// - Events: `join` is returned only when an id appears in a stream, `leave` only when its last
///   session goes (by `leave` or by expiry); joining again or from another session of the same
///   id returns no event. One call's change and its event are atomic.
/// - Failure: [`PresenceError::Unsupported`] from every query when the broker keeps no presence
///   (the node answers the `presence` command with an `error` message and the REST API with
///   501); `IdMismatch` when a session joins one stream under a second id. Neither changes
///   anything.
pub trait Presence: Send + Sync {
    /// Adds session `sid` to the presence of `stream` under `id` (`info`: raw JSON, last write
    /// wins). Returns the `join` event when the id was not present before.
    fn join(
        &self,
        stream: &str,
        sid: &str,
        id: &str,
        info: Option<&str>,
    ) -> Result<Option<PresenceEvent>, PresenceError>;

    /// Removes the record of `sid` from `stream`; the `leave` event when it was the last
    /// session of its id. Not being joined is not an error.
    fn leave(&self, stream: &str, sid: &str) -> Result<Option<PresenceEvent>, PresenceError>;

    /// The current presence of `stream`.
    fn info(&self, stream: &str) -> Result<PresenceInfo, PresenceError>;

    /// Restarts the time to live of every presence record of `sid`.
    fn touch(&self, sid: &str);

    /// Removes the records of sessions not touched within the presence TTL; the `leave` events
    /// by stream. Called every second.
    fn expire(&self) -> Vec<(Arc<str>, PresenceEvent)>;
}

/// Presence of a broker that keeps none (NATS, Redis, no broker): every query answers
/// `Unsupported`, touching and expiring do nothing.
pub struct NoPresence;

impl Presence for NoPresence {
    fn join(
        &self,
        _stream: &str,
        _sid: &str,
        _id: &str,
        _info: Option<&str>,
    ) -> Result<Option<PresenceEvent>, PresenceError> {
        Err(PresenceError::Unsupported)
    }

    fn leave(&self, _stream: &str, _sid: &str) -> Result<Option<PresenceEvent>, PresenceError> {
        Err(PresenceError::Unsupported)
    }

    fn info(&self, _stream: &str) -> Result<PresenceInfo, PresenceError> {
        Err(PresenceError::Unsupported)
    }

    fn touch(&self, _sid: &str) {}

    fn expire(&self) -> Vec<(Arc<str>, PresenceEvent)> {
        Vec::new()
    }
}

/// The configured broker, by role.
///
/// History and the session cache are `None` without a broker: the node then behaves
/// differently rather than failing calls (publications carry no position, history requests
/// are rejected, sessions are not cached), so the absence is explicit. Presence is a null
/// object instead, because its absence changes nothing but the answers.
#[derive(Clone)]
pub struct Broker {
    pub history: Option<Arc<dyn History>>,
    pub sessions: Option<Arc<dyn SessionCache>>,
    pub presence: Arc<dyn Presence>,
}

impl Broker {
    /// No broker (`--broker=none`): publications are delivered as they come.
    pub fn none() -> Broker {
        Broker {
            history: None,
            sessions: None,
            presence: Arc::new(NoPresence),
        }
    }

    /// A broker keeping history and sessions, but no presence (NATS, Redis).
    pub fn without_presence<B: History + SessionCache + 'static>(broker: Arc<B>) -> Broker {
        Broker {
            history: Some(broker.clone()),
            sessions: Some(broker),
            presence: Arc::new(NoPresence),
        }
    }
}

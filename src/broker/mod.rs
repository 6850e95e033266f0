//! Brokers keep what reliable delivery needs: per-stream history with positions (offset and
//! epoch), and a cache of disconnected sessions so clients can resume them.
//!
//! Contract for every implementation:
//! - `store` assigns strictly increasing offsets per stream within one epoch; a message is
//!   returned by every history read that starts after its `store` completed. The node stores
//!   one stream's messages one at a time and delivers them in offset order.
//! - History reads and stores may wait on IO (the NATS and Redis brokers); saving and touching
//!   sessions never wait: an implementation queues the writes of one session in order.
//! - The node makes "attach to a stream" and "read its history" seamless by holding live
//!   messages back (the hub's gate) until the replay is sent, dropping those the replay covered.
//!
//! Implementations: `memory` (one node), `nats` (JetStream), `redis` (Redis Streams and keys).

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

/// Why history could not be served. Any of these makes the whole request fail (`reject_history`):
/// there is no partial replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    Unavailable(String),
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot store a message of stream {stream:?}: {reason}")]
pub struct StoreError {
    pub stream: String,
    pub reason: String,
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

/// History and session storage.
pub trait Broker: Send + Sync {
    /// The current epoch: it changes whenever previously issued offsets become meaningless.
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

    /// Saves (or replaces) the snapshot of a session and restarts its time to live.
    fn save_session(&self, sid: &str, snapshot: SessionSnapshot);

    /// Restarts the time to live of a saved session.
    fn touch_session(&self, sid: &str);

    /// The snapshot saved under `sid`, if it has not expired. It stays available (it simply
    /// expires), so a session can be resumed more than once.
    fn restore_session<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Option<SessionSnapshot>>;

    /// Adds session `sid` to the presence of `stream` under `id` (`info`: raw JSON, last write
    /// wins). Returns the `join` event when the id was not present before. A session that
    /// already joined the stream under another id gets `IdMismatch`.
    fn presence_join(
        &self,
        _stream: &str,
        _sid: &str,
        _id: &str,
        _info: Option<&str>,
    ) -> Result<Option<PresenceEvent>, PresenceError> {
        Err(PresenceError::Unsupported)
    }

    /// Removes the record of `sid` from `stream`; the `leave` event when it was the last
    /// session of its id. Not being joined is not an error.
    fn presence_leave(
        &self,
        _stream: &str,
        _sid: &str,
    ) -> Result<Option<PresenceEvent>, PresenceError> {
        Err(PresenceError::Unsupported)
    }

    /// The current presence of `stream`.
    fn presence_info(&self, _stream: &str) -> Result<PresenceInfo, PresenceError> {
        Err(PresenceError::Unsupported)
    }

    /// Restarts the time to live of every presence record of `sid`.
    fn presence_touch(&self, _sid: &str) {}

    /// Removes the records of sessions not touched within the presence TTL; the `leave` events
    /// by stream. Called every second.
    fn presence_expire(&self) -> Vec<(Arc<str>, PresenceEvent)> {
        Vec::new()
    }
}

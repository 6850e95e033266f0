//! The in-memory broker (`--broker=memory`): single node, everything lost on restart, which is
//! why its epoch is random per process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::future::ready;

use futures_util::future::BoxFuture;

use super::{
    check_history_from, History, HistoryError, Position, SessionCache, SessionSnapshot, StoreError,
    StoredMessage, StreamPosition,
};
use crate::protocol::Payload;
use crate::transport::random_id;

/// A stream's counter outlives its messages by this factor of `history_ttl`, so that offsets
/// keep increasing across quiet periods.
const STREAM_STATE_TTL_FACTOR: u32 = 10;

struct Entry {
    offset: u64,
    stored_at: Instant,
    unix_secs: i64,
    payload: Payload,
}

struct StreamHistory {
    last_offset: u64,
    messages: VecDeque<Entry>,
    last_store: Instant,
}

struct SavedSession {
    snapshot: SessionSnapshot,
    expires_at: Instant,
}

#[derive(Default)]
struct State {
    streams: HashMap<Arc<str>, StreamHistory>,
    sessions: HashMap<Arc<str>, SavedSession>,
}

pub struct MemoryBroker {
    epoch: Arc<str>,
    started: Instant,
    history_limit: usize,
    history_ttl: Duration,
    sessions_ttl: Duration,
    state: Mutex<State>,
}

impl MemoryBroker {
    pub fn new(
        history_limit: usize,
        history_ttl: Duration,
        sessions_ttl: Duration,
    ) -> MemoryBroker {
        MemoryBroker {
            epoch: random_id()[..4].into(),
            started: Instant::now(),
            history_limit,
            history_ttl,
            sessions_ttl,
            state: Mutex::default(),
        }
    }

    /// Drops expired messages, idle stream counters and expired sessions. Called every second.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&self, now: Instant) {
        let mut state = self.lock();
        let ttl = self.history_ttl;
        let state_ttl = ttl * STREAM_STATE_TTL_FACTOR;
        state.streams.retain(|_, history| {
            while history
                .messages
                .front()
                .is_some_and(|m| now.duration_since(m.stored_at) >= ttl)
            {
                history.messages.pop_front();
            }
            now.duration_since(history.last_store) < state_ttl
        });
        state.sessions.retain(|_, saved| saved.expires_at > now);
    }

    /// The first offset of a stream whose counter is (re)created now. Counters are only dropped
    /// after being idle for `10 × history_ttl`; after that, a re-created stream must never
    /// reuse offsets a client may still hold from its previous life in this epoch, so it starts
    /// above any offset that could have been issued: one per microsecond since the epoch began.
    fn first_offset(&self, now: Instant) -> u64 {
        let age = now.duration_since(self.started);
        if age < self.history_ttl * STREAM_STATE_TTL_FACTOR {
            1
        } else {
            1 + age.as_micros() as u64
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The operations themselves, synchronous: nothing here waits. The [`History`] and
/// [`SessionCache`] implementations below hand them out as ready futures.
impl MemoryBroker {
    pub fn store(&self, stream: &str, payload: &Payload) -> Position {
        let now = Instant::now();
        let first_offset = self.first_offset(now);
        let mut state = self.lock();
        let history = match state.streams.get_mut(stream) {
            Some(history) => history,
            None => state.streams.entry(stream.into()).or_insert(StreamHistory {
                last_offset: first_offset - 1,
                messages: VecDeque::new(),
                last_store: now,
            }),
        };
        history.last_offset += 1;
        history.last_store = now;
        history.messages.push_back(Entry {
            offset: history.last_offset,
            stored_at: now,
            unix_secs: unix_now(),
            payload: payload.clone(),
        });
        while history.messages.len() > self.history_limit {
            history.messages.pop_front();
        }
        Position {
            offset: history.last_offset,
            epoch: self.epoch.clone(),
        }
    }

    pub fn last_offset(&self, stream: &str) -> Option<u64> {
        self.lock().streams.get(stream).map(|h| h.last_offset)
    }

    pub fn history_from(
        &self,
        stream: &str,
        from: &StreamPosition,
    ) -> Result<Vec<StoredMessage>, HistoryError> {
        if from.epoch != *self.epoch {
            return Err(HistoryError::EpochMismatch);
        }
        let state = self.lock();
        let history = state
            .streams
            .get(stream)
            .ok_or(HistoryError::UnknownStream)?;
        let oldest = history.messages.front().map(|m| m.offset);
        check_history_from(from.offset, oldest, history.last_offset)?;
        Ok(history
            .messages
            .iter()
            .filter(|m| m.offset > from.offset)
            .map(|m| StoredMessage {
                offset: m.offset,
                payload: m.payload.clone(),
            })
            .collect())
    }

    pub fn history_since(&self, stream: &str, since: i64) -> Vec<StoredMessage> {
        let state = self.lock();
        state
            .streams
            .get(stream)
            .map(|history| {
                history
                    .messages
                    .iter()
                    .filter(|m| m.unix_secs >= since)
                    .map(|m| StoredMessage {
                        offset: m.offset,
                        payload: m.payload.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn save_session(&self, sid: &str, snapshot: SessionSnapshot) {
        let expires_at = Instant::now() + self.sessions_ttl;
        self.lock().sessions.insert(
            sid.into(),
            SavedSession {
                snapshot,
                expires_at,
            },
        );
    }

    pub fn touch_session(&self, sid: &str) {
        let expires_at = Instant::now() + self.sessions_ttl;
        if let Some(saved) = self.lock().sessions.get_mut(sid) {
            saved.expires_at = expires_at;
        }
    }

    pub fn restore_session(&self, sid: &str) -> Option<SessionSnapshot> {
        let now = Instant::now();
        let state = self.lock();
        state
            .sessions
            .get(sid)
            .filter(|s| s.expires_at > now)
            .map(|s| s.snapshot.clone())
    }
}

impl History for MemoryBroker {
    fn epoch(&self) -> Arc<str> {
        self.epoch.clone()
    }

    fn store<'a>(
        &'a self,
        stream: &'a str,
        payload: &'a Payload,
    ) -> BoxFuture<'a, Result<Position, StoreError>> {
        Box::pin(ready(Ok(MemoryBroker::store(self, stream, payload))))
    }

    fn history_from<'a>(
        &'a self,
        stream: &'a str,
        from: &'a StreamPosition,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, HistoryError>> {
        Box::pin(ready(MemoryBroker::history_from(self, stream, from)))
    }

    fn history_since<'a>(
        &'a self,
        stream: &'a str,
        since: i64,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, HistoryError>> {
        Box::pin(ready(Ok(MemoryBroker::history_since(self, stream, since))))
    }
}

impl SessionCache for MemoryBroker {
    fn save_session(&self, sid: &str, snapshot: SessionSnapshot) {
        MemoryBroker::save_session(self, sid, snapshot);
    }

    fn touch_session(&self, sid: &str) {
        MemoryBroker::touch_session(self, sid);
    }

    fn restore_session<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Option<SessionSnapshot>> {
        Box::pin(ready(MemoryBroker::restore_session(self, sid)))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(limit: usize) -> MemoryBroker {
        MemoryBroker::new(limit, Duration::from_secs(300), Duration::from_secs(300))
    }

    fn payload(n: u64) -> Payload {
        Payload::from_data(&n.to_string())
    }

    fn at(broker: &MemoryBroker, offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: broker.epoch().to_string(),
            offset,
        }
    }

    #[test]
    fn offsets_start_at_one_and_increase_per_stream() {
        let b = broker(10);
        assert_eq!(b.store("a", &payload(1)).offset, 1);
        assert_eq!(b.store("a", &payload(2)).offset, 2);
        assert_eq!(b.store("b", &payload(3)).offset, 1);
        assert_eq!(b.epoch().len(), 4);
    }

    #[test]
    fn history_by_offset_follows_the_reference_rules() {
        let b = broker(3);
        for n in 1..=5 {
            b.store("s", &payload(n));
        }
        // Retained: 3, 4, 5.
        // The error as its text (errors carry their cause, so they are not comparable).
        let offsets = |r: Result<Vec<StoredMessage>, HistoryError>| {
            r.map(|list| list.iter().map(|m| m.offset).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        };
        assert_eq!(offsets(b.history_from("s", &at(&b, 3))), Ok(vec![4, 5]));
        assert_eq!(offsets(b.history_from("s", &at(&b, 5))), Ok(vec![]));
        // Just below the oldest kept: the client misses nothing, it gets all that is kept.
        assert_eq!(offsets(b.history_from("s", &at(&b, 2))), Ok(vec![3, 4, 5]));
        assert_eq!(
            offsets(b.history_from("s", &at(&b, 1))),
            Err(HistoryError::Expired.to_string())
        );
        assert_eq!(
            offsets(b.history_from("s", &at(&b, 6))),
            Err(HistoryError::OffsetAhead.to_string())
        );
        assert_eq!(
            offsets(b.history_from("x", &at(&b, 1))),
            Err(HistoryError::UnknownStream.to_string())
        );
        let other_epoch = StreamPosition {
            epoch: "zzzzz".into(),
            offset: 3,
        };
        assert_eq!(
            offsets(b.history_from("s", &other_epoch)),
            Err(HistoryError::EpochMismatch.to_string())
        );
    }

    #[test]
    fn history_since_returns_what_is_retained() {
        let b = broker(10);
        b.store("s", &payload(1));
        assert_eq!(b.history_since("s", 0).len(), 1);
        assert_eq!(b.history_since("s", unix_now() + 10).len(), 0);
        assert!(b.history_since("unknown", 0).is_empty());
    }

    #[test]
    fn sweeping_expires_messages_then_counters() {
        let b = MemoryBroker::new(10, Duration::from_secs(1), Duration::from_secs(1));
        b.store("s", &payload(1));
        let now = Instant::now();
        b.sweep_at(now + Duration::from_secs(2));
        assert!(matches!(
            b.history_from("s", &at(&b, 1)),
            Err(HistoryError::Expired)
        ));
        assert_eq!(b.last_offset("s"), Some(1));
        b.sweep_at(now + Duration::from_secs(11));
        assert_eq!(b.last_offset("s"), None);
    }

    #[test]
    fn recreated_streams_never_reuse_offsets() {
        let b = MemoryBroker::new(10, Duration::from_millis(1), Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(15));
        let first = b.store("s", &payload(1)).offset;
        assert!(
            first > 1,
            "a stream created after counters may have expired starts high"
        );
        b.sweep_at(Instant::now() + Duration::from_millis(20));
        assert!(b.store("s", &payload(2)).offset > first);
    }

    #[test]
    fn sessions_expire_and_survive_restore() {
        let b = MemoryBroker::new(10, Duration::from_secs(1), Duration::from_millis(50));
        b.save_session(
            "sid",
            SessionSnapshot {
                identifiers: "{}".into(),
                ..Default::default()
            },
        );
        assert!(b.restore_session("sid").is_some());
        assert!(b.restore_session("sid").is_some());
        b.sweep_at(Instant::now() + Duration::from_secs(1));
        assert!(b.restore_session("sid").is_none());
    }
}

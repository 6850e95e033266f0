//! Presence records of the memory broker (rules in docs/presence.md).
//!
//! Per presence stream: presence id → its `info` and the sessions (sids) holding it. Per sid:
//! the stream → presence id it joined under, and an expiry deadline set on its first join and on
//! every touch. A `join` event is emitted only when an id appears in a stream, a `leave` only
//! when its last session goes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Presence, PresenceError, PresenceEvent, PresenceInfo, PresenceRecord};

/// The memory broker's presence (`--broker=memory`): one node's records, behind one lock
/// (every operation is a few map updates, so a std `Mutex` is held only briefly and never
/// across an await).
pub struct MemoryPresence {
    /// `--presence_ttl`: how long records live without a touch.
    ttl: Duration,
    store: Mutex<PresenceStore>,
}

impl MemoryPresence {
    pub fn new(ttl: Duration) -> MemoryPresence {
        MemoryPresence {
            ttl,
            store: Mutex::default(),
        }
    }

    fn store(&self) -> MutexGuard<'_, PresenceStore> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Presence for MemoryPresence {
    fn join(
        &self,
        stream: &str,
        sid: &str,
        id: &str,
        info: Option<&str>,
    ) -> Result<Option<PresenceEvent>, PresenceError> {
        self.store()
            .join(Instant::now(), self.ttl, stream, sid, id, info)
    }

    fn leave(&self, stream: &str, sid: &str) -> Result<Option<PresenceEvent>, PresenceError> {
        Ok(self.store().leave(stream, sid))
    }

    fn info(&self, stream: &str) -> Result<PresenceInfo, PresenceError> {
        Ok(self.store().info(stream))
    }

    fn touch(&self, sid: &str) {
        self.store().touch(Instant::now(), self.ttl, sid);
    }

    fn expire(&self) -> Vec<(Arc<str>, PresenceEvent)> {
        self.store().expire(Instant::now())
    }
}

struct Holder {
    /// Raw JSON text of the latest `info` (last write wins).
    info: Option<String>,
    sids: HashSet<Arc<str>>,
}

struct SessionRecords {
    /// Stream → presence id.
    streams: HashMap<Arc<str>, String>,
    deadline: Instant,
}

#[derive(Default)]
struct PresenceStore {
    streams: HashMap<Arc<str>, HashMap<String, Holder>>,
    sessions: HashMap<Arc<str>, SessionRecords>,
}

impl PresenceStore {
    fn join(
        &mut self,
        now: Instant,
        ttl: Duration,
        stream: &str,
        sid: &str,
        id: &str,
        info: Option<&str>,
    ) -> Result<Option<PresenceEvent>, PresenceError> {
        let records = match self.sessions.get_mut(sid) {
            Some(records) => records,
            None => self
                .sessions
                .entry(sid.into())
                .or_insert_with(|| SessionRecords {
                    streams: HashMap::new(),
                    deadline: now + ttl,
                }),
        };
        match records.streams.get(stream) {
            Some(joined) if joined != id => return Err(PresenceError::IdMismatch),
            Some(_) => {}
            None => {
                records.streams.insert(stream.into(), id.to_string());
            }
        }
        let holders = match self.streams.get_mut(stream) {
            Some(holders) => holders,
            None => self.streams.entry(stream.into()).or_default(),
        };
        let sid: Arc<str> = sid.into();
        match holders.get_mut(id) {
            Some(holder) => {
                holder.info = info.map(str::to_string);
                holder.sids.insert(sid);
                Ok(None)
            }
            None => {
                holders.insert(
                    id.to_string(),
                    Holder {
                        info: info.map(str::to_string),
                        sids: HashSet::from([sid]),
                    },
                );
                Ok(Some(PresenceEvent::Join {
                    id: id.to_string(),
                    info: info.map(str::to_string),
                }))
            }
        }
    }

    fn leave(&mut self, stream: &str, sid: &str) -> Option<PresenceEvent> {
        let records = self.sessions.get_mut(sid)?;
        let id = records.streams.remove(stream)?;
        if records.streams.is_empty() {
            self.sessions.remove(sid);
        }
        self.release(stream, sid, id)
    }

    /// Removes `sid` from the holders of `id` in `stream`; the event when it was the last one.
    fn release(&mut self, stream: &str, sid: &str, id: String) -> Option<PresenceEvent> {
        let holders = self.streams.get_mut(stream)?;
        let holder = holders.get_mut(&id)?;
        holder.sids.remove(sid);
        if !holder.sids.is_empty() {
            return None;
        }
        holders.remove(&id);
        if holders.is_empty() {
            self.streams.remove(stream);
        }
        Some(PresenceEvent::Leave { id })
    }

    fn touch(&mut self, now: Instant, ttl: Duration, sid: &str) {
        if let Some(records) = self.sessions.get_mut(sid) {
            records.deadline = now + ttl;
        }
    }

    fn info(&self, stream: &str) -> PresenceInfo {
        let records: Vec<PresenceRecord> = self
            .streams
            .get(stream)
            .map(|holders| {
                holders
                    .iter()
                    .map(|(id, holder)| PresenceRecord {
                        id: id.clone(),
                        info: holder.info.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        PresenceInfo {
            total: records.len(),
            records,
        }
    }

    /// Removes every record of the sessions whose deadline passed; the `leave` events by
    /// stream.
    fn expire(&mut self, now: Instant) -> Vec<(Arc<str>, PresenceEvent)> {
        let expired: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, records)| records.deadline <= now)
            .map(|(sid, _)| sid.clone())
            .collect();
        let mut events = Vec::new();
        for sid in expired {
            let Some(records) = self.sessions.remove(&sid) else {
                continue;
            };
            for (stream, id) in records.streams {
                if let Some(event) = self.release(&stream, &sid, id) {
                    events.push((stream, event));
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);

    fn join(
        store: &mut PresenceStore,
        now: Instant,
        sid: &str,
        id: &str,
        info: &str,
    ) -> Result<Option<PresenceEvent>, PresenceError> {
        store.join(now, TTL, "room", sid, id, Some(info))
    }

    #[test]
    fn join_is_announced_once_per_id_and_info_is_last_write() {
        let mut store = PresenceStore::default();
        let now = Instant::now();
        assert_eq!(
            join(&mut store, now, "s1", "42", r#"{"n":1}"#).unwrap(),
            Some(PresenceEvent::Join {
                id: "42".into(),
                info: Some(r#"{"n":1}"#.into())
            })
        );
        // Same session again, another session with the same id: no event.
        assert_eq!(
            join(&mut store, now, "s1", "42", r#"{"n":2}"#).unwrap(),
            None
        );
        assert_eq!(
            join(&mut store, now, "s2", "42", r#"{"n":3}"#).unwrap(),
            None
        );
        let info = store.info("room");
        assert_eq!(info.total, 1);
        assert_eq!(info.records[0].info.as_deref(), Some(r#"{"n":3}"#));
        // A session cannot join one stream under two ids.
        assert_eq!(
            join(&mut store, now, "s1", "13", "{}"),
            Err(PresenceError::IdMismatch)
        );
        assert_eq!(store.info("room").total, 1);
        assert_eq!(store.info("other").total, 0);
    }

    #[test]
    fn leave_is_announced_when_the_last_session_goes() {
        let mut store = PresenceStore::default();
        let now = Instant::now();
        join(&mut store, now, "s1", "42", "1").unwrap();
        join(&mut store, now, "s2", "42", "1").unwrap();
        join(&mut store, now, "s3", "13", "1").unwrap();
        assert_eq!(store.info("room").total, 2);
        assert_eq!(store.leave("room", "s1"), None);
        assert_eq!(store.leave("room", "s1"), None, "not joined any more");
        assert_eq!(store.leave("nowhere", "s2"), None);
        assert_eq!(
            store.leave("room", "s2"),
            Some(PresenceEvent::Leave { id: "42".into() })
        );
        assert_eq!(store.info("room").total, 1);
        // After leaving, the session may join under another id.
        assert!(join(&mut store, now, "s1", "7", "1").unwrap().is_some());
    }

    #[test]
    fn sessions_expire_unless_touched_and_other_holders_keep_the_id() {
        let mut store = PresenceStore::default();
        let start = Instant::now();
        join(&mut store, start, "s1", "42", "1").unwrap();
        store.join(start, TTL, "lobby", "s1", "42", None).unwrap();
        join(&mut store, start + Duration::from_secs(10), "s2", "42", "1").unwrap();
        join(&mut store, start, "s3", "13", "1").unwrap();
        store.touch(start + Duration::from_secs(5), TTL, "s3");
        assert!(store.expire(start + Duration::from_secs(14)).is_empty());
        // s1 expires: "42" is still held by s2 in "room", but gone from "lobby".
        let events = store.expire(start + TTL);
        assert_eq!(
            events,
            vec![(Arc::from("lobby"), PresenceEvent::Leave { id: "42".into() })]
        );
        assert_eq!(store.info("room").total, 2);
        let events = store.expire(start + Duration::from_secs(20));
        assert_eq!(
            events,
            vec![(Arc::from("room"), PresenceEvent::Leave { id: "13".into() })]
        );
        let events = store.expire(start + Duration::from_secs(25));
        assert_eq!(
            events,
            vec![(Arc::from("room"), PresenceEvent::Leave { id: "42".into() })]
        );
        assert_eq!(store.info("room").total, 0);
        assert!(store.sessions.is_empty() && store.streams.is_empty());
    }
}

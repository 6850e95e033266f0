//! The index of streams to subscribed connections, and broadcast fan-out.
//!
//! Streams are spread over shards (`--hub_gopool_size`) so that subscribes and broadcasts on
//! different streams rarely contend. Within a stream, subscribers are grouped by channel
//! identifier: a broadcast frame is encoded once per identifier and the same bytes are queued
//! to every subscriber of that group.
//!
//! A subscriber can be attached behind a gate: its frames are held, not queued, until the node
//! has sent the history the client asked for. Opening the gate queues the held frames the
//! replay did not cover, so live messages continue exactly after the replayed ones.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::protocol::{broadcast_frame, DisconnectReason, FramePosition, Payload, TextFrame};
use crate::session::{Outbox, Pushed};

/// How many frames a gate holds before its subscriber is disconnected as too slow. A gate is
/// open for one history read, or for the few seconds a restored session has to ask for one.
pub const GATE_CAPACITY: usize = 4096;

/// A connection as the hub sees it.
#[derive(Clone)]
pub struct Subscriber {
    pub session_id: u64,
    pub sid: Arc<str>,
    pub outbox: Arc<Outbox>,
}

/// What to send to a stream's subscribers.
pub struct Delivery<'a> {
    pub payload: &'a Payload,
    /// `meta.broadcast_type`: adds a `type` field to the frame.
    pub broadcast_type: Option<&'a str>,
    /// `meta.exclude_socket`: the `sid` that must not receive it.
    pub exclude_sid: Option<&'a str>,
    /// Whispers skip every subscription of the sending connection.
    pub exclude_session: Option<u64>,
    /// Set when a broker stored the message.
    pub position: Option<FramePosition<'a>>,
}

/// Outcome of one fan-out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Frames queued.
    pub delivered: usize,
    /// Connections whose queue overflowed and that are now being disconnected as too slow.
    pub overflowed: usize,
}

struct Group {
    identifier: Arc<str>,
    members: HashMap<u64, Member>,
}

struct Member {
    subscriber: Subscriber,
    /// What the last history replay covered: frames at or below it that arrive late (they
    /// were stored before the read but were still on their way through the pub/sub) are
    /// dropped, until the stream moves past it.
    covered: Option<Box<Covered>>,
    /// Set while the subscription waits for its history (boxed: most members never have
    /// one, and each member costs memory per subscribed connection).
    gate: Option<Box<Gate>>,
}

/// Frames held back by a closed gate.
#[derive(Default)]
struct Gate {
    held: Vec<Held>,
}

/// A stream position a history replay delivered up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// A frame held by a gate, with the stream offset it carries, if any.
struct Held {
    offset: Option<u64>,
    frame: TextFrame,
}

#[derive(Default)]
struct Shard {
    streams: HashMap<Arc<str>, Vec<Group>>,
}

/// Told when a stream gets its first local subscriber and when it loses its last one (the
/// node-to-node pub/sub subscribes to the streams this node needs). Called under the stream's
/// lock, in order for each stream: implementations must not block.
pub trait StreamWatcher: Send + Sync {
    fn stream_added(&self, stream: &Arc<str>);
    fn stream_removed(&self, stream: &str);
}

pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    watcher: Option<Arc<dyn StreamWatcher>>,
}

impl Hub {
    pub fn new(shards: usize) -> Hub {
        Hub {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            watcher: None,
        }
    }

    /// Reports streams coming and going to `watcher`.
    pub fn with_watcher(mut self, watcher: Arc<dyn StreamWatcher>) -> Hub {
        self.watcher = Some(watcher);
        self
    }

    /// Locks `stream` for a sequence of operations that must not interleave with other
    /// broadcasts to it (store-then-fan-out, attach-then-read-history).
    pub fn lock<'a>(&'a self, stream: &'a str) -> StreamLock<'a> {
        StreamLock {
            shard: self.shard(stream),
            stream,
            watcher: self.watcher.as_deref(),
        }
    }

    /// Attaches a connection's subscription (`identifier`) to `stream`. Idempotent.
    pub fn subscribe(&self, stream: &Arc<str>, identifier: &Arc<str>, subscriber: Subscriber) {
        self.lock(stream).attach(stream, identifier, subscriber);
    }

    /// Detaches a connection's subscription from `stream`, dropping empty entries.
    pub fn unsubscribe(&self, stream: &str, identifier: &str, session_id: u64) {
        let mut shard = self.shard(stream);
        let Some(groups) = shard.streams.get_mut(stream) else {
            return;
        };
        if let Some(index) = groups.iter().position(|g| &*g.identifier == identifier) {
            groups[index].members.remove(&session_id);
            if groups[index].members.is_empty() {
                groups.swap_remove(index);
            }
        }
        if groups.is_empty() {
            shard.streams.remove(stream);
            if let Some(watcher) = &self.watcher {
                watcher.stream_removed(stream);
            }
        }
    }

    /// Queues a broadcast to every subscriber of `stream`. Never waits on a client.
    pub fn broadcast(&self, stream: &str, delivery: &Delivery) -> FanOut {
        self.lock(stream).broadcast(delivery)
    }

    /// Attaches a subscription behind a closed gate, or closes the gate of an attached one.
    pub fn hold(&self, stream: &Arc<str>, identifier: &Arc<str>, subscriber: Subscriber) {
        let mut lock = self.lock(stream);
        let member = lock.member(stream, identifier, subscriber);
        member.gate.get_or_insert_with(Default::default);
    }

    /// Opens the gate of a subscription: held frames are queued, except those with an offset
    /// at or below `covered` (the client has them from the history replay); later frames at or
    /// below it are dropped too.
    pub fn release(
        &self,
        stream: &str,
        identifier: &str,
        session_id: u64,
        covered: Option<Covered>,
    ) -> FanOut {
        let mut result = FanOut::default();
        let mut shard = self.shard(stream);
        let member = shard
            .streams
            .get_mut(stream)
            .and_then(|groups| groups.iter_mut().find(|g| &*g.identifier == identifier))
            .and_then(|group| group.members.get_mut(&session_id));
        let Some(member) = member else { return result };
        let Some(gate) = member.gate.take() else {
            return result;
        };
        let covered_offset = covered.as_ref().map(|c| c.offset);
        for Held { offset, frame } in gate.held {
            if offset.is_some_and(|o| covered_offset.is_some_and(|c| o <= c)) {
                continue;
            }
            result.count(member.subscriber.outbox.push(frame));
        }
        member.covered = covered.map(Box::new);
        result
    }

    /// Number of streams with at least one local subscriber.
    pub fn streams_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).streams.len()).sum()
    }

    fn shard(&self, stream: &str) -> MutexGuard<'_, Shard> {
        let mut hasher = DefaultHasher::new();
        stream.hash(&mut hasher);
        lock(&self.shards[hasher.finish() as usize % self.shards.len()])
    }
}

/// Exclusive access to one stream's subscribers (and, as a side effect, to every stream of
/// the same shard: keep the critical section short).
pub struct StreamLock<'a> {
    shard: MutexGuard<'a, Shard>,
    stream: &'a str,
    watcher: Option<&'a dyn StreamWatcher>,
}

impl StreamLock<'_> {
    /// Attaches a subscription; `key` is the locked stream's name as a shared string.
    pub fn attach(&mut self, key: &Arc<str>, identifier: &Arc<str>, subscriber: Subscriber) {
        self.member(key, identifier, subscriber);
    }

    /// The member for a subscription, attached first when it is new.
    fn member(
        &mut self,
        key: &Arc<str>,
        identifier: &Arc<str>,
        subscriber: Subscriber,
    ) -> &mut Member {
        debug_assert_eq!(&**key, self.stream);
        if !self.shard.streams.contains_key(key) {
            if let Some(watcher) = self.watcher {
                watcher.stream_added(key);
            }
        }
        let groups = self.shard.streams.entry(key.clone()).or_default();
        let group = match groups.iter_mut().position(|g| g.identifier == *identifier) {
            Some(index) => &mut groups[index],
            None => {
                groups.push(Group {
                    identifier: identifier.clone(),
                    members: HashMap::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group
            .members
            .entry(subscriber.session_id)
            .or_insert(Member {
                subscriber,
                covered: None,
                gate: None,
            })
    }

    /// Queues a broadcast to every subscriber of the locked stream (held, for gated ones).
    pub fn broadcast(&mut self, delivery: &Delivery) -> FanOut {
        let mut result = FanOut::default();
        let Some(groups) = self.shard.streams.get_mut(self.stream) else {
            return result;
        };
        let offset = delivery.position.map(|p| p.offset);
        for group in groups {
            let frame: TextFrame = broadcast_frame(
                &group.identifier,
                delivery.payload,
                delivery.broadcast_type,
                delivery.position,
            )
            .into();
            for member in group.members.values_mut() {
                let subscriber = &member.subscriber;
                if delivery.exclude_session == Some(subscriber.session_id)
                    || delivery.exclude_sid == Some(&*subscriber.sid)
                {
                    continue;
                }
                if let (Some(covered), Some(position)) = (&member.covered, delivery.position) {
                    if position.epoch == &*covered.epoch && position.offset <= covered.offset {
                        continue;
                    }
                    member.covered = None;
                }
                match &mut member.gate {
                    None => result.count(subscriber.outbox.push(frame.clone())),
                    Some(gate) if gate.held.len() < GATE_CAPACITY => gate.held.push(Held {
                        offset,
                        frame: frame.clone(),
                    }),
                    Some(_) => {
                        member.gate = None;
                        if subscriber
                            .outbox
                            .disconnect(DisconnectReason::TooSlow, true, 1000, "")
                        {
                            result.overflowed += 1;
                        }
                    }
                }
            }
        }
        result
    }
}

impl FanOut {
    fn count(&mut self, pushed: Pushed) {
        match pushed {
            Pushed::Queued => self.delivered += 1,
            Pushed::Overflowed => self.overflowed += 1,
            Pushed::Closed => {}
        }
    }
}

/// Shard updates are single map operations, so a poisoned lock holds consistent data.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Outgoing;
    use std::collections::VecDeque;

    fn subscriber(id: u64, sid: &str, cap: usize) -> Subscriber {
        Subscriber {
            session_id: id,
            sid: sid.into(),
            outbox: Arc::new(Outbox::new(cap)),
        }
    }

    async fn frames(s: &Subscriber) -> Vec<String> {
        let mut batch = VecDeque::new();
        s.outbox.take_batch(&mut batch).await;
        batch
            .into_iter()
            .map(|o| match o {
                Outgoing::Text(t) => t.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn delivery(payload: &Payload) -> Delivery<'_> {
        Delivery {
            payload,
            broadcast_type: None,
            exclude_sid: None,
            exclude_session: None,
            position: None,
        }
    }

    #[tokio::test]
    async fn delivers_once_per_identifier_and_respects_exclusions() {
        let hub = Hub::new(4);
        let stream: Arc<str> = "s".into();
        let (a, b) = (subscriber(1, "a", 0), subscriber(2, "b", 0));
        hub.subscribe(&stream, &"id1".into(), a.clone());
        hub.subscribe(&stream, &"id2".into(), a.clone());
        hub.subscribe(&stream, &"id1".into(), b.clone());
        let payload = Payload::from_data("1");
        assert_eq!(hub.broadcast("s", &delivery(&payload)).delivered, 3);
        assert_eq!(
            hub.broadcast(
                "s",
                &Delivery {
                    exclude_sid: Some("a"),
                    ..delivery(&payload)
                }
            )
            .delivered,
            1
        );
        assert_eq!(frames(&a).await.len(), 2);
        assert_eq!(frames(&b).await.len(), 2);
        assert_eq!(
            hub.broadcast("other", &delivery(&payload)),
            FanOut::default()
        );
    }

    #[test]
    fn unsubscribe_cleans_up_empty_streams() {
        let hub = Hub::new(2);
        let stream: Arc<str> = "s".into();
        hub.subscribe(&stream, &"id".into(), subscriber(1, "a", 0));
        assert_eq!(hub.streams_count(), 1);
        hub.unsubscribe("s", "id", 1);
        assert_eq!(hub.streams_count(), 0);
    }

    #[test]
    fn counts_overflowing_subscribers() {
        let hub = Hub::new(1);
        let stream: Arc<str> = "s".into();
        hub.subscribe(&stream, &"id".into(), subscriber(1, "slow", 8));
        let payload = Payload::from_data("\"0123456789\"");
        assert_eq!(hub.broadcast("s", &delivery(&payload)).delivered, 1);
        assert_eq!(hub.broadcast("s", &delivery(&payload)).overflowed, 1);
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl StreamWatcher for Recorder {
        fn stream_added(&self, stream: &Arc<str>) {
            self.0.lock().unwrap().push(format!("+{stream}"));
        }
        fn stream_removed(&self, stream: &str) {
            self.0.lock().unwrap().push(format!("-{stream}"));
        }
    }

    #[test]
    fn watcher_sees_first_and_last_subscribers_of_a_stream() {
        let recorder = Arc::new(Recorder::default());
        let hub = Hub::new(2).with_watcher(recorder.clone());
        let stream: Arc<str> = "s".into();
        hub.subscribe(&stream, &"id1".into(), subscriber(1, "a", 0));
        hub.subscribe(&stream, &"id2".into(), subscriber(1, "a", 0));
        hub.subscribe(&stream, &"id1".into(), subscriber(2, "b", 0));
        hub.unsubscribe("s", "id1", 1);
        hub.unsubscribe("s", "id2", 1);
        hub.unsubscribe("s", "id1", 2);
        hub.unsubscribe("s", "id1", 2);
        hub.subscribe(&stream, &"id1".into(), subscriber(3, "c", 0));
        assert_eq!(*recorder.0.lock().unwrap(), vec!["+s", "-s", "+s"]);
    }
}

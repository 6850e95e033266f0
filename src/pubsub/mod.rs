//! Node-to-node pub/sub (`--pubsub=redis|nats`, docs/broadcasting.md): publications that reach
//! one node through a single-delivery source (HTTP, `redisx`), remote commands and whispers
//! are published on the pub/sub, and every node delivers what it receives to its own clients.
//!
//! - A stream's messages travel on a channel (Redis) or subject (NATS) named exactly like the
//!   stream. A node subscribes to a stream when its first local client does and unsubscribes
//!   when the last one leaves (the hub reports both, see [`StreamWatcher`]).
//! - Remote commands travel on the control channel (`__anycable_internal__`, TOML
//!   `redis_pubsub.channel` / `nats_pubsub.channel`), which every node subscribes to.
//! - Messages are the publication JSON with the broker's position, when there is one:
//!   `{"stream":..,"data":..,"meta":{..},"offset":n,"epoch":".."}` (empty fields left out).
//! - The publishing node does not deliver locally: its own copy comes back through its
//!   subscription, like everyone else's.
//!
//! A node's subscription to a stream is made in the background, but a client subscribing to a
//! stream waits (up to [`READY_WITHIN`]) until the pub/sub has confirmed it before its
//! subscription is confirmed or its history read ([`Readiness`]): a message published after the
//! client got `confirm_subscription` reaches it, even on a node that had no subscriber of that
//! stream before.

pub mod nats;
pub mod redis;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, Notify};

use crate::hub::StreamWatcher;
use crate::metrics::{Counter, Metrics};
use crate::node::{PubSub, Ready};
use crate::publication::{is_canary, Publication, RemoteCommand};

/// How long a subscribing client waits for the pub/sub to confirm a stream's subscription.
pub const READY_WITHIN: Duration = Duration::from_secs(2);

/// The streams whose pub/sub subscription the server confirmed. Subscriber tasks record
/// confirmations; clients wait for them.
#[derive(Default)]
pub struct Readiness {
    confirmed: Mutex<HashSet<Arc<str>>>,
    changed: Notify,
    /// Set by a subscriber task while its last connection attempt failed, so clients do not
    /// wait [`READY_WITHIN`] each for a confirmation that cannot come.
    offline: AtomicBool,
}

impl Readiness {
    pub(crate) fn confirm(&self, stream: &str) {
        self.lock().insert(stream.into());
        self.changed.notify_waiters();
    }

    pub(crate) fn forget(&self, stream: &str) {
        self.lock().remove(stream);
    }

    /// The connection was lost: nothing is confirmed until the subscriptions are made again.
    pub(crate) fn forget_all(&self) {
        self.lock().clear();
    }

    /// Records whether the subscriber is connected; going offline wakes every waiter.
    pub(crate) fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Relaxed);
        if offline {
            self.changed.notify_waiters();
        }
    }

    pub async fn wait(&self, stream: &str, limit: Duration) -> Ready {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.lock().contains(stream) {
                return Ready::Confirmed;
            }
            if self.offline.load(Ordering::Relaxed) {
                return Ready::Offline;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ready::TimedOut;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Arc<str>>> {
        self.confirmed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A change in the set of streams this node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamChange {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
}

/// Turns the hub's stream events into [`StreamChange`]s for the subscriber task.
pub struct ChannelWatcher(mpsc::UnboundedSender<StreamChange>);

impl ChannelWatcher {
    /// Subscribes this node to its readiness canary stream for as long as it runs (clients
    /// cannot add or remove that subscription: see [`StreamWatcher`] below).
    pub fn follow_canaries(&self, stream: &str) {
        let _ = self.0.send(StreamChange::Subscribe(stream.into()));
    }
}

/// Canary streams are left out: a client that names one must not unsubscribe the node from
/// its own canaries when it leaves.
impl StreamWatcher for ChannelWatcher {
    fn stream_added(&self, stream: &Arc<str>) {
        if !is_canary(stream) {
            let _ = self.0.send(StreamChange::Subscribe(stream.clone()));
        }
    }

    fn stream_removed(&self, stream: &str) {
        if !is_canary(stream) {
            let _ = self.0.send(StreamChange::Unsubscribe(stream.into()));
        }
    }
}

/// A watcher for the hub and the receiving end for the subscriber task.
pub fn watcher() -> (Arc<ChannelWatcher>, mpsc::UnboundedReceiver<StreamChange>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(ChannelWatcher(tx)), rx)
}

/// One message to publish: channel (subject) and body.
pub type Outgoing = (Arc<str>, String);

/// Messages waiting for the publisher task. The queue only fills when Redis or NATS takes
/// messages slower than they come for a long while (a publisher writes up to 512 per round
/// trip); then newer messages are dropped ("drop newest": what is queued keeps its order) and
/// counted in `pubsub_dropped_total`, instead of memory growing without bound.
pub const QUEUE_CAPACITY: usize = 65_536;

/// The [`PubSub`] handle: queues messages for the publisher task of either implementation,
/// and shares the subscriber task's [`Readiness`].
pub struct Queue {
    tx: mpsc::Sender<Outgoing>,
    control: Arc<str>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

impl Queue {
    pub(crate) fn new(
        control: &str,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Queue, mpsc::Receiver<Outgoing>, Arc<Readiness>) {
        let (tx, rx) = mpsc::channel(capacity);
        let readiness = Arc::new(Readiness::default());
        let queue = Queue {
            tx,
            control: control.into(),
            readiness: readiness.clone(),
            metrics,
        };
        (queue, rx, readiness)
    }

    fn enqueue(&self, message: Outgoing) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(message) {
            // Counted, not logged per message: a full queue means thousands of them.
            self.metrics.inc(Counter::PubSubDropped);
        }
    }
}

impl PubSub for Queue {
    fn publish(&self, publication: &Publication) {
        match serde_json::to_string(publication) {
            Ok(body) => self.enqueue((publication.stream.as_str().into(), body)),
            Err(error) => {
                tracing::warn!(context = "pubsub", "cannot encode a publication: {error}")
            }
        }
    }

    fn publish_command(&self, command: &RemoteCommand) {
        self.enqueue((self.control.clone(), command.to_json()));
    }

    fn subscribed<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Ready> {
        Box::pin(self.readiness.wait(stream, READY_WITHIN))
    }
}

/// Keeps at most one pending change per stream, in order: the latest wins.
pub(crate) fn apply_change(
    streams: &mut std::collections::HashSet<Arc<str>>,
    change: &StreamChange,
) -> bool {
    match change {
        StreamChange::Subscribe(stream) => streams.insert(stream.clone()),
        StreamChange::Unsubscribe(stream) => streams.remove(stream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publication::PublicationMeta;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(crate::metrics::Registration::default()))
    }

    #[test]
    fn queue_encodes_messages_for_their_channels() {
        let (queue, mut rx, _) = Queue::new("__control__", 8, metrics());
        queue.publish(&Publication {
            stream: "s".into(),
            data: "1".into(),
            meta: PublicationMeta::default(),
            offset: Some(1),
            epoch: Some("ep".into()),
        });
        queue.publish_command(&RemoteCommand::Disconnect {
            identifiers: "u".into(),
            reconnect: false,
        });
        let (channel, body) = rx.try_recv().unwrap();
        assert_eq!(
            (&*channel, body.as_str()),
            ("s", r#"{"stream":"s","data":"1","offset":1,"epoch":"ep"}"#)
        );
        let (channel, body) = rx.try_recv().unwrap();
        assert_eq!(&*channel, "__control__");
        assert!(body.contains(r#""command":"disconnect""#), "{body}");
    }

    #[test]
    fn a_full_queue_drops_the_newest_and_counts_them() {
        let metrics = metrics();
        let (queue, mut rx, _) = Queue::new("__control__", 2, metrics.clone());
        for n in 0..5 {
            queue.publish_command(&RemoteCommand::Other(format!("c{n}")));
        }
        assert_eq!(metrics.get(Counter::PubSubDropped), 3);
        assert!(rx.try_recv().unwrap().1.contains("c0"));
        assert!(rx.try_recv().unwrap().1.contains("c1"));
        assert!(rx.try_recv().is_err());
        queue.publish_command(&RemoteCommand::Other("c5".into()));
        assert!(
            rx.try_recv().unwrap().1.contains("c5"),
            "room again once drained"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_waits_for_a_confirmation_or_gives_up() {
        let readiness = Arc::new(Readiness::default());
        assert_eq!(
            readiness.wait("s", Duration::from_secs(1)).await,
            Ready::TimedOut
        );
        let waiting = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.wait("s", Duration::from_secs(1)).await }
        });
        tokio::task::yield_now().await;
        readiness.confirm("other");
        readiness.confirm("s");
        assert_eq!(waiting.await.unwrap(), Ready::Confirmed);
        readiness.forget_all();
        assert_eq!(
            readiness.wait("s", Duration::from_millis(10)).await,
            Ready::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_offline_subscriber_releases_waiters_at_once() {
        let readiness = Arc::new(Readiness::default());
        let waiting = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.wait("s", Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        readiness.set_offline(true);
        assert_eq!(waiting.await.unwrap(), Ready::Offline);
        assert_eq!(started.elapsed(), Duration::ZERO);
        readiness.set_offline(false);
        readiness.confirm("s");
        assert_eq!(
            readiness.wait("s", Duration::from_secs(1)).await,
            Ready::Confirmed
        );
    }

    #[test]
    fn watcher_forwards_hub_events() {
        let (watcher, mut rx) = watcher();
        watcher.stream_added(&"a".into());
        watcher.stream_removed("a");
        assert_eq!(rx.try_recv().unwrap(), StreamChange::Subscribe("a".into()));
        assert_eq!(
            rx.try_recv().unwrap(),
            StreamChange::Unsubscribe("a".into())
        );
    }
}

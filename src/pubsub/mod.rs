//! Node-to-node pub/sub (`--pubsub=redis|nats`, broadcasting.md §8): publications that reach
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
//! As in the reference, a subscription is made asynchronously: a message published at the
//! same moment a node's first client subscribes to that stream may miss that node.

pub mod nats;
pub mod redis;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::broadcast::{Publication, RemoteCommand};
use crate::hub::StreamWatcher;

/// What the node hands to the pub/sub. Never waits: messages are queued for a publisher task.
pub trait PubSub: Send + Sync {
    /// Sends a (registered) publication to every node subscribed to its stream.
    fn publish(&self, publication: &Publication);
    /// Sends a remote command to every node.
    fn publish_command(&self, command: &RemoteCommand);
}

/// A change in the set of streams this node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamChange {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
}

/// Turns the hub's stream events into [`StreamChange`]s for the subscriber task.
pub struct ChannelWatcher(mpsc::UnboundedSender<StreamChange>);

impl StreamWatcher for ChannelWatcher {
    fn stream_added(&self, stream: &Arc<str>) {
        let _ = self.0.send(StreamChange::Subscribe(stream.clone()));
    }

    fn stream_removed(&self, stream: &str) {
        let _ = self.0.send(StreamChange::Unsubscribe(stream.into()));
    }
}

/// A watcher for the hub and the receiving end for the subscriber task.
pub fn watcher() -> (Arc<ChannelWatcher>, mpsc::UnboundedReceiver<StreamChange>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(ChannelWatcher(tx)), rx)
}

/// One message to publish: channel (subject) and body.
pub(crate) type Outgoing = (Arc<str>, String);

/// The [`PubSub`] handle: queues messages for the publisher task of either implementation.
pub struct Queue {
    tx: mpsc::UnboundedSender<Outgoing>,
    control: Arc<str>,
}

impl Queue {
    pub(crate) fn new(control: &str) -> (Queue, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Queue {
                tx,
                control: control.into(),
            },
            rx,
        )
    }
}

impl PubSub for Queue {
    fn publish(&self, publication: &Publication) {
        match serde_json::to_string(publication) {
            Ok(body) => {
                let _ = self.tx.send((publication.stream.as_str().into(), body));
            }
            Err(error) => {
                tracing::warn!(context = "pubsub", "cannot encode a publication: {error}")
            }
        }
    }

    fn publish_command(&self, command: &RemoteCommand) {
        let _ = self.tx.send((self.control.clone(), command.to_json()));
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
    use crate::broadcast::PublicationMeta;

    #[test]
    fn queue_encodes_messages_for_their_channels() {
        let (queue, mut rx) = Queue::new("__control__");
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

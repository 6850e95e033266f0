//! The traits the node is driven through and publishes through. They live here, with their
//! consumer, so that the sources of publications (broadcasters, the pub/sub) and the pub/sub
//! implementations depend on the node and never the other way round.

use futures_util::future::BoxFuture;

use crate::broker::StoreError;
use crate::metrics::Metrics;
use crate::publication::{Inbound, Publication, RemoteCommand};

/// What every source of publications hands them to (implemented by [`super::Node`]).
pub trait PublicationHandler: Send + Sync {
    /// A message of a single-delivery source (HTTP, `redisx`, the REST API): each publication
    /// is registered with the broker, then delivered here or published on the pub/sub.
    /// `Err` when the broker could not store a publication: it and the rest of a batch were
    /// not delivered (the source answers 501 or leaves the message pending); what came
    /// before it was.
    fn publish(&self, inbound: Inbound) -> BoxFuture<'_, Result<(), StoreError>>;
    /// A message of a fan-out source (the `redis` and `nats` broadcasters, other nodes on the
    /// pub/sub): delivered to this node's clients as it is, with whatever position it
    /// carries. Never fails; never waits.
    fn publish_local(&self, inbound: Inbound);
    /// The counters sources update (failed parses, reconnections).
    fn metrics(&self) -> &Metrics;
}

/// What the node hands to node-to-node pub/sub (`--pubsub`). Never waits: implementations
/// queue messages for a publisher task. Messages are best effort: one that cannot be sent is
/// dropped or delivered to this node only, never retried later out of order.
pub trait PubSub: Send + Sync {
    /// Sends a (registered) publication to every node subscribed to its stream, this one
    /// included: the publishing node does not deliver it itself.
    fn publish(&self, publication: &Publication);
    /// Sends a remote command to every node, this one included.
    fn publish_command(&self, command: &RemoteCommand);
    /// Resolves once this node receives what is published on `stream` from now on, or when
    /// that did not happen in time, or at once when the pub/sub server is known to be away
    /// (there is nothing to wait for).
    fn subscribed<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Ready>;
}

/// The outcome of waiting for a stream's pub/sub subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Confirmed,
    TimedOut,
    /// The subscriber has no connection to the pub/sub server.
    Offline,
}

impl PublicationHandler for super::Node {
    fn publish(&self, inbound: Inbound) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(super::Node::publish(self, inbound))
    }

    fn publish_local(&self, inbound: Inbound) {
        super::Node::publish_local(self, inbound)
    }

    fn metrics(&self) -> &Metrics {
        super::Node::metrics(self)
    }
}

/// Where the node hands readiness canaries that came back (implemented by
/// `readiness::Status`): a publication on a canary stream (`publication::is_canary`), from any
/// source, goes here and nowhere else.
pub trait CanaryInbox: Send + Sync {
    /// `stream` names the node that sent the canary; `data` says which check it belongs to.
    fn returned(&self, stream: &str, data: &str);
}

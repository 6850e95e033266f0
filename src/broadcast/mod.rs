//! Broadcasters: the sources of publications (HTTP, Redis Pub/Sub, Redis Streams, NATS). Each
//! parses what publishers send with [`crate::publication::parse`] and hands it to the node.

pub mod broadcaster;
pub mod http;
pub mod nats;
pub mod redis;
pub mod redisx;

use crate::publication::parse;

/// Applies a message of a fan-out source (the `redis` and `nats` broadcasters): parsed and
/// delivered to this node's clients only, without the broker. Garbage is counted and dropped.
pub fn apply_fan_out(
    node: &dyn crate::node::PublicationHandler,
    body: &[u8],
    provider: &'static str,
) {
    match parse(body) {
        Ok(inbound) => node.publish_local(inbound),
        Err(error) => {
            node.metrics()
                .inc(crate::metrics::Counter::FailedBroadcastMsg);
            tracing::warn!(
                context = "broadcast",
                provider,
                "failed to parse pubsub message: {error}"
            );
        }
    }
}

//! NATS node-to-node pub/sub: the control subject plus one subject per locally needed stream
//! (the subject is the stream name, so `.`, `*` and `>` keep their NATS meaning, as in the
//! reference). The client reconnects by itself (`nats.max_reconnect_attempts`) and buffers
//! publications while disconnected; a stream name that is not a valid subject is logged and
//! skipped.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Outgoing, Readiness, StreamChange};
use crate::clients::nats::NatsOptions;
use crate::metrics::Counter;
use crate::node::PublicationHandler;
use crate::publication::parse;

/// Runs the NATS pub/sub until `shutdown`.
pub async fn run(
    node: Arc<dyn PublicationHandler>,
    options: NatsOptions,
    control: String,
    mut changes: mpsc::UnboundedReceiver<StreamChange>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) {
    let client = tokio::select! {
        _ = shutdown.cancelled() => return,
        client = options.connect("pubsub") => client,
    };
    let client = match client {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(context = "pubsub", "failed to connect to NATS: {error}");
            return;
        }
    };
    let mut subscriptions: HashMap<Arc<str>, CancellationToken> = HashMap::new();
    subscribe(&client, &node, control.as_str().into(), &shutdown).await;
    let mut echo = Echo::new(&client).await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            change = changes.recv() => match change {
                Some(StreamChange::Subscribe(stream)) => {
                    if let Entry::Vacant(slot) = subscriptions.entry(stream.clone()) {
                        if let Some(token) = subscribe(&client, &node, stream.clone(), &shutdown).await {
                            slot.insert(token);
                            if echo.round_trip(&client).await {
                                readiness.confirm(&stream);
                            }
                        }
                    }
                }
                Some(StreamChange::Unsubscribe(stream)) => {
                    readiness.forget(&stream);
                    if let Some(token) = subscriptions.remove(&stream) {
                        token.cancel();
                    }
                }
                None => break,
            },
            message = outgoing.recv() => match message {
                Some((subject, body)) => {
                    if let Err(error) = client.publish(subject.to_string(), body.into()).await {
                        tracing::warn!(context = "pubsub", "failed to publish to {subject}: {error}");
                    }
                }
                None => break,
            },
        }
    }
    let _ = client.flush().await;
}

/// A subject of this connection's own: when a message published on it comes back, the
/// server has processed every command this connection sent before it (a subscription made
/// just before is in place). A flush only proves that the bytes were written.
struct Echo {
    subject: String,
    subscriber: Option<async_nats::Subscriber>,
}

impl Echo {
    async fn new(client: &async_nats::Client) -> Echo {
        let subject = client.new_inbox();
        let subscriber = client.subscribe(subject.clone()).await.ok();
        Echo {
            subject,
            subscriber,
        }
    }

    async fn round_trip(&mut self, client: &async_nats::Client) -> bool {
        let Some(subscriber) = self.subscriber.as_mut() else {
            return false;
        };
        if client
            .publish(self.subject.clone(), bytes::Bytes::new())
            .await
            .is_err()
        {
            return false;
        }
        let echoed = tokio::time::timeout(super::READY_WITHIN, subscriber.next()).await;
        matches!(echoed, Ok(Some(_)))
    }
}

/// Subscribes to `subject` and forwards its messages to the node in a task of their own,
/// until the returned token (or `shutdown`) is cancelled.
async fn subscribe(
    client: &async_nats::Client,
    node: &Arc<dyn PublicationHandler>,
    subject: Arc<str>,
    shutdown: &CancellationToken,
) -> Option<CancellationToken> {
    let mut subscriber = match client.subscribe(subject.to_string()).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::warn!(context = "pubsub", "cannot subscribe to {subject}: {error}");
            return None;
        }
    };
    let token = shutdown.child_token();
    let stop = token.clone();
    let node = node.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                message = subscriber.next() => match message {
                    Some(message) => match parse(&message.payload) {
                        Ok(inbound) => node.publish_local(inbound),
                        Err(error) => {
                            node.metrics().inc(Counter::FailedBroadcastMsg);
                            tracing::warn!(context = "pubsub", provider = "nats", "failed to parse pubsub message: {error}");
                        }
                    },
                    None => break,
                },
            }
        }
        let _ = subscriber.unsubscribe().await;
    });
    Some(token)
}

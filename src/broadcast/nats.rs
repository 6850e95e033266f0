//! The `nats` broadcaster (legacy fan-out): subscribes to the subject `--nats_channel` on
//! `--nats_servers`; every node receives every message and delivers it to its own clients,
//! without the broker (docs/broadcasting.md).
//!
//! Publisher side: `nats pub __anycable__ '{"stream":"chat","data":"{\"text\":\"hi\"}"}'`.
//!
//! The client connects in the background (the server starts even when NATS is down) and
//! reconnects every 2 seconds for as long as the server runs (`nats.max_reconnect_attempts`,
//! TOML, default 0 = never give up; the reference's nats.go default is 5). With a positive
//! limit the broadcaster stops with an error in the log once it is reached; the server keeps
//! running (the reference has no fatal handler for NATS either).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::apply_fan_out;
use super::broadcaster::{BroadcastError, Broadcaster};
use crate::clients::nats::NatsOptions;
use crate::node::PublicationHandler;

pub struct NatsBroadcaster {
    node: Arc<dyn PublicationHandler>,
    options: NatsOptions,
    subject: String,
}

impl NatsBroadcaster {
    pub fn new(
        node: Arc<dyn PublicationHandler>,
        options: NatsOptions,
        subject: String,
    ) -> NatsBroadcaster {
        NatsBroadcaster {
            node,
            options,
            subject,
        }
    }

    /// Receives and delivers until `shutdown`; `Err` when the client gives up reconnecting
    /// (the server goes on).
    async fn receive_until(self, shutdown: CancellationToken) -> Result<(), BroadcastError> {
        let client = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            client = self.options.connect("broadcast") => client,
        };
        let client = client.map_err(BroadcastError::NatsConnect)?;
        tracing::info!(
            context = "broadcast",
            provider = "nats",
            channel = %self.subject,
            "subscribing for broadcasts"
        );
        let mut subscription = client
            .subscribe(self.subject.clone())
            .await
            .map_err(|source| BroadcastError::NatsSubscribe {
                subject: self.subject.clone(),
                source,
            })?;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                message = subscription.next() => match message {
                    Some(message) => apply_fan_out(&*self.node, &message.payload, "nats"),
                    None => return Err(BroadcastError::NatsSubscriptionEnded),
                },
            }
        }
        let _ = subscription.unsubscribe().await;
        let _ = client.drain().await;
        Ok(())
    }
}

impl Broadcaster for NatsBroadcaster {
    fn provider(&self) -> &'static str {
        "nats"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), BroadcastError>> {
        Box::pin(self.receive_until(shutdown))
    }
}

//! The `nats` broadcaster (legacy fan-out): subscribes to the subject `--nats_channel` on
//! `--nats_servers`; every node receives every message and delivers it to its own clients,
//! without the broker (docs/broadcasting.md).
//!
//! Publisher side: `nats pub __anycable__ '{"stream":"chat","data":"{\"text\":\"hi\"}"}'`.
//!
//! The client connects in the background (the server starts even when NATS is down) and
//! reconnects every 2 seconds, up to `nats.max_reconnect_attempts` (TOML, default 5)
//! consecutive attempts, like nats.go's defaults in the reference. After that the broadcaster
//! stops with an error in the log; the server keeps running (the reference has no fatal
//! handler for NATS either).

use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerAddr};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::apply_fan_out;
use super::broadcaster::{BroadcastError, Broadcaster};
use crate::config::NatsConfig;
use crate::metrics::{Counter, Metrics};
use crate::node::PublicationHandler;

/// Delay between reconnection attempts (nats.go's `ReconnectWait`).
const RECONNECT_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("invalid NATS server address {address:?}: {reason}")]
pub struct NatsAddressError {
    address: String,
    reason: String,
}

/// Parsed `--nats_servers` and the client options shared by the broadcaster and the
/// NATS pub/sub.
#[derive(Clone)]
pub struct NatsOptions {
    pub servers: Vec<ServerAddr>,
    pub dont_randomize: bool,
    pub max_reconnects: usize,
    /// Where lost connections are counted (`service_reconnects_total`).
    pub metrics: Option<Arc<Metrics>>,
}

impl NatsOptions {
    pub fn from_config(config: &NatsConfig) -> Result<NatsOptions, NatsAddressError> {
        let servers = config
            .servers
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ServerAddr>().map_err(|e| NatsAddressError {
                    address: s.to_string(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(NatsAddressError {
                address: String::new(),
                reason: "no server given".into(),
            });
        }
        Ok(NatsOptions {
            servers,
            dont_randomize: config.dont_randomize_servers,
            max_reconnects: config.max_reconnect_attempts as usize,
            metrics: None,
        })
    }

    /// Counts lost connections in `metrics`.
    pub fn counting(mut self, metrics: Arc<Metrics>) -> NatsOptions {
        self.metrics = Some(metrics);
        self
    }

    /// The server list as given, for logs.
    pub fn description(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.as_url_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts a client that connects in the background; `component` names it in logs.
    pub async fn connect(
        &self,
        component: &'static str,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        let metrics = self.metrics.clone();
        let mut options = ConnectOptions::new()
            .name(format!("anycable-rs {component}"))
            .retry_on_initial_connect()
            .max_reconnects(self.max_reconnects.max(1))
            .reconnect_delay_callback(|attempt| {
                if attempt <= 1 {
                    Duration::ZERO
                } else {
                    RECONNECT_WAIT
                }
            })
            .event_callback(move |event| {
                let metrics = metrics.clone();
                async move {
                    match event {
                        Event::Connected => {
                            tracing::debug!(context = component, "connected to NATS")
                        }
                        Event::Disconnected => {
                            if let Some(metrics) = &metrics {
                                metrics.inc(Counter::ServiceReconnects);
                            }
                            tracing::warn!(context = component, "disconnected from NATS")
                        }
                        Event::Closed => tracing::error!(
                            context = component,
                            "NATS connection closed: reconnect attempts exceeded"
                        ),
                        other => tracing::debug!(context = component, "NATS: {other}"),
                    }
                }
            });
        if self.dont_randomize {
            options = options.retain_servers_order();
        }
        // Used when the URL says `tls://` or the server asks for TLS: the same trust as every
        // other outgoing TLS connection (the system's store and the bundled roots).
        match crate::trust::client_config(crate::trust::default_roots()) {
            Ok(tls) => options = options.tls_client_config(tls),
            Err(error) => tracing::warn!(context = component, "NATS TLS setup: {error}"),
        }
        options.connect(self.servers.clone()).await
    }
}

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

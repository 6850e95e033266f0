//! The NATS client options shared by every NATS user (the `nats` broadcaster, NATS pub/sub, the
//! NATS broker): parsed `--nats_servers`, reconnection, TLS trust, and the events counted in
//! the metrics.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerAddr};

use crate::config::NatsConfig;
use crate::metrics::{Counter, Metrics};

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
            // 0 (the default here; the reference's is 5): never give up, as the Redis
            // connections do (clients::reconnect). async-nats reads 0 as "no limit".
            .max_reconnects(self.max_reconnects)
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

//! What every start stage gets besides its own config section (vector's
//! `SourceConfig::build(cx)`): where its tasks run and when they stop, the metrics, and how a
//! failure stops the whole server.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broadcast::broadcaster::BroadcastError;
use crate::config::{BroadcastAdapter, Config, PubSubAdapter, RpcImpl};
use crate::metrics::{Metrics, Registration};
use crate::readiness::Check;

/// Tasks that are told to stop together and then awaited: one step of the shutdown order
/// (see `shutdown.rs`).
#[derive(Clone, Default)]
pub(super) struct Scope {
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// A component failure that stopped the whole server (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The `redis` broadcaster after an explicit number of reconnect attempts, as in the
    /// reference.
    #[error(transparent)]
    Broadcast(BroadcastError),
    /// The Redis pub/sub subscriber after an explicit number of reconnect attempts.
    #[error("{0}")]
    PubSub(&'static str),
}

/// Raised by a failing component; the first failure is the one reported.
#[derive(Clone, Default)]
pub(super) struct Fatal {
    pub token: CancellationToken,
    reason: Arc<Mutex<Option<Failure>>>,
}

impl Fatal {
    pub fn raise(&self, failure: Failure) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(failure);
        self.token.cancel();
    }

    /// The failure raised first (taken: it is reported once).
    pub fn take(&self) -> Option<Failure> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The start context. A component spawns into the scope of the shutdown step it belongs to.
pub(super) struct StartContext {
    pub metrics: Arc<Metrics>,
    /// Listeners, connections and what serves them (metrics writers, the disconnect queue, the
    /// memory broker's sweeper): stopped first.
    pub connections: Scope,
    /// Broadcasters and the distributed brokers' tasks: stopped once every connection is closed
    /// (order and reasons in `shutdown.rs`).
    pub background: Scope,
    /// Node-to-node pub/sub: stopped last.
    pub pubsub: Scope,
    pub fatal: Fatal,
}

impl StartContext {
    /// The metrics registry registers only what this configuration can report.
    pub fn new(config: &Config) -> StartContext {
        let rpc = config.rpc_impl();
        let checks = Check::configured(config);
        let metrics = Arc::new(Metrics::new(Registration {
            rpc: rpc != RpcImpl::None,
            sse: config.sse.enabled,
            grpc: rpc == RpcImpl::Grpc,
            distributed_broker: config.broker.adapter.is_distributed(),
            services: config.broker.adapter.is_distributed()
                || matches!(
                    config.pubsub_adapter,
                    PubSubAdapter::Redis | PubSubAdapter::Nats
                )
                || config
                    .broadcast_adapters
                    .iter()
                    .any(|a| *a != BroadcastAdapter::Http),
            readiness: Check::ALL.map(|check| checks.contains(&check)),
        }));
        StartContext {
            metrics,
            connections: Scope::default(),
            background: Scope::default(),
            pubsub: Scope::default(),
            fatal: Fatal::default(),
        }
    }
}

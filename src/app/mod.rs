//! The binary's wiring: builds every component from its own config section and a start
//! context, in the order of [`start`]'s stages, and shuts them down in the order written in
//! `shutdown.rs`.

mod context;
mod listeners;
mod readiness;
mod services;
mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Choice, Config, RpcImpl};
use crate::hub::Hub;
use crate::identity::Authenticator;
use crate::node::{CanaryInbox, Node, Parts, PubSub};
use crate::rpc::SetupError;
use crate::server::{tls, ServerError};
use crate::streams::StreamsRouter;
pub use context::Failure;
use context::{Fatal, Scope, StartContext};
use listeners::Listeners;
use services::PubSubSetup;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("--ssl_cert and --ssl_key must be given together")]
    HalfTls,
    #[error(transparent)]
    RedisSettings(#[from] crate::clients::redis::RedisError),
    #[error(transparent)]
    NatsSettings(#[from] crate::clients::nats::NatsAddressError),
    #[error(transparent)]
    Rpc(#[from] SetupError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::SetupError),
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
}

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    NatsAddress(crate::clients::nats::NatsAddressError),
    #[error(transparent)]
    Nats(crate::broker::nats::StartError),
    #[error(transparent)]
    RedisUrl(crate::clients::redis::RedisError),
    #[error(transparent)]
    Redis(crate::broker::redis::StartError),
}

/// A started server.
pub struct Running {
    pub node: Arc<Node>,
    pub main_addr: Option<SocketAddr>,
    connections: Scope,
    background: Scope,
    pubsub: Scope,
    fatal: Fatal,
}

/// Builds everything and starts listening. Fails (and nothing keeps running) when a listener
/// cannot be bound, TLS files are unusable or a component's settings are invalid.
///
/// The stages, in order (each logs what it starts; operators and tests read these lines in
/// this order):
/// 1. authentication and channels (JWT, `--noauth`, the channels router);
/// 2. metrics writers (`--metrics_log`, StatsD);
/// 3. the broker (reliable streams);
/// 4. the backend (RPC client and disconnect queue);
/// 5. the node, with the hub and the memory broker's sweeper and the stats sampler;
/// 6. TLS and the main listener (WebSocket, SSE, health);
/// 7. the HTTP broadcast endpoint;
/// 8. node-to-node pub/sub;
/// 9. the other broadcasters (`redis`, `redisx`, `nats`), then the readiness checks (they
///    send canaries through them);
/// 10. the Prometheus endpoint and 11. the REST API, on their listeners;
/// 12. serving every listener.
pub async fn start(config: &Config) -> Result<Running, AppError> {
    let cx = StartContext::new(config);
    let scope = &cx.connections;

    // 1.
    let router = StreamsRouter::new(&config.streams);
    let auth = Authenticator::new(
        config.jwt.secret.as_deref(),
        config.jwt.enforce,
        config.noauth,
    );
    let jwt_enabled = auth.jwt_enabled();
    log_auth_and_channels(config, jwt_enabled, &router);
    // 2.
    crate::metrics::spawn_writers(
        &config.metrics,
        cx.metrics.clone(),
        &scope.shutdown,
        &scope.tracker,
    )?;
    // 3., 4.
    let (broker, memory_broker) = services::start_broker(config, &cx).await?;
    let backend = services::start_backend(config, &cx)?;
    // 5. (the pub/sub's queue first: the node publishes through it)
    let pubsub_setup = PubSubSetup::new(config, &cx.metrics);
    let readiness = readiness::status(config, &cx.metrics);
    let checked = readiness::Checked {
        pubsub: pubsub_setup
            .as_ref()
            .map(|setup| setup.queue.clone() as Arc<dyn PubSub>),
        broker: broker.history.clone().filter(|_| memory_broker.is_none()),
        rpc: backend.rpc,
    };
    if let (Some(setup), Some(status)) = (&pubsub_setup, &readiness) {
        setup.watcher.follow_canaries(status.canary_stream());
    }
    let mut hub = Hub::new(config.app.hub_gopool_size);
    if let Some(setup) = &pubsub_setup {
        hub = hub.with_watcher(setup.watcher.clone());
    }
    let node = Arc::new(Node::new(Parts {
        hub,
        router,
        auth,
        broker,
        backend: backend.controller,
        sessions_cache: config.broker.sessions_ttl_secs > 0,
        max_subscriptions: config.app.max_subscriptions_per_connection,
        metrics: cx.metrics.clone(),
        pubsub: checked.pubsub.clone(),
        canaries: readiness
            .clone()
            .map(|status| status as Arc<dyn CanaryInbox>),
    }));
    if let Some(memory_broker) = memory_broker {
        services::spawn_sweeper(memory_broker, node.clone(), scope);
    }
    let sampled = node.clone();
    crate::metrics::spawn_refresh(
        cx.metrics.clone(),
        Duration::from_secs(config.metrics.stats_refresh_interval_secs),
        move || sampled.gauges(),
        &scope.shutdown,
        &scope.tracker,
    );
    // 6., 7.
    let mut listeners =
        Listeners::bind_main(config, &node, jwt_enabled, readiness.clone(), &cx).await?;
    let main_addr = listeners.main_addr();
    listeners.mount_http_broadcast(config, &node).await?;
    // 8., 9.
    if let Some(setup) = pubsub_setup {
        services::start_pubsub(config, &node, setup, &cx)?;
    }
    services::start_broadcasters(config, &node, &cx)?;
    if let Some(status) = readiness {
        readiness::start(config, status, checked, &cx)?;
    }
    // 10., 11., 12.
    listeners.mount_metrics(config, &cx.metrics).await?;
    listeners.mount_api(config, &node).await?;
    listeners.serve(config, &cx);
    Ok(Running {
        node,
        main_addr,
        connections: cx.connections,
        background: cx.background,
        pubsub: cx.pubsub,
        fatal: cx.fatal,
    })
}

fn log_auth_and_channels(config: &Config, jwt_enabled: bool, router: &StreamsRouter) {
    if config.app.shutdown_pool_size != crate::config::AppConfig::default().shutdown_pool_size {
        tracing::warn!("--shutdown_pool_size has no effect: every connection closes itself concurrently on shutdown");
    }
    if config.public {
        tracing::warn!("Server is running in the public mode");
    }
    if jwt_enabled {
        tracing::info!(
            "JWT authentication is enabled (param: {}, enforced: {})",
            config.jwt.param,
            config.jwt.enforce
        );
    }
    if config.noauth {
        tracing::info!("connection authentication is disabled");
    }
    if !jwt_enabled && !config.noauth && config.rpc_impl() == RpcImpl::None {
        tracing::warn!("no authentication method is available (no JWT secret, no --noauth, --norpc): every connection will be rejected");
    }
    tracing::info!(
        "Using channels router: {}",
        router.channel_names().join(", ")
    );
    let adapters: Vec<&str> = config
        .broadcast_adapters
        .iter()
        .map(|a| a.as_str())
        .collect();
    let adapters = adapters.join(", ");
    tracing::info!(context = "broadcast", "Broadcasting adapters: {adapters}");
}

//! Wiring: builds the node and its endpoints from the config, binds the listeners, and runs
//! the graceful shutdown sequence.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiEndpoint;
use crate::broadcast::http::HttpBroadcaster;
use crate::broadcast::nats::{NatsBroadcaster, NatsOptions};
use crate::broadcast::redis::RedisBroadcaster;
use crate::broadcast::redisx::RedisXBroadcaster;
use crate::broadcast::resp::RedisOptions;
use crate::broker::nats::NatsBroker;
use crate::broker::redis::RedisBroker;
use crate::broker::{Broker, MemoryBroker, Retention};
use crate::config::{BroadcastAdapter, BrokerAdapter, Choice, Config, PubSubAdapter, RpcImpl};
use crate::hub::Hub;
use crate::identity::Authenticator;
use crate::metrics::{Exporter, Metrics, Registration};
use crate::node::{Backend, Node, Parts};
use crate::pubsub::{self, StreamChange};
use crate::rpc::disconnector::Disconnector;
use crate::rpc::{Rpc, SetupError};
use crate::server::{tls, Listener, PathPattern, Routes, ServerError};
use crate::streams::StreamsRouter;
use crate::transport::live::LiveOutboxes;
use crate::transport::sse::SseEndpoint;
use crate::transport::ws::WsEndpoint;
use crate::transport::{AllowedOrigins, EnvBuilder};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("--ssl_cert and --ssl_key must be given together")]
    HalfTls,
    #[error("{0}")]
    Broadcast(String),
    #[error(transparent)]
    Rpc(#[from] SetupError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::SetupError),
    #[error("broker: {0}")]
    Broker(String),
}

/// A component failure that stops the whole server with exit status 1 (the `redis`
/// broadcaster after its reconnect attempts, as in the reference).
#[derive(Clone, Default)]
struct Fatal {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Fatal {
    fn raise(&self, reason: String) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason);
        self.token.cancel();
    }

    fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// Background components that outlive the connections on shutdown (broadcasters, pub/sub):
/// stopped by their own token once every connection is closed (operations.md §4).
#[derive(Clone, Default)]
struct Background {
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// A started server.
pub struct Running {
    pub node: Arc<Node>,
    pub main_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    fatal: Fatal,
    background: Background,
    pubsub: Background,
}

/// Builds everything and starts listening. Fails (and nothing keeps running) when a listener
/// cannot be bound or TLS files are unusable.
pub async fn start(config: &Config) -> Result<Running, AppError> {
    let metrics = Arc::new(Metrics::new(Registration {
        rpc: config.rpc_impl() != RpcImpl::None,
        sse: config.sse.enabled,
        grpc: config.rpc_impl() == RpcImpl::Grpc,
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
    }));
    let router = StreamsRouter::new(&config.streams);
    let auth = Authenticator::new(
        config.jwt.secret.as_deref(),
        config.jwt.enforce,
        config.noauth,
    );
    let jwt_enabled = auth.jwt_enabled();
    log_auth_and_channels(config, jwt_enabled, &router);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    crate::metrics::spawn_writers(&config.metrics, metrics.clone(), &shutdown, &tracker)?;
    let background = Background::default();
    let (broker, memory_broker) = start_broker(config, &background, &metrics).await?;
    let backend = start_backend(config, &metrics, &shutdown, &tracker)?;
    let fatal = Fatal::default();
    let pubsub_background = Background::default();
    let mut hub = Hub::new(config.app.hub_gopool_size);
    let pubsub_changes = match config.pubsub_adapter {
        PubSubAdapter::Redis | PubSubAdapter::Nats => {
            let (watcher, changes) = pubsub::watcher();
            hub = hub.with_watcher(watcher);
            Some(changes)
        }
        PubSubAdapter::Unset | PubSubAdapter::None => None,
    };
    let node = Arc::new(Node::new(Parts {
        hub,
        router,
        auth,
        broker,
        backend,
        sessions_cache: config.broker.sessions_ttl_secs > 0,
        metrics: metrics.clone(),
    }));
    if let Some(memory_broker) = memory_broker {
        spawn_sweeper(memory_broker, node.clone(), &shutdown, &tracker);
    }
    let sampled = node.clone();
    crate::metrics::spawn_refresh(
        metrics.clone(),
        Duration::from_secs(config.metrics.stats_refresh_interval_secs),
        move || sampled.gauges(),
        &shutdown,
        &tracker,
    );

    let tls = match (&config.server.ssl_cert, &config.server.ssl_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => return Err(AppError::HalfTls),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host = &config.server.host;

    let env_builder = EnvBuilder::new(config, jwt_enabled, tls.is_some());
    // WebSocket and SSE connections, told to close on shutdown.
    let live = LiveOutboxes::watch(&shutdown, &tracker);
    let ws = Arc::new(WsEndpoint::new(
        config,
        node.clone(),
        env_builder,
        jwt_enabled,
        live.clone(),
        tracker.clone(),
    ));
    let broadcaster = config
        .broadcast_adapters
        .contains(&BroadcastAdapter::Http)
        .then(|| {
            let hb = &config.http_broadcast;
            let cors = hb
                .cors
                .then(|| AllowedOrigins::new(&config.server.allowed_origins));
            Arc::new(HttpBroadcaster::new(node.clone(), hb.key.clone(), cors))
        });

    let main_port = config.server.port;
    let broadcast_port = config.http_broadcast.port;
    let mut main_routes = Routes {
        health_path: Some(config.server.health_path.clone()),
        ws_paths: config
            .ws
            .paths
            .iter()
            .map(|p| PathPattern::new(p))
            .collect(),
        ws: Some(ws),
        broadcast: None,
        sse: config.sse.enabled.then(|| {
            let sse = SseEndpoint::new(
                config,
                node.clone(),
                EnvBuilder::new(config, jwt_enabled, tls.is_some()),
                jwt_enabled,
                live,
                tracker.clone(),
            );
            (config.sse.path.clone(), Arc::new(sse))
        }),
        metrics: None,
        api: None,
    };
    let mut listeners = Vec::new();
    let main = Listener::bind(host, main_port, tls.clone(), config.server.max_conn).await?;
    let main_addr = main.local_addr();
    if let Some(broadcaster) = broadcaster {
        let path = config.http_broadcast.path.clone();
        let auth_note = if config.http_broadcast.key.is_some() {
            "authorization required"
        } else {
            "no authorization"
        };
        let cors_note = if config.http_broadcast.cors {
            ", CORS enabled"
        } else {
            ""
        };
        tracing::info!(context = "broadcast", provider = "http", "Accept broadcast requests at {scheme}://{host}:{broadcast_port}{path} ({auth_note}{cors_note})");
        if config.http_broadcast.key_derived {
            tracing::info!(
                context = "broadcast",
                provider = "http",
                "auto-generated authorization secret from the application secret"
            );
        }
        if broadcast_port == main_port {
            main_routes.broadcast = Some((path, broadcaster));
        } else {
            let routes = Routes {
                broadcast: Some((path, broadcaster)),
                ..Routes::default()
            };
            let listener =
                Listener::bind(host, broadcast_port, tls.clone(), config.server.max_conn).await?;
            listeners.push((listener, routes));
        }
    }
    if let Some(changes) = pubsub_changes {
        start_pubsub(config, &node, changes, &fatal, &pubsub_background)?;
    }
    start_broadcasters(config, &node, &fatal, &background)?;
    if !config.metrics.http_path.is_empty() {
        let settings = &config.metrics;
        let path = settings.http_path.clone();
        let metrics_host = match settings.host.as_str() {
            "" => host.as_str(),
            other => other,
        };
        let metrics_port = match settings.port {
            0 => main_port,
            port => port,
        };
        tracing::info!(
            context = "metrics",
            "Serve metrics at {scheme}://{metrics_host}:{metrics_port}{path}"
        );
        let route = Some((path, Arc::new(Exporter::new(metrics, &settings.tags))));
        let shared = listeners
            .iter()
            .position(|(l, _)| l.local_addr().is_some_and(|a| a.port() == metrics_port));
        if metrics_host != host.as_str() {
            // A host of its own: a dedicated listener, without --max-conn.
            let listener = Listener::bind(metrics_host, metrics_port, tls.clone(), 0).await?;
            let routes = Routes {
                metrics: route,
                ..Routes::default()
            };
            listeners.push((listener, routes));
        } else if metrics_port == main_port {
            main_routes.metrics = route;
        } else if let Some(index) = shared {
            listeners[index].1.metrics = route;
        } else {
            let listener =
                Listener::bind(host, metrics_port, tls.clone(), config.server.max_conn).await?;
            let routes = Routes {
                metrics: route,
                ..Routes::default()
            };
            listeners.push((listener, routes));
        }
    }
    if let Some(api) = api_endpoint(config, &node, scheme) {
        let api_host = match config.api.host.as_str() {
            "" => host.as_str(),
            other => other,
        };
        let api_port = match config.api.port {
            0 => main_port,
            port => port,
        };
        let shared = listeners
            .iter()
            .position(|(l, _)| l.local_addr().is_some_and(|a| a.port() == api_port));
        if api_host != host.as_str() {
            let listener =
                Listener::bind(api_host, api_port, tls.clone(), config.server.max_conn).await?;
            let routes = Routes {
                api: Some(api),
                ..Routes::default()
            };
            listeners.push((listener, routes));
        } else if api_port == main_port {
            main_routes.api = Some(api);
        } else if let Some(index) = shared {
            listeners[index].1.api = Some(api);
        } else {
            let listener =
                Listener::bind(host, api_port, tls.clone(), config.server.max_conn).await?;
            let routes = Routes {
                api: Some(api),
                ..Routes::default()
            };
            listeners.push((listener, routes));
        }
    }
    for path in &config.ws.paths {
        tracing::info!("Handle WebSocket connections at {scheme}://{host}:{main_port}{path}");
    }
    if config.sse.enabled {
        tracing::info!(
            "Handle SSE requests at {scheme}://{host}:{main_port}{}",
            config.sse.path
        );
    }
    tracing::info!(
        "Handle health requests at {scheme}://{host}:{main_port}{}",
        config.server.health_path
    );

    listeners.push((main, main_routes));
    for (listener, routes) in listeners {
        tracker.spawn(listener.serve(Arc::new(routes), shutdown.clone(), tracker.clone()));
    }
    Ok(Running {
        node,
        main_addr,
        shutdown,
        tracker,
        fatal,
        background,
        pubsub: pubsub_background,
    })
}

/// The REST API when it is protected by a key (`--api_secret`, or derived from `--secret`) or
/// explicitly public (`--public`); otherwise it is not mounted.
fn api_endpoint(config: &Config, node: &Arc<Node>, scheme: &str) -> Option<Arc<ApiEndpoint>> {
    let settings = &config.api;
    if settings.secret.is_none() && !config.public {
        if settings.port != 0 {
            tracing::warn!(
                context = "api",
                "API server is disabled: --api_port is set but there is no --api_secret (or --secret) and no --public"
            );
        } else {
            tracing::info!(
                context = "api",
                "API server is disabled (no --api_secret, --secret or --public)"
            );
        }
        return None;
    }
    let host = match settings.host.as_str() {
        "" => config.server.host.as_str(),
        other => other,
    };
    let port = match settings.port {
        0 => config.server.port,
        port => port,
    };
    let auth_note = if settings.secret.is_some() {
        "authorization required"
    } else {
        "no authorization"
    };
    let cors_note = if settings.cors_headers {
        ", CORS enabled"
    } else {
        ""
    };
    tracing::info!(
        context = "api",
        "Handle API requests at {scheme}://{host}:{port}{} ({auth_note}{cors_note})",
        settings.path
    );
    if settings.secret.is_none() {
        tracing::warn!(
            context = "api",
            "API server is running without authentication"
        );
    }
    let cors = settings
        .cors_headers
        .then(|| AllowedOrigins::new(&settings.cors_hosts));
    Some(Arc::new(ApiEndpoint::new(
        node.clone(),
        &settings.path,
        settings.secret.clone(),
        cors,
    )))
}

/// Node-to-node pub/sub (`--pubsub=redis|nats`): the node publishes through it, and its
/// subscriber follows the streams the hub reports in `changes`.
fn start_pubsub(
    config: &Config,
    node: &Arc<Node>,
    changes: tokio::sync::mpsc::UnboundedReceiver<StreamChange>,
    fatal: &Fatal,
    background: &Background,
) -> Result<(), AppError> {
    let shutdown = background.shutdown.clone();
    if config.pubsub_adapter == PubSubAdapter::Redis {
        let options = RedisOptions::from_config(&config.redis)
            .map_err(|e| AppError::Broadcast(e.to_string()))?;
        tracing::info!(
            context = "pubsub",
            "Starting Redis pub/sub: {}",
            options.address()
        );
        let (queue, outgoing, readiness) = pubsub::Queue::new(&config.redis.pubsub_channel);
        node.set_pubsub(Arc::new(queue));
        background.tracker.spawn(pubsub::redis::run_publisher(
            node.clone(),
            options.clone(),
            outgoing,
            shutdown.clone(),
        ));
        let (node, control, fatal) = (
            node.clone(),
            config.redis.pubsub_channel.clone(),
            fatal.clone(),
        );
        background.tracker.spawn(async move {
            let result =
                pubsub::redis::run_subscriber(node, options, control, changes, readiness, shutdown)
                    .await;
            if let Err(reason) = result {
                tracing::error!(context = "pubsub", provider = "redis", "{reason}");
                fatal.raise(reason.to_string());
            }
        });
    } else {
        let options = NatsOptions::from_config(&config.nats)
            .map_err(|e| AppError::Broadcast(e.to_string()))?
            .counting(node.shared_metrics());
        tracing::info!(
            context = "pubsub",
            "Starting NATS pub/sub: {}",
            options.description()
        );
        let (queue, outgoing, readiness) = pubsub::Queue::new(&config.nats.pubsub_channel);
        node.set_pubsub(Arc::new(queue));
        background.tracker.spawn(pubsub::nats::run(
            node.clone(),
            options,
            config.nats.pubsub_channel.clone(),
            changes,
            outgoing,
            readiness,
            shutdown,
        ));
    }
    Ok(())
}

/// Starts the `redis`, `redisx` and `nats` broadcasters named in `--broadcast_adapter`, in
/// that order. Settings are checked here, so a bad URL fails the start.
fn start_broadcasters(
    config: &Config,
    node: &Arc<Node>,
    fatal: &Fatal,
    background: &Background,
) -> Result<(), AppError> {
    let redis_options =
        || RedisOptions::from_config(&config.redis).map_err(|e| AppError::Broadcast(e.to_string()));
    for adapter in &config.broadcast_adapters {
        let shutdown = background.shutdown.clone();
        match adapter {
            BroadcastAdapter::Redis => {
                let broadcaster = RedisBroadcaster::new(
                    node.clone(),
                    redis_options()?,
                    config.redis.channel.clone(),
                );
                let fatal = fatal.clone();
                background.tracker.spawn(async move {
                    if let Err(reason) = broadcaster.run(shutdown).await {
                        tracing::error!(context = "broadcast", provider = "redis", "{reason}");
                        fatal.raise(reason.to_string());
                    }
                });
            }
            BroadcastAdapter::RedisX => {
                let options = redis_options()?;
                let broadcaster =
                    RedisXBroadcaster::new(node.clone(), options.clone(), &config.redisx);
                tracing::info!(
                    context = "broadcast",
                    provider = "redisx",
                    consumer = broadcaster.consumer(),
                    stream = %config.redisx.stream,
                    "Starting Redis broadcaster at {}",
                    options.address()
                );
                background.tracker.spawn(broadcaster.run(shutdown));
            }
            BroadcastAdapter::Nats => {
                let options = NatsOptions::from_config(&config.nats)
                    .map_err(|e| AppError::Broadcast(e.to_string()))?
                    .counting(node.shared_metrics());
                let broadcaster =
                    NatsBroadcaster::new(node.clone(), options, config.nats.channel.clone());
                background.tracker.spawn(async move {
                    let _ = broadcaster.run(shutdown).await;
                });
            }
            // Mounted on a listener instead.
            BroadcastAdapter::Http => {}
        }
    }
    Ok(())
}

/// The RPC client and the disconnect queue, unless RPC is off (`--norpc`).
fn start_backend(
    config: &Config,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Option<Backend>, AppError> {
    let Some(rpc) = Rpc::from_config(config, metrics.clone())? else {
        tracing::info!(context = "rpc", "no RPC configured");
        return Ok(None);
    };
    tracing::info!(
        context = "rpc",
        "RPC controller initialized: {}",
        rpc.description
    );
    if config.rpc.secret.is_some() && config.rpc_impl() == RpcImpl::Http {
        tracing::info!(
            context = "rpc",
            "HTTP RPC requests are authorized with a bearer key"
        );
    }
    let rpc = Arc::new(rpc);
    let settings = &config.disconnector;
    let disconnector = Disconnector::start(
        rpc.clone(),
        settings.rate,
        settings.backlog_size,
        shutdown.clone(),
        tracker,
    );
    Ok(Some(Backend {
        rpc,
        disconnector,
        mode: config.disconnector.mode,
    }))
}

/// The broker chosen in the config (also as the memory broker, for its housekeeping task).
/// Distributed brokers keep their tasks until every connection is closed (`background`).
#[allow(clippy::type_complexity)]
async fn start_broker(
    config: &Config,
    background: &Background,
    metrics: &Arc<Metrics>,
) -> Result<(Option<Arc<dyn Broker>>, Option<Arc<MemoryBroker>>), AppError> {
    let settings = &config.broker;
    let retention = Retention {
        history_limit: settings.history_limit,
        history_ttl: Duration::from_secs(settings.history_ttl_secs),
        sessions_ttl: Duration::from_secs(settings.sessions_ttl_secs),
    };
    let described = format!(
        "history limit: {}, history ttl: {}s, sessions ttl: {}s",
        settings.history_limit, settings.history_ttl_secs, settings.sessions_ttl_secs
    );
    match settings.adapter {
        BrokerAdapter::Memory => {
            let broker = Arc::new(
                MemoryBroker::new(
                    retention.history_limit,
                    retention.history_ttl,
                    retention.sessions_ttl,
                )
                .with_presence_ttl(Duration::from_secs(settings.presence_ttl_secs)),
            );
            tracing::info!(
                "Using in-memory broker (epoch: {}, {described})",
                broker.epoch()
            );
            return Ok((Some(broker.clone()), Some(broker)));
        }
        BrokerAdapter::Nats | BrokerAdapter::Redis => {}
        BrokerAdapter::Unset | BrokerAdapter::None => {
            tracing::info!("Using no-op (legacy) broker");
            return Ok((None, None));
        }
    }
    let failed = |e: &dyn std::fmt::Display| AppError::Broker(e.to_string());
    let (shutdown, tracker) = (&background.shutdown, &background.tracker);
    let (broker, provider, address): (Arc<dyn Broker>, &str, String) = if settings.adapter
        == BrokerAdapter::Nats
    {
        let options = NatsOptions::from_config(&config.nats)
            .map_err(|e| failed(&e))?
            .counting(metrics.clone());
        let broker = NatsBroker::start(&options, retention, shutdown, tracker)
            .await
            .map_err(|e| failed(&e))?;
        (broker, "NATS", options.description())
    } else {
        let options = RedisOptions::from_config(&config.redis).map_err(|e| failed(&e))?;
        let broker = RedisBroker::start(&options, retention, metrics.clone(), shutdown, tracker)
            .await
            .map_err(|e| failed(&e))?;
        (broker, "Redis", options.address())
    };
    tracing::info!(
        "Using {provider} broker: {address} (epoch: {}, {described})",
        broker.epoch()
    );
    Ok((Some(broker), None))
}

/// Every second: expired history and sessions are dropped, expired presence records removed
/// and their `leave` events broadcast.
fn spawn_sweeper(
    broker: Arc<MemoryBroker>,
    node: Arc<Node>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    broker.sweep();
                    node.expire_presence();
                }
                _ = shutdown.cancelled() => return,
            }
        }
    });
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

impl Running {
    /// Waits for `stop`, then shuts down: optional delay, every client gets a `server_restart`
    /// disconnect, listeners close, and tasks get until the deadline to finish. A second
    /// `stop` ends the wait at once.
    ///
    /// Returns `Err` with the reason when a component failure (not a signal) stopped the
    /// server; the process then exits with status 1.
    pub async fn run_until<F, G>(
        self,
        stop: F,
        mut force: G,
        timeout: Duration,
        delay: Duration,
    ) -> Result<(), String>
    where
        F: Future<Output = ()>,
        G: FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    {
        let failure = tokio::select! {
            _ = stop => None,
            _ = self.fatal.token.cancelled() => Some(self.fatal.reason()),
        };
        let outcome = match failure {
            Some(reason) => Err(reason),
            None => Ok(()),
        };
        let delay = if outcome.is_err() {
            Duration::ZERO
        } else {
            delay
        };
        tracing::info!("Shutting down... (hit Ctrl-C to stop immediately or wait for up to {}s for graceful shutdown)", timeout.as_secs());
        let deadline = Instant::now() + timeout;
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.min(Instant::now() + delay)) => {}
                _ = force() => {
                    tracing::warn!("Immediate termination requested. Stopped");
                    return outcome;
                }
            }
        }
        let sessions = self.node.sessions_count();
        tracing::info!(
            context = "node",
            "closing active connections num={sessions}"
        );
        self.shutdown.cancel();
        self.tracker.close();
        tokio::select! {
            _ = self.tracker.wait() => tracing::info!(context = "node", "all active connections closed"),
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(context = "node", "terminated while disconnecting active sessions num={}", self.node.sessions_count());
            }
            _ = force() => {
                tracing::warn!("Immediate termination requested. Stopped");
                return outcome;
            }
        }
        // Broadcasters (and pub/sub) stop last: the Redis Streams consumer leaves its group.
        self.background.shutdown.cancel();
        self.background.tracker.close();
        tokio::select! {
            _ = self.background.tracker.wait() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = force() => {
                tracing::warn!("Immediate termination requested. Stopped");
                return outcome;
            }
        }
        // Pub/sub last of all (after the broadcasters, as in the reference).
        self.pubsub.shutdown.cancel();
        self.pubsub.tracker.close();
        tokio::select! {
            _ = self.pubsub.tracker.wait() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = force() => tracing::warn!("Immediate termination requested. Stopped"),
        }
        outcome
    }
}

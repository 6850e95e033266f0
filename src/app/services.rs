//! The stages that start the server's services: the broker, the backend (RPC), node-to-node
//! pub/sub and the broadcasters. Each builds its component from its own config section and the
//! start context, and logs what it started.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::context::{Scope, StartContext};
use super::AppError;
use crate::broadcast::nats::{NatsBroadcaster, NatsOptions};
use crate::broadcast::redis::RedisBroadcaster;
use crate::broadcast::redisx::RedisXBroadcaster;
use crate::broadcast::resp::RedisOptions;
use crate::broker::nats::NatsBroker;
use crate::broker::redis::RedisBroker;
use crate::broker::{Broker, MemoryBroker, Retention};
use crate::config::{BroadcastAdapter, BrokerAdapter, Config, PubSubAdapter, RpcImpl};
use crate::node::{Backend, Node};
use crate::pubsub::{self, StreamChange};
use crate::rpc::disconnector::Disconnector;
use crate::rpc::Rpc;

/// The broker chosen in the config (also as the memory broker, for its housekeeping task).
/// Distributed brokers keep their tasks until every connection is closed (`background`).
#[allow(clippy::type_complexity)]
pub(super) async fn start_broker(
    config: &Config,
    cx: &StartContext,
) -> Result<(Option<Arc<dyn Broker>>, Option<Arc<MemoryBroker>>), AppError> {
    let (background, metrics) = (&cx.background, &cx.metrics);
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

/// The RPC client and the disconnect queue, unless RPC is off (`--norpc`).
pub(super) fn start_backend(
    config: &Config,
    cx: &StartContext,
) -> Result<Option<Backend>, AppError> {
    let Some(rpc) = Rpc::from_config(config, cx.metrics.clone())? else {
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
        cx.connections.shutdown.clone(),
        &cx.connections.tracker,
    );
    Ok(Some(Backend {
        rpc,
        disconnector,
        mode: config.disconnector.mode,
    }))
}

/// Every second: expired history and sessions are dropped, expired presence records removed
/// and their `leave` events broadcast.
pub(super) fn spawn_sweeper(broker: Arc<MemoryBroker>, node: Arc<Node>, scope: &Scope) {
    let shutdown = scope.shutdown.clone();
    scope.tracker.spawn(async move {
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

/// Node-to-node pub/sub (`--pubsub=redis|nats`): the node publishes through it, and its
/// subscriber follows the streams the hub reports in `changes`.
pub(super) fn start_pubsub(
    config: &Config,
    node: &Arc<Node>,
    changes: UnboundedReceiver<StreamChange>,
    cx: &StartContext,
) -> Result<(), AppError> {
    let (fatal, background) = (&cx.fatal, &cx.pubsub);
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
pub(super) fn start_broadcasters(
    config: &Config,
    node: &Arc<Node>,
    cx: &StartContext,
) -> Result<(), AppError> {
    let (fatal, background) = (&cx.fatal, &cx.background);
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

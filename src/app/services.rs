//! The stages that start the server's services: the broker, the backend (RPC), node-to-node
//! pub/sub and the broadcasters. Each builds its component from its own config section and the
//! start context, and logs what it started.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{Receiver, UnboundedReceiver};

use super::context::{Failure, Scope, StartContext};
use super::{AppError, BrokerError};
use crate::broadcast::broadcaster::Broadcaster;
use crate::broadcast::nats::NatsBroadcaster;
use crate::broadcast::redis::RedisBroadcaster;
use crate::broadcast::redisx::RedisXBroadcaster;
use crate::broker::nats::NatsBroker;
use crate::broker::redis::RedisBroker;
use crate::broker::{Broker, History, MemoryBroker, MemoryPresence, Retention};
use crate::clients::nats::NatsOptions;
use crate::clients::redis::RedisOptions;
use crate::config::{BroadcastAdapter, BrokerAdapter, Config, PubSubAdapter, RpcImpl};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::pubsub::{self, StreamChange};
use crate::rpc::controller::{Controller, NoController, RpcController};
use crate::rpc::disconnector::Disconnector;
use crate::rpc::Rpc;

/// The broker chosen in the config, by role (also as the memory broker, for its housekeeping
/// task). Distributed brokers keep their tasks until every connection is closed (`background`).
pub(super) async fn start_broker(
    config: &Config,
    cx: &StartContext,
) -> Result<(Broker, Option<Arc<MemoryBroker>>), AppError> {
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
            let broker = Arc::new(MemoryBroker::new(
                retention.history_limit,
                retention.history_ttl,
                retention.sessions_ttl,
            ));
            let presence = MemoryPresence::new(Duration::from_secs(settings.presence_ttl_secs));
            tracing::info!(
                "Using in-memory broker (epoch: {}, {described})",
                History::epoch(&*broker)
            );
            let roles = Broker {
                history: Some(broker.clone()),
                sessions: Some(broker.clone()),
                presence: Arc::new(presence),
            };
            return Ok((roles, Some(broker)));
        }
        BrokerAdapter::Nats | BrokerAdapter::Redis => {}
        BrokerAdapter::Unset | BrokerAdapter::None => {
            tracing::info!("Using no-op (legacy) broker");
            return Ok((Broker::none(), None));
        }
    }
    let (shutdown, tracker) = (&background.shutdown, &background.tracker);
    let (broker, epoch, provider, address) = if settings.adapter == BrokerAdapter::Nats {
        let options = NatsOptions::from_config(&config.nats)
            .map_err(BrokerError::NatsAddress)?
            .counting(metrics.clone());
        let broker = NatsBroker::start(&options, retention, shutdown, tracker)
            .await
            .map_err(BrokerError::Nats)?;
        let epoch = History::epoch(&*broker);
        let description = options.description();
        (Broker::without_presence(broker), epoch, "NATS", description)
    } else {
        let options = RedisOptions::from_config(&config.redis).map_err(BrokerError::RedisUrl)?;
        let broker = RedisBroker::start(&options, retention, metrics.clone(), shutdown, tracker)
            .await
            .map_err(BrokerError::Redis)?;
        let epoch = History::epoch(&*broker);
        let address = options.address();
        (Broker::without_presence(broker), epoch, "Redis", address)
    };
    tracing::info!("Using {provider} broker: {address} (epoch: {epoch}, {described})");
    Ok((broker, None))
}

/// The backend as the node uses it, and the RPC client on its own (the readiness check asks
/// it whether the backend answers).
pub(super) struct Backend {
    pub controller: Arc<dyn Controller>,
    pub rpc: Option<Arc<Rpc>>,
}

/// The RPC client and the disconnect queue, or no backend when RPC is off (`--norpc`).
pub(super) fn start_backend(config: &Config, cx: &StartContext) -> Result<Backend, AppError> {
    let Some(rpc) = Rpc::from_config(config, cx.metrics.clone())? else {
        tracing::info!(context = "rpc", "no RPC configured");
        return Ok(Backend {
            controller: Arc::new(NoController),
            rpc: None,
        });
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
    let controller = Arc::new(RpcController {
        rpc: rpc.clone(),
        disconnector,
        mode: config.disconnector.mode,
    });
    Ok(Backend {
        controller,
        rpc: Some(rpc),
    })
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

/// The node's side of node-to-node pub/sub, made before the node (which publishes through the
/// queue); the tasks that use the rest start once the node exists (they deliver to it).
pub(super) struct PubSubSetup {
    pub queue: Arc<pubsub::Queue>,
    outgoing: Receiver<pubsub::Outgoing>,
    readiness: Arc<pubsub::Readiness>,
    /// The hub reports the streams it gains and loses through the watcher, and the
    /// subscriber receives them as `changes`.
    pub watcher: Arc<pubsub::ChannelWatcher>,
    changes: UnboundedReceiver<StreamChange>,
}

impl PubSubSetup {
    pub fn new(config: &Config, metrics: &Arc<Metrics>) -> Option<PubSubSetup> {
        let control = match config.pubsub_adapter {
            PubSubAdapter::Redis => &config.redis.pubsub_channel,
            PubSubAdapter::Nats => &config.nats.pubsub_channel,
            PubSubAdapter::Unset | PubSubAdapter::None => return None,
        };
        let (watcher, changes) = pubsub::watcher();
        let (queue, outgoing, readiness) =
            pubsub::Queue::new(control, pubsub::QUEUE_CAPACITY, metrics.clone());
        Some(PubSubSetup {
            queue: Arc::new(queue),
            outgoing,
            readiness,
            watcher,
            changes,
        })
    }
}

/// Node-to-node pub/sub (`--pubsub=redis|nats`): the publisher sends what the node queued, and
/// the subscriber follows the streams the hub reports.
pub(super) fn start_pubsub(
    config: &Config,
    node: &Arc<Node>,
    setup: PubSubSetup,
    cx: &StartContext,
) -> Result<(), AppError> {
    let PubSubSetup {
        outgoing,
        readiness,
        changes,
        ..
    } = setup;
    let (fatal, background) = (&cx.fatal, &cx.pubsub);
    let shutdown = background.shutdown.clone();
    if config.pubsub_adapter == PubSubAdapter::Redis {
        let options = RedisOptions::from_config(&config.redis)?;
        tracing::info!(
            context = "pubsub",
            "Starting Redis pub/sub: {}",
            options.address()
        );
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
                fatal.raise(Failure::PubSub(reason));
            }
        });
    } else {
        let options = NatsOptions::from_config(&config.nats)?.counting(node.shared_metrics());
        tracing::info!(
            context = "pubsub",
            "Starting NATS pub/sub: {}",
            options.description()
        );
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
    for adapter in &config.broadcast_adapters {
        let broadcaster: Box<dyn Broadcaster> = match adapter {
            BroadcastAdapter::Redis => Box::new(RedisBroadcaster::new(
                node.clone(),
                RedisOptions::from_config(&config.redis)?,
                config.redis.channel.clone(),
            )),
            BroadcastAdapter::RedisX => {
                let options = RedisOptions::from_config(&config.redis)?;
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
                Box::new(broadcaster)
            }
            BroadcastAdapter::Nats => {
                let options =
                    NatsOptions::from_config(&config.nats)?.counting(node.shared_metrics());
                Box::new(NatsBroadcaster::new(
                    node.clone(),
                    options,
                    config.nats.channel.clone(),
                ))
            }
            // Mounted on a listener instead.
            BroadcastAdapter::Http => continue,
        };
        let (shutdown, fatal) = (background.shutdown.clone(), fatal.clone());
        let provider = broadcaster.provider();
        background.tracker.spawn(async move {
            if let Err(error) = broadcaster.run(shutdown).await {
                tracing::error!(context = "broadcast", provider, "{error}");
                if error.stops_server() {
                    fatal.raise(Failure::Broadcast(error));
                }
            }
        });
    }
    Ok(())
}

//! The readiness stage (`--readiness_path`): which checks this configuration runs, the shared
//! status the node and the endpoint use, and the checker task once everything it checks runs.

use std::sync::Arc;
use std::time::Duration;

use super::context::StartContext;
use super::AppError;
use crate::broker::History;
use crate::clients::nats::NatsOptions;
use crate::clients::redis::RedisOptions;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::node::PubSub;
use crate::publication::canary_stream;
use crate::readiness::{self, Canaries, Check, Probes, Status};
use crate::rpc::Rpc;

/// The status of this node's checks, or `None` when readiness is off.
pub(super) fn status(config: &Config, metrics: &Arc<Metrics>) -> Option<Arc<Status>> {
    if config.server.readiness_path.is_empty() {
        return None;
    }
    let stream = canary_stream(&config.node_id);
    Some(Arc::new(Status::new(
        stream,
        &Check::configured(config),
        metrics.clone(),
    )))
}

/// What the checker uses, gathered from the stages that made it.
pub(super) struct Checked {
    pub pubsub: Option<Arc<dyn PubSub>>,
    pub broker: Option<Arc<dyn History>>,
    pub rpc: Option<Arc<Rpc>>,
}

/// Starts the checker, after the broadcasters and the pub/sub it sends canaries through.
pub(super) fn start(
    config: &Config,
    status: Arc<Status>,
    checked: Checked,
    cx: &StartContext,
) -> Result<(), AppError> {
    let checks = Check::configured(config);
    let redis_needed = checks
        .iter()
        .any(|c| matches!(c, Check::BroadcastRedis | Check::BroadcastRedisX));
    let canaries = Canaries {
        redis: if redis_needed {
            Some(RedisOptions::from_config(&config.redis)?)
        } else {
            None
        },
        redis_channel: checks
            .contains(&Check::BroadcastRedis)
            .then(|| config.redis.channel.clone()),
        redisx_stream: checks
            .contains(&Check::BroadcastRedisX)
            .then(|| config.redisx.stream.clone()),
        nats: if checks.contains(&Check::BroadcastNats) {
            Some((
                NatsOptions::from_config(&config.nats)?,
                config.nats.channel.clone(),
            ))
        } else {
            None
        },
        pubsub: checked.pubsub.filter(|_| checks.contains(&Check::PubSub)),
    };
    let probes = Probes {
        broker: checked.broker.filter(|_| checks.contains(&Check::Broker)),
        rpc: checked.rpc.filter(|_| checks.contains(&Check::Rpc)),
    };
    let period = Duration::from_millis(config.server.readiness_interval_ms);
    let names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
    tracing::info!(
        context = "readiness",
        "Readiness checks every {}ms: {}",
        period.as_millis(),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    let scope = &cx.connections;
    readiness::spawn(
        status,
        canaries,
        probes,
        period,
        scope.shutdown.clone(),
        &scope.tracker,
    );
    Ok(())
}

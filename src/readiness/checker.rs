//! The task that runs the readiness checks, one round per period: canaries out through every
//! configured way, and the broker and the backend asked to answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{canary_data, Check, Status};
use crate::broker::{History, HistoryError};
use crate::clients::nats::NatsOptions;
use crate::clients::redis::{Connection, RedisError, RedisOptions};
use crate::node::PubSub;
use crate::publication::{Publication, PublicationMeta};
use crate::rpc::Rpc;

/// The ways canaries are sent, one per configured broadcaster with a connection of its own and
/// the pub/sub.
#[derive(Default)]
pub struct Canaries {
    /// Redis, for the `redis` broadcaster's channel and the `redisx` one's stream.
    pub redis: Option<RedisOptions>,
    /// `PUBLISH` to this channel (`--redis_channel`) when the `redis` broadcaster runs.
    pub redis_channel: Option<String>,
    /// `XADD` to this stream when the `redisx` broadcaster runs.
    pub redisx_stream: Option<String>,
    /// NATS and the `nats` broadcaster's subject (`--nats_channel`).
    pub nats: Option<(NatsOptions, String)>,
    /// Node-to-node pub/sub (`--pubsub`).
    pub pubsub: Option<Arc<dyn PubSub>>,
}

/// What must answer: the distributed broker and the RPC backend.
#[derive(Default)]
pub struct Probes {
    pub broker: Option<Arc<dyn History>>,
    pub rpc: Option<Arc<Rpc>>,
}

/// Runs the checks every `period` until `shutdown`.
pub fn spawn(
    status: Arc<Status>,
    canaries: Canaries,
    probes: Probes,
    period: Duration,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        let mut sender = Sender {
            canaries,
            redis: None,
            nats: None,
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut round = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            round += 1;
            let checks = status.start_round(round, period.as_millis() as u64);
            let work = async {
                tokio::join!(
                    sender.send(&status, &checks, round, period),
                    probe(&status, &probes, period),
                )
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = work => {}
            }
        }
    });
}

/// The connections canaries are published through, opened when first needed and again after
/// a failure.
struct Sender {
    canaries: Canaries,
    redis: Option<Connection>,
    nats: Option<async_nats::Client>,
}

impl Sender {
    async fn send(&mut self, status: &Status, checks: &[Check], round: u64, limit: Duration) {
        let publication = |check: Check| Publication {
            stream: status.canary_stream.clone(),
            data: canary_data(check, round),
            meta: PublicationMeta::default(),
            offset: None,
            epoch: None,
        };
        for &check in checks {
            let body = || serde_json::to_string(&publication(check)).unwrap_or_default();
            let sent = match check {
                Check::PubSub => {
                    if let Some(pubsub) = &self.canaries.pubsub {
                        pubsub.publish(&publication(check));
                    }
                    Ok(())
                }
                Check::BroadcastRedis => match self.canaries.redis_channel.clone() {
                    Some(channel) => {
                        let body = body();
                        self.redis_call(&[b"PUBLISH", channel.as_bytes(), body.as_bytes()], limit)
                            .await
                    }
                    None => Ok(()),
                },
                Check::BroadcastRedisX => match self.canaries.redisx_stream.clone() {
                    Some(stream) => {
                        let body = body();
                        let add: [&[u8]; 5] = [
                            b"XADD",
                            stream.as_bytes(),
                            b"*",
                            b"payload",
                            body.as_bytes(),
                        ];
                        self.redis_call(&add, limit).await
                    }
                    None => Ok(()),
                },
                Check::BroadcastNats => self.nats_publish(body()).await,
                Check::Broker | Check::Rpc => Ok(()),
            };
            if let Err(reason) = sent {
                status.record(check, Err(format!("cannot send the canary: {reason}")));
            }
        }
    }

    /// One command on the canary connection to Redis, opened if needed; dropped on failure.
    async fn redis_call(&mut self, args: &[&[u8]], limit: Duration) -> Result<(), String> {
        let Some(options) = &self.canaries.redis else {
            return Ok(());
        };
        let connection = &mut self.redis;
        let attempt = async {
            if connection.is_none() {
                *connection = Some(Connection::open(options).await?);
            }
            let Some(open) = connection.as_mut() else {
                return Err(RedisError::Protocol("no connection".into()));
            };
            open.call(args).await.map(|_| ())
        };
        let outcome = tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| Err(RedisError::Protocol("no answer".into())));
        if outcome.is_err() {
            self.redis = None;
        }
        outcome.map_err(|error| error.to_string())
    }

    /// Publishes on the `nats` broadcaster's subject. The client reconnects by itself and
    /// holds what is published meanwhile; a canary it delivers late belongs to a past round
    /// and does not count.
    async fn nats_publish(&mut self, body: String) -> Result<(), String> {
        let Some((options, subject)) = &self.canaries.nats else {
            return Ok(());
        };
        if self.nats.is_none() {
            self.nats = Some(
                options
                    .connect("readiness")
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(client) = &self.nats else {
            return Ok(());
        };
        client
            .publish(subject.clone(), body.into())
            .await
            .map_err(|e| e.to_string())
    }
}

/// Asks the broker and the backend to answer, each within `limit`.
async fn probe(status: &Status, probes: &Probes, limit: Duration) {
    let broker = async {
        let Some(history) = &probes.broker else {
            return;
        };
        // A read of the canary stream, which holds nothing: an empty answer or "unknown
        // stream" proves the broker works as well as any.
        let read = tokio::time::timeout(limit, history.history_since(&status.canary_stream, 0));
        let outcome = match read.await {
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
            Ok(Err(HistoryError::Unavailable(error))) => Err(error.to_string()),
            Ok(_) => Ok(()),
        };
        status.record(Check::Broker, outcome);
    };
    let rpc = async {
        let Some(rpc) = &probes.rpc else {
            return;
        };
        let outcome = rpc.probe(limit).await.map_err(|error| error.to_string());
        status.record(Check::Rpc, outcome);
    };
    tokio::join!(broker, rpc);
}

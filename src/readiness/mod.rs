//! Readiness, apart from liveness (`--health-path` answers as long as the process serves HTTP):
//! `--readiness_path` answers 503 while this node cannot do its job, so that a load balancer
//! or an orchestrator sends new clients elsewhere.
//!
//! Every `--readiness_interval_ms` the checker (`checker.rs`) runs one round:
//! - a canary publication is sent through each configured broadcaster that has a connection of
//!   its own (`redis`, `redisx`, `nats`; HTTP is served by this process and has nothing to
//!   lose) and through node-to-node pub/sub, and must come back to this node before the next
//!   round. Canaries travel on this node's canary stream (`publication::canary_stream`), which
//!   the node hands to [`Status`] and never to clients, the broker or the broadcast counters;
//! - the broker (Redis, NATS) must answer a history read, and the RPC backend a health request
//!   (never one of the application's methods).
//!
//! Each check is a gauge (`readiness_<check>`, 1 = passing) and logs once per change of state.
//! A canary passes as soon as it is back; it fails when the round ends without it.

mod checker;

use std::sync::{Arc, Mutex};

use hyper::StatusCode;

pub use checker::{spawn, Canaries, Probes};

use crate::config::{BroadcastAdapter, Config, PubSubAdapter, RpcImpl};
use crate::http::{plain, Body};
use crate::metrics::{Gauge, Metrics};
use crate::node::CanaryInbox;

/// One readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    BroadcastRedis,
    BroadcastRedisX,
    BroadcastNats,
    PubSub,
    Broker,
    Rpc,
}

impl Check {
    /// The checks this configuration runs; none without a readiness path.
    pub fn configured(config: &Config) -> Vec<Check> {
        if config.server.readiness_path.is_empty() {
            return Vec::new();
        }
        let adapters = &config.broadcast_adapters;
        Check::ALL
            .into_iter()
            .filter(|check| match check {
                Check::BroadcastRedis => adapters.contains(&BroadcastAdapter::Redis),
                Check::BroadcastRedisX => adapters.contains(&BroadcastAdapter::RedisX),
                Check::BroadcastNats => adapters.contains(&BroadcastAdapter::Nats),
                Check::PubSub => matches!(
                    config.pubsub_adapter,
                    PubSubAdapter::Redis | PubSubAdapter::Nats
                ),
                Check::Broker => config.broker.adapter.is_distributed(),
                Check::Rpc => config.rpc_impl() != RpcImpl::None,
            })
            .collect()
    }

    /// In the order of [`Gauge::READINESS`].
    pub const ALL: [Check; 6] = [
        Check::BroadcastRedis,
        Check::BroadcastRedisX,
        Check::BroadcastNats,
        Check::PubSub,
        Check::Broker,
        Check::Rpc,
    ];

    /// The name in logs, in the 503 body and in canaries.
    pub fn name(self) -> &'static str {
        match self {
            Check::BroadcastRedis => "broadcast_redis",
            Check::BroadcastRedisX => "broadcast_redisx",
            Check::BroadcastNats => "broadcast_nats",
            Check::PubSub => "pubsub",
            Check::Broker => "broker",
            Check::Rpc => "rpc",
        }
    }

    fn gauge(self) -> Gauge {
        Gauge::READINESS[self as usize]
    }

    fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Where a check stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// No result yet (start-up): not ready, and nothing logged until the first result.
    Pending,
    Passing,
    Failing(String),
}

struct Entry {
    check: Check,
    state: State,
    /// The canary of the current round still expected back (canary checks only).
    awaited: Option<u64>,
    /// Whether the check passed since start-up: only a check that passed and then fails is a
    /// warning (at start-up the failing component has warned already).
    passed_before: bool,
}

/// The state of every check of this node, shared by the checker, the node (canaries that come
/// back) and the readiness endpoint.
pub struct Status {
    canary_stream: String,
    entries: Mutex<Vec<Entry>>,
    metrics: Arc<Metrics>,
}

impl Status {
    /// `checks` are the checks this configuration runs.
    pub fn new(canary_stream: String, checks: &[Check], metrics: Arc<Metrics>) -> Status {
        let entries = checks
            .iter()
            .map(|&check| Entry {
                check,
                state: State::Pending,
                awaited: None,
                passed_before: false,
            })
            .collect();
        Status {
            canary_stream,
            entries: Mutex::new(entries),
            metrics,
        }
    }

    /// This node's canary stream.
    pub fn canary_stream(&self) -> &str {
        &self.canary_stream
    }

    /// Ready when every check passes.
    pub fn is_ready(&self) -> bool {
        self.lock().iter().all(|e| e.state == State::Passing)
    }

    /// The endpoint's answer: 200, or 503 naming the checks that do not pass (their reasons
    /// are in the log, not here: the endpoint is as public as the health one).
    pub fn respond(&self) -> hyper::Response<Body> {
        let waiting: Vec<&'static str> = self
            .lock()
            .iter()
            .filter(|e| e.state != State::Passing)
            .map(|e| e.check.name())
            .collect();
        if waiting.is_empty() {
            plain(StatusCode::OK, "ready\n")
        } else {
            let body = format!("not ready: {}\n", waiting.join(", "));
            let mut response = hyper::Response::new(Body::new(bytes::Bytes::from(body)));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    }

    /// Records the outcome of a check, logging and updating its gauge when its state changes.
    pub fn record(&self, check: Check, outcome: Result<(), String>) {
        let mut entries = self.lock();
        let Some(entry) = entries.iter_mut().find(|e| e.check == check) else {
            return;
        };
        let state = match outcome {
            Ok(()) => State::Passing,
            Err(reason) => State::Failing(reason),
        };
        let changed = match (&entry.state, &state) {
            (State::Failing(_), State::Failing(_)) => false,
            (old, new) => old != new,
        };
        if !changed {
            return;
        }
        let name = check.name();
        match (&state, entry.passed_before) {
            (State::Passing, false) => {
                tracing::info!(context = "readiness", check = name, "check passes")
            }
            (State::Passing, true) => {
                tracing::info!(context = "readiness", check = name, "check passes again")
            }
            (State::Failing(reason), false) => tracing::info!(
                context = "readiness",
                check = name,
                "check does not pass yet: {reason}"
            ),
            (State::Failing(reason), true) => {
                tracing::warn!(context = "readiness", check = name, "check fails: {reason}")
            }
            (State::Pending, _) => {}
        }
        entry.passed_before |= state == State::Passing;
        self.metrics
            .set(check.gauge(), u64::from(state == State::Passing));
        entry.state = state;
    }

    /// Starts a round of canaries numbered `round`: a canary of the previous round that did not
    /// come back fails its check. Returns the canary checks to send.
    fn start_round(&self, round: u64, period_ms: u64) -> Vec<Check> {
        let mut missing = Vec::new();
        let mut sending = Vec::new();
        for entry in self.lock().iter_mut().filter(|e| e.check.is_canary()) {
            if entry.awaited.take().is_some() {
                missing.push(entry.check);
            }
            entry.awaited = Some(round);
            sending.push(entry.check);
        }
        for check in missing {
            self.record(
                check,
                Err(format!(
                    "the canary did not come back within {period_ms} ms"
                )),
            );
        }
        sending
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Check {
    fn is_canary(self) -> bool {
        !matches!(self, Check::Broker | Check::Rpc)
    }
}

/// A canary's data: the check and the round, e.g. `{"check":"pubsub","round":7}`.
fn canary_data(check: Check, round: u64) -> String {
    serde_json::json!({ "check": check.name(), "round": round }).to_string()
}

impl CanaryInbox for Status {
    /// Canaries of other nodes (seen by every node on fan-out broadcasters) and late ones of
    /// an earlier round are ignored.
    fn returned(&self, stream: &str, data: &str) {
        if stream != self.canary_stream {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Canary {
            check: String,
            round: u64,
        }
        let Ok(canary) = serde_json::from_str::<Canary>(data) else {
            return;
        };
        let Some(check) = Check::from_name(&canary.check) else {
            return;
        };
        let back = match self
            .lock()
            .iter_mut()
            .find(|e| e.check == check && e.awaited == Some(canary.round))
        {
            Some(entry) => {
                entry.awaited = None;
                true
            }
            None => false,
        };
        if back {
            self.record(check, Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        let metrics = Arc::new(Metrics::new(crate::metrics::Registration::default()));
        Status::new(
            "__anycable_canary__/me".into(),
            &[Check::PubSub, Check::Rpc],
            metrics,
        )
    }

    #[test]
    fn each_check_has_its_gauge() {
        for check in Check::ALL {
            assert_eq!(check.gauge().name(), format!("readiness_{}", check.name()));
        }
    }

    #[test]
    fn pending_checks_are_not_ready_until_each_passes() {
        let status = status();
        assert!(!status.is_ready());
        status.record(Check::Rpc, Ok(()));
        assert!(!status.is_ready());
        assert_eq!(status.start_round(1, 100), vec![Check::PubSub]);
        status.returned("__anycable_canary__/me", &canary_data(Check::PubSub, 1));
        assert!(status.is_ready());
        assert_eq!(status.metrics.gauge(Gauge::ReadyPubSub), 1);
    }

    #[test]
    fn a_canary_must_be_this_nodes_and_this_rounds() {
        let status = status();
        status.record(Check::Rpc, Ok(()));
        status.start_round(1, 100);
        status.returned("__anycable_canary__/other", &canary_data(Check::PubSub, 1));
        status.start_round(2, 100);
        status.returned("__anycable_canary__/me", &canary_data(Check::PubSub, 1));
        assert!(
            !status.is_ready(),
            "another node's and a late canary do not count"
        );
        status.returned("__anycable_canary__/me", &canary_data(Check::PubSub, 2));
        assert!(status.is_ready());
        status.start_round(3, 100);
        status.start_round(4, 100);
        assert!(!status.is_ready(), "round 3 never came back");
        assert_eq!(status.metrics.gauge(Gauge::ReadyPubSub), 0);
    }
}

//! The metrics registry: counters and gauges with AnyCable-Go's names, and their exporters.
//!
//! Values are plain atomics indexed by closed enums, so the hot path (`inc`, a live gauge going
//! up and down) never locks or allocates. Which metrics exist depends on the configuration, as
//! in the reference: the RPC ones only with RPC, `sse_clients_num` only with `--sse`.
//!
//! - `prometheus.rs`: the text exposition format and the HTTP endpoint (`--metrics_http`);
//! - `writers.rs`: the periodic writers (`--metrics_log`, StatsD) and their interval deltas;
//! - `stats.rs`: the task that refreshes the interval gauges (`--stats_refresh_interval`).

mod prometheus;
mod stats;
mod striped;
mod writers;

use std::sync::atomic::{AtomicU64, Ordering};

use striped::StripedCounters;

pub use prometheus::Exporter;
pub use stats::{spawn_refresh, NodeGauges};
pub use writers::{spawn_writers, SetupError};

/// Every counter the server keeps. Counters only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    ClientMsg,
    FailedClientMsg,
    FailedAuths,
    DisconnectedSlowClients,
    Publications,
    BroadcastMsg,
    FailedBroadcastMsg,
    RemoteCommands,
    RpcCall,
    RpcRetries,
    RpcError,
    RpcTimeout,
    RpcCanceled,
    RpcConnectDeferred,
    ServerMsg,
    FailedServerMsg,
    TimeoutServerMsg,
    DataSent,
    DataRcvd,
    BrokerErrors,
    ServiceReconnects,
    PubSubDropped,
    SubscriptionsLimitExceeded,
}

impl Counter {
    pub const ALL: [Counter; 23] = [
        Counter::ClientMsg,
        Counter::FailedClientMsg,
        Counter::FailedAuths,
        Counter::DisconnectedSlowClients,
        Counter::Publications,
        Counter::BroadcastMsg,
        Counter::FailedBroadcastMsg,
        Counter::RemoteCommands,
        Counter::RpcCall,
        Counter::RpcRetries,
        Counter::RpcError,
        Counter::RpcTimeout,
        Counter::RpcCanceled,
        Counter::RpcConnectDeferred,
        Counter::ServerMsg,
        Counter::FailedServerMsg,
        Counter::TimeoutServerMsg,
        Counter::DataSent,
        Counter::DataRcvd,
        Counter::BrokerErrors,
        Counter::ServiceReconnects,
        Counter::PubSubDropped,
        Counter::SubscriptionsLimitExceeded,
    ];

    /// The AnyCable-Go name (Prometheus adds the `anycable_go_` prefix).
    pub fn name(self) -> &'static str {
        match self {
            Counter::ClientMsg => "client_msg_total",
            Counter::FailedClientMsg => "failed_client_msg_total",
            Counter::FailedAuths => "failed_auths_total",
            Counter::DisconnectedSlowClients => "disconnected_slow_clients_total",
            Counter::Publications => "publications_total",
            Counter::BroadcastMsg => "broadcast_msg_total",
            Counter::FailedBroadcastMsg => "failed_broadcast_msg_total",
            Counter::RemoteCommands => "remote_commands_total",
            Counter::RpcCall => "rpc_call_total",
            Counter::RpcRetries => "rpc_retries_total",
            Counter::RpcError => "rpc_error_total",
            Counter::RpcTimeout => "rpc_timeout_total",
            Counter::RpcCanceled => "rpc_canceled_total",
            Counter::RpcConnectDeferred => "rpc_connect_deferred_total",
            Counter::ServerMsg => "server_msg_total",
            Counter::FailedServerMsg => "failed_server_msg_total",
            Counter::TimeoutServerMsg => "timeout_server_msg_total",
            Counter::DataSent => "data_sent_total",
            Counter::DataRcvd => "data_rcvd_total",
            Counter::BrokerErrors => "broker_errors_total",
            Counter::ServiceReconnects => "service_reconnects_total",
            Counter::PubSubDropped => "pubsub_dropped_total",
            Counter::SubscriptionsLimitExceeded => "subscriptions_limit_exceeded_total",
        }
    }

    /// The Prometheus `# HELP` text.
    pub fn help(self) -> &'static str {
        match self {
            Counter::ClientMsg => "Client frames decoded into a command",
            Counter::FailedClientMsg => {
                "Client frames that could not be decoded plus commands whose handling failed"
            }
            Counter::FailedAuths => "Connection attempts that failed authentication",
            Counter::DisconnectedSlowClients => {
                "Sessions closed because their outgoing queue overflowed"
            }
            Counter::Publications => "Publications received by this node",
            Counter::BroadcastMsg => "Stream messages handed to the local hub",
            Counter::FailedBroadcastMsg => "Publications that could not be parsed",
            Counter::RemoteCommands => "Remote commands executed on this node",
            Counter::RpcCall => "RPC calls made",
            Counter::RpcRetries => "RPC call retry attempts",
            Counter::RpcError => "RPC calls that failed",
            Counter::RpcTimeout => "RPC attempts that timed out",
            Counter::RpcCanceled => "RPC calls abandoned because the client left",
            Counter::RpcConnectDeferred => {
                "Connect calls not made because the wait for a slot was too long (the client was told to reconnect later)"
            }
            Counter::ServerMsg => "Frames written to clients",
            Counter::FailedServerMsg => "Frame writes that failed (including timeouts)",
            Counter::TimeoutServerMsg => "Frame writes that hit the write deadline",
            Counter::DataSent => "Payload bytes written to clients",
            Counter::DataRcvd => "Payload bytes read from clients",
            Counter::BrokerErrors => {
                "Publications the NATS or Redis broker could not store and history reads it could not serve"
            }
            Counter::ServiceReconnects => {
                "Reconnections to Redis or NATS after a lost or refused connection (broadcasters, pub/sub, broker)"
            }
            Counter::PubSubDropped => {
                "Messages for node-to-node pub/sub dropped because its outgoing queue was full"
            }
            Counter::SubscriptionsLimitExceeded => {
                "Subscriptions rejected because the connection held --max_subscriptions_per_connection"
            }
        }
    }

    fn is_rpc(self) -> bool {
        matches!(
            self,
            Counter::RpcCall
                | Counter::RpcRetries
                | Counter::RpcError
                | Counter::RpcTimeout
                | Counter::RpcCanceled
                | Counter::RpcConnectDeferred
        )
    }
}

/// Every gauge. Interval gauges are set by the stats refresher; live ones (`RpcPending`,
/// `SseClients`) follow [`Metrics::track`] guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    ClientsNum,
    ClientsUniqNum,
    BroadcastStreamsNum,
    DisconnectQueueSize,
    GoroutinesNum,
    MemSysBytes,
    RpcPending,
    RpcCapacity,
    RpcInflight,
    SseClients,
    GrpcActiveConn,
    ReadyBroadcastRedis,
    ReadyBroadcastRedisX,
    ReadyBroadcastNats,
    ReadyPubSub,
    ReadyBroker,
    ReadyRpc,
}

impl Gauge {
    /// The readiness checks' gauges (1 = passing), in the order of
    /// [`Registration::readiness`].
    pub const READINESS: [Gauge; 6] = [
        Gauge::ReadyBroadcastRedis,
        Gauge::ReadyBroadcastRedisX,
        Gauge::ReadyBroadcastNats,
        Gauge::ReadyPubSub,
        Gauge::ReadyBroker,
        Gauge::ReadyRpc,
    ];

    pub const ALL: [Gauge; 17] = [
        Gauge::ClientsNum,
        Gauge::ClientsUniqNum,
        Gauge::BroadcastStreamsNum,
        Gauge::DisconnectQueueSize,
        Gauge::GoroutinesNum,
        Gauge::MemSysBytes,
        Gauge::RpcPending,
        Gauge::RpcCapacity,
        Gauge::RpcInflight,
        Gauge::SseClients,
        Gauge::GrpcActiveConn,
        Gauge::ReadyBroadcastRedis,
        Gauge::ReadyBroadcastRedisX,
        Gauge::ReadyBroadcastNats,
        Gauge::ReadyPubSub,
        Gauge::ReadyBroker,
        Gauge::ReadyRpc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Gauge::ClientsNum => "clients_num",
            Gauge::ClientsUniqNum => "clients_uniq_num",
            Gauge::BroadcastStreamsNum => "broadcast_streams_num",
            Gauge::DisconnectQueueSize => "disconnect_queue_size",
            Gauge::GoroutinesNum => "goroutines_num",
            Gauge::MemSysBytes => "mem_sys_bytes",
            Gauge::RpcPending => "rpc_pending_num",
            Gauge::RpcCapacity => "rpc_capacity_num",
            Gauge::RpcInflight => "rpc_inflight_num",
            Gauge::SseClients => "sse_clients_num",
            Gauge::GrpcActiveConn => "grpc_active_conn_num",
            Gauge::ReadyBroadcastRedis => "readiness_broadcast_redis",
            Gauge::ReadyBroadcastRedisX => "readiness_broadcast_redisx",
            Gauge::ReadyBroadcastNats => "readiness_broadcast_nats",
            Gauge::ReadyPubSub => "readiness_pubsub",
            Gauge::ReadyBroker => "readiness_broker",
            Gauge::ReadyRpc => "readiness_rpc",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Gauge::ClientsNum => "Authenticated sessions currently connected",
            Gauge::ClientsUniqNum => "Distinct connection identifiers among connected sessions",
            Gauge::BroadcastStreamsNum => "Streams with at least one local subscriber",
            Gauge::DisconnectQueueSize => "Disconnect calls waiting in the queue",
            Gauge::GoroutinesNum => "Live tasks of the async runtime",
            Gauge::MemSysBytes => "Resident memory of the process, in bytes",
            Gauge::RpcPending => "RPC calls waiting for a concurrency slot",
            Gauge::RpcCapacity => {
                "RPC calls allowed in flight: --rpc_concurrency, or the adaptive limit"
            }
            Gauge::RpcInflight => "RPC calls in flight",
            Gauge::SseClients => "Connected SSE clients",
            Gauge::GrpcActiveConn => "Live connections to the gRPC servers",
            Gauge::ReadyBroadcastRedis => {
                "1 while canaries published to the redis broadcaster's channel come back to this node"
            }
            Gauge::ReadyBroadcastRedisX => {
                "1 while canaries added to the redisx broadcaster's stream come back to this node"
            }
            Gauge::ReadyBroadcastNats => {
                "1 while canaries published to the nats broadcaster's subject come back to this node"
            }
            Gauge::ReadyPubSub => "1 while canaries sent through node-to-node pub/sub come back to this node",
            Gauge::ReadyBroker => "1 while the broker answers a history read",
            Gauge::ReadyRpc => "1 while the RPC backend answers a health request",
        }
    }
}

/// A counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Counter(Counter),
    Gauge(Gauge),
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Counter(c) => c.name(),
            Metric::Gauge(g) => g.name(),
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Metric::Counter(c) => c.help(),
            Metric::Gauge(g) => g.help(),
        }
    }

    pub fn is_counter(self) -> bool {
        matches!(self, Metric::Counter(_))
    }
}

/// Which optional metrics exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// RPC counters, `rpc_pending_num`, `rpc_capacity_num` and `rpc_inflight_num` (RPC
    /// enabled, i.e. not `--norpc`).
    pub rpc: bool,
    /// `sse_clients_num` (`--sse`).
    pub sse: bool,
    /// `grpc_active_conn_num` (the RPC backend is reached over gRPC).
    pub grpc: bool,
    /// `broker_errors_total` (`--broker=nats|redis`).
    pub distributed_broker: bool,
    /// `service_reconnects_total` (something connects to Redis or NATS).
    pub services: bool,
    /// The readiness checks that run, in the order of [`Gauge::READINESS`].
    pub readiness: [bool; 6],
}

impl Default for Registration {
    /// What the default configuration registers: RPC over gRPC on, SSE off.
    fn default() -> Self {
        Registration {
            rpc: true,
            sse: false,
            grpc: true,
            distributed_broker: false,
            services: false,
            readiness: [false; 6],
        }
    }
}

/// The process's counters and gauges.
pub struct Metrics {
    counters: StripedCounters<{ Counter::ALL.len() }>,
    gauges: [AtomicU64; Gauge::ALL.len()],
    registration: Registration,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Registration::default())
    }
}

impl Metrics {
    pub fn new(registration: Registration) -> Metrics {
        Metrics {
            counters: Default::default(),
            gauges: Default::default(),
            registration,
        }
    }

    pub fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, n: u64) {
        self.counters.add(counter as usize, n);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counters.get(counter as usize)
    }

    /// Sets an interval gauge.
    pub fn set(&self, gauge: Gauge, value: u64) {
        self.gauges[gauge as usize].store(value, Ordering::Relaxed);
    }

    pub fn gauge(&self, gauge: Gauge) -> u64 {
        self.gauges[gauge as usize].load(Ordering::Relaxed)
    }

    /// Raises a live gauge for as long as the returned guard lives.
    pub fn track(&self, gauge: Gauge) -> Tracked<'_> {
        self.gauges[gauge as usize].fetch_add(1, Ordering::Relaxed);
        Tracked {
            metrics: self,
            gauge,
        }
    }

    pub fn value(&self, metric: Metric) -> u64 {
        match metric {
            Metric::Counter(c) => self.get(c),
            Metric::Gauge(g) => self.gauge(g),
        }
    }

    pub fn is_registered(&self, metric: Metric) -> bool {
        match metric {
            Metric::Counter(Counter::BrokerErrors) => self.registration.distributed_broker,
            Metric::Counter(Counter::ServiceReconnects | Counter::PubSubDropped) => {
                self.registration.services
            }
            Metric::Counter(c) => !c.is_rpc() || self.registration.rpc,
            Metric::Gauge(Gauge::RpcPending | Gauge::RpcCapacity | Gauge::RpcInflight) => {
                self.registration.rpc
            }
            Metric::Gauge(Gauge::SseClients) => self.registration.sse,
            Metric::Gauge(Gauge::GrpcActiveConn) => self.registration.grpc,
            Metric::Gauge(gauge) => match Gauge::READINESS.iter().position(|g| *g == gauge) {
                Some(index) => self.registration.readiness[index],
                None => true,
            },
        }
    }

    /// Registered metrics: every counter, then every gauge.
    pub fn registered(&self) -> impl Iterator<Item = Metric> + '_ {
        Counter::ALL
            .into_iter()
            .map(Metric::Counter)
            .chain(Gauge::ALL.into_iter().map(Metric::Gauge))
            .filter(|&m| self.is_registered(m))
    }

    /// Every registered metric with its current (cumulative) value.
    pub fn snapshot(&self) -> Vec<(Metric, u64)> {
        self.registered().map(|m| (m, self.value(m))).collect()
    }
}

/// Keeps a live gauge raised; lowers it when dropped (also when the future holding it is
/// cancelled).
pub struct Tracked<'a> {
    metrics: &'a Metrics,
    gauge: Gauge,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.metrics.gauges[self.gauge as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_order_matches_the_all_lists() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        for (i, g) in Gauge::ALL.iter().enumerate() {
            assert_eq!(*g as usize, i);
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Counter::ALL
            .iter()
            .map(|c| c.name())
            .chain(Gauge::ALL.iter().map(|g| g.name()))
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
    }

    #[test]
    fn live_gauges_follow_guards() {
        let metrics = Metrics::default();
        let a = metrics.track(Gauge::RpcPending);
        let b = metrics.track(Gauge::RpcPending);
        assert_eq!(metrics.gauge(Gauge::RpcPending), 2);
        drop(a);
        assert_eq!(metrics.gauge(Gauge::RpcPending), 1);
        drop(b);
        assert_eq!(metrics.gauge(Gauge::RpcPending), 0);
    }

    #[test]
    fn registration_follows_the_config() {
        let all = Metrics::new(Registration {
            rpc: true,
            sse: true,
            grpc: true,
            distributed_broker: true,
            services: true,
            readiness: [true; 6],
        });
        assert_eq!(
            all.registered().count(),
            Counter::ALL.len() + Gauge::ALL.len()
        );
        let plain = Metrics::new(Registration {
            rpc: false,
            sse: false,
            grpc: false,
            distributed_broker: false,
            services: false,
            readiness: [false; 6],
        });
        let names: Vec<_> = plain.registered().map(Metric::name).collect();
        assert!(names.contains(&"clients_num"));
        assert!(names.contains(&"broadcast_msg_total"));
        assert!(!names.iter().any(|n| n.starts_with("rpc_")));
        assert!(!names.contains(&"sse_clients_num"));
        assert!(!names.contains(&"broker_errors_total"));
        assert!(!names.iter().any(|n| n.starts_with("readiness_")));
        // Counters come first.
        let first_gauge = names.iter().position(|n| *n == "clients_num").unwrap();
        assert!(plain.registered().take(first_gauge).all(Metric::is_counter));
    }
}

//! Counters with AnyCable-Go's metric names. They are cumulative and lock-free; exporters read
//! them with [`Metrics::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter the server keeps.
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
}

impl Counter {
    pub const ALL: [Counter; 13] = [
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
        }
    }
}

/// The process's counters.
#[derive(Default)]
pub struct Metrics {
    values: [AtomicU64; Counter::ALL.len()],
}

impl Metrics {
    pub fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, n: u64) {
        self.values[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Ordering::Relaxed)
    }

    /// Every counter with its value, in a stable order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| (c.name(), self.get(c)))
            .collect()
    }
}

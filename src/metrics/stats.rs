//! The interval gauges: sampled every `--stats_refresh_interval` seconds by one task (0 turns
//! the task off and the gauges stay 0, as in the reference).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Gauge, Metrics};

/// What the node reports for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeGauges {
    /// Authenticated sessions.
    pub clients: usize,
    /// Distinct identifiers among them.
    pub uniq_clients: usize,
    /// Streams with at least one local subscriber.
    pub streams: usize,
    /// Queued Disconnect calls.
    pub disconnect_queue: usize,
    /// Live connections to the gRPC servers (gRPC backends only).
    pub grpc_connections: usize,
}

/// Starts the refresher: samples at once, then every `every`, until `shutdown`. Nothing is
/// started when `every` is zero.
pub fn spawn_refresh<F>(
    metrics: Arc<Metrics>,
    every: Duration,
    sample: F,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) where
    F: Fn() -> NodeGauges + Send + 'static,
{
    if every.is_zero() {
        return;
    }
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => refresh(&metrics, sample()),
                _ = shutdown.cancelled() => return,
            }
        }
    });
}

fn refresh(metrics: &Metrics, node: NodeGauges) {
    metrics.set(Gauge::ClientsNum, node.clients as u64);
    metrics.set(Gauge::ClientsUniqNum, node.uniq_clients as u64);
    metrics.set(Gauge::BroadcastStreamsNum, node.streams as u64);
    metrics.set(Gauge::DisconnectQueueSize, node.disconnect_queue as u64);
    metrics.set(Gauge::GrpcActiveConn, node.grpc_connections as u64);
    metrics.set(Gauge::GoroutinesNum, alive_tasks());
    if let Some(rss) = resident_bytes() {
        metrics.set(Gauge::MemSysBytes, rss);
    }
}

/// Tasks alive in the current tokio runtime (stands in for Go's goroutine count).
fn alive_tasks() -> u64 {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks() as u64)
        .unwrap_or(0)
}

/// The process's resident set size, from `/proc/self/statm` (Linux).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    parse_statm_resident(&statm).map(|pages| pages * rustix::param::page_size() as u64)
}

/// The second field of `statm`: resident pages.
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_resident_pages() {
        assert_eq!(parse_statm_resident("1234 567 89 1 0 300 0\n"), Some(567));
        assert_eq!(parse_statm_resident("1234"), None);
    }

    #[tokio::test]
    async fn refresh_sets_every_interval_gauge() {
        let metrics = Metrics::default();
        let task = tokio::spawn(std::future::pending::<()>());
        refresh(
            &metrics,
            NodeGauges {
                clients: 3,
                uniq_clients: 2,
                streams: 5,
                disconnect_queue: 1,
                grpc_connections: 2,
            },
        );
        assert_eq!(metrics.gauge(Gauge::ClientsNum), 3);
        assert_eq!(metrics.gauge(Gauge::ClientsUniqNum), 2);
        assert_eq!(metrics.gauge(Gauge::BroadcastStreamsNum), 5);
        assert_eq!(metrics.gauge(Gauge::DisconnectQueueSize), 1);
        assert_eq!(metrics.gauge(Gauge::GrpcActiveConn), 2);
        assert!(metrics.gauge(Gauge::GoroutinesNum) >= 1);
        task.abort();
        if cfg!(target_os = "linux") {
            assert!(metrics.gauge(Gauge::MemSysBytes) > 0);
        }
    }
}

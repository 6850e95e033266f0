//! How late this process's own tasks run. The latency of an RPC attempt, as the server measures
//! it, includes the time the answer waits for the runtime to poll the task that reads it; when
//! a reconnect storm keeps the node's cores busy, that wait alone can exceed the backend's
//! whole answer time. The adaptive limit discounts it (see `limiter.rs`), so that a busy node
//! is not taken for a slow backend.
//!
//! A probe task sleeps [`PROBE`] at a time and records how late it wakes up: a timer's task
//! waits in the same run queues as everything else. The lag is a decaying maximum: a spike
//! counts at once and fades over a few probes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How often the probe wakes up.
pub const PROBE: Duration = Duration::from_millis(10);
/// What remains of the lag from one probe to the next, when it is not renewed.
const DECAY: f64 = 0.8;

#[derive(Default)]
pub struct Lag {
    micros: AtomicU64,
}

impl Lag {
    /// Starts the probe; it stops once the returned handle is dropped.
    pub fn start() -> Arc<Lag> {
        let lag = Arc::new(Lag::default());
        let weak = Arc::downgrade(&lag);
        tokio::spawn(async move {
            loop {
                let due = Instant::now() + PROBE;
                tokio::time::sleep_until(due).await;
                let late = Instant::now().saturating_duration_since(due);
                let Some(lag) = weak.upgrade() else {
                    return;
                };
                lag.observe(late);
            }
        });
        lag
    }

    /// The current lag.
    pub fn current(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }

    fn observe(&self, late: Duration) {
        let previous = self.micros.load(Ordering::Relaxed) as f64;
        let now = (late.as_micros() as f64).max(previous * DECAY);
        self.micros.store(now as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_counts_at_once_and_fades() {
        let lag = Lag::default();
        lag.observe(Duration::from_millis(100));
        assert_eq!(lag.current(), Duration::from_millis(100));
        lag.observe(Duration::ZERO);
        assert_eq!(lag.current(), Duration::from_millis(80));
        for _ in 0..30 {
            lag.observe(Duration::ZERO);
        }
        assert!(lag.current() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_sees_a_blocked_runtime() {
        let lag = Lag::start();
        tokio::time::sleep(PROBE * 3).await;
        assert_eq!(lag.current(), Duration::ZERO);
        // Hold the only thread: the probe's timer fires late.
        std::thread::sleep(Duration::from_millis(50));
        tokio::time::advance(Duration::from_millis(50)).await;
        tokio::time::sleep(PROBE * 2).await;
        assert!(lag.current() > Duration::ZERO, "{:?}", lag.current());
    }
}

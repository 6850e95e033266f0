//! A backend that can run only so many `Connect` calls at once, each taking a while, like an
//! application server with a fixed pool of workers: a call beyond the pool is refused at once
//! with `RESOURCE_EXHAUSTED` (what a gRPC server with a full pool answers).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct Capacity {
    /// Calls that may run at once.
    pub limit: u64,
    /// How long each call takes.
    pub latency: Duration,
    running: AtomicU64,
    peak: AtomicU64,
    exhausted: AtomicU64,
}

/// What the model saw.
pub struct CapacityFigures {
    /// The most calls running at once.
    pub peak: u64,
    /// Calls refused because `limit` were running.
    pub exhausted: u64,
}

/// One call running; leaves its place when dropped.
pub struct Running<'a>(&'a Capacity);

impl Capacity {
    pub fn new(limit: u64, latency: Duration) -> Capacity {
        Capacity {
            limit,
            latency,
            running: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        }
    }

    /// Takes a place, or `None` (counted) when all are taken.
    pub fn enter(&self) -> Option<Running<'_>> {
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        if now > self.limit {
            self.running.fetch_sub(1, Ordering::Relaxed);
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.peak.fetch_max(now, Ordering::Relaxed);
        Some(Running(self))
    }

    pub fn figures(&self) -> CapacityFigures {
        CapacityFigures {
            peak: self.peak.load(Ordering::Relaxed),
            exhausted: self.exhausted.load(Ordering::Relaxed),
        }
    }
}

impl Running<'_> {
    /// The call's work: its latency, holding the place.
    pub async fn work(&self) {
        tokio::time::sleep(self.0.latency).await;
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_beyond_the_limit_are_refused_and_counted() {
        let capacity = Capacity::new(2, Duration::ZERO);
        let a = capacity.enter().unwrap();
        let _b = capacity.enter().unwrap();
        assert!(capacity.enter().is_none());
        drop(a);
        let _c = capacity.enter().unwrap();
        let figures = capacity.figures();
        assert_eq!((figures.peak, figures.exhausted), (2, 1));
    }
}

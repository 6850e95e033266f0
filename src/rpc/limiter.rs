//! The adaptive concurrency limit (`--rpc_concurrency=0`): additive increase, multiplicative
//! decrease (AIMD), driven by what each RPC attempt tells about the backend.
//!
//! - An attempt refused for capacity (`RESOURCE_EXHAUSTED`), finding no backend
//!   (`UNAVAILABLE`) or past its own deadline, or answered much slower than the backend's recent best
//!   (more than [`LATENCY_TOLERANCE`] times the baseline and [`LATENCY_SLACK`] above it), is
//!   congestion: the limit is multiplied by [`BACKOFF`].
//! - Congestion is counted once per round trip: an attempt that started before the latest
//!   decrease ran under the old limit and says nothing about the new one (TCP's "once per
//!   window" rule). Without it, a burst of simultaneous errors would collapse the limit to
//!   the floor at once.
//! - An answer within the tolerance grows the limit by `1 / limit` (so by about one per round
//!   trip), but only when the attempt started while the limit was in use (calls waiting, or at
//!   least half of it in flight): a limit nobody needs is not raised.
//! - What the runtime's own scheduling lag explains of a latency is not held against the
//!   backend (`lag.rs`): a node kept busy by a storm must not read as a slow backend.
//! - The baseline is the fastest answer of the last one to two [`BASELINE_WINDOW`]s, so a
//!   backend that became slower for good becomes the new normal after a while.
//!
//! The limit stays within `[min, max]` (`--rpc_concurrency_min`, `--rpc_concurrency_max`)
//! and starts at `--rpc_concurrency_initial`.

use std::time::{Duration, Instant};

/// Multiplicative decrease on congestion.
pub const BACKOFF: f64 = 0.9;
/// An answer slower than this many times the baseline is congestion...
pub const LATENCY_TOLERANCE: f64 = 2.0;
/// ...if it is also this much slower than it in absolute terms (scheduling jitter on a busy
/// host easily doubles sub-millisecond latencies).
pub const LATENCY_SLACK: Duration = Duration::from_millis(5);
/// How long the fastest answer seen stays the baseline (one to two windows).
pub const BASELINE_WINDOW: Duration = Duration::from_secs(30);

/// `--rpc_concurrency_initial`, `--rpc_concurrency_min` and `--rpc_concurrency_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub initial: usize,
    pub min: usize,
    pub max: usize,
}

/// What one attempt says about the backend's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// The attempt took this long: the backend answered (whatever the application's verdict),
    /// or the whole-call timeout cut it short (then it took at least this long). A call that
    /// spent its budget waiting for a slot says nothing about the backend: counting its
    /// timeout as congestion would shrink the limit, lengthen the wait, and feed on itself.
    Latency(Duration),
    /// Refused for capacity, unreachable, or past its own deadline (`--rpc_request_timeout`).
    Overloaded,
}

/// How the attempt began, recorded when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The limiter's generation (number of decreases so far).
    pub generation: u64,
    /// Calls were waiting or at least half the limit was in flight.
    pub saturated: bool,
}

/// The limit and the state its changes depend on.
#[derive(Debug)]
pub struct Aimd {
    limit: f64,
    min: f64,
    max: f64,
    generation: u64,
    baseline: Baseline,
}

impl Aimd {
    pub fn new(bounds: Bounds, now: Instant) -> Aimd {
        Aimd {
            limit: bounds.initial as f64,
            min: bounds.min as f64,
            max: bounds.max as f64,
            generation: 0,
            baseline: Baseline::new(now),
        }
    }

    /// The whole number of calls allowed in flight.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Applies one attempt's outcome; `lag` is how late this process's own tasks run now (see
    /// `lag.rs`): that much of a latency is ours, not the backend's.
    pub fn record(&mut self, sample: Sample, start: Start, now: Instant, lag: Duration) {
        let congested = match sample {
            Sample::Overloaded => true,
            Sample::Latency(latency) => {
                let baseline = self.baseline.observe(latency, now);
                let backend = latency.saturating_sub(lag);
                backend > baseline.mul_f64(LATENCY_TOLERANCE) && backend > baseline + LATENCY_SLACK
            }
        };
        if congested {
            if start.generation == self.generation {
                self.limit = (self.limit * BACKOFF).max(self.min);
                self.generation += 1;
            }
        } else if start.saturated {
            self.limit = (self.limit + 1.0 / self.limit).min(self.max);
        }
    }
}

/// The fastest answer of the current window and of the previous one.
#[derive(Debug)]
struct Baseline {
    window_start: Instant,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl Baseline {
    fn new(now: Instant) -> Baseline {
        Baseline {
            window_start: now,
            current: None,
            previous: None,
        }
    }

    /// Records a latency and returns the baseline it is judged against (itself, for the very
    /// first one).
    fn observe(&mut self, latency: Duration, now: Instant) -> Duration {
        if now.duration_since(self.window_start) >= BASELINE_WINDOW {
            self.previous = self.current.take();
            self.window_start = now;
        }
        let baseline = [self.current, self.previous]
            .into_iter()
            .flatten()
            .min()
            .map_or(latency, |best| best.min(latency));
        self.current = Some(self.current.map_or(latency, |c| c.min(latency)));
        baseline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        initial: 20,
        min: 5,
        max: 30,
    };
    const MS: Duration = Duration::from_millis(1);

    fn start(aimd: &Aimd, saturated: bool) -> Start {
        Start {
            generation: aimd.generation(),
            saturated,
        }
    }

    #[test]
    fn overload_multiplies_the_limit_by_the_backoff() {
        let now = Instant::now();
        let mut aimd = Aimd::new(BOUNDS, now);
        aimd.record(Sample::Overloaded, start(&aimd, true), now, Duration::ZERO);
        assert_eq!(aimd.limit(), 18); // 20 × 0.9
        aimd.record(Sample::Overloaded, start(&aimd, true), now, Duration::ZERO);
        assert_eq!(aimd.limit(), 16); // 18 × 0.9 = 16.2
    }

    #[test]
    fn congestion_from_before_the_last_decrease_is_not_counted_again() {
        let now = Instant::now();
        let mut aimd = Aimd::new(BOUNDS, now);
        let burst = start(&aimd, true);
        for _ in 0..50 {
            aimd.record(Sample::Overloaded, burst, now, Duration::ZERO);
        }
        assert_eq!(aimd.limit(), 18);
    }

    #[test]
    fn the_limit_never_leaves_its_bounds() {
        let now = Instant::now();
        let mut aimd = Aimd::new(BOUNDS, now);
        for _ in 0..100 {
            aimd.record(Sample::Overloaded, start(&aimd, true), now, Duration::ZERO);
        }
        assert_eq!(aimd.limit(), 5);
        for _ in 0..10_000 {
            aimd.record(Sample::Latency(MS), start(&aimd, true), now, Duration::ZERO);
        }
        assert_eq!(aimd.limit(), 30);
    }

    #[test]
    fn answers_grow_the_limit_by_about_one_per_limit_answers_when_saturated() {
        let now = Instant::now();
        let mut aimd = Aimd::new(BOUNDS, now);
        for _ in 0..20 {
            aimd.record(
                Sample::Latency(10 * MS),
                start(&aimd, true),
                now,
                Duration::ZERO,
            );
        }
        // 20 answers of 1/20 to 1/21 each: just under one more.
        assert_eq!(aimd.limit(), 20);
        aimd.record(
            Sample::Latency(10 * MS),
            start(&aimd, true),
            now,
            Duration::ZERO,
        );
        assert_eq!(aimd.limit(), 21);
    }

    #[test]
    fn an_unused_limit_does_not_grow() {
        let now = Instant::now();
        let mut aimd = Aimd::new(BOUNDS, now);
        for _ in 0..1000 {
            aimd.record(
                Sample::Latency(10 * MS),
                start(&aimd, false),
                now,
                Duration::ZERO,
            );
        }
        assert_eq!(aimd.limit(), 20);
    }

    #[test]
    fn slow_answers_are_congestion_fast_jitter_is_not() {
        let now = Instant::now();
        let mut aimd = Aimd::new(BOUNDS, now);
        aimd.record(
            Sample::Latency(MS),
            start(&aimd, false),
            now,
            Duration::ZERO,
        );
        // 4 ms is 4× the baseline but within the absolute slack.
        aimd.record(
            Sample::Latency(4 * MS),
            start(&aimd, false),
            now,
            Duration::ZERO,
        );
        assert_eq!(aimd.limit(), 20);
        // 30 ms is both.
        aimd.record(
            Sample::Latency(30 * MS),
            start(&aimd, false),
            now,
            Duration::ZERO,
        );
        assert_eq!(aimd.limit(), 18);
        // 1.5× a 20 ms baseline is within the tolerance.
        let mut aimd = Aimd::new(BOUNDS, now);
        aimd.record(
            Sample::Latency(20 * MS),
            start(&aimd, false),
            now,
            Duration::ZERO,
        );
        aimd.record(
            Sample::Latency(30 * MS),
            start(&aimd, false),
            now,
            Duration::ZERO,
        );
        assert_eq!(aimd.limit(), 20);
    }

    #[test]
    fn latency_the_runtimes_lag_explains_is_not_congestion() {
        let now = Instant::now();
        let mut aimd = Aimd::new(BOUNDS, now);
        aimd.record(
            Sample::Latency(10 * MS),
            start(&aimd, false),
            now,
            Duration::ZERO,
        );
        aimd.record(
            Sample::Latency(300 * MS),
            start(&aimd, false),
            now,
            295 * MS,
        );
        assert_eq!(aimd.limit(), 20);
        aimd.record(
            Sample::Latency(300 * MS),
            start(&aimd, false),
            now,
            200 * MS,
        );
        assert_eq!(aimd.limit(), 18);
    }

    #[test]
    fn a_lasting_slowdown_becomes_the_baseline_after_two_windows() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(BOUNDS, t0);
        aimd.record(
            Sample::Latency(10 * MS),
            start(&aimd, false),
            t0,
            Duration::ZERO,
        );
        let t1 = t0 + BASELINE_WINDOW;
        aimd.record(
            Sample::Latency(100 * MS),
            start(&aimd, false),
            t1,
            Duration::ZERO,
        );
        assert_eq!(aimd.limit(), 18, "10 ms is still the baseline");
        let t2 = t1 + BASELINE_WINDOW;
        aimd.record(
            Sample::Latency(100 * MS),
            start(&aimd, false),
            t2,
            Duration::ZERO,
        );
        assert_eq!(aimd.limit(), 18, "100 ms is the baseline now");
    }
}

//! The HTTP RPC circuit breaker: when most recent calls got no HTTP response at all, stop
//! calling the backend for a while and fail fast, instead of piling retries onto a dead host.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts restart every `WINDOW` while closed.
const WINDOW: Duration = Duration::from_secs(10);
/// Trip when at least this many calls were made in the window...
const MIN_REQUESTS: u32 = 10;
/// ...and at least this share of them failed.
const FAILURE_RATIO: f64 = 0.8;
/// How long the breaker stays open.
const OPEN_FOR: Duration = Duration::from_secs(5);
/// Trial calls let through while half-open; all must succeed to close again.
const TRIALS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        since: Instant,
        requests: u32,
        failures: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        admitted: u32,
        succeeded: u32,
    },
}

pub struct Breaker {
    state: Mutex<State>,
}

impl Breaker {
    pub fn new() -> Breaker {
        Breaker {
            state: Mutex::new(State::Closed {
                since: Instant::now(),
                requests: 0,
                failures: 0,
            }),
        }
    }

    /// Whether a call may go out now.
    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    /// Records the outcome of an admitted call: `responded` is true when the backend answered
    /// with any HTTP status.
    pub fn record(&self, responded: bool) {
        self.record_at(responded, Instant::now());
    }

    fn admit_at(&self, now: Instant) -> bool {
        let mut state = self.lock();
        match *state {
            State::Closed { since, .. } => {
                if now.duration_since(since) >= WINDOW {
                    *state = State::Closed {
                        since: now,
                        requests: 0,
                        failures: 0,
                    };
                }
                true
            }
            State::Open { until } if now < until => false,
            State::Open { .. } => {
                tracing::info!(context = "cb", "circuit breaker is half-open");
                *state = State::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                true
            }
            State::HalfOpen {
                admitted,
                succeeded,
            } if admitted < TRIALS => {
                *state = State::HalfOpen {
                    admitted: admitted + 1,
                    succeeded,
                };
                true
            }
            State::HalfOpen { .. } => false,
        }
    }

    fn record_at(&self, responded: bool, now: Instant) {
        let mut state = self.lock();
        match *state {
            State::Closed {
                since,
                requests,
                failures,
            } => {
                let requests = requests + 1;
                let failures = failures + u32::from(!responded);
                if requests >= MIN_REQUESTS
                    && f64::from(failures) / f64::from(requests) >= FAILURE_RATIO
                {
                    tracing::warn!(context = "cb", "circuit breaker is open");
                    *state = State::Open {
                        until: now + OPEN_FOR,
                    };
                } else {
                    *state = State::Closed {
                        since,
                        requests,
                        failures,
                    };
                }
            }
            State::HalfOpen {
                admitted,
                succeeded,
            } => {
                if !responded {
                    tracing::warn!(context = "cb", "circuit breaker is open");
                    *state = State::Open {
                        until: now + OPEN_FOR,
                    };
                } else if succeeded + 1 >= TRIALS {
                    tracing::info!(context = "cb", "circuit breaker is closed");
                    *state = State::Closed {
                        since: now,
                        requests: 0,
                        failures: 0,
                    };
                } else {
                    *state = State::HalfOpen {
                        admitted,
                        succeeded: succeeded + 1,
                    };
                }
            }
            State::Open { .. } => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_mostly_failed_calls_and_recovers_after_trials() {
        let breaker = Breaker::new();
        let start = Instant::now();
        for _ in 0..9 {
            assert!(breaker.admit_at(start));
            breaker.record_at(false, start);
        }
        assert!(breaker.admit_at(start), "nine calls are not enough to trip");
        breaker.record_at(false, start);
        assert!(!breaker.admit_at(start), "ten failures out of ten trip it");
        assert!(!breaker.admit_at(start + Duration::from_secs(4)));
        let later = start + OPEN_FOR;
        for _ in 0..TRIALS {
            assert!(breaker.admit_at(later));
        }
        assert!(
            !breaker.admit_at(later),
            "only the trial calls go through while half-open"
        );
        for _ in 0..TRIALS {
            breaker.record_at(true, later);
        }
        assert!(
            breaker.admit_at(later),
            "closed again after successful trials"
        );
    }

    #[test]
    fn a_failed_trial_reopens_it() {
        let breaker = Breaker::new();
        let start = Instant::now();
        for _ in 0..10 {
            breaker.admit_at(start);
            breaker.record_at(false, start);
        }
        let later = start + OPEN_FOR;
        assert!(breaker.admit_at(later));
        breaker.record_at(false, later);
        assert!(!breaker.admit_at(later + Duration::from_secs(1)));
    }

    #[test]
    fn answers_keep_it_closed_and_counts_reset_per_window() {
        let breaker = Breaker::new();
        let start = Instant::now();
        for _ in 0..4 {
            breaker.admit_at(start);
            breaker.record_at(true, start);
        }
        for _ in 0..8 {
            breaker.admit_at(start);
            breaker.record_at(false, start);
        }
        assert!(breaker.admit_at(start), "8 of 12 is below the ratio");
        let next_window = start + WINDOW;
        assert!(breaker.admit_at(next_window));
        for _ in 0..9 {
            breaker.record_at(false, next_window);
        }
        assert!(
            breaker.admit_at(next_window),
            "the previous window's failures were forgotten"
        );
    }
}

//! How the long-lived Redis connections (the `redis` and `redisx` broadcasters, Redis pub/sub)
//! come back after a failure, and what they tell the operator about it.
//!
//! Redis is optional for a server on its defaults (the `redis` broadcaster is on by default, as
//! in AnyCable-Go, but many apps only broadcast over HTTP), so an unreachable Redis must neither
//! stop the server nor flood its log: the first failure is one warning that names the address
//! and what is missing while it lasts, later attempts are logged at debug only, and the next
//! success is one info line. Attempts go on for as long as the process lives, with a backoff
//! capped at a few seconds (Redis Pub/Sub messages published while we are away are gone, so
//! coming back quickly matters more than sparing the network); `redis.max_reconnect_attempts`
//! set to a positive number restores the reference's "stop the server after N failures".

use std::fmt::Display;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// The first retry comes quickly; each further one waits twice as long, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(4);

/// The error a component ends with when an explicit attempt limit is exhausted.
pub const ATTEMPTS_EXCEEDED: &str = "Redis reconnect attempts exceeded";

/// The connection state seen by the operator.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Link {
    /// No attempt has finished yet.
    Starting,
    Up,
    /// Failing since the given moment (an attempt failed or a working connection broke).
    Down(Instant),
}

/// Reconnection state of one long-lived connection.
pub struct Reconnect {
    context: &'static str,
    provider: &'static str,
    /// Where the connection goes, without credentials (`redis://host:port`).
    target: String,
    /// What the application loses while the connection is down, for the warning.
    consequence: &'static str,
    /// `Some(n)`: give up after `n` consecutive failures (`redis.max_reconnect_attempts`).
    limit: Option<u64>,
    failures: u64,
    link: Link,
}

impl Reconnect {
    pub fn new(
        context: &'static str,
        provider: &'static str,
        target: String,
        consequence: &'static str,
        max_attempts: u64,
    ) -> Reconnect {
        Reconnect {
            context,
            provider,
            target,
            consequence,
            limit: (max_attempts > 0).then_some(max_attempts),
            failures: 0,
            link: Link::Starting,
        }
    }

    /// The connection works. After failures this logs the recovery (once) and returns
    /// `false`; on the first success it returns `true`, and the caller logs its own start-up
    /// line (the reference's wording, e.g. "subscribed to Redis channel").
    pub fn up(&mut self) -> bool {
        let first = self.link == Link::Starting;
        if let Link::Down(since) = self.link {
            tracing::info!(
                context = self.context,
                provider = self.provider,
                "connected to Redis at {} after {} failed attempts ({:.1}s)",
                self.target,
                self.failures,
                since.elapsed().as_secs_f64()
            );
        }
        self.link = Link::Up;
        self.failures = 0;
        first
    }

    /// An attempt failed or a working connection broke: logs the change to "down" once and
    /// returns how long to wait before the next attempt, or `Err` when an explicit attempt
    /// limit is exhausted (the caller stops the server).
    pub fn failed(&mut self, error: &dyn Display) -> Result<Duration, &'static str> {
        let (context, provider, target) = (self.context, self.provider, &self.target);
        if matches!(self.link, Link::Down(_)) {
            tracing::debug!(
                context,
                provider,
                "Redis at {target} still unreachable: {error}"
            );
        } else {
            let what = if self.link == Link::Up {
                format!("lost the connection to Redis at {target}")
            } else {
                format!("Redis at {target} is not available")
            };
            tracing::warn!(
                context,
                provider,
                "{what} ({error}); {} until it is back (retrying in the background)",
                self.consequence
            );
            self.link = Link::Down(Instant::now());
        }
        if self.limit.is_some_and(|limit| self.failures >= limit) {
            return Err(ATTEMPTS_EXCEEDED);
        }
        let delay = delay(self.failures);
        self.failures += 1;
        Ok(delay)
    }
}

/// The wait before retry number `attempt` (0-based): doubling from [`FIRST_DELAY`], capped at
/// [`MAX_DELAY`], with up to a quarter taken off at random so that many nodes restarted
/// together do not reconnect in lockstep.
pub fn delay(attempt: u64) -> Duration {
    let full = FIRST_DELAY
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_DELAY);
    let jitter = rand::rng().random_range(0.0..0.25);
    full.mul_f64(1.0 - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_is_capped() {
        assert!(delay(0) <= FIRST_DELAY && delay(0) >= FIRST_DELAY.mul_f64(0.75));
        assert!(delay(2) <= Duration::from_secs(1) && delay(2) >= Duration::from_millis(750));
        for attempt in [4, 10, 40, u64::MAX] {
            let d = delay(attempt);
            assert!(
                d <= MAX_DELAY && d >= MAX_DELAY.mul_f64(0.75),
                "{attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn retries_forever_unless_limited() {
        let mut unlimited = Reconnect::new("broadcast", "redis", "redis://x".into(), "", 0);
        for _ in 0..1000 {
            assert!(unlimited.failed(&"refused").is_ok());
        }
        let mut limited = Reconnect::new("broadcast", "redis", "redis://x".into(), "", 2);
        assert!(Reconnect::new("broadcast", "redis", "redis://x".into(), "", 2).up());
        assert!(limited.failed(&"refused").is_ok());
        assert!(limited.failed(&"refused").is_ok());
        assert_eq!(limited.failed(&"refused"), Err(ATTEMPTS_EXCEEDED));
        assert!(!limited.up(), "not the first success");
        assert!(
            limited.failed(&"refused").is_ok(),
            "a success resets the count"
        );
    }
}

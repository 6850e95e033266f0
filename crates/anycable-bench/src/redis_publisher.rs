//! Publishes through the server's `redis` broadcaster: `PUBLISH <channel> <json>`, the same
//! JSON that `/_broadcast` takes. It goes through the `redis` crate rather than the server's
//! own RESP client, so that a fault in that client cannot hide itself by being on both sides.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

/// The Redis server the benchmark and the server it starts use.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// The server's default `--redis_channel`, for a server the benchmark did not start.
pub const DEFAULT_CHANNEL: &str = "__anycable__";

/// How long the server may take to subscribe to its channel after it listens.
const SUBSCRIBE_LIMIT: Duration = Duration::from_secs(10);
/// How long connecting to Redis may take before the run gives up.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// How long one reply may take. The crate's default (half a second) is shorter than a Redis
/// sharing two saturated cores with the server and the clients can promise at the top rates of
/// `throughput`, and a late reply is not a lost publication (the fleet counts losses).
const REPLY_LIMIT: Duration = Duration::from_secs(10);

/// Connects to [`REDIS_URL`]; fails with a message that says what is missing.
pub async fn open() -> Result<MultiplexedConnection, String> {
    let client = Client::open(REDIS_URL).map_err(|e| e.to_string())?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_LIMIT))
        .set_response_timeout(Some(REPLY_LIMIT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| {
            format!("--broadcaster redis needs a Redis server at {REDIS_URL}, which does not answer: {e}")
        })
}

pub struct RedisPublisher {
    connection: MultiplexedConnection,
    channel: String,
}

impl RedisPublisher {
    /// Connects and waits until the server has subscribed to `channel`, so that no
    /// publication goes to nobody.
    pub async fn connect(channel: &str) -> Result<RedisPublisher, String> {
        let mut connection = open().await?;
        let started = Instant::now();
        loop {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut connection)
                .await
                .map_err(|e| format!("PUBSUB NUMSUB: {e}"))?;
            if subscribers(&counts, channel) > 0 {
                break;
            }
            if started.elapsed() > SUBSCRIBE_LIMIT {
                return Err(format!(
                    "the server did not subscribe to the Redis channel {channel} within {SUBSCRIBE_LIMIT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(RedisPublisher {
            connection,
            channel: channel.to_string(),
        })
    }

    /// Publishes one body; Redis answers with the number of subscribers that got it.
    pub async fn publish(&mut self, body: String) -> Result<(), String> {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(body)
            .query_async(&mut self.connection)
            .await
            .map_err(|e| format!("PUBLISH: {e}"))?;
        if receivers > 0 {
            Ok(())
        } else {
            Err(format!(
                "PUBLISH to {} reached no subscriber: the server is not subscribed",
                self.channel
            ))
        }
    }
}

/// The count for `channel` in a `PUBSUB NUMSUB` reply (channel and count pairs).
fn subscribers(counts: &[(String, i64)], channel: &str) -> i64 {
    counts
        .iter()
        .find(|(name, _)| name == channel)
        .map_or(0, |(_, count)| *count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subscriber_count_of_the_channel() {
        let reply = |n| vec![("c".to_string(), n)];
        assert_eq!(subscribers(&reply(2), "c"), 2);
        assert_eq!(subscribers(&reply(0), "c"), 0);
        assert_eq!(subscribers(&reply(3), "other"), 0);
        assert_eq!(subscribers(&[], "c"), 0);
    }
}

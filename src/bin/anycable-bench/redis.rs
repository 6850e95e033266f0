//! Publishes through the server's `redis` broadcaster: `PUBLISH <channel> <json>` on one
//! connection of the project's own Redis client, the same JSON that `/_broadcast` takes.

use std::time::{Duration, Instant};

use anycable_rs::clients::redis::{Connection, RedisOptions, Value};
use anycable_rs::config::RedisConfig;

/// The Redis server the benchmark and the server it starts use.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// The server's default `--redis_channel`, for a server the benchmark did not start.
pub const DEFAULT_CHANNEL: &str = "__anycable__";

/// How long the server may take to subscribe to its channel after it listens.
const SUBSCRIBE_LIMIT: Duration = Duration::from_secs(10);

/// Connects to [`REDIS_URL`]; fails with a message that says what is missing.
pub async fn open() -> Result<Connection, String> {
    let options = RedisOptions::from_config(&RedisConfig {
        url: REDIS_URL.into(),
        ..RedisConfig::default()
    })
    .map_err(|e| e.to_string())?;
    Connection::open(&options).await.map_err(|e| {
        format!(
            "--broadcaster redis needs a Redis server at {REDIS_URL}, which does not answer: {e}"
        )
    })
}

pub struct RedisPublisher {
    connection: Connection,
    channel: String,
}

impl RedisPublisher {
    /// Connects and waits until the server has subscribed to `channel`, so that no
    /// publication goes to nobody.
    pub async fn connect(channel: &str) -> Result<RedisPublisher, String> {
        let mut connection = open().await?;
        let started = Instant::now();
        loop {
            let reply = connection
                .call(&[b"PUBSUB", b"NUMSUB", channel.as_bytes()])
                .await
                .map_err(|e| format!("PUBSUB NUMSUB: {e}"))?;
            if subscribers(reply) > 0 {
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
        let reply = self
            .connection
            .call(&[b"PUBLISH", self.channel.as_bytes(), body.as_bytes()])
            .await
            .map_err(|e| format!("PUBLISH: {e}"))?;
        match reply {
            Value::Int(n) if n > 0 => Ok(()),
            other => Err(format!(
                "PUBLISH to {} reached no subscriber ({other:?}): the server is not subscribed",
                self.channel
            )),
        }
    }
}

/// The count in a `PUBSUB NUMSUB <channel>` reply (`[channel, count]`).
fn subscribers(reply: Value) -> i64 {
    match reply.into_array().as_deref() {
        Some([_, Value::Int(n)]) => *n,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subscriber_count() {
        let reply = |n| Value::Array(vec![Value::Bulk(b"c".to_vec()), Value::Int(n)]);
        assert_eq!(subscribers(reply(2)), 2);
        assert_eq!(subscribers(reply(0)), 0);
        assert_eq!(subscribers(Value::Array(Vec::new())), 0);
        assert_eq!(subscribers(Value::Error("ERR".into())), 0);
    }
}

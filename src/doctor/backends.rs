//! Checks of the services the configuration uses: Redis (version), NATS (version, JetStream
//! for the NATS broker) and the RPC backend (one `Connect` call). Each check only reads:
//! `INFO server`, a JetStream account query, and a `Connect` that carries no credentials.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clients::redis::{Connection, RedisOptions};
use crate::config::{BroadcastAdapter, BrokerAdapter, Config, PubSubAdapter, RpcImpl};
use crate::metrics::Metrics;
use crate::rpc::{ConnectionRequest, Env, Rpc, Status};
use tokio_util::sync::CancellationToken;

use super::report::Finding;

/// How long one service may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Header sent with the probe `Connect`, so the app's logs can tell it apart.
pub const PROBE_HEADER: &str = "x-anycable-doctor";

/// A Redis version as (major, minor).
type Version = (u32, u32);

/// What uses Redis in this configuration, and the version each needs.
fn redis_users(config: &Config) -> Vec<(&'static str, Version)> {
    let mut users = Vec::new();
    for adapter in &config.broadcast_adapters {
        match adapter {
            BroadcastAdapter::Redis => users.push(("the redis broadcaster", (2, 8))),
            // XAUTOCLAIM
            BroadcastAdapter::RedisX => users.push(("the redisx broadcaster", (6, 2))),
            _ => {}
        }
    }
    if config.pubsub_adapter == PubSubAdapter::Redis {
        users.push(("Redis pub/sub between nodes", (2, 8)));
    }
    if config.broker.adapter == BrokerAdapter::Redis {
        // Streams (history) inside Lua scripts.
        users.push(("the redis broker", (5, 0)));
    }
    users
}

fn nats_users(config: &Config) -> Vec<&'static str> {
    let mut users = Vec::new();
    if config.broadcast_adapters.contains(&BroadcastAdapter::Nats) {
        users.push("the nats broadcaster");
    }
    if config.pubsub_adapter == PubSubAdapter::Nats {
        users.push("NATS pub/sub between nodes");
    }
    if config.broker.adapter == BrokerAdapter::Nats {
        users.push("the nats broker (JetStream)");
    }
    users
}

/// A service the configuration talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Redis,
    Nats,
    Rpc,
}

impl Service {
    /// The name in progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Service::Redis => "Redis",
            Service::Nats => "NATS",
            Service::Rpc => "the RPC backend",
        }
    }

    pub async fn check(self, config: &Config) -> Option<Finding> {
        match self {
            Service::Redis => redis(config).await,
            Service::Nats => nats(config).await,
            Service::Rpc => rpc(config).await,
        }
    }
}

/// The services this configuration talks to.
pub fn planned(config: &Config) -> Vec<Service> {
    let mut services = Vec::new();
    if !redis_users(config).is_empty() {
        services.push(Service::Redis);
    }
    if !nats_users(config).is_empty() {
        services.push(Service::Nats);
    }
    if config.rpc_impl() != RpcImpl::None {
        services.push(Service::Rpc);
    }
    services
}

async fn redis(config: &Config) -> Option<Finding> {
    let users = redis_users(config);
    if users.is_empty() {
        return None;
    }
    let names: Vec<&str> = users.iter().map(|(name, _)| *name).collect();
    let used_by = names.join(", ");
    let options = match RedisOptions::from_config(&config.redis) {
        Ok(options) => options,
        Err(error) => {
            return Some(Finding::problem(
                format!("Redis settings ({used_by}): {error}"),
                "fix --redis_url (redis://[user:password@]host[:port][/db] or rediss://...)",
            ))
        }
    };
    let address = options.redacted_url();
    let version = async {
        let mut connection = Connection::open(&options).await?;
        let info = connection.call(&[b"INFO", b"server"]).await?;
        Ok::<_, crate::clients::redis::RedisError>(info.as_str().and_then(redis_version))
    };
    let version = match tokio::time::timeout(ANSWER_WITHIN, version).await {
        Ok(Ok(version)) => version,
        Ok(Err(error)) => return Some(unreachable_redis(config, &address, &used_by, &error)),
        Err(_) => {
            return Some(unreachable_redis(
                config,
                &address,
                &used_by,
                &format!("no answer within {} s", ANSWER_WITHIN.as_secs()),
            ))
        }
    };
    let Some((text, found)) = version else {
        return Some(Finding::warning(
            format!(
                "Redis at {address} answers but does not report redis_version (used by {used_by})"
            ),
            "check that it is Redis (or a compatible server) of version 6.2 or later",
        ));
    };
    let needs: Vec<String> = users
        .iter()
        .filter(|(_, min)| found < *min)
        .map(|(name, (major, minor))| format!("{name} needs Redis {major}.{minor} or later"))
        .collect();
    Some(if needs.is_empty() {
        Finding::ok(format!(
            "Redis at {address}: version {text} (used by {used_by})"
        ))
    } else {
        Finding::problem(
            format!("Redis at {address} is version {text}: {}", needs.join("; ")),
            "upgrade Redis, or choose other adapters",
        )
    })
}

/// Without any Redis setting, the only user is the default broadcaster list (`http,redis`):
/// the server starts and retries in the background, so that is worth a warning, not more.
fn unreachable_redis(
    config: &Config,
    address: &str,
    used_by: &str,
    error: &dyn std::fmt::Display,
) -> Finding {
    let defaults = Config::default();
    let only_default_broadcaster = config.broadcast_adapters == defaults.broadcast_adapters
        && config.redis.url == defaults.redis.url
        && redis_users(config).len() == 1;
    let text = format!("cannot reach Redis at {address} (used by {used_by}): {error}");
    if only_default_broadcaster {
        Finding::warning(
            text,
            "start Redis there if your app broadcasts through Redis; if it broadcasts over HTTP \
             only, set --broadcast_adapter=http",
        )
    } else {
        Finding::problem(
            text,
            "start Redis there, or fix --redis_url (ANYCABLE_REDIS_URL / REDIS_URL)",
        )
    }
}

/// `redis_version:7.0.15` in an `INFO` reply: the text and (major, minor).
fn redis_version(info: &str) -> Option<(String, Version)> {
    let text = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))?
        .trim()
        .to_string();
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    Some((text, (major, minor)))
}

async fn nats(config: &Config) -> Option<Finding> {
    let users = nats_users(config);
    if users.is_empty() {
        return None;
    }
    let used_by = users.join(", ");
    let servers = config.nats.servers.join(",");
    let options = match crate::clients::nats::NatsOptions::from_config(&config.nats) {
        Ok(options) => options,
        Err(error) => {
            return Some(Finding::problem(
                format!("NATS settings ({used_by}): {error}"),
                "fix --nats_servers (nats://host:4222[,nats://...])",
            ))
        }
    };
    let mut connect = async_nats::ConnectOptions::new()
        .name("anycable-rs doctor")
        .connection_timeout(ANSWER_WITHIN);
    if let Ok(tls) = crate::trust::client_config(crate::trust::default_roots()) {
        connect = connect.tls_client_config(tls);
    }
    let client = match tokio::time::timeout(ANSWER_WITHIN, connect.connect(options.servers)).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => return Some(unreachable_nats(&servers, &used_by, &error)),
        Err(_) => return Some(unreachable_nats(&servers, &used_by, &"no answer in time")),
    };
    let info = client.server_info();
    let version = info.version;
    if config.broker.adapter != BrokerAdapter::Nats {
        return Some(Finding::ok(format!(
            "NATS at {servers}: version {version} (used by {used_by})"
        )));
    }
    let no_jetstream = |why: String| {
        Finding::problem(
            format!("NATS at {servers} (version {version}) {why}, which the nats broker needs"),
            "start nats-server with JetStream (-js, or `jetstream {}` in its config), or use --broker=redis or --broker=memory",
        )
    };
    if !info.jetstream {
        return Some(no_jetstream("runs without JetStream".to_string()));
    }
    // The server has JetStream; the account this client uses must have it too. The account
    // info request answers an error object when it does not.
    let request = client.request("$JS.API.INFO", bytes::Bytes::new());
    Some(match tokio::time::timeout(ANSWER_WITHIN, request).await {
        Ok(Ok(reply)) => match serde_json::from_slice::<serde_json::Value>(&reply.payload) {
            Ok(answer) if answer.get("error").is_none() => Finding::ok(format!(
                "NATS at {servers}: version {version}, JetStream enabled (used by {used_by})"
            )),
            Ok(answer) => no_jetstream(format!(
                "refuses JetStream to this account ({})",
                answer["error"]["description"]
                    .as_str()
                    .unwrap_or("no description")
            )),
            Err(error) => no_jetstream(format!("answered the JetStream query with {error}")),
        },
        Ok(Err(error)) => no_jetstream(format!("did not answer the JetStream query ({error})")),
        Err(_) => no_jetstream("did not answer the JetStream query in time".to_string()),
    })
}

fn unreachable_nats(servers: &str, used_by: &str, error: &dyn std::fmt::Display) -> Finding {
    Finding::problem(
        format!("cannot reach NATS at {servers} (used by {used_by}): {error}"),
        "start NATS there, or fix --nats_servers (ANYCABLE_NATS_SERVERS)",
    )
}

/// One `Connect` with no cookies or tokens: the app runs its authentication and normally
/// rejects it, which proves the backend is up and speaks the protocol.
async fn rpc(config: &Config) -> Option<Finding> {
    let rpc = match Rpc::from_config(config, Arc::new(Metrics::default())) {
        Ok(Some(rpc)) => rpc,
        Ok(None) => return None,
        Err(error) => {
            return Some(Finding::problem(
                error.to_string(),
                "fix the RPC settings (--rpc_host, --rpc_tls_*)",
            ))
        }
    };
    let host = &config.rpc.host;
    let path = config.ws.paths.first().map_or("/cable", String::as_str);
    let request = ConnectionRequest {
        env: Some(Env {
            url: format!("http://{}:{}{path}", config.server.host, config.server.port),
            headers: HashMap::from([(PROBE_HEADER.to_string(), "1".to_string())]),
            ..Env::default()
        }),
    };
    let answer = tokio::time::timeout(
        ANSWER_WITHIN + Duration::from_millis(config.rpc.command_timeout_ms),
        rpc.connect("doctor", request, &CancellationToken::new()),
    )
    .await;
    Some(match answer {
        Ok(Ok(response)) => {
            let status = match Status::try_from(response.status) {
                Ok(Status::Success) => "accepted it",
                Ok(Status::Failure) => "rejected it, as expected without credentials",
                _ => "answered with an error status",
            };
            Finding::ok(format!(
                "RPC backend at {host} ({}) answers: a probe Connect with no credentials was sent and the app {status}",
                config.rpc_impl()
            ))
        }
        Ok(Err(error)) => unreachable_rpc(host, &error),
        Err(_) => unreachable_rpc(host, &"no answer in time"),
    })
}

fn unreachable_rpc(host: &str, error: &dyn std::fmt::Display) -> Finding {
    Finding::problem(
        format!("the RPC backend at {host} does not answer: {error}"),
        "start the app's RPC server (e.g. `bundle exec anycable`), fix --rpc_host, or set --norpc for a standalone server",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_redis_version_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(redis_version(info), Some(("7.0.15".to_string(), (7, 0))));
        assert_eq!(redis_version("# Server\r\n"), None);
        assert!(redis_version("redis_version:6.2.1").unwrap().1 >= (6, 2));
        assert!(redis_version("redis_version:6.0.9").unwrap().1 < (6, 2));
    }
}

//! Presets (AnyCable-Go: config/presets.go): platform defaults applied at start to values still
//! at their default.

use std::collections::HashMap;

use super::{
    BroadcastAdapter, BrokerAdapter, Choice, Config, ConfigError, Preset, PubSubAdapter, RpcConfig,
    ServerConfig,
};

/// The name in `--presets` that turns detection off without choosing a preset.
const NO_PRESETS: &str = "none";

pub(crate) fn apply(cfg: &mut Config, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let presets = if cfg.presets_setting.is_empty() {
        detect(env)
    } else {
        let mut named = Vec::new();
        for name in &cfg.presets_setting {
            match Preset::from_name(name) {
                Some(preset) => named.push(preset),
                None if name == NO_PRESETS => {}
                None => cfg
                    .load
                    .warnings
                    .push(format!("unknown preset {name:?} ignored")),
            }
        }
        named
    };
    for preset in presets {
        match preset {
            Preset::Fly => fly(cfg, env)?,
            Preset::Heroku => heroku(cfg),
            Preset::Broker => broker(cfg),
        }
        cfg.load.presets.push(preset);
    }
    Ok(())
}

/// `fly` when all of FLY_APP_NAME, FLY_ALLOC_ID, FLY_REGION exist; `heroku` when HEROKU_APP_ID and
/// HEROKU_DYNO_ID exist. `broker` is never auto-detected.
fn detect(env: &HashMap<String, String>) -> Vec<Preset> {
    let has_all = |vars: &[&str]| vars.iter().all(|v| env.contains_key(*v));
    let mut presets = Vec::new();
    if has_all(&["FLY_APP_NAME", "FLY_ALLOC_ID", "FLY_REGION"]) {
        presets.push(Preset::Fly);
    }
    if has_all(&["HEROKU_APP_ID", "HEROKU_DYNO_ID"]) {
        presets.push(Preset::Heroku);
    }
    presets
}

fn listen_on_all_interfaces(cfg: &mut Config) {
    if cfg.server.host == ServerConfig::default().host {
        cfg.server.host = "0.0.0.0".to_string();
    }
}

fn fly(cfg: &mut Config, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let var = |name: &str| {
        env.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "fly preset requires the {name} environment variable"
            ))
        })
    };
    let region = var("FLY_REGION")?;
    var("FLY_APP_NAME")?;
    listen_on_all_interfaces(cfg);
    if let Some(rpc_app) = env.get("ANYCABLE_FLY_RPC_APP_NAME") {
        if cfg.rpc.host == RpcConfig::default().host {
            cfg.rpc.host = format!("dns:///{region}.{rpc_app}.internal:50051");
        }
    }
    // The reference's HTTP broadcast port change is a no-op (the port is already resolved).
    // Clustering: Redis pub/sub was already chosen when a Redis URL is configured (see
    // `postprocess`). The
    // reference otherwise clusters through an embedded NATS server, which this server does
    // not have, so an external NATS takes its place when one is configured; with neither the
    // start is refused rather than silently running every machine on its own.
    let defaults = Config::default();
    let redis_configured = cfg.redis.url != defaults.redis.url;
    let nats_configured = cfg.nats.servers != defaults.nats.servers;
    if cfg.pubsub_adapter == PubSubAdapter::Unset {
        if !nats_configured {
            return Err(ConfigError::Invalid(
                "fly preset: machines of a Fly app must share broadcasts, and the reference's \
                 embedded NATS cluster is not available here. Set a Redis URL \
                 (ANYCABLE_REDIS_URL or REDIS_URL, e.g. from `fly redis create`) or NATS servers \
                 (ANYCABLE_NATS_SERVERS); or run a single machine with ANYCABLE_PUBSUB=none"
                    .to_string(),
            ));
        }
        cfg.pubsub_adapter = PubSubAdapter::Nats;
    }
    if !redis_configured && cfg.broadcast_adapters == defaults.broadcast_adapters {
        cfg.broadcast_adapters = if cfg.pubsub_adapter == PubSubAdapter::Nats {
            vec![BroadcastAdapter::Http, BroadcastAdapter::Nats]
        } else {
            vec![BroadcastAdapter::Http]
        };
    }
    Ok(())
}

/// Reliable streams on one node: the memory broker (embedded NATS, which would select the NATS
/// broker, is not available), and with a Redis URL the Redis Streams broadcaster plus Redis
/// pub/sub; without one, HTTP broadcasting only, as in the reference.
fn broker(cfg: &mut Config) {
    let defaults = Config::default();
    if cfg.broker.adapter == BrokerAdapter::Unset {
        cfg.broker.adapter = BrokerAdapter::Memory;
    }
    let redis_configured = cfg.redis.url != defaults.redis.url;
    let untouched = cfg.broadcast_adapters == defaults.broadcast_adapters;
    if redis_configured {
        if untouched {
            cfg.broadcast_adapters = vec![
                BroadcastAdapter::Http,
                BroadcastAdapter::RedisX,
                BroadcastAdapter::Redis,
            ];
        }
        if cfg.pubsub_adapter == PubSubAdapter::Unset {
            cfg.pubsub_adapter = PubSubAdapter::Redis;
        }
    } else if untouched {
        cfg.broadcast_adapters = vec![BroadcastAdapter::Http];
    }
}

/// The reference also sets the HTTP broadcast port to $PORT, which is a no-op once the port is
/// resolved before presets run, so only the host changes.
fn heroku(cfg: &mut Config) {
    listen_on_all_interfaces(cfg);
}

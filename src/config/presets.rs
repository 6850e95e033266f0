//! Presets (config.md §9): platform defaults applied at start to values still at their default.

use std::collections::HashMap;

use super::{Config, ConfigError, RpcConfig, ServerConfig};

pub(crate) fn apply(cfg: &mut Config, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let names = if cfg.presets_setting.is_empty() {
        detect(env)
    } else {
        cfg.presets_setting.clone()
    };
    for name in names {
        match name.as_str() {
            "fly" => fly(cfg, env)?,
            "heroku" => heroku(cfg),
            // Not built yet: reported by `Config::unsupported_settings`, not applied.
            "broker" | "none" => continue,
            other => {
                cfg.warnings
                    .push(format!("unknown preset {other:?} ignored"));
                continue;
            }
        }
        cfg.presets.push(name);
    }
    Ok(())
}

/// `fly` when all of FLY_APP_NAME, FLY_ALLOC_ID, FLY_REGION exist; `heroku` when HEROKU_APP_ID and
/// HEROKU_DYNO_ID exist. `broker` is never auto-detected.
fn detect(env: &HashMap<String, String>) -> Vec<String> {
    let has_all = |vars: &[&str]| vars.iter().all(|v| env.contains_key(*v));
    let mut names = Vec::new();
    if has_all(&["FLY_APP_NAME", "FLY_ALLOC_ID", "FLY_REGION"]) {
        names.push("fly".to_string());
    }
    if has_all(&["HEROKU_APP_ID", "HEROKU_DYNO_ID"]) {
        names.push("heroku".to_string());
    }
    names
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
    // The reference's HTTP broadcast port change is a no-op (the port is already resolved), and the
    // broadcast adapter default is already `http` here.
    if cfg.pubsub_adapter.is_empty() {
        cfg.warnings.push(
            "fly preset: automatic pub/sub and embedded NATS cluster setup is not available yet, skipped".to_string(),
        );
    }
    Ok(())
}

/// The reference also sets the HTTP broadcast port to $PORT, which is a no-op once the port is
/// resolved (config.md §9), so only the host changes.
fn heroku(cfg: &mut Config) {
    listen_on_all_interfaces(cfg);
}

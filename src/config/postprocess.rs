//! Builds the typed config from the merged raw values, then computes dependent values in the
//! reference's order (config.md §6), the secret fallbacks (§7) and the legacy names (§8).

use rand::distr::{Alphanumeric, SampleString};

use super::bindings;
use super::layers::Raw;
use super::secrets::{derive_key, Own, API_PURPOSE, BROADCAST_PURPOSE, RPC_PURPOSE};
use super::types::{WsConfig, DEFAULT_NATS_URL, DEFAULT_REDIS_URL};
use super::{Config, ConfigError, LogFormat, LogLevel};

const BROADCAST_ADAPTERS: &[&str] = &["http", "redis", "redisx", "nats"];
const DEFAULT_BROADCAST_PORT: u16 = 8090;

pub(crate) fn build(raw: &Raw) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    bindings::assign(&mut cfg, raw)?;
    if cfg.node_id.is_empty() {
        cfg.node_id = Alphanumeric.sample_string(&mut rand::rng(), 6);
    }

    // §6.1 lists (the default `http,redis` is the reference's; Redis need not be up, see
    // clients::reconnect).
    if let Some(bad) = cfg
        .broadcast_adapters
        .iter()
        .find(|a| !BROADCAST_ADAPTERS.contains(&a.as_str()))
    {
        return Err(ConfigError::Invalid(format!(
            "Unsupported broadcast adapter: {bad}"
        )));
    }
    cfg.rpc.proxy_headers = cfg
        .rpc
        .proxy_headers
        .iter()
        .map(|h| h.to_lowercase())
        .collect();

    // §6.2 logging (validated here so a typo fails at startup).
    cfg.logging.level = LogLevel::parse(raw.str("log_level")).ok_or_else(|| {
        invalid_choice(
            "log_level",
            raw.str("log_level"),
            "debug, info, warn, error",
        )
    })?;
    if cfg.logging.debug {
        cfg.logging.level = LogLevel::Debug;
    }
    cfg.logging.format = LogFormat::parse(raw.str("log_format"))
        .ok_or_else(|| invalid_choice("log_format", raw.str("log_format"), "text, json"))?;
    check_choice(
        "ping_timestamp_precision",
        &cfg.app.ping_timestamp_precision,
        &["s", "ms", "ns"],
    )?;

    // §6.3 metrics.
    if cfg.metrics.log_interval_secs > 0 {
        cfg.warnings.push(deprecation(
            "metrics_log_interval",
            "use --metrics_rotate_interval instead",
        ));
        if cfg.metrics.rotate_interval_secs == 0 {
            cfg.metrics.rotate_interval_secs = cfg.metrics.log_interval_secs;
        }
    }

    // §6.5 embedded NATS serves the default NATS servers.
    if cfg.embedded_nats.enabled && cfg.nats.servers == [DEFAULT_NATS_URL] {
        cfg.nats.servers = vec![cfg.embedded_nats.service_addr.clone()];
    }

    // §6.6 disconnector deprecations.
    if raw.bool("disable_disconnect") {
        cfg.warnings.push(deprecation(
            "disable_disconnect",
            "use --disconnect_mode=never instead",
        ));
        cfg.disconnector.mode = "never".to_string();
    }
    if cfg.disconnector.shutdown_timeout_secs > 0 {
        cfg.warnings.push(deprecation(
            "disconnect_timeout",
            "it has no effect, use --shutdown_timeout instead",
        ));
    }
    if cfg.ws.write_buffer_size != WsConfig::default().write_buffer_size {
        cfg.warnings.push(
            "--write_buffer_size has no effect: the frames queued for a connection are written \
             together, with one write"
                .to_string(),
        );
    }
    check_choice(
        "disconnect_mode",
        &cfg.disconnector.mode,
        &["auto", "always", "never"],
    )?;

    // §6.7 pub/sub auto-enable (the reference also checks for a `redis` broker, which 1.6 rejects anyway).
    if cfg.pubsub_adapter.is_empty()
        && (cfg.redis.url != DEFAULT_REDIS_URL
            || cfg.broadcast_adapters.iter().any(|a| a == "redisx"))
    {
        cfg.pubsub_adapter = "redis".to_string();
    }
    check_choice(
        "pubsub",
        &cfg.pubsub_adapter,
        &["", "none", "redis", "nats"],
    )?;
    check_choice(
        "broker",
        &cfg.broker.adapter,
        &["", "none", "memory", "nats", "redis"],
    )?;

    // §6.10 the legacy Redis broadcaster and Redis pub/sub must not share a channel.
    if cfg.broadcast_adapters.iter().any(|a| a == "redis")
        && cfg.redis.pubsub_channel == cfg.redis.channel
    {
        cfg.warnings.push(
            "WARNING: Same Redis channel is provided for broadcaster and pub/sub components, updating the latter one automatically"
                .to_string(),
        );
        cfg.redis.pubsub_channel.push_str("-int");
    }

    // §6.11 legacy names, §6.12 norpc.
    apply_legacy(&mut cfg, raw);
    if cfg.norpc {
        cfg.rpc.implementation = "none".to_string();
    }
    check_choice(
        "rpc_impl",
        &cfg.rpc.implementation,
        &["", "grpc", "http", "none"],
    )?;
    cfg.norpc = cfg.rpc.implementation == "none";

    // §6.13–17 secrets, keys, HTTP broadcast port, public mode.
    apply_secrets(&mut cfg, raw);
    resolve_http_broadcast(&mut cfg, raw)?;
    if cfg.public {
        cfg.noauth = true;
        cfg.streams.public = true;
        cfg.http_broadcast.key = None;
        cfg.http_broadcast.key_derived = false;
    }
    Ok(cfg)
}

fn apply_legacy(cfg: &mut Config, raw: &Raw) {
    let jwt_id_param = raw.str("jwt_id_param");
    if !jwt_id_param.is_empty() {
        cfg.warnings
            .push(deprecation("jwt_id_param", "use --jwt_param instead"));
        // Deliberate difference: honoured unless --jwt_param was given (the reference never honours it).
        if !raw.is_set("jwt_param") {
            cfg.jwt.param = jwt_id_param.to_string();
        }
    }
    if raw.bool("jwt_id_enforce") {
        cfg.warnings
            .push(deprecation("jwt_id_enforce", "use --enforce_jwt instead"));
        cfg.jwt.enforce = true;
    }
    if !raw.str("jwt_id_key").is_empty() {
        cfg.warnings
            .push(deprecation("jwt_id_key", "use --jwt_secret instead"));
    }
    if !raw.str("turbo_rails_key").is_empty() {
        cfg.warnings.push(deprecation(
            "turbo_rails_key",
            "use --turbo_streams_secret and --turbo_streams instead",
        ));
        cfg.streams.turbo = true;
    }
    if !raw.str("cable_ready_key").is_empty() {
        cfg.warnings.push(deprecation(
            "cable_ready_key",
            "use --cable_ready_secret and --cable_ready instead",
        ));
        cfg.streams.cable_ready = true;
    }
    // Deliberate difference: the reference 1.6 ignores these; the Hotwire guide still tells
    // users to run with them, so they enable the channel with plain stream names.
    if raw.bool("turbo_rails_cleartext") {
        cfg.warnings.push(deprecation(
            "turbo_rails_cleartext",
            "use signed stream names (--turbo_streams with --turbo_streams_secret) or \
             $pubsub public streams (--public_streams) instead; until then Turbo::StreamsChannel \
             takes plain stream names",
        ));
        cfg.streams.turbo = true;
        cfg.streams.turbo_cleartext = true;
    }
    if raw.bool("cable_ready_cleartext") {
        cfg.warnings.push(deprecation(
            "cable_ready_cleartext",
            "use signed stream names (--cable_ready with --cable_ready_secret) or \
             $pubsub public streams (--public_streams) instead; until then CableReady::Stream \
             takes plain stream names",
        ));
        cfg.streams.cable_ready = true;
        cfg.streams.cable_ready_cleartext = true;
    }
    if !raw.str("http_broadcast_secret").is_empty() {
        cfg.warnings.push(deprecation(
            "http_broadcast_secret",
            "use --broadcast_key instead",
        ));
    }
}

/// Fallbacks from `--secret` (§7). Unlike the reference, `none` is cleared *before* deriving, so
/// nothing is ever derived from the literal `none`, and `none` disables a secret everywhere.
fn apply_secrets(cfg: &mut Config, raw: &Raw) {
    let secret = Own::parse(raw.str("secret")).resolve(None);
    let own = |name: &str| Own::parse(raw.str(name));
    // A legacy key wins over the empty new name only (jwt) or overrides it (turbo, cable_ready).
    let jwt_own = match own("jwt_secret") {
        Own::Unset => own("jwt_id_key"),
        given => given,
    };
    let override_with = |legacy: &str, current: &str| match own(legacy) {
        Own::Unset => own(current),
        given => given,
    };
    cfg.jwt.secret = jwt_own.resolve(secret.clone());
    cfg.streams.secret = own("streams_secret").resolve(secret.clone());
    cfg.streams.turbo_secret = override_with("turbo_rails_key", "turbo_streams_secret")
        .resolve(cfg.streams.secret.clone());
    cfg.streams.cable_ready_secret =
        override_with("cable_ready_key", "cable_ready_secret").resolve(cfg.streams.secret.clone());
    cfg.pusher.secret = own("pusher_secret").resolve(secret.clone());
    cfg.rpc.secret =
        own("http_rpc_secret").resolve(secret.as_deref().map(|s| derive_key(s, RPC_PURPOSE)));
    // `none` is not special for the API key.
    cfg.api.secret = match raw.str("api_secret") {
        "" => secret.as_deref().map(|s| derive_key(s, API_PURPOSE)),
        literal => Some(literal.to_string()),
    };
    cfg.secret = secret;
}

/// Key and port rules of broadcasting.md §3.1 (the `--public` part is applied by the caller).
fn resolve_http_broadcast(cfg: &mut Config, raw: &Raw) -> Result<(), ConfigError> {
    let own = match raw.str("http_broadcast_secret") {
        "" => Own::parse(raw.str("broadcast_key")),
        legacy => Own::parse(legacy),
    };
    cfg.http_broadcast.key_derived = own == Own::Unset && cfg.secret.is_some();
    cfg.http_broadcast.key = own.resolve(
        cfg.secret
            .as_deref()
            .map(|s| derive_key(s, BROADCAST_PURPOSE)),
    );
    let port = raw.int("http_broadcast_port");
    cfg.http_broadcast.port = match port {
        0 if cfg.http_broadcast.key.is_some() => cfg.server.port,
        0 => DEFAULT_BROADCAST_PORT,
        p => u16::try_from(p).map_err(|_| ConfigError::InvalidValue {
            origin: "--http_broadcast_port".to_string(),
            value: p.to_string(),
            reason: "must be between 0 and 65535".to_string(),
        })?,
    };
    Ok(())
}

pub(crate) fn deprecation(flag: &str, advice: &str) -> String {
    format!("DEPRECATION WARNING: {flag} option is deprecated, {advice}")
}

fn invalid_choice(flag: &str, value: &str, allowed: &str) -> ConfigError {
    ConfigError::InvalidValue {
        origin: format!("--{flag}"),
        value: value.to_string(),
        reason: format!("must be one of: {allowed}"),
    }
}

fn check_choice(flag: &str, value: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        let names: Vec<&str> = allowed.iter().copied().filter(|a| !a.is_empty()).collect();
        Err(invalid_choice(flag, value, &names.join(", ")))
    }
}

//! Builds the typed config from the merged raw values, then computes dependent values in the
//! reference's order (AnyCable-Go: cli/options.go), the secret fallbacks and the legacy names.

use rand::distr::{Alphanumeric, SampleString};

use super::bindings;
use super::choices::{parse_choice, Choice};
use super::layers::Raw;
use super::secrets::{derive_key, Own, API_PURPOSE, BROADCAST_PURPOSE, RPC_PURPOSE};
use super::types::{WsConfig, DEFAULT_NATS_URL, DEFAULT_REDIS_URL};
use super::{
    BroadcastAdapter, Config, ConfigError, DisconnectMode, LogFormat, LogLevel, PubSubAdapter,
    RpcImpl,
};

const DEFAULT_BROADCAST_PORT: u16 = 8090;

pub(crate) fn build(raw: &Raw) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    bindings::assign(&mut cfg, raw)?;
    if cfg.node_id.is_empty() {
        cfg.node_id = Alphanumeric.sample_string(&mut rand::rng(), 6);
    }

    // Lists (the default `http,redis` is the reference's; Redis need not be up, see
    // clients::reconnect).
    cfg.broadcast_adapters = raw
        .list("broadcast_adapter")
        .iter()
        .map(|name| {
            BroadcastAdapter::from_name(name).ok_or_else(|| {
                ConfigError::Invalid(format!("Unsupported broadcast adapter: {name}"))
            })
        })
        .collect::<Result<_, _>>()?;
    cfg.rpc.proxy_headers = cfg
        .rpc
        .proxy_headers
        .iter()
        .map(|h| h.to_lowercase())
        .collect();

    // Logging (validated here so a typo fails at startup).
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
    cfg.app.ping_timestamp_precision = parse_choice(
        "ping_timestamp_precision",
        raw.str("ping_timestamp_precision"),
    )?;

    // Readiness: a period of 0 would run the checks in a busy loop.
    if !cfg.server.readiness_path.is_empty() && cfg.server.readiness_interval_ms == 0 {
        return Err(ConfigError::Invalid(
            "--readiness_interval_ms must be positive (or turn readiness off with an empty --readiness_path)".into(),
        ));
    }

    // Metrics.
    if cfg.metrics.log_interval_secs > 0 {
        cfg.load.warnings.push(deprecation(
            "metrics_log_interval",
            "use --metrics_rotate_interval instead",
        ));
        if cfg.metrics.rotate_interval_secs == 0 {
            cfg.metrics.rotate_interval_secs = cfg.metrics.log_interval_secs;
        }
    }

    // Embedded NATS serves the default NATS servers.
    if cfg.embedded_nats.enabled && cfg.nats.servers == [DEFAULT_NATS_URL] {
        cfg.nats.servers = vec![cfg.embedded_nats.service_addr.clone()];
    }

    // Disconnector deprecations (`--disable_disconnect` wins over any `--disconnect_mode`).
    let mut disconnect_mode = raw.str("disconnect_mode");
    if raw.bool("disable_disconnect") {
        cfg.load.warnings.push(deprecation(
            "disable_disconnect",
            "use --disconnect_mode=never instead",
        ));
        disconnect_mode = DisconnectMode::Never.as_str();
    }
    if cfg.disconnector.shutdown_timeout_secs > 0 {
        cfg.load.warnings.push(deprecation(
            "disconnect_timeout",
            "it has no effect, use --shutdown_timeout instead",
        ));
    }
    if cfg.ws.write_buffer_size != WsConfig::default().write_buffer_size {
        cfg.load.warnings.push(
            "--write_buffer_size has no effect: the frames queued for a connection are written \
             together, with one write"
                .to_string(),
        );
    }
    cfg.disconnector.mode = parse_choice("disconnect_mode", disconnect_mode)?;

    // Pub/sub auto-enable (the reference also checks for a `redis` broker, which 1.6 rejects anyway).
    let mut pubsub = raw.str("pubsub");
    if pubsub.is_empty()
        && (cfg.redis.url != DEFAULT_REDIS_URL
            || cfg.broadcast_adapters.contains(&BroadcastAdapter::RedisX))
    {
        pubsub = PubSubAdapter::Redis.as_str();
    }
    cfg.pubsub_adapter = parse_choice("pubsub", pubsub)?;
    cfg.broker.adapter = parse_choice("broker", raw.str("broker"))?;

    // The legacy Redis broadcaster and Redis pub/sub must not share a channel.
    if cfg.broadcast_adapters.contains(&BroadcastAdapter::Redis)
        && cfg.redis.pubsub_channel == cfg.redis.channel
    {
        cfg.load.warnings.push(
            "WARNING: Same Redis channel is provided for broadcaster and pub/sub components, updating the latter one automatically"
                .to_string(),
        );
        cfg.redis.pubsub_channel.push_str("-int");
    }

    // Legacy names, then `--norpc`.
    apply_legacy(&mut cfg, raw);
    let rpc_impl = match cfg.norpc {
        true => RpcImpl::None.as_str(),
        false => raw.str("rpc_impl"),
    };
    cfg.rpc.implementation = parse_choice("rpc_impl", rpc_impl)?;
    cfg.norpc = cfg.rpc.implementation == RpcImpl::None;

    // Secrets, keys, HTTP broadcast port, public mode.
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
        cfg.load
            .warnings
            .push(deprecation("jwt_id_param", "use --jwt_param instead"));
        // Deliberate difference: honoured unless --jwt_param was given (the reference never honours it).
        if !raw.is_set("jwt_param") {
            cfg.jwt.param = jwt_id_param.to_string();
        }
    }
    if raw.bool("jwt_id_enforce") {
        cfg.load
            .warnings
            .push(deprecation("jwt_id_enforce", "use --enforce_jwt instead"));
        cfg.jwt.enforce = true;
    }
    if !raw.str("jwt_id_key").is_empty() {
        cfg.load
            .warnings
            .push(deprecation("jwt_id_key", "use --jwt_secret instead"));
    }
    if !raw.str("turbo_rails_key").is_empty() {
        cfg.load.warnings.push(deprecation(
            "turbo_rails_key",
            "use --turbo_streams_secret and --turbo_streams instead",
        ));
        cfg.streams.turbo = true;
    }
    if !raw.str("cable_ready_key").is_empty() {
        cfg.load.warnings.push(deprecation(
            "cable_ready_key",
            "use --cable_ready_secret and --cable_ready instead",
        ));
        cfg.streams.cable_ready = true;
    }
    // Deliberate difference: the reference 1.6 ignores these; the Hotwire guide still tells
    // users to run with them, so they enable the channel with plain stream names.
    if raw.bool("turbo_rails_cleartext") {
        cfg.load.warnings.push(deprecation(
            "turbo_rails_cleartext",
            "use signed stream names (--turbo_streams with --turbo_streams_secret) or \
             $pubsub public streams (--public_streams) instead; until then Turbo::StreamsChannel \
             takes plain stream names",
        ));
        cfg.streams.turbo = true;
        cfg.streams.turbo_cleartext = true;
    }
    if raw.bool("cable_ready_cleartext") {
        cfg.load.warnings.push(deprecation(
            "cable_ready_cleartext",
            "use signed stream names (--cable_ready with --cable_ready_secret) or \
             $pubsub public streams (--public_streams) instead; until then CableReady::Stream \
             takes plain stream names",
        ));
        cfg.streams.cable_ready = true;
        cfg.streams.cable_ready_cleartext = true;
    }
    if !raw.str("http_broadcast_secret").is_empty() {
        cfg.load.warnings.push(deprecation(
            "http_broadcast_secret",
            "use --broadcast_key instead",
        ));
    }
}

/// Fallbacks from `--secret`. Unlike the reference, `none` is cleared *before* deriving, so
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

/// Key and port of the HTTP broadcaster, rules in docs/broadcasting.md (the `--public` part is
/// applied by the caller).
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

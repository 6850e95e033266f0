//! Flags that map one-to-one onto a typed field. Both directions (raw value → field for loading,
//! field → value for `--print-config` and the "not built" check) come from the single list below.
//! Flags with derived or effective values (secrets, keys, ports, log level, ...) and the closed
//! sets (adapters, modes: parsed in `postprocess.rs` at their place in the reference's order)
//! live in `postprocess.rs` and `print.rs` instead.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::layers::Raw;
use super::value::Value;
use super::{Config, ConfigError};

/// Conversion between a raw [`Value`] and a typed field.
trait Setting: Sized {
    fn from_value(value: &Value, flag: &str) -> Result<Self, ConfigError>;
    fn to_value(&self) -> Value;
}

fn mismatch(flag: &str, value: &Value, expected: &str) -> ConfigError {
    ConfigError::InvalidValue {
        origin: format!("--{flag}"),
        value: format!("{value:?}"),
        reason: format!("expected {expected}"),
    }
}

impl Setting for bool {
    fn from_value(value: &Value, flag: &str) -> Result<Self, ConfigError> {
        match value {
            Value::Bool(b) => Ok(*b),
            other => Err(mismatch(flag, other, "a boolean")),
        }
    }
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl Setting for String {
    fn from_value(value: &Value, flag: &str) -> Result<Self, ConfigError> {
        match value {
            Value::Str(s) => Ok(s.clone()),
            other => Err(mismatch(flag, other, "a string")),
        }
    }
    fn to_value(&self) -> Value {
        Value::Str(self.clone())
    }
}

impl Setting for Option<PathBuf> {
    fn from_value(value: &Value, flag: &str) -> Result<Self, ConfigError> {
        let s = String::from_value(value, flag)?;
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }
    fn to_value(&self) -> Value {
        Value::Str(
            self.as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    }
}

impl Setting for Vec<String> {
    fn from_value(value: &Value, flag: &str) -> Result<Self, ConfigError> {
        match value {
            Value::List(items) => Ok(items.clone()),
            other => Err(mismatch(flag, other, "a list")),
        }
    }
    fn to_value(&self) -> Value {
        Value::List(self.clone())
    }
}

impl Setting for BTreeMap<String, String> {
    fn from_value(value: &Value, flag: &str) -> Result<Self, ConfigError> {
        match value {
            Value::Map(map) => Ok(map.clone()),
            other => Err(mismatch(flag, other, "key:value pairs")),
        }
    }
    fn to_value(&self) -> Value {
        Value::Map(self.clone())
    }
}

/// Integers: Go accepts any `int`; we reject values that do not fit the field (e.g. negative sizes).
macro_rules! int_setting {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            fn from_value(value: &Value, flag: &str) -> Result<Self, ConfigError> {
                match value {
                    Value::Int(i) => <$t>::try_from(*i).map_err(|_| ConfigError::InvalidValue {
                        origin: format!("--{flag}"),
                        value: i.to_string(),
                        reason: format!("must be between {} and {}", <$t>::MIN, <$t>::MAX),
                    }),
                    other => Err(mismatch(flag, other, "an integer")),
                }
            }
            fn to_value(&self) -> Value {
                // Every field type fits in i64 for values that came from an i64.
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_setting!(u16, u64, usize);

macro_rules! bindings {
    ($($flag:literal => $($field:ident).+;)*) => {
        /// Copies every plainly bound flag from the merged raw values into `cfg`.
        pub(super) fn assign(cfg: &mut Config, raw: &Raw) -> Result<(), ConfigError> {
            $( cfg.$($field).+ = Setting::from_value(raw.get($flag), $flag)?; )*
            Ok(())
        }

        /// The value of a plainly bound flag, `None` for flags handled elsewhere.
        pub(super) fn read(cfg: &Config, flag: &str) -> Option<Value> {
            match flag {
                $( $flag => Some(cfg.$($field).+.to_value()), )*
                _ => None,
            }
        }
    };
}

bindings! {
    "node_id" => node_id;
    "public" => public;
    "noauth" => noauth;
    "norpc" => norpc;
    "host" => server.host;
    "port" => server.port;
    "allowed_origins" => server.allowed_origins;
    "max-conn" => server.max_conn;
    "max_subscriptions_per_connection" => app.max_subscriptions_per_connection;
    "health-path" => server.health_path;
    "readiness_path" => server.readiness_path;
    "readiness_interval_ms" => server.readiness_interval_ms;
    "ssl_cert" => server.ssl_cert;
    "ssl_key" => server.ssl_key;
    "path" => ws.paths;
    "read_buffer_size" => ws.read_buffer_size;
    "write_buffer_size" => ws.write_buffer_size;
    "max_message_size" => ws.max_message_size;
    "ws_write_timeout" => ws.write_timeout_secs;
    "ws_max_pending_size" => ws.max_pending_size;
    "enable_ws_compression" => ws.enable_compression;
    "shutdown_timeout" => app.shutdown_timeout_secs;
    "shutdown_pool_size" => app.shutdown_pool_size;
    "shutdown_delay" => app.shutdown_delay_secs;
    "shutdown_slowdrain" => app.shutdown_slowdrain;
    "hub_gopool_size" => app.hub_gopool_size;
    "ping_interval" => app.ping_interval_secs;
    "pong_timeout" => app.pong_timeout_secs;
    "enable_native_pings" => app.enable_native_pings;
    "jwt_param" => jwt.param;
    "enforce_jwt" => jwt.enforce;
    "public_streams" => streams.public;
    "streams_whisper" => streams.whisper;
    "streams_presence" => streams.presence;
    "turbo_streams" => streams.turbo;
    "cable_ready" => streams.cable_ready;
    "streams.pubsub_channel" => streams.pubsub_channel;
    "http_broadcast_path" => http_broadcast.path;
    "http_broadcast_cors" => http_broadcast.cors;
    "debug" => logging.debug;
    "presets" => presets_setting;
    "rpc_host" => rpc.host;
    "rpc_concurrency" => rpc.concurrency;
    "rpc_concurrency_initial" => rpc.concurrency_initial;
    "rpc_concurrency_min" => rpc.concurrency_min;
    "rpc_concurrency_max" => rpc.concurrency_max;
    "rpc_connect_max_wait" => rpc.connect_max_wait_ms;
    "rpc_enable_tls" => rpc.tls.enabled;
    "rpc_tls_verify" => rpc.tls.verify;
    "rpc_tls_root_ca" => rpc.tls.root_ca;
    "rpc_max_call_recv_size" => rpc.max_recv_size;
    "rpc_max_call_send_size" => rpc.max_send_size;
    "rpc_request_timeout" => rpc.request_timeout_ms;
    "rpc_command_timeout" => rpc.command_timeout_ms;
    "headers" => rpc.proxy_headers;
    "proxy-cookies" => rpc.proxy_cookies;
    "http_rpc_timeout" => rpc.http_request_timeout_ms;
    "disconnect_rate" => disconnector.rate;
    "disconnect_backlog_size" => disconnector.backlog_size;
    "disconnect_timeout" => disconnector.shutdown_timeout_secs;
    "history_limit" => broker.history_limit;
    "history_ttl" => broker.history_ttl_secs;
    "sessions_ttl" => broker.sessions_ttl_secs;
    "presence_ttl" => broker.presence_ttl_secs;
    "redis_url" => redis.url;
    "redis_sentinels" => redis.sentinels;
    "redis_sentinel_discovery_interval" => redis.sentinel_discovery_interval_secs;
    "redis_keepalive_interval" => redis.keepalive_interval_secs;
    "redis_tls_verify" => redis.tls_verify;
    "redis_tls_ca_cert_path" => redis.tls_ca_cert_path;
    "redis_tls_client_cert_path" => redis.tls_client_cert_path;
    "redis_tls_client_key_path" => redis.tls_client_key_path;
    "redis_disable_cache" => redis.disable_cache;
    "redis.max_reconnect_attempts" => redis.max_reconnect_attempts;
    "redis_channel" => redis.channel;
    "redis_pubsub.channel" => redis.pubsub_channel;
    "redisx_stream" => redisx.stream;
    "redisx_group" => redisx.group;
    "redisx_read_block_milliseconds" => redisx.read_block_ms;
    "nats_servers" => nats.servers;
    "nats_dont_randomize_servers" => nats.dont_randomize_servers;
    "nats.max_reconnect_attempts" => nats.max_reconnect_attempts;
    "nats_channel" => nats.channel;
    "nats_pubsub.channel" => nats.pubsub_channel;
    "embed_nats" => embedded_nats.enabled;
    "enats_addr" => embedded_nats.service_addr;
    "enats_cluster" => embedded_nats.cluster.addr;
    "enats_cluster_name" => embedded_nats.cluster.name;
    "enats_cluster_routes" => embedded_nats.cluster.routes;
    "enats_gateway" => embedded_nats.gateway.addr;
    "enats_gateways" => embedded_nats.gateway.gateways;
    "enats_gateway_advertise" => embedded_nats.gateway.advertise;
    "enats_store_dir" => embedded_nats.store_dir;
    "enats_server_name" => embedded_nats.server_name;
    "enats_debug" => embedded_nats.debug;
    "enats_trace" => embedded_nats.trace;
    "enats_max_payload" => embedded_nats.max_payload;
    "embedded_nats.jetstream" => embedded_nats.jetstream.enabled;
    "embedded_nats.jetstream_ready_timeout" => embedded_nats.jetstream.ready_timeout_secs;
    "metrics_log" => metrics.log;
    "metrics_rotate_interval" => metrics.rotate_interval_secs;
    "metrics_log_interval" => metrics.log_interval_secs;
    "metrics_log_filter" => metrics.log_filter;
    "metrics_log_formatter" => metrics.log_formatter;
    "metrics_http" => metrics.http_path;
    "metrics_host" => metrics.host;
    "metrics_port" => metrics.port;
    "metrics_tags" => metrics.tags;
    "stats_refresh_interval" => metrics.stats_refresh_interval_secs;
    "statsd_host" => metrics.statsd.host;
    "statsd_prefix" => metrics.statsd.prefix;
    "statsd_max_packet_size" => metrics.statsd.max_packet_size;
    "statsd_tags_format" => metrics.statsd.tags_format;
    "sse" => sse.enabled;
    "sse_path" => sse.path;
    "pusher_app_id" => pusher.app_id;
    "pusher_app_key" => pusher.app_key;
    "pusher_api_port" => pusher.api_port;
    "ds" => ds.enabled;
    "ds_path" => ds.path;
    "ds_skip_auth" => ds.skip_auth;
    "ds_poll_interval" => ds.poll_interval_secs;
    "ds_sse_ttl" => ds.sse_ttl_secs;
    "api_port" => api.port;
    "api_path" => api.path;
    "api.host" => api.host;
    "api.cors_headers" => api.cors_headers;
    "api.cors_hosts" => api.cors_hosts;
}

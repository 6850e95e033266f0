//! The flag table: one descriptor per AnyCable-Go 1.6 flag (plus the few file-only settings).
//!
//! Everything else (CLI, env and TOML parsing, `--help`, `--print-config`, the "not built yet" check) is
//! driven by this table, so adding a flag means adding one line here and, if it maps to a plain field,
//! one line in `bindings.rs`.

/// How a flag's text (CLI/env) or TOML value is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// Parsed like Go's `strconv.ParseInt(v, 0, 64)`.
    Int,
    Str,
    /// A `sep`-separated string on the CLI/env; in TOML either an array (`toml_array`) or a
    /// comma-separated string, mirroring the type the reference decodes the key into.
    List {
        sep: char,
        toml_array: bool,
    },
    /// `k:v,k:v` on the CLI/env, a table of strings in TOML.
    Map,
}

/// The server component a flag configures. Whether a component is built is decided by [`BUILT`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Server, WebSocket, pings, logging, shutdown, presets, auth modes.
    Core,
    Jwt,
    /// `$pubsub`, signed/public streams, Turbo Streams, CableReady, whispers.
    Streams,
    HttpBroadcast,
    /// gRPC/HTTP RPC client and the disconnect queue.
    Rpc,
    Broker,
    PubSub,
    Redis,
    Nats,
    EmbeddedNats,
    Metrics,
    Sse,
    Pusher,
    Ds,
    Api,
    /// permessage-deflate for WebSockets.
    WsCompression,
    /// Presence tracking (`join`/`leave`/`presence` commands).
    Presence,
}

/// Features the server implements today. Flip a feature on by adding it here.
pub const BUILT: &[Feature] = &[
    Feature::Core,
    Feature::Jwt,
    Feature::Streams,
    Feature::HttpBroadcast,
    Feature::Broker,
    Feature::Sse,
    Feature::Rpc,
    Feature::Metrics,
    Feature::Redis,
    Feature::Nats,
    Feature::PubSub,
    Feature::Api,
    Feature::Presence,
];

impl Feature {
    pub fn is_built(self) -> bool {
        BUILT.contains(&self)
    }

    /// Human name used in "not implemented yet" messages.
    pub fn description(self) -> &'static str {
        match self {
            Feature::Core => "this server setting",
            Feature::Jwt => "JWT identification",
            Feature::Streams => "signed streams",
            Feature::HttpBroadcast => "the HTTP broadcaster",
            Feature::Rpc => "the RPC client (gRPC/HTTP)",
            Feature::Broker => "the broker (history, sessions)",
            Feature::PubSub => "node-to-node pub/sub",
            Feature::Redis => "Redis support",
            Feature::Nats => "NATS support",
            Feature::EmbeddedNats => "the embedded NATS server",
            Feature::Metrics => "metrics",
            Feature::Sse => "the SSE transport",
            Feature::Pusher => "Pusher compatibility",
            Feature::Ds => "Durable Streams",
            Feature::Api => "the REST API",
            Feature::WsCompression => "WebSocket compression (permessage-deflate)",
            Feature::Presence => "presence",
        }
    }
}

/// Static description of one flag.
#[derive(Debug, Clone, Copy)]
pub struct FlagDef {
    /// CLI name without dashes; for file-only settings the TOML key.
    pub name: &'static str,
    /// Env vars in priority order (the first one present wins).
    pub env: &'static [&'static str],
    pub kind: Kind,
    /// Default in CLI text form, parsed with the same rules as a CLI value.
    pub default: &'static str,
    /// Dotted TOML key path (`server.port`), `None` when the file cannot set it.
    pub toml: Option<&'static str>,
    pub feature: Feature,
    /// Help group heading.
    pub group: &'static str,
    pub usage: &'static str,
    pub hidden: bool,
    pub deprecated: bool,
    /// Value is a credential: never echoed in messages.
    pub secret: bool,
    /// Only settable from the TOML file (no CLI flag, no env var).
    pub file_only: bool,
}

impl FlagDef {
    #[allow(clippy::too_many_arguments)]
    const fn new(
        name: &'static str,
        env: &'static [&'static str],
        kind: Kind,
        default: &'static str,
        toml: Option<&'static str>,
        feature: Feature,
        group: &'static str,
        usage: &'static str,
    ) -> Self {
        FlagDef {
            name,
            env,
            kind,
            default,
            toml,
            feature,
            group,
            usage,
            hidden: false,
            deprecated: false,
            secret: false,
            file_only: false,
        }
    }

    /// A setting with no flag and no env var (TOML file only).
    const fn file(
        key: &'static str,
        kind: Kind,
        default: &'static str,
        feature: Feature,
        usage: &'static str,
    ) -> Self {
        let mut f = FlagDef::new(
            key,
            &[],
            kind,
            default,
            Some(key),
            feature,
            "FILE ONLY",
            usage,
        );
        f.hidden = true;
        f.file_only = true;
        f
    }

    const fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    const fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// Looks up a CLI flag by name (file-only settings are not flags).
pub fn find_flag(name: &str) -> Option<&'static FlagDef> {
    FLAGS.iter().find(|f| f.name == name && !f.file_only)
}

/// Every flag of AnyCable-Go 1.6 (cli/options.go) followed by the file-only settings.
/// Columns: name, env vars, kind, default, TOML key, feature, help group, usage.
#[rustfmt::skip]
pub static FLAGS: &[FlagDef] = &[
    // (ungrouped)
    FlagDef::new("config-path", &[], Kind::Str, "", None, Feature::Core, "(ungrouped)", "TOML file to load"),
    FlagDef::new("ignore-config-path", &[], Kind::Bool, "false", None, Feature::Core, "(ungrouped)", "Do not load any config file"),
    FlagDef::new("print-config", &[], Kind::Bool, "false", None, Feature::Core, "(ungrouped)", "Print effective config as TOML (before presets) and exit 0"),
    // ANYCABLE-GO SERVER
    FlagDef::new("host", &["ANYCABLE_HOST"], Kind::Str, "localhost", Some("server.host"), Feature::Core, "ANYCABLE-GO SERVER", "Bind address for all HTTP listeners"),
    FlagDef::new("port", &["ANYCABLE_PORT", "PORT"], Kind::Int, "8080", Some("server.port"), Feature::Core, "ANYCABLE-GO SERVER", "Main listener port"),
    FlagDef::new("allowed_origins", &["ANYCABLE_ALLOWED_ORIGINS"], Kind::List { sep: ',', toml_array: false }, "", Some("server.allowed_origins"), Feature::Core, "ANYCABLE-GO SERVER", "Allowed Origin hosts (*suffix wildcards); also CORS hosts for SSE/DS/HTTP broadcast"),
    FlagDef::new("secret", &["ANYCABLE_SECRET"], Kind::Str, "", Some("secret"), Feature::Core, "ANYCABLE-GO SERVER", "Application secret; base for all feature secrets; none = unset").secret(),
    FlagDef::new("broadcast_key", &["ANYCABLE_BROADCAST_KEY"], Kind::Str, "", Some("broadcast_key"), Feature::Core, "ANYCABLE-GO SERVER", "HTTP broadcast auth key; none disables auth").secret(),
    FlagDef::new("public", &["ANYCABLE_PUBLIC"], Kind::Bool, "false", Some("public"), Feature::Core, "ANYCABLE-GO SERVER", "Insecure mode: noauth + public streams + unauthenticated HTTP broadcast; enables the API"),
    FlagDef::new("noauth", &["ANYCABLE_NOAUTH"], Kind::Bool, "false", Some("noauth"), Feature::Core, "ANYCABLE-GO SERVER", "Accept every connection without RPC/JWT (enforced JWT still applies first)"),
    FlagDef::new("max-conn", &["ANYCABLE_MAX_CONN"], Kind::Int, "0", Some("server.max_conn"), Feature::Core, "ANYCABLE-GO SERVER", "Max simultaneous TCP connections per listener (excess waits in accept)"),
    FlagDef::new("max_subscriptions_per_connection", &["ANYCABLE_MAX_SUBSCRIPTIONS_PER_CONNECTION"], Kind::Int, "1000", Some("app.max_subscriptions_per_connection"), Feature::Core, "ANYCABLE-GO SERVER", "Most channel subscriptions one connection may hold; more are rejected; 0 = unlimited (not in AnyCable-Go)"),
    FlagDef::new("path", &["ANYCABLE_PATH"], Kind::List { sep: ',', toml_array: true }, "/cable", Some("ws.paths"), Feature::Core, "ANYCABLE-GO SERVER", "WebSocket mount paths; router patterns (/x/*, /a/{id}/cable) allowed"),
    FlagDef::new("health-path", &["ANYCABLE_HEALTH_PATH"], Kind::Str, "/health", Some("server.health_path"), Feature::Core, "ANYCABLE-GO SERVER", "Health endpoint path"),
    FlagDef::new("readiness_path", &["ANYCABLE_READINESS_PATH"], Kind::Str, "/ready", Some("server.readiness_path"), Feature::Core, "ANYCABLE-GO SERVER", "Readiness endpoint path: 503 while a broadcaster, the pub/sub, the broker or the RPC backend fails its check; empty = off (not in AnyCable-Go)"),
    FlagDef::new("readiness_interval_ms", &["ANYCABLE_READINESS_INTERVAL_MS"], Kind::Int, "2000", Some("server.readiness_interval_ms"), Feature::Core, "ANYCABLE-GO SERVER", "Readiness check period in milliseconds; a canary must come back within one period (not in AnyCable-Go)"),
    FlagDef::new("shutdown_timeout", &["ANYCABLE_SHUTDOWN_TIMEOUT"], Kind::Int, "30", Some("app.shutdown_timeout"), Feature::Core, "ANYCABLE-GO SERVER", "Graceful shutdown budget"),
    FlagDef::new("shutdown_pool_size", &["ANYCABLE_SHUTDOWN_POOL_SIZE"], Kind::Int, "16", Some("app.shutdown_disconnect_gopool_size"), Feature::Core, "ANYCABLE-GO SERVER", "Workers closing sessions on shutdown").hidden(),
    FlagDef::new("shutdown_delay", &["ANYCABLE_SHUTDOWN_DELAY"], Kind::Int, "0", Some("app.shutdown_delay"), Feature::Core, "ANYCABLE-GO SERVER", "Sleep before stopping the listener (counts against the shutdown timeout)"),
    FlagDef::new("shutdown_slowdrain", &["ANYCABLE_SHUTDOWN_SLOWDRAIN"], Kind::Bool, "false", Some("app.shutdown_slowdrain"), Feature::Core, "ANYCABLE-GO SERVER", "Disconnect clients gradually over the shutdown timeout instead of all at once (AnyCable-Go PRO)"),
    FlagDef::new("node_id", &["ANYCABLE_NODE_ID"], Kind::Str, "", Some("node_id"), Feature::Core, "ANYCABLE-GO SERVER", "Node identifier (log attribute nodeid)").hidden(),
    // SSL
    FlagDef::new("ssl_cert", &["ANYCABLE_SSL_CERT"], Kind::Str, "", Some("server.ssl.cert_path"), Feature::Core, "SSL", "PEM certificate; with key → all listeners serve HTTPS (TLS ≥ 1.2)"),
    FlagDef::new("ssl_key", &["ANYCABLE_SSL_KEY"], Kind::Str, "", Some("server.ssl.key_path"), Feature::Core, "SSL", "PEM private key"),
    // BROADCASTING
    FlagDef::new("broadcast_adapter", &["ANYCABLE_BROADCAST_ADAPTER"], Kind::List { sep: ',', toml_array: true }, "http,redis", Some("broadcast_adapters"), Feature::Core, "BROADCASTING", "Broadcasters: http, redis, redisx, nats"),
    FlagDef::new("broker", &["ANYCABLE_BROKER"], Kind::Str, "", Some("broker.adapter"), Feature::Broker, "BROADCASTING", "memory, nats, redis, none"),
    FlagDef::new("pubsub", &["ANYCABLE_PUBSUB"], Kind::Str, "", Some("pubsub_adapter"), Feature::PubSub, "BROADCASTING", "Node-to-node pub/sub: redis, nats, none"),
    FlagDef::new("redis_channel", &["ANYCABLE_REDIS_CHANNEL"], Kind::Str, "__anycable__", Some("redis_pubsub_broadcast.channel"), Feature::Redis, "BROADCASTING", "Channel of the legacy Redis broadcaster"),
    FlagDef::new("nats_channel", &["ANYCABLE_NATS_CHANNEL"], Kind::Str, "__anycable__", Some("nats_broadcast.channel"), Feature::Nats, "BROADCASTING", "Subject of the NATS broadcaster"),
    FlagDef::new("hub_gopool_size", &["ANYCABLE_HUB_GOPOOL_SIZE"], Kind::Int, "16", Some("app.broadcast_gopool_size"), Feature::Core, "BROADCASTING", "Fan-out shards/workers").hidden(),
    // BROKER
    FlagDef::new("history_limit", &["ANYCABLE_HISTORY_LIMIT"], Kind::Int, "100", Some("broker.history_limit"), Feature::Broker, "BROKER", "Max messages kept per stream"),
    FlagDef::new("history_ttl", &["ANYCABLE_HISTORY_TTL"], Kind::Int, "300", Some("broker.history_ttl"), Feature::Broker, "BROKER", "History retention"),
    FlagDef::new("sessions_ttl", &["ANYCABLE_SESSIONS_TTL"], Kind::Int, "300", Some("broker.sessions_ttl"), Feature::Broker, "BROKER", "Keep disconnected session state for resumption"),
    FlagDef::new("presence_ttl", &["ANYCABLE_PRESENCE_TTL"], Kind::Int, "15", Some("broker.presence_ttl"), Feature::Presence, "BROKER", "Keep presence after disconnect"),
    // REDIS
    FlagDef::new("redis_url", &["ANYCABLE_REDIS_URL", "REDIS_URL"], Kind::Str, "redis://localhost:6379", Some("redis.url"), Feature::Redis, "REDIS", "Redis URL, master name (sentinel) or comma list (cluster)"),
    FlagDef::new("redis_sentinels", &["ANYCABLE_REDIS_SENTINELS"], Kind::List { sep: ',', toml_array: false }, "", Some("redis.sentinels"), Feature::Redis, "REDIS", "Sentinel addresses"),
    FlagDef::new("redis_sentinel_discovery_interval", &["ANYCABLE_REDIS_SENTINEL_DISCOVERY_INTERVAL"], Kind::Int, "30", Some("redis.sentinel_discovery_interval"), Feature::Redis, "REDIS", "Accepted, unused").hidden(),
    FlagDef::new("redis_keepalive_interval", &["ANYCABLE_REDIS_KEEPALIVE_INTERVAL"], Kind::Int, "30", Some("redis.keepalive_ping_interval"), Feature::Redis, "REDIS", "TCP keepalive period").hidden(),
    FlagDef::new("redis_tls_verify", &["ANYCABLE_REDIS_TLS_VERIFY"], Kind::Bool, "false", Some("redis.tls_verify"), Feature::Redis, "REDIS", "Verify server cert for rediss://").hidden(),
    FlagDef::new("redis_tls_ca_cert_path", &["ANYCABLE_REDIS_TLS_CA_CERT_PATH"], Kind::Str, "", Some("redis.tls_ca_cert_path"), Feature::Redis, "REDIS", "CA file"),
    FlagDef::new("redis_tls_client_cert_path", &["ANYCABLE_REDIS_TLS_CLIENT_CERT_PATH"], Kind::Str, "", Some("redis.tls_client_cert_path"), Feature::Redis, "REDIS", "mTLS cert"),
    FlagDef::new("redis_tls_client_key_path", &["ANYCABLE_REDIS_TLS_CLIENT_KEY_PATH"], Kind::Str, "", Some("redis.tls_client_key_path"), Feature::Redis, "REDIS", "mTLS key"),
    FlagDef::new("redis_disable_cache", &["ANYCABLE_REDIS_DISABLE_CACHE"], Kind::Bool, "false", Some("redis.disable_cache"), Feature::Redis, "REDIS", "Disable client-side caching (CLIENT TRACKING)").hidden(),
    // REDIS X BROADCAST
    FlagDef::new("redisx_stream", &["ANYCABLE_REDISX_STREAM"], Kind::Str, "__anycable__", Some("redis_stream_broadcast.stream"), Feature::Redis, "REDIS X BROADCAST", "Stream key"),
    FlagDef::new("redisx_group", &["ANYCABLE_REDISX_GROUP"], Kind::Str, "bx", Some("redis_stream_broadcast.group"), Feature::Redis, "REDIS X BROADCAST", "Consumer group").hidden(),
    FlagDef::new("redisx_read_block_milliseconds", &["ANYCABLE_REDISX_READ_BLOCK_MILLISECONDS"], Kind::Int, "2000", Some("redis_stream_broadcast.stream_read_block_milliseconds"), Feature::Redis, "REDIS X BROADCAST", "XREADGROUP block / claim idle time").hidden(),
    // HTTP BROADCAST
    FlagDef::new("http_broadcast_port", &["ANYCABLE_HTTP_BROADCAST_PORT"], Kind::Int, "0", Some("http_broadcast.port"), Feature::HttpBroadcast, "HTTP BROADCAST", "Broadcast listener port"),
    FlagDef::new("http_broadcast_path", &["ANYCABLE_HTTP_BROADCAST_PATH"], Kind::Str, "/_broadcast", Some("http_broadcast.path"), Feature::HttpBroadcast, "HTTP BROADCAST", "Broadcast path"),
    FlagDef::new("http_broadcast_secret", &["ANYCABLE_HTTP_BROADCAST_SECRET"], Kind::Str, "", Some("http_broadcast.secret"), Feature::HttpBroadcast, "HTTP BROADCAST", "Old name of the broadcast key (wins over broadcast_key)").hidden().deprecated().secret(),
    FlagDef::new("http_broadcast_cors", &["ANYCABLE_HTTP_BROADCAST_CORS"], Kind::Bool, "false", Some("http_broadcast.cors_headers"), Feature::HttpBroadcast, "HTTP BROADCAST", "Add CORS headers (also for Pusher API)").hidden(),
    // NATS
    FlagDef::new("nats_servers", &["ANYCABLE_NATS_SERVERS"], Kind::List { sep: ',', toml_array: false }, "nats://127.0.0.1:4222", Some("nats.servers"), Feature::Nats, "NATS", "NATS servers"),
    FlagDef::new("nats_dont_randomize_servers", &["ANYCABLE_NATS_DONT_RANDOMIZE_SERVERS"], Kind::Bool, "false", Some("nats.dont_randomize_servers"), Feature::Nats, "NATS", "Keep server order on (re)connect").hidden(),
    // RPC
    FlagDef::new("rpc_host", &["ANYCABLE_RPC_HOST"], Kind::Str, "localhost:50051", Some("rpc.host"), Feature::Rpc, "RPC", "gRPC target or http(s):// base URL"),
    FlagDef::new("norpc", &["ANYCABLE_NORPC"], Kind::Bool, "false", None, Feature::Core, "RPC", "Standalone mode, no RPC"),
    FlagDef::new("rpc_concurrency", &["ANYCABLE_RPC_CONCURRENCY"], Kind::Int, "28", Some("rpc.concurrency"), Feature::Rpc, "RPC", "Max in-flight RPC calls; 0 = adaptive (follows the backend's latency and errors)"),
    FlagDef::new("rpc_concurrency_initial", &["ANYCABLE_RPC_CONCURRENCY_INITIAL"], Kind::Int, "25", Some("rpc.concurrency_initial"), Feature::Rpc, "RPC", "Initial limit of the adaptive concurrency (AnyCable Pro)"),
    FlagDef::new("rpc_concurrency_min", &["ANYCABLE_RPC_CONCURRENCY_MIN"], Kind::Int, "5", Some("rpc.concurrency_min"), Feature::Rpc, "RPC", "Floor of the adaptive concurrency (AnyCable Pro)"),
    FlagDef::new("rpc_concurrency_max", &["ANYCABLE_RPC_CONCURRENCY_MAX"], Kind::Int, "100", Some("rpc.concurrency_max"), Feature::Rpc, "RPC", "Ceiling of the adaptive concurrency (AnyCable Pro)"),
    FlagDef::new("rpc_connect_max_wait", &["ANYCABLE_RPC_CONNECT_MAX_WAIT"], Kind::Int, "2000", Some("rpc.connect_max_wait"), Feature::Rpc, "RPC", "Admission control: longest wait (ms) of a Connect call for a slot, behind established sessions' calls; longer = disconnect with reconnect later; 0 = off (not in AnyCable-Go)"),
    FlagDef::new("rpc_enable_tls", &["ANYCABLE_RPC_ENABLE_TLS"], Kind::Bool, "false", Some("rpc.enable_tls"), Feature::Rpc, "RPC", "TLS to RPC server").hidden(),
    FlagDef::new("rpc_tls_verify", &["ANYCABLE_RPC_TLS_VERIFY"], Kind::Bool, "true", Some("rpc.tls_verify"), Feature::Rpc, "RPC", "Verify RPC server cert").hidden(),
    FlagDef::new("rpc_tls_root_ca", &["ANYCABLE_RPC_TLS_ROOT_CA"], Kind::Str, "", Some("rpc.tls_root_ca_path"), Feature::Rpc, "RPC", "CA file path or inline PEM; non-empty implies TLS").hidden(),
    FlagDef::new("rpc_max_call_recv_size", &["ANYCABLE_RPC_MAX_CALL_RECV_SIZE"], Kind::Int, "0", Some("rpc.max_recv_size"), Feature::Rpc, "RPC", "gRPC max receive size").hidden(),
    FlagDef::new("rpc_max_call_send_size", &["ANYCABLE_RPC_MAX_CALL_SEND_SIZE"], Kind::Int, "0", Some("rpc.max_send_size"), Feature::Rpc, "RPC", "gRPC max send size").hidden(),
    FlagDef::new("rpc_request_timeout", &["ANYCABLE_RPC_REQUEST_TIMEOUT"], Kind::Int, "0", Some("rpc.request_timeout"), Feature::Rpc, "RPC", "Per-attempt timeout"),
    FlagDef::new("rpc_command_timeout", &["ANYCABLE_RPC_COMMAND_TIMEOUT"], Kind::Int, "3000", Some("rpc.command_timeout"), Feature::Rpc, "RPC", "Whole-call timeout incl. retries").hidden(),
    FlagDef::new("headers", &["ANYCABLE_HEADERS"], Kind::List { sep: ',', toml_array: true }, "cookie", Some("rpc.proxy_headers"), Feature::Rpc, "RPC", "Headers proxied to RPC (lowercased)"),
    FlagDef::new("proxy-cookies", &["ANYCABLE_PROXY_COOKIES"], Kind::List { sep: ',', toml_array: true }, "", Some("rpc.proxy_cookies"), Feature::Rpc, "RPC", "Cookie names kept in the proxied Cookie header"),
    FlagDef::new("rpc_impl", &["ANYCABLE_RPC_IMPL"], Kind::Str, "", Some("rpc.implementation"), Feature::Rpc, "RPC", "grpc, http, none").hidden(),
    FlagDef::new("http_rpc_secret", &["ANYCABLE_HTTP_RPC_SECRET"], Kind::Str, "", Some("rpc.secret"), Feature::Rpc, "RPC", "Bearer key for HTTP RPC; none = no key").secret(),
    FlagDef::new("http_rpc_timeout", &["ANYCABLE_HTTP_RPC_TIMEOUT"], Kind::Int, "0", Some("rpc.http_request_timeout"), Feature::Rpc, "RPC", "Per-attempt timeout for HTTP RPC (else --rpc_request_timeout, else 3 s)").hidden().deprecated(),
    // DISCONNECTOR
    FlagDef::new("disconnect_mode", &["ANYCABLE_DISCONNECT_MODE"], Kind::Str, "auto", Some("app.disconnect_mode"), Feature::Rpc, "DISCONNECTOR", "auto, always, never"),
    FlagDef::new("disconnect_rate", &["ANYCABLE_DISCONNECT_RATE"], Kind::Int, "100", Some("disconnector.rate"), Feature::Rpc, "DISCONNECTOR", "Disconnect calls per second").hidden(),
    FlagDef::new("disconnect_backlog_size", &["ANYCABLE_DISCONNECT_BACKLOG_SIZE"], Kind::Int, "4096", Some("disconnector.backlog"), Feature::Rpc, "DISCONNECTOR", "Queue capacity").hidden(),
    FlagDef::new("disconnect_timeout", &["ANYCABLE_DISCONNECT_TIMEOUT"], Kind::Int, "0", Some("disconnector.shutdowntimeout"), Feature::Core, "DISCONNECTOR", "No effect; warns").hidden().deprecated(),
    FlagDef::new("disable_disconnect", &["ANYCABLE_DISABLE_DISCONNECT"], Kind::Bool, "false", None, Feature::Rpc, "DISCONNECTOR", "= disconnect_mode=never + no-op queue; warns").hidden().deprecated(),
    // LOG
    FlagDef::new("log_level", &["ANYCABLE_LOG_LEVEL"], Kind::Str, "info", Some("logging.level"), Feature::Core, "LOG", "debug, info, warn, error (other → startup error)"),
    FlagDef::new("log_format", &["ANYCABLE_LOG_FORMAT"], Kind::Str, "text", Some("logging.format"), Feature::Core, "LOG", "text or json (other → startup error)"),
    FlagDef::new("debug", &["ANYCABLE_DEBUG"], Kind::Bool, "false", Some("logging.debug"), Feature::Core, "LOG", "Forces level debug"),
    // METRICS
    FlagDef::new("metrics_log", &["ANYCABLE_METRICS_LOG"], Kind::Bool, "false", Some("metrics.log"), Feature::Metrics, "METRICS", "Periodically log metrics"),
    FlagDef::new("metrics_rotate_interval", &["ANYCABLE_METRICS_ROTATE_INTERVAL"], Kind::Int, "15", Some("metrics.rotate_interval"), Feature::Metrics, "METRICS", "Flush interval for log/StatsD writers"),
    FlagDef::new("metrics_log_interval", &["ANYCABLE_METRICS_LOG_INTERVAL"], Kind::Int, "0", Some("metrics.loginterval"), Feature::Metrics, "METRICS", "Used only if rotate interval is 0 (so effectively ignored); warns").hidden().deprecated(),
    FlagDef::new("metrics_log_filter", &["ANYCABLE_METRICS_LOG_FILTER"], Kind::List { sep: ',', toml_array: true }, "", Some("metrics.log_filter"), Feature::Metrics, "METRICS", "Metric names to log"),
    FlagDef::new("metrics_log_formatter", &["ANYCABLE_METRICS_LOG_FORMATTER"], Kind::Str, "", Some("metrics.logformatter"), Feature::Metrics, "METRICS", "mruby formatter script (mruby builds only)").hidden(),
    FlagDef::new("metrics_http", &["ANYCABLE_METRICS_HTTP"], Kind::Str, "", Some("metrics.http_path"), Feature::Metrics, "METRICS", "Prometheus endpoint path, e.g. /metrics"),
    FlagDef::new("metrics_host", &["ANYCABLE_METRICS_HOST"], Kind::Str, "", Some("metrics.host"), Feature::Metrics, "METRICS", "Separate bind host for metrics"),
    FlagDef::new("metrics_port", &["ANYCABLE_METRICS_PORT"], Kind::Int, "0", Some("metrics.port"), Feature::Metrics, "METRICS", "Metrics port"),
    FlagDef::new("metrics_tags", &["ANYCABLE_METRICS_TAGS"], Kind::Map, "", Some("metrics.tags"), Feature::Metrics, "METRICS", "Global tags/labels"),
    FlagDef::new("stats_refresh_interval", &["ANYCABLE_STATS_REFRESH_INTERVAL"], Kind::Int, "5", Some("app.stats_refresh_interval"), Feature::Metrics, "METRICS", "Gauge refresh period; 0 disables"),
    // WEBSOCKETS
    FlagDef::new("read_buffer_size", &["ANYCABLE_READ_BUFFER_SIZE"], Kind::Int, "1024", Some("ws.read_buffer_size"), Feature::Core, "WEBSOCKETS", "Most bytes read from a WebSocket at once (up to 16 KiB)").hidden(),
    FlagDef::new("write_buffer_size", &["ANYCABLE_WRITE_BUFFER_SIZE"], Kind::Int, "1024", Some("ws.write_buffer_size"), Feature::Core, "WEBSOCKETS", "No effect: queued frames are written together").hidden(),
    FlagDef::new("max_message_size", &["ANYCABLE_MAX_MESSAGE_SIZE"], Kind::Int, "65536", Some("ws.max_message_size"), Feature::Core, "WEBSOCKETS", "Max incoming message").hidden(),
    FlagDef::new("ws_write_timeout", &["ANYCABLE_WS_WRITE_TIMEOUT"], Kind::Int, "2", Some("ws.write_timeout"), Feature::Core, "WEBSOCKETS", "Per-frame write deadline"),
    FlagDef::new("ws_max_pending_size", &["ANYCABLE_WS_MAX_PENDING_SIZE"], Kind::Int, "1048576", Some("ws.max_pending_size"), Feature::Core, "WEBSOCKETS", "Outgoing queue cap before slow-client disconnect; 0 = unlimited"),
    FlagDef::new("enable_ws_compression", &["ANYCABLE_ENABLE_WS_COMPRESSION"], Kind::Bool, "false", Some("ws.enable_compression"), Feature::WsCompression, "WEBSOCKETS", "permessage-deflate").hidden(),
    // PING
    FlagDef::new("ping_interval", &["ANYCABLE_PING_INTERVAL"], Kind::Int, "3", Some("app.ping_interval"), Feature::Core, "PING", "App-level ping period"),
    FlagDef::new("ping_timestamp_precision", &["ANYCABLE_PING_TIMESTAMP_PRECISION"], Kind::Str, "s", Some("app.ping_timestamp_precision"), Feature::Core, "PING", "s, ms, ns").hidden(),
    FlagDef::new("pong_timeout", &["ANYCABLE_PONG_TIMEOUT"], Kind::Int, "0", Some("app.pong_timeout"), Feature::Core, "PING", "Require client pongs (extended protocol / native pings)"),
    FlagDef::new("enable_native_pings", &["ANYCABLE_ENABLE_NATIVE_PINGS"], Kind::Bool, "false", Some("app.enable_native_ping"), Feature::Core, "PING", "Also send WebSocket ping frames"),
    // JWT
    FlagDef::new("jwt_id_key", &["ANYCABLE_JWT_ID_KEY"], Kind::Str, "", None, Feature::Jwt, "JWT", "→ jwt_secret if that is empty").hidden().deprecated().secret(),
    FlagDef::new("jwt_secret", &["ANYCABLE_JWT_SECRET"], Kind::Str, "", Some("jwt.secret"), Feature::Jwt, "JWT", "HMAC key for tokens; enables JWT identification").secret(),
    FlagDef::new("jwt_id_param", &["ANYCABLE_JWT_ID_PARAM"], Kind::Str, "", None, Feature::Jwt, "JWT", "→ jwt_param only if that is empty (never, since it defaults to jid)").hidden().deprecated(),
    FlagDef::new("jwt_param", &["ANYCABLE_JWT_PARAM"], Kind::Str, "jid", Some("jwt.param"), Feature::Jwt, "JWT", "Query param name; header is x-<param>"),
    FlagDef::new("jwt_id_enforce", &["ANYCABLE_JWT_ID_ENFORCE"], Kind::Bool, "false", None, Feature::Jwt, "JWT", "→ enforce_jwt").hidden().deprecated(),
    FlagDef::new("enforce_jwt", &["ANYCABLE_ENFORCE_JWT"], Kind::Bool, "false", Some("jwt.force"), Feature::Jwt, "JWT", "Reject connections without a token"),
    // SIGNED STREAMS
    FlagDef::new("streams_secret", &["ANYCABLE_STREAMS_SECRET"], Kind::Str, "", Some("streams.secret"), Feature::Streams, "SIGNED STREAMS", "Key for signed stream names").secret(),
    FlagDef::new("public_streams", &["ANYCABLE_PUBLIC_STREAMS"], Kind::Bool, "false", Some("streams.public"), Feature::Streams, "SIGNED STREAMS", "Allow unsigned stream names"),
    FlagDef::new("streams_whisper", &["ANYCABLE_STREAMS_WHISPER"], Kind::Bool, "false", Some("streams.whisper"), Feature::Streams, "SIGNED STREAMS", "Whispering for signed streams"),
    FlagDef::new("streams_presence", &["ANYCABLE_STREAMS_PRESENCE"], Kind::Bool, "true", Some("streams.presence"), Feature::Streams, "SIGNED STREAMS", "Presence for signed streams"),
    FlagDef::new("turbo_streams", &["ANYCABLE_TURBO_STREAMS"], Kind::Bool, "false", Some("streams.turbo"), Feature::Streams, "SIGNED STREAMS", "Handle Turbo::StreamsChannel internally"),
    FlagDef::new("cable_ready", &["ANYCABLE_CABLE_READY"], Kind::Bool, "false", Some("streams.cable_ready"), Feature::Streams, "SIGNED STREAMS", "Handle CableReady::Stream internally"),
    FlagDef::new("turbo_rails_key", &["ANYCABLE_TURBO_RAILS_KEY"], Kind::Str, "", None, Feature::Streams, "SIGNED STREAMS", "→ turbo_streams_secret and turbo_streams=true").hidden().deprecated().secret(),
    FlagDef::new("turbo_streams_secret", &["ANYCABLE_TURBO_STREAMS_SECRET"], Kind::Str, "", Some("streams.turbo_secret"), Feature::Streams, "SIGNED STREAMS", "Turbo verifier key").secret(),
    FlagDef::new("turbo_rails_cleartext", &["ANYCABLE_TURBO_RAILS_CLEARTEXT"], Kind::Bool, "false", None, Feature::Streams, "SIGNED STREAMS", "Turbo::StreamsChannel with plain stream names (turbo_streams=true); warns").hidden().deprecated(),
    FlagDef::new("cable_ready_key", &["ANYCABLE_CABLE_READY_KEY"], Kind::Str, "", None, Feature::Streams, "SIGNED STREAMS", "→ cable_ready_secret and cable_ready=true").hidden().deprecated().secret(),
    FlagDef::new("cable_ready_secret", &["ANYCABLE_CABLE_READY_SECRET"], Kind::Str, "", Some("streams.cable_ready_secret"), Feature::Streams, "SIGNED STREAMS", "CableReady verifier key").secret(),
    FlagDef::new("cable_ready_cleartext", &["ANYCABLE_CABLE_READY_CLEARTEXT"], Kind::Bool, "false", None, Feature::Streams, "SIGNED STREAMS", "CableReady::Stream with plain stream names (cable_ready=true); warns").hidden().deprecated(),
    // STATSD
    FlagDef::new("statsd_host", &["ANYCABLE_STATSD_HOST"], Kind::Str, "", Some("metrics.statsd.host"), Feature::Metrics, "STATSD", "UDP StatsD target"),
    FlagDef::new("statsd_prefix", &["ANYCABLE_STATSD_PREFIX"], Kind::Str, "anycable_go.", Some("metrics.statsd.prefix"), Feature::Metrics, "STATSD", "Metric name prefix"),
    FlagDef::new("statsd_max_packet_size", &["ANYCABLE_STATSD_MAX_PACKET_SIZE"], Kind::Int, "1400", Some("metrics.statsd.max_packet_size"), Feature::Metrics, "STATSD", "UDP packet size").hidden(),
    FlagDef::new("statsd_tags_format", &["ANYCABLE_STATSD_TAGS_FORMAT"], Kind::Str, "datadog", Some("metrics.statsd.tags_format"), Feature::Metrics, "STATSD", "datadog, influxdb, graphite"),
    // EMBEDDED NATS
    FlagDef::new("embed_nats", &["ANYCABLE_EMBED_NATS"], Kind::Bool, "false", Some("embedded_nats.enabled"), Feature::EmbeddedNats, "EMBEDDED NATS", "Run in-process NATS server"),
    FlagDef::new("enats_addr", &["ANYCABLE_ENATS_ADDR"], Kind::Str, "nats://127.0.0.1:4222", Some("embedded_nats.service_addr"), Feature::EmbeddedNats, "EMBEDDED NATS", "Client listen URL (must include port)").hidden(),
    FlagDef::new("enats_cluster", &["ANYCABLE_ENATS_CLUSTER"], Kind::Str, "", Some("embedded_nats.cluster_addr"), Feature::EmbeddedNats, "EMBEDDED NATS", "Cluster listen URL").hidden(),
    FlagDef::new("enats_cluster_name", &["ANYCABLE_ENATS_CLUSTER_NAME"], Kind::Str, "anycable-cluster", Some("embedded_nats.cluster_name"), Feature::EmbeddedNats, "EMBEDDED NATS", "Cluster name"),
    FlagDef::new("enats_cluster_routes", &["ANYCABLE_ENATS_CLUSTER_ROUTES"], Kind::List { sep: ',', toml_array: true }, "", Some("embedded_nats.routes"), Feature::EmbeddedNats, "EMBEDDED NATS", "Seed routes"),
    FlagDef::new("enats_gateway", &["ANYCABLE_ENATS_GATEWAY"], Kind::Str, "", Some("embedded_nats.gateway_addr"), Feature::EmbeddedNats, "EMBEDDED NATS", "Gateway listen URL").hidden(),
    FlagDef::new("enats_gateways", &["ANYCABLE_ENATS_GATEWAYS"], Kind::List { sep: ';', toml_array: true }, "", Some("embedded_nats.gateways"), Feature::EmbeddedNats, "EMBEDDED NATS", "Known gateways (semicolon-separated)"),
    FlagDef::new("enats_gateway_advertise", &["ANYCABLE_ENATS_GATEWAY_ADVERTISE"], Kind::Str, "", Some("embedded_nats.gateway_advertise"), Feature::EmbeddedNats, "EMBEDDED NATS", "Advertised gateway address"),
    FlagDef::new("enats_store_dir", &["ANYCABLE_ENATS_STORE_DIR"], Kind::Str, "", Some("embedded_nats.jetstream_store_dir"), Feature::EmbeddedNats, "EMBEDDED NATS", "JetStream storage").hidden(),
    FlagDef::new("enats_server_name", &["ANYCABLE_ENATS_SERVER_NAME"], Kind::Str, "", Some("embedded_nats.name"), Feature::EmbeddedNats, "EMBEDDED NATS", "Unique server name"),
    FlagDef::new("enats_debug", &["ANYCABLE_ENATS_DEBUG"], Kind::Bool, "false", Some("embedded_nats.debug"), Feature::EmbeddedNats, "EMBEDDED NATS", "NATS server logs").hidden(),
    FlagDef::new("enats_trace", &["ANYCABLE_ENATS_TRACE"], Kind::Bool, "false", Some("embedded_nats.trace"), Feature::EmbeddedNats, "EMBEDDED NATS", "Protocol trace logs").hidden(),
    FlagDef::new("enats_max_payload", &["ANYCABLE_ENATS_MAX_PAYLOAD"], Kind::Int, "0", Some("embedded_nats.max_payload"), Feature::EmbeddedNats, "EMBEDDED NATS", "Max message size"),
    // SERVER-SENT EVENTS
    FlagDef::new("sse", &["ANYCABLE_SSE"], Kind::Bool, "false", Some("sse.enabled"), Feature::Sse, "SERVER-SENT EVENTS", "Enable SSE endpoint"),
    FlagDef::new("sse_path", &["ANYCABLE_SSE_PATH"], Kind::Str, "/events", Some("sse.path"), Feature::Sse, "SERVER-SENT EVENTS", "SSE path"),
    // PUSHER
    FlagDef::new("pusher_app_id", &["ANYCABLE_PUSHER_APP_ID"], Kind::Str, "", Some("pusher.app_id"), Feature::Pusher, "PUSHER", "Enables Pusher compat (with app key)"),
    FlagDef::new("pusher_secret", &["ANYCABLE_PUSHER_SECRET"], Kind::Str, "", Some("pusher.secret"), Feature::Pusher, "PUSHER", "Pusher signing secret").secret(),
    FlagDef::new("pusher_app_key", &["ANYCABLE_PUSHER_APP_KEY"], Kind::Str, "", Some("pusher.app_key"), Feature::Pusher, "PUSHER", "WS mounted at /app/<key>"),
    FlagDef::new("pusher_api_port", &["ANYCABLE_PUSHER_API_PORT"], Kind::Int, "0", Some("pusher.api_port"), Feature::Pusher, "PUSHER", "REST API /apps/<id>/* port"),
    // DURABLE STREAMS
    FlagDef::new("ds", &["ANYCABLE_DS"], Kind::Bool, "false", Some("ds.enabled"), Feature::Ds, "DURABLE STREAMS", "Enable Durable Streams endpoint (<path>/*)"),
    FlagDef::new("ds_path", &["ANYCABLE_DS_PATH"], Kind::Str, "/ds", Some("ds.path"), Feature::Ds, "DURABLE STREAMS", "Mount path"),
    FlagDef::new("ds_skip_auth", &["ANYCABLE_DS_SKIP_AUTH"], Kind::Bool, "false", Some("ds.skip_auth"), Feature::Ds, "DURABLE STREAMS", "Skip connection auth (stream access still checked)"),
    FlagDef::new("ds_poll_interval", &["ANYCABLE_DS_POLL_INTERVAL"], Kind::Int, "10", Some("ds.poll_interval"), Feature::Ds, "DURABLE STREAMS", "Long-poll interval"),
    FlagDef::new("ds_sse_ttl", &["ANYCABLE_DS_SSE_TTL"], Kind::Int, "60", Some("ds.sse_ttl"), Feature::Ds, "DURABLE STREAMS", "Max SSE connection lifetime"),
    // API
    FlagDef::new("api_port", &["ANYCABLE_API_PORT"], Kind::Int, "0", Some("api.port"), Feature::Api, "API", "REST API port (non-zero also enables the API)"),
    FlagDef::new("api_path", &["ANYCABLE_API_PATH"], Kind::Str, "/api", Some("api.path"), Feature::Api, "API", "Base path"),
    FlagDef::new("api_secret", &["ANYCABLE_API_SECRET"], Kind::Str, "", Some("api.secret"), Feature::Api, "API", "Bearer key (none is NOT special here)").secret(),
    // MISC
    FlagDef::new("presets", &["ANYCABLE_PRESETS"], Kind::List { sep: ',', toml_array: true }, "", Some("presets"), Feature::Core, "MISC", "fly, heroku, broker, or none"),
    // File-only settings (no flag, no env var)
    FlagDef::file("redis_pubsub.channel", Kind::Str, "__anycable_internal__", Feature::Redis, "Control channel of Redis pub/sub"),
    FlagDef::file("nats_pubsub.channel", Kind::Str, "__anycable_internal__", Feature::Nats, "Control subject of NATS pub/sub"),
    FlagDef::file("redis.max_reconnect_attempts", Kind::Int, "0", Feature::Redis, "Consecutive failed Redis reconnections before giving up (0: never give up)"),
    FlagDef::file("nats.max_reconnect_attempts", Kind::Int, "0", Feature::Nats, "Consecutive failed NATS reconnections before giving up (0: never give up)"),
    FlagDef::file("streams.pubsub_channel", Kind::Str, "$pubsub", Feature::Streams, "Name of the built-in pub/sub channel (empty disables it)"),
    FlagDef::file("embedded_nats.jetstream", Kind::Bool, "false", Feature::EmbeddedNats, "Enable JetStream"),
    FlagDef::file("embedded_nats.jetstream_ready_timeout", Kind::Int, "30", Feature::EmbeddedNats, "Wait for JetStream readiness (seconds)"),
    FlagDef::file("api.host", Kind::Str, "", Feature::Api, "Separate bind host for the API"),
    FlagDef::file("api.cors_headers", Kind::Bool, "false", Feature::Api, "CORS headers on the REST API"),
    FlagDef::file("api.cors_hosts", Kind::List { sep: ',', toml_array: false }, "", Feature::Api, "CORS hosts of the REST API"),
];

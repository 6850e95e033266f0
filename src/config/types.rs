//! The typed configuration the server consumes. Defaults are the reference's (AnyCable-Go 1.6)
//! after post-processing, so `Config::default()` equals loading with no input (except `node_id`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::choices::{
    BroadcastAdapter, BrokerAdapter, DisconnectMode, Precision, Preset, PubSubAdapter, RpcImpl,
};

/// One field per section of the TOML file (`[server]`, `[ws]`, `[rpc]`, ...), as AnyCable-Go's
/// file is laid out, plus the few top-level settings: this is why it is wider than other
/// structs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Random 6-char id per start unless given (empty in `Config::default()`).
    pub node_id: String,
    /// Application secret; `None` when empty or `none`.
    pub secret: Option<String>,
    /// Effective: also true with `--public`.
    pub noauth: bool,
    pub public: bool,
    /// `--norpc` (or RPC implementation `none`).
    pub norpc: bool,
    pub server: ServerConfig,
    pub ws: WsConfig,
    pub app: AppConfig,
    pub jwt: JwtConfig,
    pub streams: StreamsConfig,
    pub http_broadcast: HttpBroadcastConfig,
    pub broadcast_adapters: Vec<BroadcastAdapter>,
    /// `--pubsub`; auto-set to `redis` with a Redis URL or the `redisx` broadcaster, as in
    /// AnyCable-Go.
    pub pubsub_adapter: PubSubAdapter,
    pub logging: LogConfig,
    /// The `--presets` setting as given (empty = auto-detect); unknown names are kept so that
    /// applying them warns.
    pub presets_setting: Vec<String>,
    /// What loading found out (not settings).
    pub load: LoadReport,
    pub rpc: RpcConfig,
    pub disconnector: DisconnectorConfig,
    pub broker: BrokerConfig,
    pub redis: RedisConfig,
    pub redisx: RedisXConfig,
    pub nats: NatsConfig,
    pub embedded_nats: EmbeddedNatsConfig,
    pub metrics: MetricsConfig,
    pub sse: SseConfig,
    pub pusher: PusherConfig,
    pub ds: DsConfig,
    pub api: ApiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: String::new(),
            secret: None,
            noauth: false,
            public: false,
            norpc: false,
            server: ServerConfig::default(),
            ws: WsConfig::default(),
            app: AppConfig::default(),
            jwt: JwtConfig::default(),
            streams: StreamsConfig::default(),
            http_broadcast: HttpBroadcastConfig::default(),
            // The reference's default; Redis need not be running (see clients::reconnect).
            broadcast_adapters: vec![BroadcastAdapter::Http, BroadcastAdapter::Redis],
            pubsub_adapter: PubSubAdapter::Unset,
            logging: LogConfig::default(),
            presets_setting: Vec::new(),
            load: LoadReport::default(),
            rpc: RpcConfig::default(),
            disconnector: DisconnectorConfig::default(),
            broker: BrokerConfig::default(),
            redis: RedisConfig::default(),
            redisx: RedisXConfig::default(),
            nats: NatsConfig::default(),
            embedded_nats: EmbeddedNatsConfig::default(),
            metrics: MetricsConfig::default(),
            sse: SseConfig::default(),
            pusher: PusherConfig::default(),
            ds: DsConfig::default(),
            api: ApiConfig::default(),
        }
    }
}

impl Config {
    /// The RPC client in use (never [`RpcImpl::Auto`]): none with `--norpc`, else `--rpc_impl`,
    /// else picked by `--rpc_host`'s scheme, as the reference decides it.
    pub fn rpc_impl(&self) -> RpcImpl {
        if self.norpc {
            return RpcImpl::None;
        }
        match self.rpc.implementation {
            RpcImpl::Auto
                if self.rpc.host.starts_with("http://")
                    || self.rpc.host.starts_with("https://") =>
            {
                RpcImpl::Http
            }
            RpcImpl::Auto => RpcImpl::Grpc,
            chosen => chosen,
        }
    }
}

/// What loading found out besides the settings, for the startup log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadReport {
    /// The file that was loaded.
    pub config_file: Option<PathBuf>,
    /// Deprecation and preset warnings, printed by main at startup.
    pub warnings: Vec<String>,
    /// Presets that were applied, in order.
    pub presets: Vec<Preset>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// 0 = unlimited.
    pub max_conn: usize,
    pub health_path: String,
    /// The readiness endpoint (`src/readiness/`); empty = no endpoint and no checks.
    pub readiness_path: String,
    /// How often the readiness checks run; a canary must be back within one period.
    pub readiness_interval_ms: u64,
    /// Empty = no origin check.
    pub allowed_origins: Vec<String>,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "localhost".to_string(),
            port: 8080,
            max_conn: 0,
            health_path: "/health".to_string(),
            readiness_path: "/ready".to_string(),
            readiness_interval_ms: 2000,
            allowed_origins: Vec::new(),
            ssl_cert: None,
            ssl_key: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WsConfig {
    pub paths: Vec<String>,
    pub read_buffer_size: usize,
    pub write_buffer_size: usize,
    pub max_message_size: usize,
    pub write_timeout_secs: u64,
    /// 0 = unlimited.
    pub max_pending_size: usize,
    pub enable_compression: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            paths: vec!["/cable".to_string()],
            read_buffer_size: 1024,
            write_buffer_size: 1024,
            max_message_size: 65536,
            write_timeout_secs: 2,
            max_pending_size: 1_048_576,
            enable_compression: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    pub ping_interval_secs: u64,
    pub ping_timestamp_precision: Precision,
    /// 0 = off.
    pub pong_timeout_secs: u64,
    pub enable_native_pings: bool,
    pub shutdown_timeout_secs: u64,
    pub shutdown_delay_secs: u64,
    pub shutdown_pool_size: usize,
    /// Spread the `server_restart` disconnects over the shutdown window (`--shutdown_slowdrain`).
    pub shutdown_slowdrain: bool,
    pub hub_gopool_size: usize,
    /// Subscriptions one connection may hold; 0 = unlimited.
    pub max_subscriptions_per_connection: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            ping_interval_secs: 3,
            ping_timestamp_precision: Precision::Seconds,
            pong_timeout_secs: 0,
            enable_native_pings: false,
            shutdown_timeout_secs: 30,
            shutdown_delay_secs: 0,
            shutdown_pool_size: 16,
            shutdown_slowdrain: false,
            hub_gopool_size: 16,
            max_subscriptions_per_connection: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    /// Effective key: `--jwt_secret` → `--jwt_id_key` → `--secret`; `None` = JWT off.
    pub secret: Option<String>,
    pub param: String,
    pub enforce: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            secret: None,
            param: "jid".to_string(),
            enforce: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamsConfig {
    /// Effective `$pubsub` signing key (`--streams_secret` → `--secret`).
    pub secret: Option<String>,
    /// Effective: also true with `--public`.
    pub public: bool,
    pub whisper: bool,
    pub presence: bool,
    pub turbo: bool,
    /// Effective (`--turbo_rails_key` → `--turbo_streams_secret` → streams secret).
    pub turbo_secret: Option<String>,
    /// `--turbo_rails_cleartext`: Turbo identifiers may carry plain stream names.
    pub turbo_cleartext: bool,
    pub cable_ready: bool,
    /// Effective (`--cable_ready_key` → `--cable_ready_secret` → streams secret).
    pub cable_ready_secret: Option<String>,
    /// `--cable_ready_cleartext`: CableReady identifiers may carry plain stream names.
    pub cable_ready_cleartext: bool,
    /// Name of the built-in channel (TOML only); empty disables it.
    pub pubsub_channel: String,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            secret: None,
            public: false,
            whisper: false,
            presence: true,
            turbo: false,
            turbo_secret: None,
            turbo_cleartext: false,
            cable_ready: false,
            cable_ready_secret: None,
            cable_ready_cleartext: false,
            pubsub_channel: "$pubsub".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpBroadcastConfig {
    /// Resolved: never 0 (rules in docs/broadcasting.md).
    pub port: u16,
    pub path: String,
    /// Effective key (explicit or derived from `--secret`); `None` = no authorization.
    pub key: Option<String>,
    /// The key was derived from the application secret (for the startup log).
    pub key_derived: bool,
    pub cors: bool,
}

impl Default for HttpBroadcastConfig {
    fn default() -> Self {
        HttpBroadcastConfig {
            port: 8090,
            path: "/_broadcast".to_string(),
            key: None,
            key_derived: false,
            cors: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ]
        .into_iter()
        .find(|l| l.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [LogFormat::Text, LogFormat::Json]
            .into_iter()
            .find(|f| f.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogConfig {
    /// Effective: `Debug` when `debug` is set.
    pub level: LogLevel,
    pub format: LogFormat,
    /// The `--debug` flag as given.
    pub debug: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcConfig {
    pub host: String,
    /// 0 = adaptive, within the bounds below.
    pub concurrency: usize,
    pub concurrency_initial: usize,
    pub concurrency_min: usize,
    pub concurrency_max: usize,
    /// Admission control of `Connect` calls (0 = off).
    pub connect_max_wait_ms: u64,
    pub tls: RpcTlsConfig,
    pub max_recv_size: usize,
    pub max_send_size: usize,
    pub request_timeout_ms: u64,
    pub command_timeout_ms: u64,
    /// Lowercased.
    pub proxy_headers: Vec<String>,
    /// Empty = all cookies.
    pub proxy_cookies: Vec<String>,
    /// As given (`none` iff `norpc`); [`Config::rpc_impl`] resolves `Auto`.
    pub implementation: RpcImpl,
    /// Effective HTTP RPC bearer key (explicit or derived from `--secret`).
    pub secret: Option<String>,
    pub http_request_timeout_ms: u64,
}

/// TLS towards the backend (`--rpc_enable_tls`, `--rpc_tls_verify`, `--rpc_tls_root_ca`).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcTlsConfig {
    pub enabled: bool,
    pub verify: bool,
    /// CA file path or inline PEM.
    pub root_ca: String,
}

impl Default for RpcTlsConfig {
    fn default() -> Self {
        RpcTlsConfig {
            enabled: false,
            verify: true,
            root_ca: String::new(),
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            host: "localhost:50051".to_string(),
            concurrency: 28,
            concurrency_initial: 25,
            concurrency_min: 5,
            concurrency_max: 100,
            connect_max_wait_ms: 2000,
            tls: RpcTlsConfig::default(),
            max_recv_size: 0,
            max_send_size: 0,
            request_timeout_ms: 0,
            command_timeout_ms: 3000,
            proxy_headers: vec!["cookie".to_string()],
            proxy_cookies: Vec::new(),
            implementation: RpcImpl::Auto,
            secret: None,
            http_request_timeout_ms: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DisconnectorConfig {
    pub mode: DisconnectMode,
    pub rate: u64,
    pub backlog_size: usize,
    /// Deprecated, no effect.
    pub shutdown_timeout_secs: u64,
}

impl Default for DisconnectorConfig {
    fn default() -> Self {
        DisconnectorConfig {
            mode: DisconnectMode::Auto,
            rate: 100,
            backlog_size: 4096,
            shutdown_timeout_secs: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    pub adapter: BrokerAdapter,
    pub history_limit: usize,
    pub history_ttl_secs: u64,
    pub sessions_ttl_secs: u64,
    pub presence_ttl_secs: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            adapter: BrokerAdapter::Unset,
            history_limit: 100,
            history_ttl_secs: 300,
            sessions_ttl_secs: 300,
            presence_ttl_secs: 15,
        }
    }
}

pub(crate) const DEFAULT_REDIS_URL: &str = "redis://localhost:6379";
pub(crate) const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    pub sentinels: Vec<String>,
    pub sentinel_discovery_interval_secs: u64,
    pub keepalive_interval_secs: u64,
    pub tls_verify: bool,
    pub tls_ca_cert_path: String,
    pub tls_client_cert_path: String,
    pub tls_client_key_path: String,
    pub disable_cache: bool,
    /// Consecutive failed reconnections before a component gives up; 0 (the default, unlike
    /// the reference's 5): never.
    pub max_reconnect_attempts: u64,
    /// Channel of the legacy `redis` broadcaster.
    pub channel: String,
    /// Control channel of Redis pub/sub.
    pub pubsub_channel: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: DEFAULT_REDIS_URL.to_string(),
            sentinels: Vec::new(),
            sentinel_discovery_interval_secs: 30,
            keepalive_interval_secs: 30,
            tls_verify: false,
            tls_ca_cert_path: String::new(),
            tls_client_cert_path: String::new(),
            tls_client_key_path: String::new(),
            disable_cache: false,
            max_reconnect_attempts: 0,
            channel: "__anycable__".to_string(),
            pubsub_channel: "__anycable_internal__".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisXConfig {
    pub stream: String,
    pub group: String,
    pub read_block_ms: u64,
}

impl Default for RedisXConfig {
    fn default() -> Self {
        RedisXConfig {
            stream: "__anycable__".to_string(),
            group: "bx".to_string(),
            read_block_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    pub servers: Vec<String>,
    pub dont_randomize_servers: bool,
    pub max_reconnect_attempts: u64,
    /// Subject of the NATS broadcaster.
    pub channel: String,
    /// Control subject of NATS pub/sub.
    pub pubsub_channel: String,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec![DEFAULT_NATS_URL.to_string()],
            dont_randomize_servers: false,
            max_reconnect_attempts: 0,
            channel: "__anycable__".to_string(),
            pubsub_channel: "__anycable_internal__".to_string(),
        }
    }
}

/// `--embed_nats` and its settings: accepted and printed back, refused at start while the
/// embedded server is not built (see `unsupported.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedNatsConfig {
    pub enabled: bool,
    pub service_addr: String,
    pub cluster: EmbeddedNatsCluster,
    pub gateway: EmbeddedNatsGateway,
    pub store_dir: String,
    pub server_name: String,
    pub debug: bool,
    pub trace: bool,
    pub max_payload: usize,
    pub jetstream: EmbeddedNatsJetStream,
}

impl Default for EmbeddedNatsConfig {
    fn default() -> Self {
        EmbeddedNatsConfig {
            enabled: false,
            service_addr: DEFAULT_NATS_URL.to_string(),
            cluster: EmbeddedNatsCluster {
                addr: String::new(),
                name: "anycable-cluster".to_string(),
                routes: Vec::new(),
            },
            gateway: EmbeddedNatsGateway::default(),
            store_dir: String::new(),
            server_name: String::new(),
            debug: false,
            trace: false,
            max_payload: 0,
            jetstream: EmbeddedNatsJetStream {
                enabled: false,
                ready_timeout_secs: 30,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedNatsCluster {
    pub addr: String,
    pub name: String,
    pub routes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbeddedNatsGateway {
    pub addr: String,
    pub gateways: Vec<String>,
    pub advertise: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedNatsJetStream {
    pub enabled: bool,
    pub ready_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub log: bool,
    pub rotate_interval_secs: u64,
    /// Deprecated; copied to `rotate_interval_secs` only when that is 0.
    pub log_interval_secs: u64,
    pub log_filter: Vec<String>,
    pub log_formatter: String,
    /// Prometheus endpoint path; empty = off.
    pub http_path: String,
    pub host: String,
    /// 0 = the main port (left unresolved so the printed config keeps following `--port`).
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub stats_refresh_interval_secs: u64,
    pub statsd: StatsdConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            log: false,
            rotate_interval_secs: 15,
            log_interval_secs: 0,
            log_filter: Vec::new(),
            log_formatter: String::new(),
            http_path: String::new(),
            host: String::new(),
            port: 0,
            tags: BTreeMap::new(),
            stats_refresh_interval_secs: 5,
            statsd: StatsdConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatsdConfig {
    pub host: String,
    pub prefix: String,
    pub max_packet_size: usize,
    pub tags_format: String,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        StatsdConfig {
            host: String::new(),
            prefix: "anycable_go.".to_string(),
            max_packet_size: 1400,
            tags_format: "datadog".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SseConfig {
    pub enabled: bool,
    pub path: String,
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            enabled: false,
            path: "/events".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PusherConfig {
    pub app_id: String,
    /// Effective (`--pusher_secret` → `--secret`).
    pub secret: Option<String>,
    pub app_key: String,
    /// 0 = the main port.
    pub api_port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DsConfig {
    pub enabled: bool,
    pub path: String,
    pub skip_auth: bool,
    pub poll_interval_secs: u64,
    pub sse_ttl_secs: u64,
}

impl Default for DsConfig {
    fn default() -> Self {
        DsConfig {
            enabled: false,
            path: "/ds".to_string(),
            skip_auth: false,
            poll_interval_secs: 10,
            sse_ttl_secs: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// 0 = the main port.
    pub port: u16,
    pub path: String,
    /// Effective bearer key (explicit, `none` not special, or derived from `--secret`).
    pub secret: Option<String>,
    pub host: String,
    pub cors_headers: bool,
    pub cors_hosts: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            port: 0,
            path: "/api".to_string(),
            secret: None,
            host: String::new(),
            cors_headers: false,
            cors_hosts: Vec::new(),
        }
    }
}

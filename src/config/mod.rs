//! TEMPORARY: replaced by the config branch on merge.
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node_id: String,
    pub secret: Option<String>,
    pub noauth: bool,
    pub public: bool,
    pub norpc: bool,
    pub server: ServerConfig,
    pub ws: WsConfig,
    pub app: AppConfig,
    pub jwt: JwtConfig,
    pub streams: StreamsConfig,
    pub http_broadcast: HttpBroadcastConfig,
    pub broadcast_adapters: Vec<String>,
    pub logging: LogConfig,
    pub presets: Vec<String>,
    pub config_file: Option<PathBuf>,
    pub warnings: Vec<String>,
}
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub max_conn: usize,
    pub health_path: String,
    pub allowed_origins: Vec<String>,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
}
#[derive(Debug, Clone, PartialEq)]
pub struct WsConfig {
    pub paths: Vec<String>,
    pub read_buffer_size: usize,
    pub write_buffer_size: usize,
    pub max_message_size: usize,
    pub write_timeout_secs: u64,
    pub max_pending_size: usize,
    pub enable_compression: bool,
}
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    pub ping_interval_secs: u64,
    pub ping_timestamp_precision: String,
    pub pong_timeout_secs: u64,
    pub enable_native_pings: bool,
    pub shutdown_timeout_secs: u64,
    pub shutdown_delay_secs: u64,
    pub shutdown_pool_size: usize,
    pub hub_gopool_size: usize,
}
#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    pub secret: Option<String>,
    pub param: String,
    pub enforce: bool,
}
#[derive(Debug, Clone, PartialEq)]
pub struct StreamsConfig {
    pub secret: Option<String>,
    pub public: bool,
    pub whisper: bool,
    pub presence: bool,
    pub turbo: bool,
    pub turbo_secret: Option<String>,
    pub cable_ready: bool,
    pub cable_ready_secret: Option<String>,
    pub pubsub_channel: String,
}
#[derive(Debug, Clone, PartialEq)]
pub struct HttpBroadcastConfig {
    pub port: u16,
    pub path: String,
    pub key: Option<String>,
    pub key_derived: bool,
    pub cors: bool,
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogFormat {
    Text,
    Json,
}
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);
pub enum Loaded {
    Run(Box<Config>),
    PrintConfig(String),
    Help(String),
    Version(String),
}
pub fn load(
    _args: &[String],
    _env: &std::collections::HashMap<String, String>,
    _cwd: &std::path::Path,
) -> Result<Loaded, ConfigError> {
    todo!()
}
impl Config {
    pub fn unsupported_settings(&self) -> Vec<String> {
        vec![]
    }
}

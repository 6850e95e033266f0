//! Configuration errors. `Display` is the message the binary prints before exiting with status 1.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("unexpected argument {0:?}: flags must start with - or --")]
    UnexpectedArgument(String),
    /// `origin` names where the value came from: `flag --port`, `environment variable PORT`, ...
    #[error("invalid value {value:?} for {origin}: {reason}")]
    InvalidValue {
        origin: String,
        value: String,
        reason: String,
    },
    #[error("failed to read config file {}: {reason}", path.display())]
    ReadFile { path: PathBuf, reason: String },
    #[error("failed to parse TOML configuration {}: {reason}", path.display())]
    ParseToml { path: PathBuf, reason: String },
    /// A value that parsed but is not acceptable (unknown log level, missing preset env, ...).
    #[error("{0}")]
    Invalid(String),
}

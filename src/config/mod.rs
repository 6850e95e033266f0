//! Configuration: flags, env vars, TOML file, presets (AnyCable-Go: cli/options.go,
//! config/config.go, docs/configuration.md).
//!
//! [`load`] merges defaults → TOML file → env → CLI (`layers.rs`) using the flag table
//! (`flags.rs`), builds the typed [`Config`] and post-processes it (`postprocess.rs`), then either
//! renders it for `--print-config` (`print.rs`) or applies presets (`presets.rs`).
//! The module never reads the process environment: callers pass args, env and cwd.
//! `docs/configuration.md` is rendered from the flag table by `reference.rs`.
//! Deliberate differences from the reference are listed in `docs/compatibility.md`.

mod bindings;
mod choices;
mod error;
pub mod flags;
mod help;
mod layers;
mod postprocess;
mod presets;
mod print;
pub mod reference;
mod secrets;
mod types;
mod unsupported;
mod value;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

pub use choices::{
    BroadcastAdapter, BrokerAdapter, Choice, DisconnectMode, Precision, Preset, PubSubAdapter,
    RpcImpl,
};
pub use error::ConfigError;
pub use secrets::derive_key;
pub use types::*;

/// The AnyCable-Go release whose protocol, flags and behaviour this build follows.
pub const ANYCABLE_VERSION: &str = "1.6.16";

/// Version reported by `--version`, `--help`, the startup line and the `x-anycable-version`
/// header: the AnyCable version first, because tools around AnyCable compare prefixes
/// (anycable-rails' `bin/anycable-go` binstub re-downloads the Go binary unless
/// `anycable-go -v` starts with its pinned version), then this project's own version.
pub const VERSION: &str = concat!("1.6.16", "-rs.", env!("CARGO_PKG_VERSION"));

/// What the binary should do.
#[derive(Debug)]
pub enum Loaded {
    Run(Box<Config>),
    /// `--print-config`: print the text and exit 0.
    PrintConfig(String),
    /// `--help`: print the text and exit 0.
    Help(String),
    /// `--version`: print the text and exit 0.
    Version(String),
}

/// Loads the configuration. `args` excludes argv[0]; `env` is the process environment; relative
/// paths (`--config-path`, `./anycable.toml`) are resolved against `cwd`.
pub fn load(
    args: &[String],
    env: &HashMap<String, String>,
    cwd: &Path,
) -> Result<Loaded, ConfigError> {
    let cli = layers::parse_cli(args)?;
    if cli.help {
        return Ok(Loaded::Help(help::render()));
    }
    if cli.version {
        return Ok(Loaded::Version(VERSION.to_string()));
    }
    let mut raw = layers::Raw::defaults();
    let config_file = layers::config_file(&cli, cwd);
    if let Some(path) = &config_file {
        layers::apply_file(&mut raw, path)?;
    }
    layers::apply_env(&mut raw, env)?;
    layers::apply_cli(&mut raw, &cli);
    let mut cfg = postprocess::build(&raw)?;
    cfg.load.config_file = config_file;
    if cli.flag_bool("print-config") {
        return Ok(Loaded::PrintConfig(print::render(&cfg)));
    }
    presets::apply(&mut cfg, env)?;
    Ok(Loaded::Run(Box::new(cfg)))
}

//! Configuration: flags, env vars, TOML file, presets (see docs/configuration.md).

//! Source precedence: defaults < file < env < CLI, and config file lookup.

use super::support::*;
use crate::config::{load, BroadcastAdapter, Config, Loaded, LogLevel};

fn run_in(dir: &TempDir, list: &[&str], pairs: &[(&str, &str)]) -> Config {
    match load(&args(list), &env(pairs), &dir.0) {
        Ok(Loaded::Run(cfg)) => *cfg,
        other => panic!("expected a config, got {other:?}"),
    }
}

#[test]
fn defaults_equal_config_default() {
    let mut cfg = run(&["--ignore-config-path"], &[]);
    assert_eq!(cfg.node_id.len(), 6);
    cfg.node_id.clear();
    assert_eq!(cfg, Config::default());
}

#[test]
fn node_id_is_random_unless_given() {
    let a = run(&[], &[]);
    let b = run(&[], &[]);
    assert_ne!(a.node_id, b.node_id);
    assert_eq!(run(&["--node_id=abc"], &[]).node_id, "abc");
}

#[test]
fn reference_feature_test_file_env_cli() {
    let dir = TempDir::new();
    dir.write(
        "anycable.toml",
        "[server]\nport = 2024\n[logging]\ndebug = true\n",
    );
    let cfg = run_in(
        &dir,
        &["--port=2025"],
        &[("ANYCABLE_PORT", "312"), ("ANYCABLE_DEBUG", "false")],
    );
    assert_eq!(cfg.server.port, 2025);
    assert!(!cfg.logging.debug);
    assert_eq!(cfg.logging.level, LogLevel::Info);
    assert_eq!(cfg.load.config_file, Some(dir.0.join("anycable.toml")));
}

#[test]
fn env_beats_file_and_file_beats_default() {
    let dir = TempDir::new();
    dir.write(
        "anycable.toml",
        "[server]\nport = 2024\nhost = \"0.0.0.0\"\n",
    );
    let cfg = run_in(&dir, &[], &[("ANYCABLE_PORT", "312")]);
    assert_eq!(cfg.server.port, 312);
    assert_eq!(cfg.server.host, "0.0.0.0");
    let cfg = run_in(&dir, &[], &[]);
    assert_eq!(cfg.server.port, 2024);
}

#[test]
fn file_debug_forces_debug_level() {
    let dir = TempDir::new();
    dir.write(
        "anycable.toml",
        "[logging]\ndebug = true\nlevel = \"error\"\n",
    );
    assert_eq!(run_in(&dir, &[], &[]).logging.level, LogLevel::Debug);
}

#[test]
fn file_paths_and_headers_are_honoured() {
    let dir = TempDir::new();
    dir.write(
        "anycable.toml",
        "[ws]\npaths = [\"/ws\", \"/cable\"]\n[rpc]\nproxy_headers = [\"X-Api-Key\"]\n",
    );
    let cfg = run_in(&dir, &[], &[]);
    assert_eq!(cfg.ws.paths, vec!["/ws", "/cable"]);
    assert_eq!(cfg.rpc.proxy_headers, vec!["x-api-key"]);
}

#[test]
fn explicit_config_path_is_relative_to_cwd_and_wins_over_lookup() {
    let dir = TempDir::new();
    dir.write("anycable.toml", "[server]\nport = 1111\n");
    dir.write("other.toml", "[server]\nport = 2222\n");
    let cfg = run_in(&dir, &["--config-path", "other.toml"], &[]);
    assert_eq!(cfg.server.port, 2222);
    assert_eq!(cfg.load.config_file, Some(dir.0.join("other.toml")));
}

#[test]
fn ignore_config_path_skips_the_file() {
    let dir = TempDir::new();
    dir.write("anycable.toml", "[server]\nport = 1111\n");
    let cfg = run_in(&dir, &["--ignore-config-path"], &[]);
    assert_eq!(cfg.server.port, 8080);
    assert_eq!(cfg.load.config_file, None);
}

#[test]
fn missing_explicit_file_is_an_error() {
    let message = error(&["--config-path=/nonexistent/anycable.toml"], &[]);
    assert!(
        message.starts_with("failed to read config file /nonexistent/anycable.toml"),
        "{message}"
    );
}

#[test]
fn invalid_toml_is_an_error() {
    let dir = TempDir::new();
    dir.write("anycable.toml", "[server\nport = 1\n");
    let err = load(&[], &env(&[]), &dir.0).expect_err("invalid TOML");
    assert!(
        err.to_string()
            .starts_with("failed to parse TOML configuration"),
        "{err}"
    );
}

#[test]
fn type_mismatch_names_the_key() {
    let dir = TempDir::new();
    dir.write("anycable.toml", "[server]\nport = \"8080\"\n");
    let err = load(&[], &env(&[]), &dir.0).expect_err("type mismatch");
    let message = err.to_string();
    assert!(
        message.contains("server.port") && message.contains("expected an integer"),
        "{message}"
    );
}

#[test]
fn unknown_keys_are_ignored_and_keys_match_case_insensitively() {
    let dir = TempDir::new();
    dir.write(
        "anycable.toml",
        "whatever = 1\n[Server]\nPort = 3000\n[disconnector]\nRate = 5\n",
    );
    let cfg = run_in(&dir, &[], &[]);
    assert_eq!(cfg.server.port, 3000);
    assert_eq!(cfg.disconnector.rate, 5);
}

#[test]
fn list_keys_accept_strings_and_arrays() {
    let dir = TempDir::new();
    dir.write(
        "anycable.toml",
        "broadcast_adapters = \"http\"\n[server]\nallowed_origins = \"a.com,*.b.com\"\n[nats]\nservers = [\"nats://x:4222\"]\n",
    );
    let cfg = run_in(&dir, &[], &[]);
    assert_eq!(cfg.server.allowed_origins, vec!["a.com", "*.b.com"]);
    assert_eq!(cfg.nats.servers, vec!["nats://x:4222"]);
    assert_eq!(cfg.broadcast_adapters, vec![BroadcastAdapter::Http]);
}

#[test]
fn file_only_settings_and_tables() {
    let dir = TempDir::new();
    dir.write(
        "anycable.toml",
        "[streams]\npubsub_channel = \"\"\n[metrics]\ntags = { env = \"prod\" }\nstatsd.host = \"localhost:8125\"\n",
    );
    let cfg = run_in(&dir, &[], &[]);
    assert_eq!(cfg.streams.pubsub_channel, "");
    assert_eq!(
        cfg.metrics.tags.get("env").map(String::as_str),
        Some("prod")
    );
    assert_eq!(cfg.metrics.statsd.host, "localhost:8125");
}

#[test]
fn file_only_settings_are_not_flags() {
    assert_eq!(
        error(&["--streams.pubsub_channel=x"], &[]),
        "flag provided but not defined: -streams.pubsub_channel"
    );
}

#[test]
fn empty_config_path_loads_nothing() {
    let dir = TempDir::new();
    dir.write("anycable.toml", "[server]\nport = 1111\n");
    assert_eq!(
        run_in(&dir, &["--config-path="], &[]).load.config_file,
        None
    );
}

#[test]
fn subscription_limit_from_file_env_and_cli() {
    assert_eq!(
        run(&[], &[]).app.max_subscriptions_per_connection,
        1000,
        "a safe default"
    );
    let dir = TempDir::new();
    dir.write(
        "anycable.toml",
        "[app]\nmax_subscriptions_per_connection = 50\n",
    );
    let limit = |list: &[&str], pairs: &[(&str, &str)]| {
        run_in(&dir, list, pairs)
            .app
            .max_subscriptions_per_connection
    };
    assert_eq!(limit(&[], &[]), 50);
    let env = [("ANYCABLE_MAX_SUBSCRIPTIONS_PER_CONNECTION", "70")];
    assert_eq!(limit(&[], &env), 70);
    assert_eq!(
        limit(&["--max_subscriptions_per_connection=0"], &env),
        0,
        "0 = unlimited"
    );
}

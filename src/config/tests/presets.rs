//! Presets (config.md §9).

use super::support::*;

const FLY: [(&str, &str); 3] = [
    ("FLY_APP_NAME", "app"),
    ("FLY_REGION", "ams"),
    ("FLY_ALLOC_ID", "1"),
];

#[test]
fn fly_is_auto_detected() {
    let cfg = run(&[], &FLY);
    assert_eq!(cfg.presets, vec!["fly"]);
    assert_eq!(cfg.server.host, "0.0.0.0");
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.contains("fly preset") && w.contains("not available yet")));
    assert!(cfg.unsupported_settings().is_empty());
}

#[test]
fn fly_needs_all_three_vars_to_be_detected() {
    let cfg = run(&[], &FLY[..2]);
    assert!(cfg.presets.is_empty());
    assert_eq!(cfg.server.host, "localhost");
}

#[test]
fn fly_rpc_host() {
    let mut pairs = FLY.to_vec();
    pairs.push(("ANYCABLE_FLY_RPC_APP_NAME", "rails"));
    assert_eq!(run(&[], &pairs).rpc.host, "dns:///ams.rails.internal:50051");
    assert_eq!(run(&["--rpc_host=x:1"], &pairs).rpc.host, "x:1");
}

#[test]
fn forced_fly_requires_env() {
    let message = error(&["--presets=fly"], &[("FLY_APP_NAME", "app")]);
    assert!(message.contains("FLY_REGION"), "{message}");
}

#[test]
fn heroku_is_auto_detected() {
    let cfg = run(&[], &[("HEROKU_APP_ID", "a"), ("HEROKU_DYNO_ID", "d")]);
    assert_eq!(cfg.presets, vec!["heroku"]);
    assert_eq!(cfg.server.host, "0.0.0.0");
}

#[test]
fn presets_only_change_defaults() {
    let cfg = run(
        &["--host=127.0.0.1"],
        &[("HEROKU_APP_ID", "a"), ("HEROKU_DYNO_ID", "d")],
    );
    assert_eq!(cfg.server.host, "127.0.0.1");
}

#[test]
fn explicit_presets_replace_detection() {
    let cfg = run(&["--presets=none"], &FLY);
    assert!(cfg.presets.is_empty());
    assert_eq!(cfg.server.host, "localhost");
    let cfg = run(&[], &[("ANYCABLE_PRESETS", "heroku")]);
    assert_eq!(cfg.presets, vec!["heroku"]);
}

#[test]
fn broker_preset_selects_the_memory_broker() {
    let cfg = run(&["--presets=broker"], &[]);
    assert_eq!(cfg.presets, vec!["broker"]);
    assert_eq!(cfg.broker.adapter, "memory");
    assert_eq!(cfg.broadcast_adapters, vec!["http"]);
    let explicit = run(&["--presets=broker", "--broker=none"], &[]);
    assert_eq!(explicit.broker.adapter, "none");
    let with_redis = run(&["--presets=broker"], &[("REDIS_URL", "redis://r:6379")]);
    assert_eq!(
        with_redis.broadcast_adapters,
        vec!["http", "redisx", "redis"]
    );
    assert_eq!(with_redis.pubsub_adapter, "redis");
}

#[test]
fn unknown_preset_warns() {
    let cfg = run(&["--presets=aws"], &[]);
    assert!(cfg.presets.is_empty());
    assert!(cfg.warnings.iter().any(|w| w.contains("aws")));
}

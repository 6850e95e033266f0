//! Presets (AnyCable-Go: config/presets.go; differences in docs/compatibility.md).

use super::support::*;
use crate::config::{BroadcastAdapter, BrokerAdapter, Preset, PubSubAdapter};

const FLY: [(&str, &str); 3] = [
    ("FLY_APP_NAME", "app"),
    ("FLY_REGION", "ams"),
    ("FLY_ALLOC_ID", "1"),
];

/// The Fly.io guide's setup: a Redis URL from `fly redis create`.
fn fly_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut pairs = FLY.to_vec();
    pairs.extend_from_slice(extra);
    pairs
}

#[test]
fn fly_is_auto_detected_and_clusters_through_redis() {
    let cfg = run(&[], &fly_with(&[("REDIS_URL", "redis://fly-redis:6379")]));
    assert_eq!(cfg.load.presets, vec![Preset::Fly]);
    assert_eq!(cfg.server.host, "0.0.0.0");
    assert_eq!(cfg.pubsub_adapter, PubSubAdapter::Redis);
    assert_eq!(
        cfg.broadcast_adapters,
        vec![BroadcastAdapter::Http, BroadcastAdapter::Redis]
    );
    assert!(cfg.unsupported_settings().is_empty());
}

#[test]
fn fly_without_redis_or_nats_is_refused() {
    let message = error(&[], &FLY);
    assert!(message.contains("fly preset"), "{message}");
    assert!(message.contains("REDIS_URL"), "{message}");
    assert!(message.contains("ANYCABLE_NATS_SERVERS"), "{message}");
}

#[test]
fn fly_clusters_through_an_external_nats() {
    let cfg = run(
        &[],
        &fly_with(&[("ANYCABLE_NATS_SERVERS", "nats://n:4222")]),
    );
    assert_eq!(cfg.pubsub_adapter, PubSubAdapter::Nats);
    assert_eq!(
        cfg.broadcast_adapters,
        vec![BroadcastAdapter::Http, BroadcastAdapter::Nats]
    );
}

#[test]
fn fly_single_machine_opts_out_of_clustering() {
    let cfg = run(&["--pubsub=none"], &FLY);
    assert_eq!(cfg.load.presets, vec![Preset::Fly]);
    assert_eq!(cfg.broadcast_adapters, vec![BroadcastAdapter::Http]);
}

#[test]
fn fly_needs_all_three_vars_to_be_detected() {
    let cfg = run(&[], &FLY[..2]);
    assert!(cfg.load.presets.is_empty());
    assert_eq!(cfg.server.host, "localhost");
}

#[test]
fn fly_rpc_host() {
    let pairs = fly_with(&[
        ("ANYCABLE_FLY_RPC_APP_NAME", "rails"),
        ("REDIS_URL", "redis://r:6379"),
    ]);
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
    assert_eq!(cfg.load.presets, vec![Preset::Heroku]);
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
    assert!(cfg.load.presets.is_empty());
    assert_eq!(cfg.server.host, "localhost");
    let cfg = run(&[], &[("ANYCABLE_PRESETS", "heroku")]);
    assert_eq!(cfg.load.presets, vec![Preset::Heroku]);
}

#[test]
fn broker_preset_selects_the_memory_broker() {
    let cfg = run(&["--presets=broker"], &[]);
    assert_eq!(cfg.load.presets, vec![Preset::Broker]);
    assert_eq!(cfg.broker.adapter, BrokerAdapter::Memory);
    assert_eq!(cfg.broadcast_adapters, vec![BroadcastAdapter::Http]);
    let explicit = run(&["--presets=broker", "--broker=none"], &[]);
    assert_eq!(explicit.broker.adapter, BrokerAdapter::None);
    let with_redis = run(&["--presets=broker"], &[("REDIS_URL", "redis://r:6379")]);
    assert_eq!(
        with_redis.broadcast_adapters,
        vec![
            BroadcastAdapter::Http,
            BroadcastAdapter::RedisX,
            BroadcastAdapter::Redis
        ]
    );
    assert_eq!(with_redis.pubsub_adapter, PubSubAdapter::Redis);
}

#[test]
fn unknown_preset_warns() {
    let cfg = run(&["--presets=aws"], &[]);
    assert!(cfg.load.presets.is_empty());
    assert!(cfg.load.warnings.iter().any(|w| w.contains("aws")));
}

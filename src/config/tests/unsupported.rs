//! Settings of features that are not built yet.

use super::support::*;
use crate::config::{Config, PubSubAdapter};

#[test]
fn defaults_and_built_features_are_fine() {
    assert!(Config::default().unsupported_settings().is_empty());
    let cfg = run(
        &[
            "--secret=x",
            "--public",
            "--norpc",
            "--turbo_streams",
            "--cable_ready",
            "--port=3000",
            "--enforce_jwt",
            "--broadcast_key=k",
            "--pubsub=none",
            "--broker=none",
            "--presets=none",
        ],
        &[],
    );
    assert_eq!(cfg.unsupported_settings(), Vec::<String>::new());
}

#[test]
fn messages_name_the_flag() {
    let messages = run(&["--enable_ws_compression"], &[]).unsupported_settings();
    assert_eq!(
        messages,
        vec!["--enable_ws_compression=true: WebSocket compression (permessage-deflate) is not implemented yet"]
    );
    let messages = run(&["--ds", "--presence_ttl=10"], &[]).unsupported_settings();
    assert_eq!(
        messages,
        vec!["--ds=true: Durable Streams is not implemented yet"]
    );
    assert!(run(&["--sse", "--sse_path=/sse"], &[])
        .unsupported_settings()
        .is_empty());
}

#[test]
fn secrets_are_not_echoed() {
    let messages = run(&["--pusher_secret=topsecret"], &[]).unsupported_settings();
    assert_eq!(
        messages,
        vec!["--pusher_secret: Pusher compatibility is not implemented yet"]
    );
}

#[test]
fn inherited_secrets_are_not_reported() {
    // --secret feeds Pusher, HTTP RPC and the API, but only as a fallback.
    assert!(run(&["--secret=x"], &[]).unsupported_settings().is_empty());
}

#[test]
fn rpc_settings() {
    assert!(run(&["--rpc_host=rpc:50051", "--rpc_concurrency=5"], &[])
        .unsupported_settings()
        .is_empty());
    assert!(run(&["--rpc_impl=http"], &[])
        .unsupported_settings()
        .is_empty());
    assert!(run(&["--rpc_enable_tls", "--rpc_tls_root_ca=/ca.pem"], &[])
        .unsupported_settings()
        .is_empty());
}

#[test]
fn broadcast_adapters_and_redis() {
    for adapters in ["http,nats", "redis", "http,redis,nats"] {
        let flag = format!("--broadcast_adapter={adapters}");
        assert!(
            run(&[&flag], &[]).unsupported_settings().is_empty(),
            "{adapters}"
        );
    }
    let cfg = run(
        &[
            "--nats_servers=nats://a:4222,nats://b:4222",
            "--nats_channel=x",
            "--redis_channel=y",
            "--redis_tls_verify",
            "--redis_keepalive_interval=5",
        ],
        &[("REDIS_URL", "rediss://:pw@r:6380/2")],
    );
    // A Redis URL also turns on the Redis pub/sub (as in AnyCable-Go).
    assert_eq!(cfg.pubsub_adapter, PubSubAdapter::Redis);
    assert!(cfg.unsupported_settings().is_empty());
    assert!(run(&["--pubsub=nats"], &[])
        .unsupported_settings()
        .is_empty());
    let cfg = run(&["--broadcast_adapter=redisx", "--pubsub=none"], &[]);
    assert!(cfg.unsupported_settings().is_empty());
}

#[test]
fn redis_cluster_and_embedded_nats_are_refused() {
    assert!(run(&["--redis_sentinels=s1:26379", "--pubsub=none"], &[])
        .unsupported_settings()
        .is_empty());
    let messages = run(
        &["--redis_url=redis://a:1,redis://b:2", "--pubsub=none"],
        &[],
    )
    .unsupported_settings();
    assert_eq!(
        messages,
        vec!["--redis_url: Redis Cluster (a comma-separated list of URLs) is not implemented yet"]
    );
    let messages = run(&["--embed_nats"], &[]).unsupported_settings();
    assert_eq!(
        messages,
        vec!["--embed_nats=true: the embedded NATS server is not implemented yet"]
    );
}

#[test]
fn memory_broker_and_its_preset_are_supported() {
    assert!(run(&["--presets=broker"], &[])
        .unsupported_settings()
        .is_empty());
    let cfg = run(
        &["--broker=memory", "--history_limit=10", "--sessions_ttl=5"],
        &[],
    );
    assert!(cfg.unsupported_settings().is_empty());
}

#[test]
fn file_only_settings_are_named_by_key() {
    let dir = TempDir::new();
    dir.write("anycable.toml", "[embedded_nats]\njetstream = true\n");
    let cfg = match crate::config::load(&[], &env(&[]), &dir.0) {
        Ok(crate::config::Loaded::Run(cfg)) => *cfg,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        cfg.unsupported_settings(),
        vec!["[embedded_nats] jetstream=true: the embedded NATS server is not implemented yet"]
    );
}

#[test]
fn metrics_settings_are_supported() {
    let cfg = run(
        &[
            "--metrics_http=/metrics",
            "--metrics_host=0.0.0.0",
            "--metrics_port=9100",
            "--metrics_tags=env:prod",
            "--metrics_log",
            "--metrics_log_filter=clients_num",
            "--metrics_rotate_interval=5",
            "--stats_refresh_interval=1",
            "--statsd_host=localhost:8125",
            "--statsd_prefix=ac.",
            "--statsd_max_packet_size=512",
            "--statsd_tags_format=influxdb",
        ],
        &[],
    );
    assert_eq!(cfg.unsupported_settings(), Vec::<String>::new());
}

#[test]
fn mruby_metrics_formatter_is_refused() {
    let messages = run(&["--metrics_log_formatter=fmt.rb"], &[]).unsupported_settings();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("--metrics_log_formatter=fmt.rb: mruby metrics formatters"),
        "{messages:?}"
    );
}

#[test]
fn metrics_port_follows_main_port_without_report() {
    assert!(run(&["--port=3000"], &[]).unsupported_settings().is_empty());
}

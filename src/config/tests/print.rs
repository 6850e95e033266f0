//! `--print-config`: layout and the `load(print(c)) == c` round trip.

use super::support::*;
use crate::config::{load, Config, Loaded};

fn printed(list: &[&str], pairs: &[(&str, &str)]) -> String {
    let mut list = list.to_vec();
    list.push("--print-config");
    match try_load(&list, pairs) {
        Ok(Loaded::PrintConfig(text)) => text,
        other => panic!("expected printed config, got {other:?}"),
    }
}

/// Fields that describe how the config was obtained rather than what it is.
fn normalized(mut cfg: Config) -> Config {
    cfg.load.config_file = None;
    cfg.load.warnings.clear();
    cfg
}

fn assert_round_trip(list: &[&str], pairs: &[(&str, &str)]) {
    let mut list = list.to_vec();
    list.push("--node_id=node01");
    let original = run(&list, pairs);
    let text = printed(&list, pairs);
    let dir = TempDir::new();
    let path = dir.write("printed.toml", &text);
    // Reload from the file alone: no env, no other flags.
    let reloaded = match load(
        &args(&["--config-path", path.to_str().expect("utf-8 path")]),
        &env(&[]),
        &dir.0,
    ) {
        Ok(Loaded::Run(cfg)) => *cfg,
        other => panic!("reloading {text} failed: {other:?}"),
    };
    assert_eq!(
        normalized(reloaded.clone()),
        normalized(original),
        "round trip of {list:?}:\n{text}"
    );
    let reprinted = printed(&["--config-path", path.to_str().expect("utf-8 path")], &[]);
    assert_eq!(reprinted, text, "printing is not idempotent for {list:?}");
}

#[test]
fn round_trip_defaults() {
    assert_round_trip(&[], &[]);
}

#[test]
fn round_trip_secrets() {
    assert_round_trip(&["--secret=s3cr3t"], &[]);
    assert_round_trip(&["--secret=none"], &[]);
    assert_round_trip(
        &[
            "--secret=app",
            "--jwt_secret=none",
            "--streams_secret=s",
            "--turbo_streams_secret=none",
            "--api_secret=none",
        ],
        &[],
    );
    assert_round_trip(
        &[
            "--secret=app",
            "--pusher_secret=p",
            "--http_rpc_secret=none",
            "--cable_ready_secret=c",
        ],
        &[],
    );
    assert_round_trip(&["--broadcast_key=k"], &[]);
    assert_round_trip(&["--broadcast_key=none", "--secret=x"], &[]);
    assert_round_trip(&["--public", "--secret=x"], &[]);
    assert_round_trip(&["--public"], &[]);
}

#[test]
fn round_trip_lists_and_maps() {
    assert_round_trip(
        &[
            "--path=/a,/b",
            "--headers=Cookie,X-Api-Key",
            "--proxy-cookies=session",
            "--allowed_origins=a.com,*.b.com",
            "--metrics_tags=env:prod,region:eu",
            "--enats_gateways=a:nats://x:1,nats://y:2;b:nats://z:3",
            "--enats_cluster_routes=nats://r:5222",
            "--nats_servers=nats://a:4222,nats://b:4222",
            "--redis_sentinels=s1:26379,s2:26379",
            "--metrics_log_filter=clients_num",
            "--presets=none",
        ],
        &[],
    );
    assert_round_trip(&["--headers="], &[]);
}

#[test]
fn round_trip_legacy_flags() {
    assert_round_trip(
        &[
            "--turbo_rails_key=t",
            "--jwt_id_key=j",
            "--jwt_id_param=token",
            "--jwt_id_enforce",
        ],
        &[],
    );
    assert_round_trip(&["--cable_ready_key=c", "--secret=x"], &[]);
    assert_round_trip(
        &[
            "--disable_disconnect",
            "--disconnect_timeout=3",
            "--http_broadcast_secret=h",
        ],
        &[],
    );
    assert_round_trip(
        &["--metrics_log_interval=7", "--metrics_rotate_interval=0"],
        &[],
    );
}

#[test]
fn round_trip_misc() {
    assert_round_trip(
        &[
            "--debug",
            "--log_format=json",
            "--norpc",
            "--enable_native_pings",
            "--max-conn=10",
        ],
        &[],
    );
    assert_round_trip(&[], &[("REDIS_URL", "redis://r:6379"), ("PORT", "3000")]);
    assert_round_trip(
        &[
            "--embed_nats",
            "--ssl_cert=/c.pem",
            "--ssl_key=/k.pem",
            "--ping_timestamp_precision=ns",
        ],
        &[],
    );
    assert_round_trip(
        &[
            "--broadcast_adapter=http,redisx",
            "--broker=memory",
            "--sse",
            "--ds",
            "--api_port=9000",
        ],
        &[],
    );
}

#[test]
fn layout_uses_reference_keys() {
    let text = printed(&[], &[]);
    for expected in [
        "secret = \"none\"\n",
        "broadcast_key = \"none\"\n",
        "broadcast_adapters = [\"http\", \"redis\"]\n",
        "[server]\n",
        "port = 8080\n",
        "ssl.cert_path = \"\"\n",
        "[ws]\n",
        "paths = [\"/cable\"]\n",
        "[app]\n",
        "enable_native_ping = false\n",
        "[http_broadcast]\n",
        "port = 8090\n",
        "[metrics]\n",
        "http_path = \"\"\n",
        "statsd.prefix = \"anycable_go.\"\n",
        "[disconnector]\n",
        "rate = 100\n",
        "[jwt]\n",
        "param = \"jid\"\n",
        "[streams]\n",
        "pubsub_channel = \"$pubsub\"\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // Deprecated settings at their defaults and legacy names are not printed.
    assert!(!text.contains("loginterval"));
    assert!(!text.contains("shutdowntimeout"));
    assert!(!text.contains("jwt_id"));
    assert!(text.parse::<toml::Table>().is_ok());
}

#[test]
fn secrets_are_printed() {
    let text = printed(&["--secret=s3cr3t", "--jwt_secret=j"], &[]);
    assert!(text.contains("secret = \"s3cr3t\"\n"));
    assert!(text.contains("secret = \"j\"\n"));
}

#[test]
fn print_happens_before_presets() {
    let fly = [
        ("FLY_APP_NAME", "app"),
        ("FLY_REGION", "ams"),
        ("FLY_ALLOC_ID", "1"),
    ];
    let text = printed(&[], &fly);
    assert!(text.contains("host = \"localhost\"\n"));
    assert!(text.contains("presets = []\n"));
}

#[test]
fn cleartext_flags_are_named_since_the_file_cannot_hold_them() {
    let text = printed(&["--turbo_rails_cleartext"], &[]);
    assert!(
        text.contains("# --turbo_rails_cleartext is on; it has no setting in this file"),
        "{text}"
    );
    assert!(
        text.contains("ANYCABLE_TURBO_RAILS_CLEARTEXT=true"),
        "{text}"
    );
    assert!(!text.contains("cable_ready_cleartext"), "{text}");
    assert!(!printed(&[], &[]).contains("cleartext"));
}

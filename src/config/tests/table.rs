//! Invariants of the flag table.

use std::collections::HashSet;

use crate::config::flags::{Kind, FLAGS};
use crate::config::value::parse_text;

#[test]
fn names_are_unique() {
    let mut seen = HashSet::new();
    for flag in FLAGS {
        assert!(seen.insert(flag.name), "duplicate flag {}", flag.name);
    }
    // AnyCable-Go 1.6's 140, AnyCable Pro's --shutdown_slowdrain and three adaptive concurrency
    // bounds, plus --max_subscriptions_per_connection, --rpc_connect_max_wait, --readiness_path
    // and --readiness_interval_ms.
    assert_eq!(FLAGS.iter().filter(|f| !f.file_only).count(), 148);
}

#[test]
fn env_names_follow_the_rule() {
    let no_env = ["config-path", "ignore-config-path", "print-config"];
    for flag in FLAGS
        .iter()
        .filter(|f| !f.file_only && !no_env.contains(&f.name))
    {
        let expected = format!("ANYCABLE_{}", flag.name.to_uppercase().replace('-', "_"));
        assert_eq!(flag.env.first(), Some(&expected.as_str()), "{}", flag.name);
        let aliases: Vec<&str> = flag.env[1..].to_vec();
        match flag.name {
            "port" => assert_eq!(aliases, ["PORT"]),
            "redis_url" => assert_eq!(aliases, ["REDIS_URL"]),
            _ => assert!(aliases.is_empty(), "{}", flag.name),
        }
    }
    for name in no_env {
        assert!(crate::config::flags::find_flag(name).is_some_and(|f| f.env.is_empty()));
    }
}

#[test]
fn defaults_parse() {
    for flag in FLAGS {
        assert!(parse_text(flag.kind, flag.default).is_ok(), "{}", flag.name);
    }
}

#[test]
fn toml_keys_are_unique() {
    let mut seen = HashSet::new();
    for key in FLAGS.iter().filter_map(|f| f.toml) {
        assert!(
            seen.insert(key.to_ascii_lowercase()),
            "duplicate TOML key {key}"
        );
    }
}

#[test]
fn every_toml_key_is_printed_or_intentionally_skipped() {
    let cfg = crate::config::Config::default();
    // Inherited secrets are omitted at their defaults; legacy flags with a key are folded elsewhere.
    let skipped = [
        "http_broadcast_secret",
        "jwt_secret",
        "streams_secret",
        "turbo_streams_secret",
        "cable_ready_secret",
        "pusher_secret",
        "http_rpc_secret",
        "api_secret",
    ];
    for flag in FLAGS
        .iter()
        .filter(|f| f.toml.is_some() && !skipped.contains(&f.name))
    {
        assert!(
            crate::config::print::setting_value(&cfg, flag).is_some(),
            "{} is never printed",
            flag.name
        );
    }
}

#[test]
fn semicolon_list_only_for_gateways() {
    for flag in FLAGS {
        if let Kind::List { sep, .. } = flag.kind {
            assert_eq!(sep == ';', flag.name == "enats_gateways", "{}", flag.name);
        }
    }
}

//! Environment variable parsing (urfave/cli rules).

use super::support::*;

#[test]
fn port_alias_and_priority() {
    assert_eq!(run(&[], &[("PORT", "3000")]).server.port, 3000);
    assert_eq!(
        run(&[], &[("PORT", "3000"), ("ANYCABLE_PORT", "4000")])
            .server
            .port,
        4000
    );
    // The first existing variable wins even when empty; an empty int is then ignored.
    assert_eq!(
        run(&[], &[("PORT", "3000"), ("ANYCABLE_PORT", "")])
            .server
            .port,
        8080
    );
}

#[test]
fn redis_url_alias_and_priority() {
    let cfg = run(&[], &[("REDIS_URL", "redis://r:6379")]);
    assert_eq!(cfg.redis.url, "redis://r:6379");
    let cfg = run(
        &[],
        &[
            ("REDIS_URL", "redis://r:6379"),
            ("ANYCABLE_REDIS_URL", "redis://a:6379"),
        ],
    );
    assert_eq!(cfg.redis.url, "redis://a:6379");
}

#[test]
fn bools() {
    for text in ["1", "t", "T", "TRUE", "true", "True"] {
        assert!(run(&[], &[("ANYCABLE_NOAUTH", text)]).noauth, "{text}");
    }
    for text in ["0", "f", "F", "FALSE", "false", "False"] {
        assert!(!run(&[], &[("ANYCABLE_NOAUTH", text)]).noauth, "{text}");
    }
    // Empty means false (and counts as set: it beats the file).
    assert!(
        !run(&[], &[("ANYCABLE_STREAMS_PRESENCE", "")])
            .streams
            .presence
    );
    let message = error(&[], &[("ANYCABLE_NOAUTH", "yes")]);
    assert!(
        message.contains("environment variable ANYCABLE_NOAUTH"),
        "{message}"
    );
}

#[test]
fn ints() {
    assert_eq!(
        run(&[], &[("ANYCABLE_PING_INTERVAL", "0x10")])
            .app
            .ping_interval_secs,
        16
    );
    assert_eq!(
        run(&[], &[("ANYCABLE_PING_INTERVAL", "010")])
            .app
            .ping_interval_secs,
        8
    );
    assert_eq!(
        run(&[], &[("ANYCABLE_PING_INTERVAL", "0")])
            .app
            .ping_interval_secs,
        0
    );
    assert_eq!(
        run(&[], &[("ANYCABLE_PING_INTERVAL", "")])
            .app
            .ping_interval_secs,
        3
    );
    let message = error(&[], &[("ANYCABLE_PING_INTERVAL", "3s")]);
    assert!(
        message.contains("environment variable ANYCABLE_PING_INTERVAL"),
        "{message}"
    );
    assert!(error(&[], &[("ANYCABLE_PING_INTERVAL", "09")]).contains("ANYCABLE_PING_INTERVAL"));
}

#[test]
fn empty_string_counts_as_set() {
    assert!(run(&[], &[("ANYCABLE_HEADERS", "")])
        .rpc
        .proxy_headers
        .is_empty());
    assert_eq!(run(&[], &[("ANYCABLE_HOST", "")]).server.host, "");
}

#[test]
fn lists_and_dash_names() {
    let cfg = run(
        &[],
        &[
            ("ANYCABLE_HEADERS", "Cookie,X-Api-Key"),
            ("ANYCABLE_MAX_CONN", "10"),
        ],
    );
    assert_eq!(cfg.rpc.proxy_headers, vec!["cookie", "x-api-key"]);
    assert_eq!(cfg.server.max_conn, 10);
    assert_eq!(
        run(&[], &[("ANYCABLE_HEALTH_PATH", "/up")])
            .server
            .health_path,
        "/up"
    );
    assert_eq!(
        run(&[], &[("ANYCABLE_PROXY_COOKIES", "a,b")])
            .rpc
            .proxy_cookies,
        vec!["a", "b"]
    );
}

#[test]
fn cli_beats_env() {
    assert_eq!(
        run(&["--host=cli"], &[("ANYCABLE_HOST", "env")])
            .server
            .host,
        "cli"
    );
}

#[test]
fn config_flags_have_no_env() {
    let dir = TempDir::new();
    dir.write("anycable.toml", "[server]\nport = 1234\n");
    let pairs = env(&[
        ("ANYCABLE_IGNORE_CONFIG_PATH", "true"),
        ("ANYCABLE_PRINT_CONFIG", "true"),
    ]);
    match crate::config::load(&[], &pairs, &dir.0) {
        Ok(crate::config::Loaded::Run(cfg)) => assert_eq!(cfg.server.port, 1234),
        other => panic!("{other:?}"),
    }
}

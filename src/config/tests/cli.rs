//! Command-line syntax.

use super::support::*;
use crate::config::{Loaded, Precision, RpcImpl, VERSION};

#[test]
fn equals_and_space_forms() {
    assert_eq!(run(&["--port=3000"], &[]).server.port, 3000);
    assert_eq!(run(&["--port", "3001"], &[]).server.port, 3001);
    assert_eq!(
        run(&["--host", "0.0.0.0", "--path", "/a,/b"], &[]).ws.paths,
        vec!["/a", "/b"]
    );
}

#[test]
fn single_dash_flags() {
    let cfg = run(&["-port=3000", "-debug", "-host", "example.com"], &[]);
    assert_eq!(cfg.server.port, 3000);
    assert!(cfg.logging.debug);
    assert_eq!(cfg.server.host, "example.com");
}

#[test]
fn bool_flags() {
    assert!(run(&["--noauth"], &[]).noauth);
    assert!(!run(&["--noauth=false"], &[]).noauth);
    assert!(run(&["--noauth=1"], &[]).noauth);
    assert!(!run(&["--streams_presence=f"], &[]).streams.presence);
    let message = error(&["--noauth=yes"], &[]);
    assert!(
        message.contains("--noauth") && message.contains("\"yes\""),
        "{message}"
    );
}

#[test]
fn last_occurrence_wins() {
    assert_eq!(run(&["--port=1", "--port=2"], &[]).server.port, 2);
}

#[test]
fn ints_use_go_base_prefixes() {
    assert_eq!(run(&["--port=0x1f90"], &[]).server.port, 8080);
    assert_eq!(run(&["--ping_interval=010"], &[]).app.ping_interval_secs, 8);
    assert_eq!(run(&["--max-conn=1_000"], &[]).server.max_conn, 1000);
}

#[test]
fn malformed_int() {
    assert_eq!(
        error(&["--port=abc"], &[]),
        "invalid value \"abc\" for flag --port: expected an integer, got \"abc\""
    );
    assert!(error(&["--port=70000"], &[]).contains("--port"));
    assert!(error(&["--ping_interval=-1"], &[]).contains("--ping_interval"));
}

#[test]
fn unknown_flag() {
    assert_eq!(
        error(&["--nope"], &[]),
        "flag provided but not defined: -nope"
    );
}

#[test]
fn missing_value() {
    assert_eq!(error(&["--port"], &[]), "flag needs an argument: -port");
}

#[test]
fn positional_arguments_are_rejected() {
    assert!(error(&["serve"], &[]).contains("\"serve\""));
    assert!(error(&["--", "--port=1"], &[]).contains("--port=1"));
    assert!(error(&["---port=1"], &[]).contains("---port=1"));
    assert!(matches!(try_load(&["--"], &[]), Ok(Loaded::Run(_))));
}

#[test]
fn help_and_version() {
    for flag in ["--help", "-h", "-help"] {
        match try_load(&[flag], &[]) {
            Ok(Loaded::Help(text)) => {
                assert!(text.contains("--port value  Main listener port (default: 8080)"));
                assert!(text.contains("--sse  Enable SSE endpoint [$ANYCABLE_SSE]"));
                assert!(text.contains(
                    "--ds  Enable Durable Streams endpoint (<path>/*) (not implemented yet)"
                ));
                assert!(text.contains("[$ANYCABLE_PORT, $PORT]"));
                assert!(text.contains("ANYCABLE-GO SERVER"));
                // Hidden flags are not listed.
                assert!(!text.contains("--node_id"));
                assert!(!text.contains("--jwt_id_key"));
            }
            other => panic!("expected help, got {other:?}"),
        }
    }
    for flag in ["--version", "-v"] {
        assert!(matches!(try_load(&[flag], &[]), Ok(Loaded::Version(v)) if v == VERSION));
    }
}

#[test]
fn invalid_choices() {
    assert!(error(&["--log_level=trace"], &[]).contains("--log_level"));
    assert!(error(&["--log_format=xml"], &[]).contains("--log_format"));
    assert!(error(&["--ping_timestamp_precision=us"], &[]).contains("--ping_timestamp_precision"));
    assert!(error(&["--broadcast_adapter=http,kafka"], &[])
        .contains("Unsupported broadcast adapter: kafka"));
    assert!(error(&["--broker=postgres"], &[]).contains("--broker"));
    assert!(error(&["--pubsub=kafka"], &[]).contains("--pubsub"));
    assert!(error(&["--rpc_impl=soap"], &[]).contains("--rpc_impl"));
    assert!(error(&["--disconnect_mode=sometimes"], &[]).contains("--disconnect_mode"));
}

#[test]
fn typed_values() {
    let cfg = run(
        &[
            "--ping_timestamp_precision=ms",
            "--log_format=json",
            "--log_level=warn",
            "--ssl_cert=/c.pem",
            "--ssl_key=/k.pem",
            "--allowed_origins=a.com,*.b.com",
            "--metrics_tags=env:prod,region:eu",
            "--enats_gateways=a:nats://x:1,nats://y:2;b:nats://z:3",
        ],
        &[],
    );
    assert_eq!(cfg.app.ping_timestamp_precision, Precision::Millis);
    assert_eq!(cfg.logging.format, crate::config::LogFormat::Json);
    assert_eq!(cfg.logging.level, crate::config::LogLevel::Warn);
    assert_eq!(
        cfg.server.ssl_cert.as_deref(),
        Some(std::path::Path::new("/c.pem"))
    );
    assert_eq!(
        cfg.server.ssl_key.as_deref(),
        Some(std::path::Path::new("/k.pem"))
    );
    assert_eq!(cfg.server.allowed_origins, vec!["a.com", "*.b.com"]);
    assert_eq!(cfg.metrics.tags.len(), 2);
    assert_eq!(
        cfg.embedded_nats.gateway.gateways,
        vec!["a:nats://x:1,nats://y:2", "b:nats://z:3"]
    );
    assert!(error(&["--metrics_tags=novalue"], &[]).contains("--metrics_tags"));
}

#[test]
fn norpc_and_rpc_impl_none_are_the_same() {
    let cfg = run(&["--norpc"], &[]);
    assert!(cfg.norpc);
    assert_eq!(cfg.rpc.implementation, RpcImpl::None);
    assert!(run(&["--rpc_impl=none"], &[]).norpc);
}

#[test]
fn rpc_impl_in_use() {
    let in_use = |args: &[&str]| run(args, &[]).rpc_impl();
    assert_eq!(in_use(&[]), RpcImpl::Grpc);
    assert_eq!(in_use(&["--rpc_host=http://app/_anycable"]), RpcImpl::Http);
    assert_eq!(in_use(&["--rpc_host=https://app/_anycable"]), RpcImpl::Http);
    // An explicit choice wins over the host's scheme; --norpc over everything.
    assert_eq!(
        in_use(&["--rpc_impl=grpc", "--rpc_host=http://app"]),
        RpcImpl::Grpc
    );
    assert_eq!(
        in_use(&["--rpc_impl=http", "--rpc_host=app:50051"]),
        RpcImpl::Http
    );
    assert_eq!(in_use(&["--norpc", "--rpc_impl=http"]), RpcImpl::None);
    // Printed back as given: not given stays not given.
    assert_eq!(run(&[], &[]).rpc.implementation, RpcImpl::Auto);
}

#[test]
fn public_implies_noauth_and_public_streams() {
    let cfg = run(&["--public"], &[]);
    assert!(cfg.public && cfg.noauth && cfg.streams.public);
}

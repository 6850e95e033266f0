//! Secret derivation, fallbacks, `none`, and the HTTP broadcast key/port rules.

use super::support::*;
use crate::config::derive_key;

const BROADCAST: &str = "83149057b2f956b5f862c0ef5ad6a24d3677dc076d77e8999c24f77ca17d7a20";
const RPC: &str = "4b7da2749fe2a4534cec0d2acbd16277a800cf2acd31158ac4edae4a62a8f18d";
const API: &str = "e3b70326c38efad4042c57f65cc19e4ce2925e5aea5ea0c98dca248b837c17de";

#[test]
fn derivation_vectors() {
    assert_eq!(derive_key("s3cr3t", "broadcast-cable"), BROADCAST);
    assert_eq!(derive_key("s3cr3t", "rpc-cable"), RPC);
    assert_eq!(derive_key("s3cr3t", "api-cable"), API);
    assert_eq!(
        derive_key("none", "broadcast-cable"),
        "cefe585c117433fd0b169e2e123e15eaf8faa67bd62d87372ec54828f2d6950d"
    );
}

#[test]
fn secret_fallbacks() {
    let cfg = run(&["--secret=s3cr3t"], &[]);
    assert_eq!(cfg.secret.as_deref(), Some("s3cr3t"));
    assert_eq!(cfg.jwt.secret.as_deref(), Some("s3cr3t"));
    assert_eq!(cfg.streams.secret.as_deref(), Some("s3cr3t"));
    assert_eq!(cfg.streams.turbo_secret.as_deref(), Some("s3cr3t"));
    assert_eq!(cfg.streams.cable_ready_secret.as_deref(), Some("s3cr3t"));
    assert_eq!(cfg.pusher.secret.as_deref(), Some("s3cr3t"));
    assert_eq!(cfg.http_broadcast.key.as_deref(), Some(BROADCAST));
    assert!(cfg.http_broadcast.key_derived);
    assert_eq!(cfg.rpc.secret.as_deref(), Some(RPC));
    assert_eq!(cfg.api.secret.as_deref(), Some(API));
}

#[test]
fn own_settings_win() {
    let cfg = run(
        &[
            "--secret=app",
            "--jwt_secret=j",
            "--streams_secret=s",
            "--pusher_secret=p",
            "--http_rpc_secret=r",
            "--api_secret=a",
            "--broadcast_key=b",
        ],
        &[],
    );
    assert_eq!(cfg.jwt.secret.as_deref(), Some("j"));
    assert_eq!(cfg.streams.secret.as_deref(), Some("s"));
    // Turbo and CableReady inherit the streams secret, not the application secret.
    assert_eq!(cfg.streams.turbo_secret.as_deref(), Some("s"));
    assert_eq!(cfg.streams.cable_ready_secret.as_deref(), Some("s"));
    assert_eq!(cfg.pusher.secret.as_deref(), Some("p"));
    assert_eq!(cfg.rpc.secret.as_deref(), Some("r"));
    assert_eq!(cfg.api.secret.as_deref(), Some("a"));
    assert_eq!(cfg.http_broadcast.key.as_deref(), Some("b"));
    assert!(!cfg.http_broadcast.key_derived);
}

#[test]
fn no_secret_means_nothing_enabled() {
    let cfg = run(&[], &[]);
    assert_eq!(cfg.secret, None);
    assert_eq!(cfg.jwt.secret, None);
    assert_eq!(cfg.streams.secret, None);
    assert_eq!(cfg.http_broadcast.key, None);
    assert_eq!(cfg.rpc.secret, None);
    assert_eq!(cfg.api.secret, None);
}

#[test]
fn none_disables_and_blocks_fallback() {
    let cfg = run(
        &[
            "--secret=app",
            "--jwt_secret=none",
            "--streams_secret=none",
            "--pusher_secret=none",
            "--http_rpc_secret=none",
        ],
        &[],
    );
    assert_eq!(cfg.jwt.secret, None);
    assert_eq!(cfg.streams.secret, None);
    // Deliberate difference: the literal `none` is not inherited by Turbo/CableReady.
    assert_eq!(cfg.streams.turbo_secret, None);
    assert_eq!(cfg.streams.cable_ready_secret, None);
    assert_eq!(cfg.pusher.secret, None);
    assert_eq!(cfg.rpc.secret, None);
    // `none` is not special for the API key.
    assert_eq!(
        run(&["--api_secret=none"], &[]).api.secret.as_deref(),
        Some("none")
    );
}

#[test]
fn secret_none_derives_nothing() {
    // Deliberate difference: the reference derives keys from the literal "none".
    let cfg = run(&["--secret=none"], &[]);
    assert_eq!(cfg.secret, None);
    assert_eq!(cfg.jwt.secret, None);
    assert_eq!(cfg.http_broadcast.key, None);
    assert_eq!(cfg.http_broadcast.port, 8090);
    assert_eq!(cfg.rpc.secret, None);
    assert_eq!(cfg.api.secret, None);
}

// HTTP broadcast key and port: every rule listed in docs/broadcasting.md (HTTP).

#[test]
fn broadcast_default_is_8090_without_auth() {
    let cfg = run(&[], &[]);
    assert_eq!(
        (cfg.http_broadcast.port, cfg.http_broadcast.key.clone()),
        (8090, None)
    );
}

#[test]
fn broadcast_with_secret_is_on_main_port_with_derived_key() {
    let cfg = run(&["--secret=s3cr3t", "--port=9000"], &[]);
    assert_eq!(cfg.http_broadcast.port, 9000);
    assert_eq!(cfg.http_broadcast.key.as_deref(), Some(BROADCAST));
}

#[test]
fn broadcast_key_moves_to_main_port() {
    let cfg = run(&["--broadcast_key=k"], &[]);
    assert_eq!(
        (cfg.http_broadcast.port, cfg.http_broadcast.key.as_deref()),
        (8080, Some("k"))
    );
}

#[test]
fn broadcast_key_none_is_8090_without_auth() {
    let cfg = run(&["--broadcast_key=none"], &[]);
    assert_eq!(
        (cfg.http_broadcast.port, cfg.http_broadcast.key.clone()),
        (8090, None)
    );
    let cfg = run(&["--broadcast_key=none", "--secret=x"], &[]);
    assert_eq!(
        (cfg.http_broadcast.port, cfg.http_broadcast.key.clone()),
        (8090, None)
    );
    assert!(!cfg.http_broadcast.key_derived);
}

#[test]
fn public_alone_is_8090_without_auth() {
    let cfg = run(&["--public"], &[]);
    assert_eq!(
        (cfg.http_broadcast.port, cfg.http_broadcast.key.clone()),
        (8090, None)
    );
}

#[test]
fn public_with_secret_is_main_port_without_auth() {
    let cfg = run(&["--public", "--secret=x"], &[]);
    assert_eq!(
        (cfg.http_broadcast.port, cfg.http_broadcast.key.clone()),
        (8080, None)
    );
    assert!(!cfg.http_broadcast.key_derived);
}

#[test]
fn explicit_broadcast_port_wins() {
    let cfg = run(&["--http_broadcast_port=9999", "--secret=x"], &[]);
    assert_eq!(cfg.http_broadcast.port, 9999);
    let cfg = run(&["--http_broadcast_port=8080"], &[]);
    assert_eq!(
        (cfg.http_broadcast.port, cfg.http_broadcast.key.clone()),
        (8080, None)
    );
}

#[test]
fn legacy_http_broadcast_secret_wins_over_broadcast_key() {
    let cfg = run(&["--http_broadcast_secret=old", "--broadcast_key=new"], &[]);
    assert_eq!(cfg.http_broadcast.key.as_deref(), Some("old"));
    assert_eq!(cfg.http_broadcast.port, 8080);
    assert!(cfg
        .load
        .warnings
        .iter()
        .any(|w| w.contains("http_broadcast_secret option is deprecated")));
}

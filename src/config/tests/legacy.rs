//! Deprecated and legacy flag names (AnyCable-Go: cli/options.go).

use super::support::*;
use crate::config::DisconnectMode;

fn warned(cfg: &crate::config::Config, flag: &str) -> bool {
    let prefix = format!("DEPRECATION WARNING: {flag} option is deprecated");
    cfg.load.warnings.iter().any(|w| w.starts_with(&prefix))
}

#[test]
fn jwt_id_key() {
    let cfg = run(&["--jwt_id_key=old", "--secret=app"], &[]);
    assert_eq!(cfg.jwt.secret.as_deref(), Some("old"));
    assert!(warned(&cfg, "jwt_id_key"));
    // --jwt_secret wins over the legacy name.
    assert_eq!(
        run(&["--jwt_id_key=old", "--jwt_secret=new"], &[])
            .jwt
            .secret
            .as_deref(),
        Some("new")
    );
}

#[test]
fn jwt_id_param() {
    let cfg = run(&["--jwt_id_param=token"], &[]);
    assert_eq!(cfg.jwt.param, "token");
    assert!(warned(&cfg, "jwt_id_param"));
    assert_eq!(
        run(&["--jwt_id_param=token", "--jwt_param=jid"], &[])
            .jwt
            .param,
        "jid"
    );
    assert_eq!(
        run(&["--jwt_id_param=token"], &[("ANYCABLE_JWT_PARAM", "x")])
            .jwt
            .param,
        "x"
    );
}

#[test]
fn jwt_id_enforce() {
    let cfg = run(&["--jwt_id_enforce"], &[]);
    assert!(cfg.jwt.enforce);
    assert!(warned(&cfg, "jwt_id_enforce"));
}

#[test]
fn turbo_rails_key_sets_secret_and_enables_turbo() {
    let cfg = run(
        &[
            "--turbo_rails_key=t",
            "--turbo_streams_secret=other",
            "--secret=app",
        ],
        &[],
    );
    assert!(cfg.streams.turbo);
    assert_eq!(cfg.streams.turbo_secret.as_deref(), Some("t"));
    assert!(warned(&cfg, "turbo_rails_key"));
    assert_eq!(
        run(&["--turbo_rails_key=none", "--secret=app"], &[])
            .streams
            .turbo_secret,
        None
    );
}

#[test]
fn cable_ready_key_sets_secret_and_enables_cable_ready() {
    let cfg = run(&["--cable_ready_key=c"], &[]);
    assert!(cfg.streams.cable_ready);
    assert_eq!(cfg.streams.cable_ready_secret.as_deref(), Some("c"));
    assert!(warned(&cfg, "cable_ready_key"));
}

#[test]
fn cleartext_flags_enable_plain_names_and_warn() {
    let cfg = run(&["--turbo_rails_cleartext", "--cable_ready_cleartext"], &[]);
    assert!(warned(&cfg, "turbo_rails_cleartext") && warned(&cfg, "cable_ready_cleartext"));
    assert!(cfg.streams.turbo && cfg.streams.turbo_cleartext);
    assert!(cfg.streams.cable_ready && cfg.streams.cable_ready_cleartext);
    // Plain Turbo names are not $pubsub public streams.
    assert!(!cfg.streams.public);
    // The warning says what to use instead.
    assert!(cfg
        .load
        .warnings
        .iter()
        .any(|w| w.contains("turbo_rails_cleartext") && w.contains("--turbo_streams_secret")));
    let env = run(&[], &[("ANYCABLE_TURBO_RAILS_CLEARTEXT", "true")]);
    assert!(env.streams.turbo_cleartext && !env.streams.cable_ready_cleartext);
}

#[test]
fn disable_disconnect() {
    let cfg = run(&["--disable_disconnect"], &[]);
    assert_eq!(cfg.disconnector.mode, DisconnectMode::Never);
    assert!(warned(&cfg, "disable_disconnect"));
}

#[test]
fn disconnect_timeout_only_warns() {
    let cfg = run(&["--disconnect_timeout=5"], &[]);
    assert!(warned(&cfg, "disconnect_timeout"));
    assert_eq!(cfg.disconnector.mode, DisconnectMode::Auto);
}

#[test]
fn metrics_log_interval() {
    let cfg = run(&["--metrics_log_interval=7"], &[]);
    assert!(warned(&cfg, "metrics_log_interval"));
    assert_eq!(cfg.metrics.rotate_interval_secs, 15);
    let cfg = run(
        &["--metrics_log_interval=7", "--metrics_rotate_interval=0"],
        &[],
    );
    assert_eq!(cfg.metrics.rotate_interval_secs, 7);
}

#[test]
fn http_broadcast_secret() {
    let cfg = run(&[], &[("ANYCABLE_HTTP_BROADCAST_SECRET", "k")]);
    assert_eq!(cfg.http_broadcast.key.as_deref(), Some("k"));
    assert!(warned(&cfg, "http_broadcast_secret"));
}

#[test]
fn http_rpc_timeout_is_honoured() {
    assert_eq!(
        run(&["--http_rpc_timeout=500"], &[])
            .rpc
            .http_request_timeout_ms,
        500
    );
}

#[test]
fn no_warnings_by_default() {
    assert!(run(&[], &[]).load.warnings.is_empty());
}

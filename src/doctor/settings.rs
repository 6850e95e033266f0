//! Checks of the configuration alone: which secrets are set or derived and what they turn on,
//! and settings that contradict each other or that this version does not implement.

use subtle::ConstantTimeEq;

use crate::config::{BroadcastAdapter, Config, RpcImpl};

use super::report::Finding;

/// Where a key that falls back to `--secret` itself came from, told without showing it.
fn origin(value: &str, own_flag: &str, config: &Config) -> String {
    // Constant-time, as every comparison of secrets in this project.
    match &config.secret {
        Some(secret) if bool::from(secret.as_bytes().ct_eq(value.as_bytes())) => {
            "from --secret".to_string()
        }
        _ => format!("set by {own_flag}"),
    }
}

pub fn secrets(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(match &config.secret {
        Some(_) => Finding::ok(
            "application secret (--secret) is set: the keys not given on their own are derived from it",
        ),
        None => Finding::ok("no application secret (--secret): only the keys given on their own are used"),
    });
    out.push(match &config.jwt.secret {
        Some(key) => Finding::ok(format!(
            "JWT identification is on (key {}; token in ?{}=, the X-JID header or the sub-protocol){}",
            origin(key, "--jwt_secret", config),
            config.jwt.param,
            if config.jwt.enforce { ", required for every connection" } else { "" },
        )),
        None if config.jwt.enforce => Finding::problem(
            "--enforce_jwt is on but there is no JWT key: every connection is rejected",
            "set --jwt_secret (ANYCABLE_JWT_SECRET) or --secret to the key your app signs tokens with",
        ),
        None => Finding::ok("JWT identification is off (no --jwt_secret or --secret)"),
    });
    if let Some(key) = &config.streams.secret {
        out.push(Finding::ok(format!(
            "signed streams are on (key {}): clients may subscribe to signed stream names",
            origin(key, "--streams_secret", config)
        )));
    }
    let signed = [
        (
            config.streams.turbo,
            &config.streams.turbo_secret,
            config.streams.turbo_cleartext,
            "--turbo_streams",
            "Turbo Streams",
            "--turbo_streams_secret",
        ),
        (
            config.streams.cable_ready,
            &config.streams.cable_ready_secret,
            config.streams.cable_ready_cleartext,
            "--cable_ready",
            "CableReady streams",
            "--cable_ready_secret",
        ),
    ];
    for (on, key, cleartext, flag, what, key_flag) in signed {
        match (on, key, cleartext) {
            (false, _, _) => {}
            (true, _, true) => out.push(Finding::ok(format!(
                "{what} are on with plain (unsigned) stream names"
            ))),
            (true, Some(_), false) => out.push(Finding::ok(format!(
                "{what} are on: signed stream names are verified"
            ))),
            (true, None, false) => out.push(Finding::problem(
                format!("{flag} is on but there is no key to verify signed stream names: every {what} subscription is rejected"),
                format!("set {key_flag} or --secret to the key your app signs stream names with (Rails: signed_stream_verifier_key)"),
            )),
        }
    }
    if config.broadcast_adapters.contains(&BroadcastAdapter::Http) {
        let hb = &config.http_broadcast;
        out.push(match &hb.key {
            Some(_) if hb.key_derived => Finding::ok(format!(
                "HTTP broadcasting (POST {}) requires a key derived from --secret (the anycable gem derives the same)",
                hb.path
            )),
            Some(_) => Finding::ok(format!(
                "HTTP broadcasting (POST {}) requires the key set by --broadcast_key",
                hb.path
            )),
            None if config.public => Finding::ok(format!(
                "HTTP broadcasting (POST {}) needs no key (--public)",
                hb.path
            )),
            None => Finding::warning(
                format!(
                    "HTTP broadcasting (POST {} on port {}) accepts broadcasts from anyone who can reach it",
                    hb.path, hb.port
                ),
                "set --broadcast_key or --secret (and the same in the app), or keep that port private",
            ),
        });
    }
    match (&config.api.secret, config.api.port) {
        (Some(_), _) => out.push(Finding::ok("REST API (/api) is on, with a key")),
        (None, 0) => {}
        (None, port) if !config.public => out.push(Finding::problem(
            format!("--api_port={port} is set but the REST API stays off: it has no key"),
            "set --api_secret or --secret (or --public for an open API)",
        )),
        (None, _) => out.push(Finding::ok(
            "REST API (/api) is on without a key (--public)",
        )),
    }
    if config.rpc_impl() == RpcImpl::Http {
        out.push(match &config.rpc.secret {
            Some(_) => Finding::ok("HTTP RPC requests carry an Authorization key"),
            None => Finding::warning(
                "HTTP RPC requests carry no key: the app cannot tell them from anyone else's",
                "set --http_rpc_secret or --secret (and the same in the app)",
            ),
        });
    }
    out
}

pub fn contradictions(config: &Config) -> Vec<Finding> {
    let mut out: Vec<Finding> = config
        .unsupported_settings()
        .into_iter()
        .map(|message| {
            Finding::problem(
                message,
                "remove this setting: the server refuses to start with it",
            )
        })
        .collect();
    let jwt = config.jwt.secret.is_some();
    if !jwt && !config.noauth && config.rpc_impl() == RpcImpl::None {
        out.push(Finding::problem(
            "no way to authenticate connections (no RPC, no JWT key, no --noauth): every connection is rejected",
            "set --jwt_secret or --secret, or --noauth / --public for open access, or drop --norpc",
        ));
    }
    if config.jwt.enforce && config.noauth && jwt {
        out.push(Finding::warning(
            "--noauth (or --public) with --enforce_jwt: connections without a token are still rejected",
            "drop one of the two",
        ));
    }
    let server = &config.server;
    match (&server.ssl_cert, &server.ssl_key) {
        (Some(_), None) | (None, Some(_)) => out.push(Finding::problem(
            "only one of --ssl_cert and --ssl_key is set",
            "set both (PEM files) for TLS, or neither",
        )),
        (Some(cert), Some(key)) => {
            for (flag, path) in [("--ssl_cert", cert), ("--ssl_key", key)] {
                if let Err(error) = std::fs::metadata(path) {
                    out.push(Finding::problem(
                        format!("{flag} {}: {error}", path.display()),
                        format!("point {flag} to a readable PEM file"),
                    ));
                }
            }
        }
        (None, None) => {}
    }
    if config.app.shutdown_delay_secs >= config.app.shutdown_timeout_secs
        && config.app.shutdown_delay_secs > 0
    {
        out.push(Finding::warning(
            format!(
                "--shutdown_delay ({} s) is not shorter than --shutdown_timeout ({} s): no time is left to close connections",
                config.app.shutdown_delay_secs, config.app.shutdown_timeout_secs
            ),
            "make --shutdown_delay shorter than --shutdown_timeout",
        ));
    }
    if out.is_empty() {
        out.push(Finding::ok("no settings contradict each other"));
    }
    out
}

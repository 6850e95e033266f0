//! Checks of this machine: the open-files limit against `--max-conn`, whether the listeners'
//! ports are free (each is bound and released at once), and whether the listen address can be
//! reached from outside a container.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::Path;

use crate::config::{BroadcastAdapter, Config};
use crate::open_files::OpenFiles;
use crate::server::{Listener, ServerError};

use super::report::Finding;

/// Descriptors the server needs besides client connections: listeners, backend connections,
/// log and runtime files.
const SPARE_DESCRIPTORS: u64 = 64;

/// Below this limit, a node without `--max-conn` runs out of descriptors well before it runs
/// out of memory.
const COMFORTABLE_LIMIT: u64 = 10_000;

/// The limit the server will run with: it raises the soft limit to the hard one at start.
pub fn open_files(config: &Config, limits: OpenFiles) -> Finding {
    let Some(limit) = limits.hard else {
        return Finding::ok("open-files limit: unlimited");
    };
    let listeners = listeners(config).len().max(1) as u64;
    let max_conn = config.server.max_conn as u64;
    let raise = "raise the open-files limit: `ulimit -n` in the shell, LimitNOFILE= in a systemd \
                 unit, `--ulimit nofile=N:N` for docker run, or /etc/security/limits.conf";
    if max_conn > 0 {
        let needed = max_conn * listeners + SPARE_DESCRIPTORS;
        if limit < needed {
            return Finding::problem(
                format!(
                    "open-files limit is {limit} but --max-conn={max_conn} on {listeners} listener(s) needs about {needed}: connections beyond the limit fail to be accepted"
                ),
                format!("{raise} to at least {needed}, or lower --max-conn"),
            );
        }
        return Finding::ok(format!(
            "open-files limit {limit} covers --max-conn={max_conn} on {listeners} listener(s)"
        ));
    }
    if limit < COMFORTABLE_LIMIT {
        return Finding::warning(
            format!(
                "open-files limit is {limit}: with no --max-conn the node holds at most about {} connections",
                limit.saturating_sub(SPARE_DESCRIPTORS)
            ),
            format!("{raise} (e.g. 65536), or set --max-conn below it"),
        );
    }
    Finding::ok(format!(
        "open-files limit {limit}: room for about {} connections",
        limit - SPARE_DESCRIPTORS
    ))
}

/// Every listener the server would open, as (host, port, what is served there), merged by
/// port as the server merges them.
pub fn listeners(config: &Config) -> Vec<(String, u16, String)> {
    let main_host = config.server.host.clone();
    let mut wanted: Vec<(String, u16, &str)> =
        vec![(main_host.clone(), config.server.port, "WebSocket")];
    let or_main = |host: &str| {
        if host.is_empty() {
            main_host.clone()
        } else {
            host.to_string()
        }
    };
    let or_main_port = |port: u16| if port == 0 { config.server.port } else { port };
    if config.broadcast_adapters.contains(&BroadcastAdapter::Http) {
        wanted.push((
            main_host.clone(),
            config.http_broadcast.port,
            "HTTP broadcast",
        ));
    }
    if !config.metrics.http_path.is_empty() {
        wanted.push((
            or_main(&config.metrics.host),
            or_main_port(config.metrics.port),
            "metrics",
        ));
    }
    if config.api.secret.is_some() || config.public {
        wanted.push((
            or_main(&config.api.host),
            or_main_port(config.api.port),
            "REST API",
        ));
    }
    let mut merged: Vec<(String, u16, String)> = Vec::new();
    for (host, port, what) in wanted {
        match merged.iter_mut().find(|(_, p, _)| *p == port) {
            Some((_, _, served)) => {
                served.push_str(", ");
                served.push_str(what);
            }
            None => merged.push((host, port, what.to_string())),
        }
    }
    merged
}

pub async fn ports(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for (host, port, what) in listeners(config) {
        let shown_host = if host.is_empty() { "0.0.0.0" } else { &host };
        out.push(match Listener::bind(&host, port, None, 0).await {
            Ok(listener) => {
                drop(listener);
                Finding::ok(format!("{shown_host}:{port} ({what}) is free"))
            }
            Err(ServerError::Bind(_, error)) if error.kind() == ErrorKind::AddrInUse => {
                Finding::problem(
                    format!("{shown_host}:{port} ({what}) is already in use by another process"),
                    format!(
                        "stop that process (`ss -ltnp 'sport = :{port}'` names it) or choose another port"
                    ),
                )
            }
            Err(error) => Finding::problem(
                format!("cannot listen on {shown_host}:{port} ({what}): {}", full_error(&error)),
                "fix --host / the port settings (ports below 1024 need privileges)",
            ),
        });
    }
    out
}

fn full_error(error: &dyn std::error::Error) -> String {
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Inside a container, a loopback listen address cannot be reached through published ports.
pub fn listen_scope(config: &Config, env: &HashMap<String, String>) -> Option<Finding> {
    // Only the default: an explicit loopback address is taken as meant (a sidecar setup).
    let host = config.server.host.as_str();
    let loopback = host == "localhost";
    let in_container =
        Path::new("/.dockerenv").exists() || env.contains_key("KUBERNETES_SERVICE_HOST");
    (loopback && in_container).then(|| {
        Finding::warning(
            format!(
                "listening on {host} inside a container: only the container itself can connect"
            ),
            "set ANYCABLE_HOST=0.0.0.0 (the anycable-rs image does)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Level;

    fn limits(hard: u64) -> OpenFiles {
        OpenFiles {
            soft: Some(hard),
            hard: Some(hard),
        }
    }

    #[test]
    fn max_conn_above_the_open_files_limit_is_a_problem() {
        let mut config = Config {
            broadcast_adapters: vec![BroadcastAdapter::Http],
            ..Config::default()
        };
        config.server.max_conn = 5000;
        // One listener: the HTTP broadcaster on the main port (as with a broadcast key).
        config.http_broadcast.port = config.server.port;
        let finding = open_files(&config, limits(4096));
        assert_eq!(finding.level, Level::Problem, "{finding:?}");
        assert!(finding.fix.unwrap().contains("at least 5064"));
        assert_eq!(open_files(&config, limits(65536)).level, Level::Ok);
    }

    #[test]
    fn listeners_on_one_port_are_merged() {
        let mut config = Config::default();
        config.metrics.http_path = "/metrics".into();
        let found = listeners(&config);
        assert_eq!(found.len(), 2, "{found:?}"); // main (with metrics) and broadcast on 8090
        assert_eq!(found[0].2, "WebSocket, metrics");
        assert_eq!(found[1].1, 8090);
    }
}

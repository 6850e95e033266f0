//! `anycable-rs doctor [flags]`: reads the configuration exactly as the server does (flags,
//! environment, TOML file, presets), then checks it against this machine and the services it
//! names, and says in plain words what is wrong and what to change. It never serves and
//! changes nothing: ports are bound and released at once, Redis gets `INFO server`, NATS a
//! JetStream account query, the RPC backend one `Connect` without credentials
//! (`backends.rs`).
//!
//! The report goes to stdout, one line per check; progress ("checking Redis...") to stderr.
//! The exit status is 1 when any problem was found, 0 otherwise (warnings included).

mod backends;
mod host;
mod report;
mod settings;

use std::collections::HashMap;
use std::process::ExitCode;

pub use backends::PROBE_HEADER;
pub use report::{Finding, Level, Report, Section};

use crate::config::Config;
use crate::open_files::OpenFiles;

/// The `doctor` subcommand, given the configuration loaded from the flags after `doctor`.
pub async fn command(config: &Config, env: &HashMap<String, String>) -> ExitCode {
    let progress = |step: &str| eprintln!("doctor: {step}");
    let report = run(config, env, &progress).await;
    println!("{report}");
    if report.has_problems() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs every check, telling `progress` before each slow one.
pub async fn run(
    config: &Config,
    env: &HashMap<String, String>,
    progress: &dyn Fn(&str),
) -> Report {
    let mut report = Report::default();
    report.add("Configuration", loaded(config));
    progress("checking secrets and settings");
    report.add("Secrets", settings::secrets(config));
    let mut contradictions = settings::contradictions(config);
    contradictions.extend(host::listen_scope(config, env));
    report.add("Settings", contradictions);
    let mut services = Vec::new();
    for service in backends::planned(config) {
        progress(&format!("checking {}", service.name()));
        services.extend(service.check(config).await);
    }
    if services.is_empty() {
        services.push(Finding::ok(
            "no backend services to check (no Redis, NATS or RPC in use)",
        ));
    }
    report.add("Backends", services);
    progress("checking the open-files limit and the ports");
    report.add(
        "Limits",
        vec![host::open_files(config, OpenFiles::current())],
    );
    report.add("Ports", host::ports(config).await);
    report
}

fn loaded(config: &Config) -> Vec<Finding> {
    let mut out = vec![Finding::ok(match &config.load.config_file {
        Some(path) => format!("configuration file: {}", path.display()),
        None => "no configuration file: flags, environment and defaults only".to_string(),
    })];
    if !config.load.presets.is_empty() {
        let names: Vec<String> = config.load.presets.iter().map(|p| p.to_string()).collect();
        out.push(Finding::ok(format!(
            "presets applied: {}",
            names.join(", ")
        )));
    }
    out.extend(
        config
            .load
            .warnings
            .iter()
            .map(|w| Finding::warning(w.clone(), "update the setting as the message says")),
    );
    out
}

//! The deployment examples of docs/deploy/examples are checked where this machine can: every
//! file parses; every `ANYCABLE_*` name anycable-rs reads exists in the flag table; Compose
//! files pass `docker-compose config`; Kubernetes manifests pass schema validation; the systemd
//! unit passes `systemd-analyze verify`; each env file starts the real server, which answers
//! where the platform looks (health path, metrics for the autoscaler); the systemd unit's
//! `LimitNOFILE` is at least what `anycable-rs doctor` asks for the env file's `--max-conn`. YAML is read with Python's
//! PyYAML (installed by scripts/test.sh), TOML with the `toml` crate.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/deploy/examples")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs a command to completion; panics with its output unless it succeeds.
fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// Every document of a YAML file, as JSON values.
fn yaml(path: &Path) -> Vec<Value> {
    let script =
        "import sys, json, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let text = run_ok(Command::new("python3").args(["-c", script]).arg(path));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

/// `KEY=VALUE` lines, comments and blank lines skipped.
fn env_file(path: &Path) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not KEY=VALUE: {l}", path.display()));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn seconds(value: &Value) -> u64 {
    match value {
        Value::Number(n) => n.as_u64().expect("whole seconds"),
        Value::String(s) => s.trim_end_matches('s').parse().expect("seconds"),
        other => panic!("not a number of seconds: {other}"),
    }
}

/// The server's default shutdown timeout, from the flag table.
fn default_shutdown_timeout() -> u64 {
    let flag = anycable_rs::config::flags::FLAGS
        .iter()
        .find(|f| f.name == "shutdown_timeout")
        .expect("shutdown_timeout flag");
    flag.default.parse().expect("a number")
}

fn shutdown_timeout(env: &HashMap<String, String>) -> u64 {
    env.get("ANYCABLE_SHUTDOWN_TIMEOUT")
        .map_or_else(default_shutdown_timeout, |v| v.parse().expect("seconds"))
}

/// Starts the real server with `env` (the platform's port variable replaced by a free port);
/// returns it once `/health` answered 200.
async fn start_with_env(env: &[(String, String)], port_var: &str) -> Server {
    let mut builder = ServerBuilder::new()
        .no_port_flag()
        .no_host_flag()
        .broadcast_port(BroadcastPort::Main);
    let port = builder.port;
    for (key, value) in env {
        if key != port_var {
            builder = builder.env(key, value.clone());
        }
    }
    // Without a key the broadcast endpoint has a port of its own (8090): on a shared test
    // machine that one may be taken, so it gets a free one too.
    if !env.iter().any(|(k, _)| k == "ANYCABLE_HTTP_BROADCAST_PORT") {
        builder = builder.env("ANYCABLE_HTTP_BROADCAST_PORT", free_port().to_string());
    }
    builder.env(port_var, port.to_string()).start().await
}

#[test]
fn every_anycable_variable_in_the_examples_exists() {
    let known: Vec<&str> = anycable_rs::config::flags::FLAGS
        .iter()
        .flat_map(|f| f.env.iter().copied())
        // Read by the fly preset rather than a flag.
        .chain(["ANYCABLE_FLY_RPC_APP_NAME"])
        .collect();
    // Files read by anycable-rs (app.env is the Rails app's: the gems' own variables).
    let files = [
        "compose-rails/anycable.env",
        "compose-hanami/.env",
        "fly/fly.toml",
        "heroku/heroku.env",
        "kamal/deploy.yml",
        "kubernetes/anycable-rs.yaml",
        "systemd/anycable-rs.env",
    ];
    let mut checked = 0;
    for file in files {
        let text = read(&examples().join(file));
        for (start, _) in text.match_indices("ANYCABLE_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(
                known.contains(&name.as_str()),
                "{file}: unknown variable {name}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} names found");
}

#[test]
fn compose_files_are_valid() {
    for dir in ["compose-rails", "compose-hanami"] {
        let dir = examples().join(dir);
        run_ok(
            Command::new("docker-compose")
                .args(["config", "--quiet"])
                .current_dir(&dir),
        );
        let compose = &yaml(&dir.join("docker-compose.yml"))[0];
        let anycable = &compose["services"]["anycable"];
        assert_eq!(anycable["image"], "anycable-rs:latest", "{}", dir.display());
    }
}

#[tokio::test]
async fn compose_env_files_start_the_server() {
    for (file, rpc_host) in [
        ("compose-rails/anycable.env", "rpc:50051"),
        ("compose-hanami/.env", "anycable-rpc:50051"),
    ] {
        let env = env_file(&examples().join(file));
        let server = start_with_env(&env, "ANYCABLE_PORT").await;
        let log = server.startup_log().await;
        assert!(
            log.contains(&format!("RPC controller initialized: {rpc_host}")),
            "{file}:\n{log}"
        );
    }
}

#[tokio::test]
async fn the_hanami_env_serves_websockets_at_ws() {
    let env = env_file(&examples().join("compose-hanami/.env"));
    let server = start_with_env(&env, "ANYCABLE_PORT").await;
    // The RPC server is not running here: the upgrade at /ws is accepted, then the connection
    // is refused by the failing Connect call. At /cable nothing is mounted.
    let upgraded = ws_connect(&server.addr(), None, &WsRequest::new("/ws"))
        .await
        .expect("connect");
    assert!(upgraded.is_ok(), "no WebSocket at /ws");
    let not_mounted = ws_connect(&server.addr(), None, &WsRequest::new("/cable"))
        .await
        .expect("connect");
    assert!(not_mounted.is_err(), "/cable should not be mounted");
}

#[test]
fn kubernetes_manifests_are_valid() {
    let file = examples().join("kubernetes/anycable-rs.yaml");
    run_ok(
        Command::new("kubernetes-validate")
            .arg("--strict")
            .arg(&file),
    );
}

fn kubernetes_object<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[tokio::test]
async fn kubernetes_probes_shutdown_and_autoscaling_match_the_server() {
    let docs = yaml(&examples().join("kubernetes/anycable-rs.yaml"));
    let mut env: Vec<(String, String)> = Vec::new();
    for kind in ["ConfigMap", "Secret"] {
        let data = kubernetes_object(&docs, kind);
        let data = data.get("data").or(data.get("stringData")).expect("data");
        for (k, v) in data.as_object().expect("a map") {
            env.push((k.clone(), v.as_str().expect("a string").to_string()));
        }
    }
    let map: HashMap<String, String> = env.iter().cloned().collect();
    let pod = &kubernetes_object(&docs, "Deployment")["spec"]["template"]["spec"];
    let grace = seconds(&pod["terminationGracePeriodSeconds"]);
    assert!(grace > shutdown_timeout(&map), "grace period {grace} s");

    env.push(("ANYCABLE_HOST".into(), "127.0.0.1".into()));
    let server = start_with_env(&env, "ANYCABLE_PORT").await;
    let container = &pod["containers"][0];
    let probe_path = |probe: &str| {
        container[probe]["httpGet"]["path"]
            .as_str()
            .expect("path")
            .to_string()
    };
    let liveness = probe_path("livenessProbe");
    assert_eq!(server.get(&liveness).await.status, 200, "{liveness}");
    // The example's Redis and RPC backend do not exist here: the readiness endpoint says so.
    let readiness = server.get(&probe_path("readinessProbe")).await;
    assert_eq!(readiness.status, 503, "{}", readiness.body);
    assert!(
        readiness.body.starts_with("not ready: "),
        "{}",
        readiness.body
    );
    let hpa = kubernetes_object(&docs, "HorizontalPodAutoscaler");
    let metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
        .as_str()
        .expect("metric name");
    let scraped = server.get(&map["ANYCABLE_METRICS_HTTP"]).await;
    assert_eq!(scraped.status, 200);
    assert!(
        scraped
            .body
            .lines()
            .any(|l| l.starts_with(&format!("{metric} "))),
        "{metric} not exported:\n{}",
        scraped.body
    );
}

fn toml_file(path: &Path) -> toml::Table {
    read(path)
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn the_fly_config_starts_the_server_with_the_fly_preset() {
    let fly = toml_file(&examples().join("fly/fly.toml"));
    let vars = fly["env"].as_table().expect("[env]");
    let mut env: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_string()))
        .collect();
    let map: HashMap<String, String> = env.iter().cloned().collect();
    let service = fly["http_service"].as_table().expect("[http_service]");
    assert_eq!(
        service["internal_port"].as_integer().map(|p| p.to_string()),
        Some(map["PORT"].clone()),
        "internal_port and PORT differ"
    );
    let kill = fly["kill_timeout"].as_integer().expect("kill_timeout") as u64;
    assert!(kill > shutdown_timeout(&map), "kill_timeout {kill}");
    let check_path = service["checks"][0]["path"].as_str().expect("check path");
    // What Fly provides, and the secrets of the guide.
    for (k, v) in [
        ("FLY_APP_NAME", "my-app-cable"),
        ("FLY_ALLOC_ID", "1234"),
        ("FLY_REGION", "iad"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("ANYCABLE_SECRET", "fly-secret"),
    ] {
        env.push((k.into(), v.into()));
    }
    let server = start_with_env(&env, "PORT").await;
    assert_eq!(server.get(check_path).await.status, 200);
    let log = server.startup_log().await;
    assert!(log.contains("0.0.0.0:"), "not on all interfaces:\n{log}");
}

#[tokio::test]
async fn the_heroku_setup_starts_the_server_on_port() {
    let heroku = &yaml(&examples().join("heroku/heroku.yml"))[0];
    let web = &heroku["build"]["docker"]["web"];
    let dockerfile = read(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(web["dockerfile"].as_str().expect("dockerfile")),
    );
    let target = web["target"].as_str().expect("target");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("FROM ") && l.ends_with(&format!(" AS {target}"))),
        "no stage {target} in the Dockerfile"
    );
    let mut env = env_file(&examples().join("heroku/heroku.env"));
    let map: HashMap<String, String> = env.iter().cloned().collect();
    // Heroku kills 30 s after SIGTERM.
    assert!(shutdown_timeout(&map) < 30);
    for (k, v) in [
        ("HEROKU_APP_ID", "0000-1111"),
        ("HEROKU_DYNO_ID", "2222-3333"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
    ] {
        env.push((k.into(), v.into()));
    }
    let server = start_with_env(&env, "PORT").await;
    let log = server.startup_log().await;
    assert!(log.contains("0.0.0.0:"), "not on all interfaces:\n{log}");
}

#[test]
fn the_kamal_config_points_the_proxy_at_the_server() {
    let kamal = &yaml(&examples().join("kamal/deploy.yml"))[0];
    let proxy = &kamal["proxy"];
    assert_eq!(proxy["app_port"], 8080, "the image's port");
    assert_eq!(proxy["healthcheck"]["path"], "/health");
    let clear = kamal["env"]["clear"].as_object().expect("env.clear");
    let timeout = clear
        .get("ANYCABLE_SHUTDOWN_TIMEOUT")
        .map_or_else(default_shutdown_timeout, seconds);
    assert!(seconds(&kamal["drain_timeout"]) > timeout);
    assert!(kamal["accessories"]["redis"]["image"]
        .as_str()
        .expect("redis image")
        .starts_with("redis:"));
}

/// The unit with its paths pointed at this checkout, for `systemd-analyze verify`.
fn local_unit(dir: &TempDir) -> (PathBuf, String) {
    let unit = read(&examples().join("systemd/anycable-rs.service"));
    let env_path = examples().join("systemd/anycable-rs.env");
    let local = unit
        .replace(
            "ExecStart=/usr/local/bin/anycable-rs",
            &format!("ExecStart={BIN}"),
        )
        .replace(
            "EnvironmentFile=/etc/anycable-rs/anycable-rs.env",
            &format!("EnvironmentFile={}", env_path.display()),
        );
    assert_ne!(unit, local, "the unit's paths changed: update this test");
    (dir.write("anycable-rs.service", &local), unit)
}

#[test]
fn the_systemd_unit_verifies_and_its_limit_covers_max_conn() {
    let dir = TempDir::new();
    let (path, unit) = local_unit(&dir);
    // verify exits 0 even on ignored lines: any message is a failure.
    let messages = run_ok(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(messages.trim().is_empty(), "{messages}");

    let setting = |name: &str| -> u64 {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}"))
            .trim_end_matches('s')
            .parse()
            .expect("a number")
    };
    let nofile = setting("LimitNOFILE");
    let env = env_file(&examples().join("systemd/anycable-rs.env"));
    let map: HashMap<String, String> = env.iter().cloned().collect();
    assert!(setting("TimeoutStopSec") > shutdown_timeout(&map));

    // Doctor with the env file under a low limit (lowering needs no privilege) must name the
    // limit this configuration needs; the unit's LimitNOFILE must be at least that.
    let mut doctor = command_for("prlimit", dir.path());
    doctor.args(["--nofile=1024:1024", BIN, "doctor"]);
    for (k, v) in &env {
        doctor.env(k, v);
    }
    doctor.env("ANYCABLE_PORT", free_port().to_string());
    let output = doctor.output().expect("run prlimit");
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{report}");
    let needed: u64 = report
        .split("to at least ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no needed limit in:\n{report}"));
    assert!(
        report.contains(&format!("--max-conn={}", map["ANYCABLE_MAX_CONN"])),
        "{report}"
    );
    assert!(
        nofile >= needed,
        "LimitNOFILE={nofile} but doctor asks for {needed}"
    );
}

#[tokio::test]
async fn the_systemd_env_file_starts_the_server() {
    let env = env_file(&examples().join("systemd/anycable-rs.env"));
    let server = start_with_env(&env, "ANYCABLE_PORT").await;
    let log = server.startup_log().await;
    assert!(log.contains("0.0.0.0:"), "{log}");
}

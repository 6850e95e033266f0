//! The binary's command line, environment and config file behaviour (AnyCable-Go: cli/options.go,
//! config/config.go; differences in docs/compatibility.md). Unit
//! tests of the parser live in the config module; these run the real process.

mod support;

use std::time::Duration;

use support::*;

const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn run(args: &[&str], env: &[(&str, &str)]) -> Exited {
    let dir = TempDir::new();
    run_to_exit(args, env, dir.path(), EXIT_LIMIT)
}

fn assert_failed(out: &Exited, what: &str) {
    assert!(
        out.status.is_some(),
        "{what}: the process kept running (it should refuse to start)\n{}",
        out.describe()
    );
    assert_ne!(
        out.code(),
        Some(0),
        "{what}: exit status 0\n{}",
        out.describe()
    );
}

// --- Flags -------------------------------------------------------------------------------------

#[test]
fn unknown_flag_fails_and_names_the_flag() {
    let out = run(&["--ignore-config-path", "--definitely_not_a_flag=1"], &[]);
    assert_failed(&out, "unknown flag");
    assert!(
        out.stderr.contains("definitely_not_a_flag"),
        "stderr should name the flag:\n{}",
        out.describe()
    );
}

#[test]
fn commercial_only_flag_is_unknown() {
    // PRO's Apollo GraphQL protocol (`--shutdown_slowdrain`, another PRO option, is implemented).
    let out = run(&["--ignore-config-path", "--apollo"], &[]);
    assert_failed(&out, "--apollo");
    assert!(out.stderr.contains("apollo"), "{}", out.describe());
}

#[test]
fn malformed_int_fails_with_a_clear_message() {
    let out = run(&["--ignore-config-path", "--port=abc"], &[]);
    assert_failed(&out, "--port=abc");
    assert!(
        out.stderr.contains("port") && out.stderr.contains("abc"),
        "stderr should name the flag and the value:\n{}",
        out.describe()
    );
}

#[test]
fn malformed_int_env_fails() {
    let out = run(&["--ignore-config-path"], &[("ANYCABLE_PORT", "eighty")]);
    assert_failed(&out, "ANYCABLE_PORT=eighty");
    assert!(
        out.stderr.contains("eighty") || out.stderr.to_lowercase().contains("port"),
        "{}",
        out.describe()
    );
}

#[test]
fn version_exits_0() {
    let out = run(&["--version"], &[]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let version = out.stdout.trim();
    assert!(
        version.split('.').count() >= 3 && version.chars().any(|c| c.is_ascii_digit()),
        "--version should print a version: {version:?}"
    );
}

#[test]
fn help_exits_0_and_lists_flags() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("--port"), "{}", out.describe());
}

#[test]
fn not_yet_implemented_settings_refuse_to_start() {
    use anycable_rs::config::flags::Feature;
    // Features land one by one: each candidate is checked while its feature is not built
    // (`config::flags::BUILT`), so the test follows the server instead of going stale.
    let candidates = [
        ("--broker=nats", "broker", Feature::Nats),
        ("--sse", "sse", Feature::Sse),
        ("--rpc_host=http://x", "rpc_host", Feature::Rpc),
        ("--pusher_app_id=app", "pusher_app_id", Feature::Pusher),
        ("--ds", "ds", Feature::Ds),
        ("--metrics_http=/metrics", "metrics_http", Feature::Metrics),
        ("--embed_nats", "embed_nats", Feature::EmbeddedNats),
        (
            "--broadcast_adapter=http,redisx",
            "broadcast_adapter",
            Feature::Redis,
        ),
        (
            "--enable_ws_compression",
            "enable_ws_compression",
            Feature::WsCompression,
        ),
    ];
    let mut checked = 0;
    for (flag, name, feature) in candidates {
        if feature.is_built() {
            continue;
        }
        checked += 1;
        let port = free_port().to_string();
        let bport = free_port().to_string();
        let out = run(
            &[
                "--ignore-config-path",
                "--noauth",
                &format!("--port={port}"),
                &format!("--http_broadcast_port={bport}"),
                flag,
            ],
            &[],
        );
        assert_failed(&out, flag);
        assert!(
            out.stderr.contains(name),
            "{flag}: stderr should name the setting:\n{}",
            out.describe()
        );
    }
    eprintln!("checked {checked} not-yet-built settings");
}

// --- Environment -------------------------------------------------------------------------------

#[tokio::test]
async fn anycable_port_env_sets_the_port() {
    let builder = ServerBuilder::new().arg("--noauth").no_port_flag();
    let port = builder.port;
    let server = builder.env("ANYCABLE_PORT", port.to_string()).start().await;
    server.ws_welcomed().await;
}

#[tokio::test]
async fn plain_port_env_sets_the_port() {
    let builder = ServerBuilder::new().arg("--noauth").no_port_flag();
    let port = builder.port;
    let server = builder.env("PORT", port.to_string()).start().await;
    assert_eq!(server.get("/health").await.status, 200);
}

#[tokio::test]
async fn anycable_port_wins_over_port_and_flag_wins_over_both() {
    let builder = ServerBuilder::new().arg("--noauth").no_port_flag();
    let port = builder.port;
    // Held by the test: a server that tried this port could not start.
    let (_held, decoy) = hold_port();
    let server = builder
        .env("ANYCABLE_PORT", port.to_string())
        .env("PORT", decoy.to_string())
        .start()
        .await;
    drop(server);

    let builder = ServerBuilder::new().arg("--noauth");
    // Held by the test: a server that tried this port could not start.
    let (_held, decoy) = hold_port();
    let server = builder
        .env("ANYCABLE_PORT", decoy.to_string())
        .env("PORT", decoy.to_string())
        .start()
        .await; // started (and healthy) on the --port value
    drop(server);
}

#[tokio::test]
async fn single_dash_and_space_separated_flags_are_accepted() {
    let builder = ServerBuilder::new().no_port_flag();
    let port = builder.port.to_string();
    let server = builder
        .args(["-port", port.as_str(), "-noauth", "--health-path", "/hp"])
        .health_path("/hp")
        .start()
        .await;
    server.ws_welcomed().await;
}

#[tokio::test]
async fn env_vars_set_other_settings() {
    let server = ServerBuilder::new()
        .env("ANYCABLE_NOAUTH", "true")
        .env("ANYCABLE_HEALTH_PATH", "/env-health")
        .health_path("/env-health")
        .start()
        .await;
    server.ws_welcomed().await;
    assert_eq!(server.get("/health").await.status, 404);
}

#[tokio::test]
async fn flag_wins_over_env() {
    let server = ServerBuilder::new()
        .arg("--health-path=/from-flag")
        .env("ANYCABLE_HEALTH_PATH", "/from-env")
        .health_path("/from-flag")
        .start()
        .await;
    assert_eq!(server.get("/from-env").await.status, 404);
}

// --- Config file -------------------------------------------------------------------------------

fn file_config(port: u16, health: &str) -> String {
    format!(
        "noauth = true\n\n[server]\nhost = \"127.0.0.1\"\nport = {port}\nhealth_path = \"{health}\"\n"
    )
}

#[tokio::test]
async fn anycable_toml_in_the_working_dir_is_loaded() {
    let builder = ServerBuilder::new()
        .no_port_flag()
        .no_host_flag()
        .with_config_lookup()
        .health_path("/file-health");
    builder
        .dir
        .write("anycable.toml", file_config(builder.port, "/file-health"));
    let server = builder.start().await;
    // noauth came from the file too.
    server.ws_welcomed().await;
    assert!(
        server.wait_output("anycable.toml", RECV_TIMEOUT).await,
        "the loaded file should be logged:\n{}",
        server.output.all()
    );
}

#[tokio::test]
async fn config_path_flag_loads_that_file() {
    let builder = ServerBuilder::new()
        .no_port_flag()
        .no_host_flag()
        .with_config_lookup()
        .health_path("/custom");
    let path = builder
        .dir
        .write("custom-name.toml", file_config(builder.port, "/custom"));
    let server = builder
        .arg(format!("--config-path={}", path.display()))
        .start()
        .await;
    server.ws_welcomed().await;
}

#[tokio::test]
async fn ignore_config_path_skips_anycable_toml() {
    let builder = ServerBuilder::new().arg("--noauth");
    // The file would move health and disable auth checks; with --ignore-config-path
    // (added by the harness) none of it applies.
    builder.dir.write(
        "anycable.toml",
        "noauth = false\n[server]\nhealth_path = \"/file-health\"\n",
    );
    let server = builder.start().await; // healthy on /health
    assert_eq!(server.get("/file-health").await.status, 404);
}

#[tokio::test]
async fn file_then_env_then_flag_precedence() {
    // file < env
    let builder = ServerBuilder::new()
        .no_port_flag()
        .no_host_flag()
        .with_config_lookup()
        .arg("--host=127.0.0.1");
    let port = builder.port;
    let (_held, file_port) = hold_port();
    builder.dir.write(
        "anycable.toml",
        format!("noauth = true\n[server]\nport = {file_port}\n"),
    );
    let server = builder.env("ANYCABLE_PORT", port.to_string()).start().await;
    drop(server);

    // env < flag
    let builder = ServerBuilder::new().with_config_lookup();
    let (_held_env, env_port) = hold_port();
    let (_held_file, file_port) = hold_port();
    builder.dir.write(
        "anycable.toml",
        format!("noauth = true\n[server]\nport = {file_port}\n"),
    );
    let server = builder
        .env("ANYCABLE_PORT", env_port.to_string())
        .start()
        .await;
    server.ws_welcomed().await; // noauth from the file still applies
}

#[test]
fn missing_explicit_config_file_fails() {
    let out = run(
        &[
            "--config-path=/nonexistent/anycable-rs-test.toml",
            "--noauth",
        ],
        &[],
    );
    assert_failed(&out, "missing --config-path file");
}

#[test]
fn invalid_toml_fails() {
    let dir = TempDir::new();
    let path = dir.write("bad.toml", "[server\nport = = 1\n");
    let out = run_to_exit(
        &[&format!("--config-path={}", path.display()), "--noauth"],
        &[],
        dir.path(),
        EXIT_LIMIT,
    );
    assert_failed(&out, "invalid TOML");
}

#[test]
fn invalid_toml_type_fails() {
    let dir = TempDir::new();
    let path = dir.write("bad.toml", "[server]\nport = \"not a number\"\n");
    let out = run_to_exit(
        &[&format!("--config-path={}", path.display()), "--noauth"],
        &[],
        dir.path(),
        EXIT_LIMIT,
    );
    assert_failed(&out, "port as a string in TOML");
}

// --- --print-config ----------------------------------------------------------------------------

fn print_config_round_trip(flags: &[&str]) -> (String, String) {
    let dir = TempDir::new();
    let mut args = vec!["--ignore-config-path", "--print-config"];
    args.extend_from_slice(flags);
    let first = run_to_exit(&args, &[], dir.path(), EXIT_LIMIT);
    assert_eq!(first.code(), Some(0), "{}", first.describe());
    assert!(
        !first.stdout.trim().is_empty(),
        "--print-config printed nothing"
    );
    toml::from_str::<toml::Table>(&first.stdout)
        .unwrap_or_else(|e| panic!("--print-config output is not TOML: {e}\n{}", first.stdout));
    let path = dir.write("printed.toml", &first.stdout);
    let second = run_to_exit(
        &[
            &format!("--config-path={}", path.display()),
            "--print-config",
        ],
        &[],
        dir.path(),
        EXIT_LIMIT,
    );
    assert_eq!(second.code(), Some(0), "{}", second.describe());
    (first.stdout, second.stdout)
}

#[test]
fn print_config_round_trips_through_config_path() {
    let (first, second) = print_config_round_trip(&[
        "--port=9123",
        "--noauth",
        "--secret=round-trip-secret",
        "--health-path=/hp",
        "--ping_interval=7",
        "--turbo_streams",
        "--public_streams",
        "--allowed_origins=*.example.com,localhost:3000",
        "--max_message_size=2048",
    ]);
    for needle in ["9123", "/hp", "round-trip-secret", "example.com", "2048"] {
        assert!(
            first.contains(needle),
            "--print-config lacks {needle}:\n{first}"
        );
    }
    assert_eq!(first, second, "loading the printed config changed it");
}

#[test]
fn print_config_of_the_defaults_round_trips() {
    let (first, second) = print_config_round_trip(&[]);
    assert_eq!(
        first, second,
        "loading the printed default config changed it"
    );
}

#[tokio::test]
async fn printed_config_starts_a_working_server() {
    let builder = ServerBuilder::new().with_config_lookup().no_port_flag();
    let port = builder.port.to_string();
    let printed = run_to_exit(
        &[
            "--ignore-config-path",
            "--print-config",
            &format!("--port={port}"),
            "--host=127.0.0.1",
            "--noauth",
            "--public_streams",
        ],
        &[],
        builder.dir.path(),
        EXIT_LIMIT,
    );
    assert_eq!(printed.code(), Some(0), "{}", printed.describe());
    let path = builder.dir.write("printed.toml", &printed.stdout);
    let server = builder
        .arg(format!("--config-path={}", path.display()))
        .start()
        .await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("from-file")).await;
}

#[tokio::test]
async fn deprecated_flags_print_a_deprecation_warning_and_still_work() {
    let server = start(&["--noauth", "--turbo_rails_key=my-turbo-secret"]).await;
    assert!(
        server
            .wait_output("DEPRECATION WARNING", RECV_TIMEOUT)
            .await
            && server.output.stdout().contains("DEPRECATION WARNING"),
        "deprecated flags print a DEPRECATION WARNING on stdout, as AnyCable-Go does:\n{}",
        server.output.all()
    );
}

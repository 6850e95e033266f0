//! Swapping AnyCable-Go for this server loses nothing on day one: the reference's default
//! broadcasters (Redis included, without Redis being required), the version string the tools
//! around AnyCable check, presets that refuse what they cannot keep.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

/// The anycable gem's default: `PUBLISH __anycable__ <publication>` on redis://localhost:6379.
fn redis_cli_publish(url: &str, channel: &str, publication: &serde_json::Value) -> String {
    let output = Command::new("redis-cli")
        .args(["-u", url, "PUBLISH", channel, &publication.to_string()])
        .output()
        .expect("redis-cli (Debian package redis-tools)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Waits (bounded) for a log line that satisfies `wanted`.
async fn wait_line(server: &Server, wanted: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.output.all().lines().any(&wanted) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.output.all()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_server_on_defaults_receives_the_gems_redis_broadcasts() {
    // No broadcasting flag at all: only what lets a client subscribe without a backend.
    let server = ServerBuilder::new()
        .args(["--noauth", "--public_streams"])
        .start()
        .await;
    wait_line(&server, |l| {
        l.contains("subscribed to Redis channel") && l.contains("channel=__anycable__")
    })
    .await;
    let stream = unique("dropin-default");
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id(&stream)).await;
    let publication =
        json!({"stream": stream, "data": json!({"text": "from the gem"}).to_string()});
    redis_cli_publish("redis://127.0.0.1:6379", "__anycable__", &publication);
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id(&stream), "message": {"text": "from the gem"}})
    );
}

#[tokio::test]
async fn redis_may_come_up_after_the_server() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    // A configured Redis URL also turns on Redis pub/sub (as in the reference): both wait for
    // Redis. Debug level shows the retries the warning level must not repeat.
    let server = ServerBuilder::new()
        .args(["--noauth", "--public_streams", "--log_level=debug"])
        .env("REDIS_URL", &url)
        .start()
        .await;

    // Several retries have happened ...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.output.all().matches("still unreachable").count() < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.output.all()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... with one warning per component, naming the URL and what it means.
    let log = server.output.all();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WRN ")).collect();
    let broadcaster = format!("Redis at {url} is not available");
    assert_eq!(
        warnings
            .iter()
            .filter(|l| l.contains(&broadcaster) && l.contains("context=broadcast"))
            .count(),
        1,
        "{log}"
    );
    assert!(
        warnings.iter().any(|l| l.contains(&broadcaster)
            && l.contains("broadcasts published to Redis are not received")),
        "{log}"
    );
    assert_eq!(
        warnings
            .iter()
            .filter(|l| l.contains(&broadcaster) && l.contains("context=pubsub"))
            .count(),
        1,
        "{log}"
    );

    // Meanwhile everything else works: health, WebSocket, HTTP broadcasting.
    assert_eq!(server.get("/health").await.status, 200);
    let stream = unique("dropin-later");
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id(&stream)).await;
    // Nobody can confirm the pub/sub subscription: the client is not kept waiting for it.
    assert!(!server.output.all().contains("not confirmed in time"));
    // Published through the pub/sub, which cannot reach Redis: delivered on this node.
    server.publish(&stream, "\"over http\"").await;
    assert_eq!(ws.recv_json().await["message"], json!("over http"));

    // Redis appears: one more line per component, then its broadcasts arrive.
    let own = OwnRedis::start(port);
    own.ready().await;
    let back = format!("connected to Redis at {url} after");
    wait_line(&server, |l| {
        l.contains(&back) && l.contains("context=broadcast")
    })
    .await;
    let publication = json!({"stream": stream, "data": "\"over redis\""});
    assert_eq!(redis_cli_publish(&url, "__anycable__", &publication), "1");
    assert_eq!(ws.recv_json().await["message"], json!("over redis"));
    let log = server.output.all();
    assert_eq!(
        log.lines().filter(|l| l.contains(" WRN ")).count(),
        2,
        "one warning per component for the whole outage: {log}"
    );
}

#[test]
fn version_satisfies_the_anycable_rails_binstub() {
    // The script `rails g anycable:setup` writes as bin/anycable-go (AnyCable docs, "Rails
    // integration"): it downloads the Go binary again unless `-v` starts with the pinned version.
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("bin/dist")).unwrap();
    std::os::unix::fs::symlink(
        std::path::Path::new(env!("CARGO_BIN_EXE_anycable-rs")),
        dir.path().join("bin/dist/anycable-go"),
    )
    .unwrap();
    let rails = dir.write(
        "bin/rails",
        "#!/bin/bash\necho \"rails $*\" >> \"$(dirname $0)/../downloads\"\n",
    );
    make_executable(&rails);
    let binstub = |pinned: &str| {
        let script = dir.write(
            "bin/anycable-go",
            format!(
                r#"#!/bin/bash
cd $(dirname $0)/..
version="{pinned}"
if [ ! -f ./bin/dist/anycable-go ]; then
  echo "AnyCable-go is not installed, downloading..."
  ./bin/rails g anycable:download --version=$version --bin-path=./bin/dist
fi
curVersion=$(./bin/dist/anycable-go -v)
if [[ "$curVersion" != "$version"* ]]; then
  echo "AnyCable-go version is not $version, downloading a new one..."
  ./bin/rails g anycable:download --version=$version --bin-path=./bin/dist
fi
./bin/dist/anycable-go $@
"#
            ),
        );
        make_executable(&script);
        let output = Command::new(&script).arg("--version").output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).to_string()
    };

    let out = binstub("1.6.16");
    assert!(!out.contains("downloading"), "{out}");
    assert!(!dir.path().join("downloads").exists());
    assert!(out.trim().starts_with("1.6.16-rs."), "{out}");
    // The check is real: another pinned version does ask for a download.
    let out = binstub("1.5.0");
    assert!(out.contains("downloading a new one"), "{out}");
    assert!(dir.path().join("downloads").exists());
}

fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn the_startup_line_names_the_anycable_version() {
    let server = ServerBuilder::new().args(["--noauth"]).start().await;
    let log = server.startup_log().await;
    let version = run_to_exit(&["-v"], &[], server.dir.path(), RECV_TIMEOUT);
    let version = version.stdout.trim().to_string();
    assert!(version.starts_with("1.6.16-rs."), "{version}");
    assert!(
        log.contains(&format!("Starting AnyCable {version} (pid: ")),
        "{log}"
    );
}

#[test]
fn the_fly_preset_refuses_to_run_unclustered() {
    let dir = TempDir::new();
    let fly = [
        ("FLY_APP_NAME", "app"),
        ("FLY_REGION", "ams"),
        ("FLY_ALLOC_ID", "1"),
    ];
    let refused = run_to_exit(&[], &fly, dir.path(), RECV_TIMEOUT);
    assert_eq!(refused.code(), Some(1), "{}", refused.describe());
    assert!(
        refused.stderr.contains("fly preset") && refused.stderr.contains("REDIS_URL"),
        "{}",
        refused.describe()
    );
}

#[tokio::test]
async fn the_fly_preset_clusters_through_redis() {
    // The Fly.io guide's setup: `fly redis create` gives a REDIS_URL.
    let server = ServerBuilder::new()
        .no_host_flag()
        .args(["--noauth"])
        .env("FLY_APP_NAME", "app")
        .env("FLY_REGION", "ams")
        .env("FLY_ALLOC_ID", "1")
        .env("REDIS_URL", "redis://127.0.0.1:6379/0")
        .start()
        .await;
    let log = server.startup_log().await;
    assert!(log.contains("Starting Redis pub/sub"), "{log}");
}

//! The static binary (`scripts/static-build.sh`, run by `scripts/test.sh` before the tests) in
//! an empty root directory: no libc, no `/etc`, no `/proc`, no `/dev`. It must start, answer
//! `/health`, welcome a WebSocket client, and resolve host names: `localhost` with no
//! `/etc/hosts` at all, and a name listed in the root's `/etc/hosts`, reaching the real Redis.
//! Runs as root (`chroot`).

mod support;

use std::path::PathBuf;

use support::publishing::*;
use support::*;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// `ANYCABLE_STATIC_BIN`, else where `scripts/static-build.sh` puts it.
fn static_binary() -> PathBuf {
    let path = std::env::var_os("ANYCABLE_STATIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join(TARGET).join("release/anycable-rs")
        });
    assert!(
        path.is_file(),
        "no static binary at {}: build it with scripts/static-build.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A root directory holding only the binary, plus `files` (path inside the root, contents).
fn empty_root(files: &[(&str, &str)]) -> TempDir {
    let root = TempDir::new();
    std::fs::copy(static_binary(), root.path().join("anycable-rs")).expect("copy the binary");
    for (path, contents) in files {
        let full = root.path().join(path);
        std::fs::create_dir_all(full.parent().expect("a parent")).expect("create dirs");
        std::fs::write(full, contents).expect("write file");
    }
    root
}

fn chroot(root: &TempDir) -> Vec<String> {
    vec![
        "chroot".to_string(),
        root.path().display().to_string(),
        "/anycable-rs".to_string(),
    ]
}

#[tokio::test]
async fn the_static_binary_serves_from_an_empty_root() {
    let root = empty_root(&[]);
    let launcher = chroot(&root);
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    // The default host, `localhost`, must resolve with no /etc/hosts and no NSS modules.
    let server = ServerBuilder::new()
        .launched_by(&launcher)
        .no_host_flag()
        .args(["--norpc", "--noauth", "--broadcast_adapter=http"])
        .start()
        .await;
    let health = server.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, HEALTH_BODY);
    let (_ws, _sid) = server.ws_welcomed().await;
    let log = server.startup_log().await;
    assert!(log.contains("localhost:"), "{log}");
}

#[tokio::test]
async fn the_static_binary_resolves_names_from_etc_hosts() {
    let root = empty_root(&[("etc/hosts", "127.0.0.1 redis.static-test.internal\n")]);
    let launcher = chroot(&root);
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let channel = format!("__anycable_static_{}__", std::process::id());
    let server = redis_server_from(
        ServerBuilder::new().launched_by(&launcher),
        "redis://redis.static-test.internal:6379",
        &channel,
        &["--norpc"],
    )
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let mut redis = redis().await;
    publish_and_receive(&mut redis, &channel, &mut ws, "through /etc/hosts").await;
}

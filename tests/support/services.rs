//! Redis and NATS servers of a test's own (so that it can stop and restart them).

use super::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A child process killed (and reaped) on drop, even when the test panics.
pub struct Guarded {
    child: Option<Child>,
    pub output: Output,
}

impl Guarded {
    pub fn spawn(cmd: &mut Command, what: &str) -> Guarded {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let output = Output::capture(&mut child);
        Guarded {
            child: Some(child),
            output,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) and goes on.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) and waits (bounded) for the exit.
    pub fn stop_with(&mut self, signal: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_signal(child.id(), signal);
        if wait_child(&mut child, Duration::from_secs(10)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `kill -<name> <pid>`, which must succeed.
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits (bounded) until something accepts TCP connections on `port`.
pub async fn wait_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the real `redis-cli` (as the docs show) against `127.0.0.1:<port>` and returns its
/// output, trimmed; panics when it fails.
pub async fn redis_cli(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("redis-cli task")
        .expect("redis-cli (Debian package redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !text.starts_with("ERR"),
        "redis-cli {args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A `redis-server` on a free port, without persistence.
pub struct OwnRedis {
    pub port: u16,
    process: Guarded,
    /// Its working directory: whatever it writes (a replica's RDB copy, say) stays out of the
    /// checkout.
    _dir: TempDir,
}

impl OwnRedis {
    pub fn start(port: u16) -> OwnRedis {
        OwnRedis::start_with(port, &["--port", &port.to_string()])
    }

    /// `args` come last, so they may override the working directory too.
    pub fn start_with(port: u16, args: &[&str]) -> OwnRedis {
        let dir = TempDir::new();
        let process = Guarded::spawn(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(args),
            "redis-server (Debian package redis-server)",
        );
        OwnRedis {
            port,
            process,
            _dir: dir,
        }
    }

    /// A Sentinel (`redis-server <config> --sentinel`) listening on `port`.
    pub fn sentinel(port: u16, config: &Path) -> OwnRedis {
        let dir = TempDir::new();
        let process = Guarded::spawn(
            Command::new("redis-server")
                .arg(config)
                .arg("--sentinel")
                .current_dir(dir.path()),
            "redis-server --sentinel",
        );
        OwnRedis {
            port,
            process,
            _dir: dir,
        }
    }

    /// With an append-only file in `dir`, written through on every command, so that its data
    /// survives a restart (even a kill).
    pub fn start_persistent(port: u16, dir: &TempDir) -> OwnRedis {
        OwnRedis::start_with(
            port,
            &[
                "--port",
                &port.to_string(),
                "--dir",
                dir.path().to_str().unwrap(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        )
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until it answers `PING` through the server's own RESP client.
    pub async fn ready(&self) -> anycable_rs::clients::redis::Connection {
        self.ready_at(&self.url()).await
    }

    pub async fn ready_at(&self, url: &str) -> anycable_rs::clients::redis::Connection {
        use anycable_rs::clients::redis::{Connection, RedisOptions};
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let options = RedisOptions::from_config(&anycable_rs::config::RedisConfig {
                url: url.into(),
                ..Default::default()
            })
            .unwrap();
            if let Ok(mut connection) = Connection::open(&options).await {
                if connection.call(&[b"PING"]).await.is_ok() {
                    return connection;
                }
            }
            assert!(Instant::now() < deadline, "own redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn process(&self) -> &Guarded {
        &self.process
    }

    pub fn stop(&mut self) {
        self.process.stop_with("KILL");
    }
}

/// A `nats-server` with JetStream on a free port, storing in a directory of its own that
/// survives [`OwnNats::restart`].
pub struct OwnNats {
    pub port: u16,
    store: TempDir,
    process: Guarded,
}

impl OwnNats {
    pub async fn start() -> OwnNats {
        let port = free_port();
        let store = TempDir::new();
        let process = OwnNats::spawn(port, &store);
        let nats = OwnNats {
            port,
            store,
            process,
        };
        nats.ready().await;
        nats
    }

    /// A `nats-server` without JetStream, for the checks that must notice its absence.
    pub async fn start_without_jetstream() -> OwnNats {
        let port = free_port();
        let process = Guarded::spawn(
            Command::new(OwnNats::bin()).args(["-a", "127.0.0.1", "-p", &port.to_string()]),
            "nats-server (Debian package nats-server)",
        );
        wait_port(port, Duration::from_secs(10)).await;
        OwnNats {
            port,
            store: TempDir::new(),
            process,
        }
    }

    fn bin() -> &'static str {
        if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        }
    }

    fn spawn(port: u16, store: &TempDir) -> Guarded {
        Guarded::spawn(
            Command::new(OwnNats::bin()).args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-js",
                "-sd",
                store.path().to_str().unwrap(),
            ]),
            "nats-server (Debian package nats-server)",
        )
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Waits until JetStream answers.
    pub async fn ready(&self) {
        wait_port(self.port, Duration::from_secs(10)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The account information request, raw (the client's parser does not know every
            // server version's answer).
            let answer = match async_nats::connect(self.url()).await {
                Ok(client) => client
                    .request("$JS.API.INFO", "".into())
                    .await
                    .map(|reply| String::from_utf8_lossy(&reply.payload).into_owned())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if answer
                .as_ref()
                .is_ok_and(|a| a.contains("account_info_response") && !a.contains("\"error\""))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "own nats-server has no JetStream ({answer:?}):\n{}",
                self.process.output.all()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn process(&self) -> &Guarded {
        &self.process
    }

    /// Stops it gracefully (`SIGTERM`, so JetStream's files are complete).
    pub fn stop(&mut self) {
        self.process.stop_with("TERM");
    }

    /// Starts it again on the same port with the same store, and waits for JetStream.
    pub async fn restart(&mut self) {
        self.stop();
        self.process = OwnNats::spawn(self.port, &self.store);
        self.ready().await;
    }
}

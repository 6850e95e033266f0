//! The server under test: either spawned by the benchmark or already running.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anycable_rs::streams::hex_hmac_sha256;

use crate::backend::Backend;
use crate::fixture::SECRET;
use crate::options::{Auth, Broadcaster, Transport};
use crate::redis_publisher::{DEFAULT_CHANNEL, REDIS_URL};

pub struct Target {
    pub addr: SocketAddr,
    pub pid: u32,
    /// Bearer key for `/_broadcast` (derived from [`SECRET`] for a spawned server).
    pub broadcast_key: Option<String>,
    /// The channel of the server's `redis` broadcaster: one per spawned server, so that
    /// benchmarks running side by side do not receive each other's publications.
    pub redis_channel: String,
    /// The RPC backend the server authenticates through; none in standalone mode.
    pub backend: Option<Backend>,
    child: Option<Child>,
}

impl Target {
    /// Starts `bin` on a free loopback port with a secret (JWT, signed streams, authenticated
    /// broadcasts on the main port) and public streams: in standalone mode (without
    /// authentication, or with JWT for [`Auth::Jwt`], or `--public` with an RPC host nothing
    /// calls), or authenticating through `backend`; with the SSE endpoint for SSE clients, and
    /// the `redis` broadcaster instead of HTTP when publishing through Redis.
    pub fn spawn(
        bin: &PathBuf,
        backend: Option<Backend>,
        auth: Auth,
        transport: Transport,
        broadcaster: Broadcaster,
        extra_args: &[String],
    ) -> Result<Target, String> {
        let port = free_port()?;
        let redis_channel = format!("anycable-bench-{port}");
        let mut command = Command::new(bin);
        command
            .arg("--ignore-config-path")
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--secret={SECRET}"))
            .arg("--public_streams");
        match (&backend, auth) {
            (Some(backend), _) => command.arg(format!("--rpc_host={}", backend.rpc_host())),
            (None, Auth::Jwt) => command.arg("--norpc"),
            // A free port: the backend is configured, never called.
            (None, Auth::Public) => command
                .arg("--public")
                .arg(format!("--rpc_host=127.0.0.1:{}", free_port()?)),
            (None, _) => command.arg("--noauth").arg("--norpc"),
        };
        if transport == Transport::Sse {
            command.arg("--sse");
        }
        if broadcaster == Broadcaster::Redis {
            command
                .arg("--broadcast_adapter=redis")
                .arg(format!("--redis_url={REDIS_URL}"))
                .arg(format!("--redis_channel={redis_channel}"));
        }
        command
            .arg("--turbo_streams")
            .arg("--log_level=warn")
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let target = Target {
            addr,
            pid: child.id(),
            broadcast_key: Some(hex_hmac_sha256(SECRET.as_bytes(), b"broadcast-cable")),
            redis_channel,
            backend,
            child: Some(child),
        };
        target.wait_ready(Duration::from_secs(10))?;
        Ok(target)
    }

    /// A server started by someone else (its Redis broadcaster, if any, on the default
    /// channel).
    pub fn existing(addr: SocketAddr, pid: u32, broadcast_key: Option<String>) -> Target {
        Target {
            addr,
            pid,
            broadcast_key,
            redis_channel: DEFAULT_CHANNEL.to_string(),
            backend: None,
            child: None,
        }
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "server did not listen on {} within {limit:?}",
            self.addr
        ))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // Fields, the backend among them, are dropped after this: the server stops first, so it
        // never sees its backend gone.
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

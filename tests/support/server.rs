//! The server under test: a running `anycable-rs` process and how it is started.

use super::*;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Where the HTTP broadcast endpoint is expected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BroadcastPort {
    /// Pass `--http_broadcast_port=<free port>` unless the args contain a broadcast key or a
    /// secret (then the endpoint is on the main port, as in AnyCable-Go).
    Auto,
    /// Pass `--http_broadcast_port=<free port>`.
    Separate,
    /// Pass nothing: the endpoint is expected on the main port.
    Main,
}

pub struct ServerBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub dir: TempDir,
    pub port: u16,
    port_flag: bool,
    host_flag: bool,
    ignore_config: bool,
    broadcast: BroadcastPort,
    health_path: String,
    tls: Option<TlsClient>,
    /// The command that runs the server in place of the test binary (program, then its
    /// arguments; the server's flags follow). Empty: the binary under test.
    launcher: Vec<String>,
}

impl ServerBuilder {
    pub fn new() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            env: Vec::new(),
            dir: TempDir::new(),
            port: free_port(),
            port_flag: true,
            host_flag: true,
            ignore_config: true,
            broadcast: BroadcastPort::Auto,
            health_path: "/health".into(),
            tls: None,
            launcher: Vec::new(),
        }
    }

    /// Starts the server under `prlimit --nofile=<soft>:<hard>` (util-linux): its open-files
    /// limit, soft and hard.
    pub fn open_files_limit(self, soft: u64, hard: u64) -> Self {
        self.launched_by(&["prlimit", &format!("--nofile={soft}:{hard}"), BIN])
    }

    /// Runs the server through `launcher` (e.g. `["chroot", root, "/anycable-rs"]`).
    pub fn launched_by(mut self, launcher: &[&str]) -> Self {
        self.launcher = launcher.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Do not pass `--port`: the test provides the port some other way (env, file).
    pub fn no_port_flag(mut self) -> Self {
        self.port_flag = false;
        self
    }

    /// Do not pass `--host=127.0.0.1` (the server then binds its default `localhost`).
    pub fn no_host_flag(mut self) -> Self {
        self.host_flag = false;
        self
    }

    /// Let the server look for `anycable.toml` (no `--ignore-config-path`).
    pub fn with_config_lookup(mut self) -> Self {
        self.ignore_config = false;
        self
    }

    pub fn broadcast_port(mut self, where_: BroadcastPort) -> Self {
        self.broadcast = where_;
        self
    }

    /// The health path to poll while waiting for the server (when `--health-path` is given).
    pub fn health_path(mut self, path: &str) -> Self {
        self.health_path = path.into();
        self
    }

    /// Serve TLS with the given PEM certificate and key (written into the working dir); the
    /// harness then talks HTTPS/WSS trusting that certificate.
    pub fn tls(mut self, cert_pem: &str, key_pem: &str) -> Self {
        let cert = self.dir.write("cert.pem", cert_pem);
        let key = self.dir.write("key.pem", key_pem);
        self.args.push(format!("--ssl_cert={}", cert.display()));
        self.args.push(format!("--ssl_key={}", key.display()));
        self.tls = Some(TlsClient::trusting(cert_pem));
        self
    }

    /// Makes `ca_pem` the whole system certificate store of the server, the way a container
    /// image with a private CA installed would have it: `SSL_CERT_FILE` names it and
    /// `SSL_CERT_DIR` an empty directory (both honoured by OpenSSL and rustls-native-certs).
    pub fn system_store(self, ca_pem: &str) -> Self {
        let dir = self.dir.path().join("system-store/certs");
        std::fs::create_dir_all(&dir).expect("create the store directory");
        let file = self.dir.write("system-store/ca.pem", ca_pem);
        self.env("SSL_CERT_FILE", file.display().to_string())
            .env("SSL_CERT_DIR", dir.display().to_string())
    }

    fn has_broadcast_secret(&self) -> bool {
        self.args.iter().any(|a| {
            let a = a.trim_start_matches('-');
            (a.starts_with("secret=") || a.starts_with("broadcast_key=")) && !a.ends_with("=none")
        })
    }

    /// Starts the server and waits until `GET <health path>` answers 200.
    pub async fn start(self) -> Server {
        let mut args: Vec<String> = Vec::new();
        if self.ignore_config {
            args.push("--ignore-config-path".into());
        }
        if self.host_flag {
            args.push("--host=127.0.0.1".into());
        }
        if self.port_flag {
            args.push(format!("--port={}", self.port));
        }
        let separate = match self.broadcast {
            BroadcastPort::Separate => true,
            BroadcastPort::Main => false,
            BroadcastPort::Auto => !self.has_broadcast_secret(),
        };
        let broadcast_port = if separate {
            let port = free_port();
            args.push(format!("--http_broadcast_port={port}"));
            port
        } else {
            self.port
        };
        args.extend(self.args.iter().cloned());

        let mut cmd = match self.launcher.split_first() {
            Some((program, rest)) => {
                let mut cmd = command_for(program, self.dir.path());
                cmd.args(rest);
                cmd
            }
            None => base_command(self.dir.path()),
        };
        cmd.args(&args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn anycable-rs");
        let output = Output::capture(&mut child);
        let mut server = Server {
            child: Some(child),
            output,
            port: self.port,
            broadcast_port,
            args,
            dir: self.dir,
            tls: self.tls,
            exit_status: None,
        };
        server.wait_healthy(&self.health_path).await;
        server
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder::new()
    }
}

/// A running `anycable-rs` process; killed on drop (its output is printed when the test
/// failed).
pub struct Server {
    child: Option<Child>,
    pub output: Output,
    pub port: u16,
    pub broadcast_port: u16,
    pub args: Vec<String>,
    pub dir: TempDir,
    pub tls: Option<TlsClient>,
    exit_status: Option<ExitStatus>,
}

/// Starts a server with these extra flags.
pub async fn start(args: &[&str]) -> Server {
    ServerBuilder::new()
        .args(args.iter().copied())
        .start()
        .await
}

impl Server {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    async fn wait_healthy(&mut self, path: &str) {
        let deadline = Instant::now() + HEALTH_DEADLINE;
        let mut last_error: String;
        loop {
            if let Some(status) = self.try_exit_status() {
                self.output.dump("server");
                panic!(
                    "server exited before becoming healthy ({status}); args: {:?}",
                    self.args
                );
            }
            match tokio::time::timeout(
                Duration::from_secs(1),
                http_request(&self.addr(), self.tls.as_ref(), "GET", path, &[], b""),
            )
            .await
            {
                Ok(Ok(resp)) if resp.status == 200 => return,
                Ok(Ok(resp)) => last_error = format!("status {}", resp.status),
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "timeout".into(),
            }
            if Instant::now() >= deadline {
                self.output.dump("server");
                panic!(
                    "server did not answer GET {path} with 200 within {HEALTH_DEADLINE:?} (last: {last_error}); args: {:?}",
                    self.args
                );
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit_status = Some(status);
                }
            }
        }
        self.exit_status
    }

    /// Sends a signal (`TERM`, `INT`, ...) to this server process.
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) for the last startup log line, so that the whole startup log has been
    /// captured (the health endpoint can answer before the pipe reader caught up).
    pub async fn startup_log(&self) -> String {
        self.wait_output("Handle health requests", RECV_TIMEOUT)
            .await;
        self.output.all()
    }

    /// Waits (bounded) until the server's output contains `needle`.
    pub async fn wait_output(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.output.all().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Like [`Server::wait_output`], failing the test (with the whole log) when `needle` does
    /// not come.
    pub async fn expect_output(&self, needle: &str, limit: Duration) {
        assert!(
            self.wait_output(needle, limit).await,
            "no {needle:?} within {limit:?} in:\n{}",
            self.output.all()
        );
    }

    // --- HTTP ---------------------------------------------------------------------------------

    pub async fn get(&self, path: &str) -> HttpResponse {
        self.http("GET", path, &[], b"").await
    }

    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        http_request_on(&self.addr(), self.tls.as_ref(), method, path, headers, body).await
    }

    pub fn broadcast_addr(&self) -> String {
        format!("127.0.0.1:{}", self.broadcast_port)
    }

    /// `POST /_broadcast` without authorization.
    pub async fn broadcast(&self, body: &str) -> HttpResponse {
        self.broadcast_with(body, None).await
    }

    /// `POST /_broadcast` with `Authorization: Bearer <key>` when a key is given.
    pub async fn broadcast_with(&self, body: &str, key: Option<&str>) -> HttpResponse {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = auth.as_deref() {
            headers.push(("Authorization", auth));
        }
        http_request_on(
            &self.broadcast_addr(),
            self.tls.as_ref(),
            "POST",
            "/_broadcast",
            &headers,
            body.as_bytes(),
        )
        .await
    }

    /// Publishes `data` (a string, sent as the publication's `data`) to `stream`, expecting 201.
    pub async fn publish(&self, stream: &str, data: &str) {
        self.publish_with(stream, data, None).await;
    }

    /// Like [`Server::publish`], with a bearer key.
    pub async fn publish_with(&self, stream: &str, data: &str, key: Option<&str>) {
        let body = serde_json::json!({"stream": stream, "data": data}).to_string();
        let resp = self.broadcast_with(&body, key).await;
        assert_eq!(resp.status, 201, "broadcast {body} answered {resp:?}");
    }

    // --- WebSocket ----------------------------------------------------------------------------

    /// Connects to `/cable` and expects the upgrade to succeed.
    pub async fn ws(&self) -> Ws {
        self.ws_with(WsRequest::new("/cable")).await
    }

    /// Connects to `/cable` and expects a welcome; returns the client and its sid.
    pub async fn ws_welcomed(&self) -> (Ws, String) {
        let mut ws = self.ws().await;
        let sid = ws.expect_welcome().await;
        (ws, sid)
    }

    pub async fn ws_with(&self, request: WsRequest) -> Ws {
        match self.try_ws(request.clone()).await {
            Ok(ws) => ws,
            Err(resp) => panic!("WebSocket upgrade for {request:?} refused: {resp:?}"),
        }
    }

    /// Tries an upgrade; `Err` carries the HTTP response when the server did not switch.
    pub async fn try_ws(&self, request: WsRequest) -> Result<Ws, HttpResponse> {
        ws_connect(&self.addr(), self.tls.as_ref(), &request)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {} failed: {e}", self.addr()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.exit_status.is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("server args: {:?}", self.args);
            self.output.dump("server");
        }
    }
}

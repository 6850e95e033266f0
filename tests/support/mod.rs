//! Shared harness of the integration tests: starts the real `anycable-rs` binary on free
//! ports, speaks WebSocket (with a hand-made handshake, so that response headers, refused
//! upgrades and odd sub-protocol lists can be checked), and talks HTTP to the health and
//! broadcast endpoints.
//!
//! Synchronisation is always on events (a frame arrives, a port answers, the process exits),
//! bounded by timeouts. To show that something does *not* happen, tests send a later marker
//! (`{"command":"ping"}` → `{"type":"pong"}`, or a broadcast on another stream) and check
//! that the marker is the next thing to arrive.

#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_anycable-rs");

/// How long a test waits for an expected frame.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test waits to be reasonably sure that nothing (more) arrives.
pub const SILENCE: Duration = Duration::from_millis(300);
/// Health polling: every 20 ms, up to 10 s.
const HEALTH_POLL: Duration = Duration::from_millis(20);
const HEALTH_DEADLINE: Duration = Duration::from_secs(10);

pub const HEALTH_BODY: &str = "Ah, ha, ha, ha, stayin' alive, stayin' alive.";

// ---------------------------------------------------------------------------------------------
// Free ports, temp dirs
// ---------------------------------------------------------------------------------------------

/// A port that was free a moment ago, for a server to bind.
///
/// Ports come from below the kernel's ephemeral range (32768+ here), walked by a per-process
/// counter from a pid-derived start: a port the OS picked for "port 0" could be handed out
/// again — as another test's free port or as the local port of an outgoing client connection
/// — before the server binds it, which made parallel tests collide. Each candidate is checked
/// by binding it on 127.0.0.1 and on all interfaces.
pub fn free_port() -> u16 {
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000; // 12000..32000
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = (std::process::id() * 7919) % SPAN;
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let port = (LOW + (start + offset) % SPAN) as u16;
        let free = StdTcpListener::bind(("127.0.0.1", port)).is_ok()
            && StdTcpListener::bind(("0.0.0.0", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port found");
}

/// A port bound (and kept) by the test, so that a server configured to use it cannot start:
/// the way to show that a setting was *not* used, without racing other tests for the port.
pub fn hold_port() -> (StdTcpListener, u16) {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local addr").port();
    (listener, port)
}

/// A temporary directory removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "anycable-rs-test-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// Process output capture
// ---------------------------------------------------------------------------------------------

/// Captured stdout and stderr of a child process.
#[derive(Clone, Default)]
pub struct Output {
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Output {
    fn capture(child: &mut Child) -> Output {
        let output = Output::default();
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, output.stdout.clone());
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, output.stderr.clone());
        }
        output
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    fn dump(&self, what: &str) {
        eprintln!(
            "----- {what} stdout -----\n{}\n----- {what} stderr -----\n{}\n-------------------------",
            self.stdout(),
            self.stderr()
        );
    }
}

fn spawn_reader(mut source: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
}

fn base_command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The test runner's own environment must not configure the server (nor its log filter).
    for (key, _) in std::env::vars() {
        if key.starts_with("ANYCABLE_") || key == "PORT" || key == "REDIS_URL" || key == "RUST_LOG"
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Result of a process that was expected to exit by itself.
pub struct Exited {
    /// `None` when the process had to be killed after the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Exited {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn describe(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs the binary with `args` and `env` in `dir` and waits (bounded) for it to exit. A
/// process still running after `limit` is killed and reported with `status: None`.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], dir: &Path, limit: Duration) -> Exited {
    let mut cmd = base_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn anycable-rs");
    let output = Output::capture(&mut child);
    let status = wait_child(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Give the reader threads a moment to drain the pipes after exit.
    let drained = Instant::now();
    let mut last = (0, 0);
    while drained.elapsed() < Duration::from_millis(500) {
        let now = (output.stdout().len(), output.stderr().len());
        if now == last && drained.elapsed() > Duration::from_millis(50) {
            break;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(20));
    }
    Exited {
        status,
        stdout: output.stdout(),
        stderr: output.stderr(),
    }
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// Where the HTTP broadcast endpoint is expected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BroadcastPort {
    /// Pass `--http_broadcast_port=<free port>` unless the args contain a broadcast key or a
    /// secret (then the endpoint is on the main port, as the spec says).
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
        }
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

        let mut cmd = base_command(self.dir.path());
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

// ---------------------------------------------------------------------------------------------
// TLS client side
// ---------------------------------------------------------------------------------------------

/// A rustls client configuration that trusts exactly one (self-signed) certificate.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<rustls::ClientConfig>,
}

impl TlsClient {
    pub fn trusting(cert_pem: &str) -> TlsClient {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
            roots.add(cert.expect("parse cert PEM")).expect("add root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsClient {
            config: Arc::new(config),
        }
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn open_stream(addr: &str, tls: Option<&TlsClient>) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let name = rustls::pki_types::ServerName::try_from("localhost")
                .expect("server name")
                .to_owned();
            let stream = connector.connect(name, tcp).await?;
            Ok(Box::new(stream))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`Connection: close`) with a bounded wait; panics on I/O errors.
pub async fn http_request_on(
    addr: &str,
    tls: Option<&TlsClient>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    match tokio::time::timeout(
        RECV_TIMEOUT,
        http_request(addr, tls, method, path, headers, body),
    )
    .await
    {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => panic!("{method} {path} on {addr} failed: {e}"),
        Err(_) => panic!("{method} {path} on {addr}: no response within {RECV_TIMEOUT:?}"),
    }
}

pub async fn http_request(
    addr: &str,
    tls: Option<&TlsClient>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = open_stream(addr, tls).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let (head, rest) = read_head(&mut stream).await?;
    let (status, headers) = parse_head(&head)?;
    let mut body = rest;
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    match length {
        Some(length) => {
            while body.len() < length {
                let mut buf = [0u8; 8192];
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            // Connection: close — read to EOF (chunked bodies are kept raw; tests only look
            // for substrings in them).
            let _ = stream.read_to_end(&mut body).await;
        }
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Reads up to the end of the response head; returns the head and whatever followed it.
async fn read_head(stream: &mut Box<dyn Io>) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
            let rest = buf[pos + 4..].to_vec();
            return Ok((head, rest));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before the response head ({} bytes: {:?})",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &str) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------------

/// An upgrade request.
#[derive(Clone, Debug)]
pub struct WsRequest {
    /// Path with query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Sent as one `Sec-WebSocket-Protocol` header, comma-separated.
    pub protocols: Vec<String>,
}

impl WsRequest {
    pub fn new(path: &str) -> WsRequest {
        WsRequest {
            path: path.into(),
            headers: Vec::new(),
            protocols: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocols.push(protocol.into());
        self
    }
}

/// What the next frame from the server was.
#[derive(Debug)]
pub enum Frame {
    /// A text frame, parsed, with its raw text.
    Json(Value, String),
    /// A close frame (code, reason); `None` when the frame had no payload.
    Close(Option<(u16, String)>),
    /// The connection ended without (further) frames.
    Eof(String),
}

pub struct Ws {
    inner: WebSocketStream<Box<dyn Io>>,
    /// The `101 Switching Protocols` response.
    pub response: HttpResponse,
    /// Every frame received so far (raw text), for failure messages.
    pub log: Vec<String>,
}

pub async fn ws_connect(
    addr: &str,
    tls: Option<&TlsClient>,
    request: &WsRequest,
) -> std::io::Result<Result<Ws, HttpResponse>> {
    let mut stream = open_stream(addr, tls).await?;
    let key = generate_key();
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        request.path
    );
    if !request.protocols.is_empty() {
        head.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            request.protocols.join(", ")
        ));
    }
    for (k, v) in &request.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    let (response_head, rest) = tokio::time::timeout(RECV_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::other("no upgrade response in time"))??;
    let (status, headers) = parse_head(&response_head)?;
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    if status != 101 {
        let mut body = rest;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let length = response
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            let mut buf = [0u8; 4096];
            loop {
                if length.is_some_and(|l| body.len() >= l) {
                    break;
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        response.body = String::from_utf8_lossy(&body).into_owned();
        return Ok(Err(response));
    }
    let expected_accept = derive_accept_key(key.as_bytes());
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some(expected_accept.as_str()),
        "bad Sec-WebSocket-Accept in {response:?}"
    );
    let inner = WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
    Ok(Ok(Ws {
        inner,
        response,
        log: Vec::new(),
    }))
}

impl Ws {
    /// The next frame (pings included), or `None` on timeout.
    pub async fn next_frame(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.inner.next()).await;
            let item = match next {
                Err(_) => return None,
                Ok(item) => item,
            };
            match item {
                None => return Some(Frame::Eof("stream ended".into())),
                Some(Ok(Message::Text(text))) => {
                    let text = text.to_string();
                    self.log.push(text.clone());
                    let value: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("server sent non-JSON text {text:?}: {e}"));
                    return Some(Frame::Json(value, text));
                }
                Some(Ok(Message::Binary(data))) => {
                    panic!("server sent a binary frame: {data:?}")
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    self.log.push(format!("<close {frame:?}>"));
                    return Some(Frame::Close(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    ));
                }
                Some(Err(e)) => return Some(Frame::Eof(e.to_string())),
            }
        }
    }

    /// The next data or protocol message, skipping `ping`s; panics on timeout or close.
    pub async fn recv_json(&mut self) -> Value {
        self.recv_json_within(RECV_TIMEOUT).await
    }

    pub async fn recv_json_within(&mut self, limit: Duration) -> Value {
        self.recv_text_within(limit).await.0
    }

    /// Like [`Ws::recv_json`], also returning the frame's raw text.
    pub async fn recv_text(&mut self) -> (Value, String) {
        self.recv_text_within(RECV_TIMEOUT).await
    }

    async fn recv_text_within(&mut self, limit: Duration) -> (Value, String) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Some(Frame::Json(value, text)) => {
                    if value["type"] == "ping" {
                        continue;
                    }
                    return (value, text);
                }
                Some(other) => panic!(
                    "expected a message, got {other:?}; frames so far: {:?}",
                    self.log
                ),
                None => panic!("no message within {limit:?}; frames so far: {:?}", self.log),
            }
        }
    }

    /// The next message including `ping`s.
    pub async fn recv_json_with_pings(&mut self, limit: Duration) -> Value {
        match self.next_frame(limit).await {
            Some(Frame::Json(value, _)) => value,
            other => panic!(
                "expected a message within {limit:?}, got {other:?}; frames so far: {:?}",
                self.log
            ),
        }
    }

    /// Waits for the welcome and returns its `sid`.
    pub async fn expect_welcome(&mut self) -> String {
        let welcome = self.recv_json().await;
        assert_eq!(welcome["type"], "welcome", "expected a welcome: {welcome}");
        welcome["sid"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without a string sid: {welcome}"))
            .to_string()
    }

    /// Reads until the close frame (skipping pings; any other message fails the test) and
    /// returns its code and reason. A connection that ends without a close frame gives 1006.
    pub async fn expect_close(&mut self) -> (u16, String) {
        match self.next_non_ping(RECV_TIMEOUT).await {
            Some(Frame::Close(Some(close))) => close,
            Some(Frame::Close(None)) => (1005, String::new()),
            Some(Frame::Eof(_)) => (1006, String::new()),
            Some(Frame::Json(_, text)) => panic!(
                "expected a close, got message {text}; frames so far: {:?}",
                self.log
            ),
            None => panic!(
                "no close within {RECV_TIMEOUT:?}; frames so far: {:?}",
                self.log
            ),
        }
    }

    async fn next_non_ping(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Some(Frame::Json(value, _)) if value["type"] == "ping" => continue,
                other => return other,
            }
        }
    }

    /// Expects a `disconnect` message with this reason and reconnect flag, then a close with
    /// this code (and reason, when given).
    pub async fn expect_disconnect(
        &mut self,
        reason: &str,
        reconnect: bool,
        code: u16,
        close_reason: Option<&str>,
    ) {
        let msg = self.recv_json().await;
        assert_eq!(
            msg,
            serde_json::json!({"type": "disconnect", "reason": reason, "reconnect": reconnect}),
            "unexpected disconnect message"
        );
        let (got_code, got_reason) = self.expect_close().await;
        assert_eq!(got_code, code, "close code (reason {got_reason:?})");
        if let Some(close_reason) = close_reason {
            assert_eq!(got_reason, close_reason, "close reason");
        }
    }

    /// Asserts that no message other than pings arrives within `limit`.
    pub async fn expect_silence(&mut self, limit: Duration) {
        if let Some(frame) = self.next_non_ping(limit).await {
            panic!("expected nothing for {limit:?}, got {frame:?}");
        }
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.inner
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send text frame");
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.inner
            .send(Message::Binary(data.to_vec().into()))
            .await
            .expect("send binary frame");
    }

    /// Sends a raw send result (for tests that expect the server to have gone).
    pub async fn try_send_text(&mut self, text: &str) -> Result<(), tungstenite::Error> {
        self.inner
            .send(Message::Text(text.to_string().into()))
            .await
    }

    /// `subscribe` and return the reply.
    pub async fn subscribe(&mut self, identifier: &str) -> Value {
        self.send_json(&serde_json::json!({"command": "subscribe", "identifier": identifier}))
            .await;
        self.recv_json().await
    }

    /// `subscribe` and assert the exact `confirm_subscription`.
    pub async fn subscribe_ok(&mut self, identifier: &str) {
        let reply = self.subscribe(identifier).await;
        assert_eq!(
            reply,
            serde_json::json!({"type": "confirm_subscription", "identifier": identifier}),
            "subscription to {identifier} not confirmed"
        );
    }

    /// `subscribe` and assert the exact `reject_subscription`.
    pub async fn subscribe_rejected(&mut self, identifier: &str) {
        let reply = self.subscribe(identifier).await;
        assert_eq!(
            reply,
            serde_json::json!({"type": "reject_subscription", "identifier": identifier}),
            "subscription to {identifier} not rejected"
        );
    }

    /// Sends `{"command":"ping"}` and expects `{"type":"pong"}` as the very next message: the
    /// marker showing that everything sent before produced no (other) reply, and that the
    /// session still works.
    pub async fn expect_pong_next(&mut self) {
        self.send_json(&serde_json::json!({"command": "ping"}))
            .await;
        let msg = self.recv_json().await;
        assert_eq!(
            msg,
            serde_json::json!({"type": "pong"}),
            "expected the pong marker to be the next message"
        );
    }

    pub async fn close(mut self) {
        let _ = self.inner.close(None).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers, tokens, signatures
// ---------------------------------------------------------------------------------------------

/// `{"channel":"$pubsub","stream_name":"<stream>"}`
pub fn public_id(stream: &str) -> String {
    serde_json::json!({"channel": "$pubsub", "stream_name": stream}).to_string()
}

/// `{"channel":"$pubsub","signed_stream_name":"<signed>"}`
pub fn signed_id(signed: &str) -> String {
    serde_json::json!({"channel": "$pubsub", "signed_stream_name": signed}).to_string()
}

/// An independent implementation of Rails' MessageVerifier signing (streams.md §5), so that a
/// bug shared by the server's signer and verifier cannot hide.
pub fn sign_stream(secret: &str, stream: &str) -> String {
    use base64::Engine;
    let json = serde_json::to_string(stream).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    format!("{encoded}--{}", hmac_hex(secret, &encoded))
}

/// The broadcast key derived from an application secret (broadcasting.md §3.1).
pub fn derived_broadcast_key(secret: &str) -> String {
    hmac_hex(secret, "broadcast-cable")
}

pub fn hmac_hex(key: &str, message: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An HS256 JWT with the given claims, built independently of the server's code.
pub fn jwt(secret: &str, claims: &Value) -> String {
    jwt_raw(secret, &claims.to_string())
}

/// An HS256 JWT whose payload is exactly `payload_json`.
pub fn jwt_raw(secret: &str, payload_json: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(payload_json.as_bytes());
    let input = format!("{header}.{payload}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// A token for `identifiers` valid for an hour.
pub fn token(secret: &str, identifiers: &str) -> String {
    jwt(
        secret,
        &serde_json::json!({"ext": identifiers, "exp": now_secs() + 3600}),
    )
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Collects every JSON message of `ws` for `n` messages (skipping pings).
pub async fn recv_n(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(ws.recv_json().await);
    }
    out
}

/// Parses `KEY=VALUE`-ish text into a map (used for nothing critical; helper for logs).
pub fn lines_containing<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// The extended protocol's sub-protocol.
pub const EXT: &str = "actioncable-v1-ext-json";

/// Connects with the extended protocol (`query` is appended to `/cable?pi=0`) and returns the
/// socket and the welcome's `sid`.
pub async fn ext_client(server: &Server, query: &str) -> (Ws, String) {
    let mut ws = server
        .ws_with(WsRequest::new(&format!("/cable?pi=0{query}")).protocol(EXT))
        .await;
    let welcome = ws.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome["sid"].as_str().unwrap().to_string())
}

/// Reconnects with `?sid=<sid>` on the extended protocol and expects the session restored with
/// exactly these identifiers, under a new sid.
pub async fn restore(server: &Server, sid: &str, identifiers: &[&str]) -> Ws {
    let mut ws = server
        .ws_with(WsRequest::new(&format!("/cable?pi=0&sid={sid}")).protocol(EXT))
        .await;
    let welcome = ws.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["restored"], true, "{welcome}");
    assert_eq!(welcome["restored_ids"], serde_json::json!(identifiers));
    assert_ne!(welcome["sid"], sid, "{welcome}");
    ws
}

/// A name no other test (or test run) uses: Redis, NATS and the brokers' data outlive the
/// processes. Only letters, digits, `_` and `-`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

// ---------------------------------------------------------------------------------------------
// Redis and NATS servers of a test's own (so that it can stop and restart them)
// ---------------------------------------------------------------------------------------------

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

    fn spawn(port: u16, store: &TempDir) -> Guarded {
        let bin = if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        Guarded::spawn(
            Command::new(bin).args([
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

// ---------------------------------------------------------------------------------------------
// Continuous publishing and reading of numbered messages
// ---------------------------------------------------------------------------------------------

/// What became of one publication attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// `201 Created`.
    Accepted,
    /// Another status (the broker refused: `501`).
    Refused(u16),
    /// No answer in time, or the connection failed.
    Failed,
}

/// Publishes `{"n": k}` for k = 1, 2, ... to a stream through a node's `/_broadcast`, one at a
/// time, as fast as the endpoint answers, until stopped; every attempt gets the next `k`, and
/// its outcome is recorded.
pub struct Publisher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Publisher {
    pub fn start(server: &Server, stream: &str) -> Publisher {
        Publisher::paced(server, stream, Duration::ZERO)
    }

    /// Like [`Publisher::start`], waiting `pace` after each attempt.
    pub fn paced(server: &Server, stream: &str, pace: Duration) -> Publisher {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
        let address = server.broadcast_addr();
        let stream = stream.to_string();
        let (stop_flag, record) = (stop.clone(), outcomes.clone());
        let task = tokio::spawn(async move {
            while !stop_flag.load(Ordering::Relaxed) {
                let n = record.lock().unwrap().len() + 1;
                let data = serde_json::json!({ "n": n }).to_string();
                let body = serde_json::json!({"stream": stream, "data": data}).to_string();
                let headers = [("Content-Type", "application/json")];
                let request = http_request(
                    &address,
                    None,
                    "POST",
                    "/_broadcast",
                    &headers,
                    body.as_bytes(),
                );
                let outcome = match tokio::time::timeout(Duration::from_secs(15), request).await {
                    Ok(Ok(response)) if response.status == 201 => Outcome::Accepted,
                    Ok(Ok(response)) => Outcome::Refused(response.status),
                    _ => Outcome::Failed,
                };
                record.lock().unwrap().push(outcome);
                if outcome != Outcome::Accepted {
                    // Not a busy loop while the node cannot store.
                    tokio::time::sleep(pace.max(Duration::from_millis(50))).await;
                } else if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
        });
        Publisher {
            stop,
            outcomes,
            task: Some(task),
        }
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> usize {
        self.outcomes()
            .iter()
            .filter(|o| **o == Outcome::Accepted)
            .count()
    }

    /// Waits (bounded) until `count` publications more than now were accepted.
    pub async fn wait_accepted(&self, more: usize, limit: Duration) {
        let target = self.accepted() + more;
        self.wait_for(limit, |outcomes| {
            outcomes.iter().filter(|o| **o == Outcome::Accepted).count() >= target
        })
        .await;
    }

    /// Waits (bounded) until one attempt made from now on is not accepted.
    pub async fn wait_not_accepted(&self, limit: Duration) {
        let from = self.outcomes().len();
        self.wait_for(limit, |outcomes| {
            outcomes[from..].iter().any(|o| *o != Outcome::Accepted)
        })
        .await;
    }

    async fn wait_for(&self, limit: Duration, done: impl Fn(&[Outcome]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if done(&self.outcomes()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "publisher: not there within {limit:?}; outcomes: {:?}",
                self.outcomes()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops after the attempt in progress and returns every outcome (`k` = index + 1).
    pub async fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.await.expect("publisher task");
        }
        self.outcomes()
    }

    /// Stops and asserts that every attempt was accepted; returns the last `n`.
    pub async fn stop_all_accepted(self) -> u64 {
        let outcomes = self.stop().await;
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Accepted),
            "{outcomes:?}"
        );
        outcomes.len() as u64
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads frames until the broadcast `{"n": last}` arrived, returning every `n` seen in order
/// and the position of the last one.
pub async fn read_until(ws: &mut Ws, last: u64) -> (Vec<u64>, Value) {
    let mut seen = Vec::new();
    let mut position = Value::Null;
    while seen.last() != Some(&last) {
        let frame = ws.recv_json().await;
        if let Some(n) = frame["message"]["n"].as_u64() {
            seen.push(n);
            position = serde_json::json!({"epoch": frame["epoch"], "offset": frame["offset"]});
        }
    }
    (seen, position)
}

/// The next frame that is not a ping (nor another typed message), if one comes in time.
pub async fn next_broadcast(ws: &mut Ws, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match ws.next_frame(left).await {
            Some(Frame::Json(value, _)) if value.get("type").is_none() => return Some(value),
            Some(Frame::Json(..)) => continue,
            _ => return None,
        }
    }
}

/// How long a [`Publisher`] may take for a few dozen publications.
pub const PUBLISHING: Duration = Duration::from_secs(10);

/// Publishes probes through `publisher` until one reaches `ws` (the node of `ws` subscribes to
/// the stream's pub/sub channel in the background), then returns the probe's number.
pub async fn publish_until_delivered(publisher: &Server, stream: &str, ws: &mut Ws) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in 1.. {
        publisher
            .publish(stream, &serde_json::json!({"probe": n}).to_string())
            .await;
        if let Some(Frame::Json(frame, _)) = ws.next_frame(Duration::from_millis(300)).await {
            if frame["message"]["probe"].is_number() {
                return n;
            }
        }
        assert!(Instant::now() < deadline, "no probe reached the client");
    }
    unreachable!()
}

/// `{"command":"history"}` for one stream of `identifier`, from `position`.
pub async fn request_history(ws: &mut Ws, identifier: &str, stream: &str, position: &Value) {
    let history = serde_json::json!({"streams": {stream: position}});
    ws.send_json(
        &serde_json::json!({"command": "history", "identifier": identifier, "history": history}),
    )
    .await;
}

/// Waits until the broker (`nats` at 127.0.0.1:4222 or `redis` at 127.0.0.1:6379; others are
/// not waited for) holds the session of each sid with `stream` among its subscriptions
/// (sessions are written in the background after each subscribe).
pub async fn wait_sessions_saved(broker: &str, sids: &[&str], stream: &str) {
    if !matches!(broker, "nats" | "redis") {
        return;
    }
    let sessions = match broker {
        "nats" => {
            let jetstream = async_nats::jetstream::new(
                async_nats::connect("nats://127.0.0.1:4222").await.unwrap(),
            );
            Some(
                jetstream
                    .get_stream("KV__anycable_")
                    .await
                    .expect("the sessions bucket of the NATS broker"),
            )
        }
        _ => None,
    };
    let deadline = Instant::now() + RECV_TIMEOUT;
    for sid in sids {
        loop {
            let saved = match &sessions {
                Some(bucket) => bucket
                    .get_last_raw_message_by_subject(&format!("$KV._anycable_.{sid}"))
                    .await
                    .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
                    .unwrap_or_default(),
                None => redis_cli(6379, &["GET", &format!("_ac_session:{sid}")]).await,
            };
            if saved.contains(stream) {
                break;
            }
            assert!(Instant::now() < deadline, "session {sid} not saved");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads replayed messages up to `confirm_history`; returns each counted message's `n` and
/// offset (probes and markers are skipped).
pub async fn read_history(ws: &mut Ws) -> Vec<(u64, u64)> {
    let mut replayed = Vec::new();
    loop {
        let frame = ws.recv_json().await;
        match frame["type"].as_str() {
            Some("confirm_history") => return replayed,
            Some(other) => panic!(
                "{other} while replaying: {frame}; frames so far: {:?}",
                ws.log
            ),
            None => {
                if let Some(n) = frame["message"]["n"].as_u64() {
                    replayed.push((n, frame["offset"].as_u64().expect("an offset")));
                }
            }
        }
    }
}

/// A client subscribed to `stream` on `first` reads messages 1–10 of a publisher on
/// `publishing`, drops off, misses about 30, and resumes its session on `second` while
/// publishing goes on; after asking for the history from its last position it must get
/// 11, 12, ... up to the last publication, each once, in order.
pub async fn resume_while_publishing(
    broker: &str,
    first: &Server,
    publishing: &Server,
    second: &Server,
    stream: &str,
) {
    let identifier = public_id(stream);
    let (mut ws, sid) = ext_client(first, "").await;
    ws.subscribe_ok(&identifier).await;
    publish_until_delivered(publishing, stream, &mut ws).await;
    wait_sessions_saved(broker, &[&sid], stream).await;
    let publisher = Publisher::start(publishing, stream);
    let (seen_before, position) = read_until(&mut ws, 10).await;
    assert_contiguous(&seen_before, 1);
    drop(ws);
    publisher.wait_accepted(30, PUBLISHING).await;
    let mut ws = restore(second, &sid, &[&identifier]).await;
    request_history(&mut ws, &identifier, stream, &position).await;
    publisher.wait_accepted(20, PUBLISHING).await;
    let last = publisher.stop_all_accepted().await;
    let (seen_after, _) = read_until(&mut ws, last).await;
    assert_contiguous(&seen_after, 11);
}

pub fn assert_contiguous(seen: &[u64], from: u64) {
    let expected: Vec<u64> = (from..from + seen.len() as u64).collect();
    assert_eq!(
        seen, expected,
        "messages must arrive once each, in order, without gaps"
    );
}

// ---------------------------------------------------------------------------------------------
// A private certificate authority
// ---------------------------------------------------------------------------------------------

/// A CA of a test's own and a server certificate it signed (for `localhost` and 127.0.0.1),
/// in PEM.
pub struct PrivateCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl PrivateCa {
    pub fn new() -> PrivateCa {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "anycable-rs test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        PrivateCa {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

//! Free ports, temporary directories, the binary run to its exit and its captured output.

use super::*;
use std::io::Read;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

// Process output capture.

/// Captured stdout and stderr of a child process.
#[derive(Clone, Default)]
pub struct Output {
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Output {
    pub fn capture(child: &mut Child) -> Output {
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

    pub fn dump(&self, what: &str) {
        eprintln!(
            "----- {what} stdout -----\n{}\n----- {what} stderr -----\n{}\n-------------------------",
            self.stdout(),
            self.stderr()
        );
    }
}

pub fn spawn_reader(mut source: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
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

pub fn base_command(dir: &Path) -> Command {
    command_for(BIN, dir)
}

/// Like [`base_command`] for another program (e.g. `chroot` running a copy of the server).
pub fn command_for(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
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

pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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

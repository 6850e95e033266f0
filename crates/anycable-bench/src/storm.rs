//! The storm scenario: a node died and all its clients reconnect to this one at once. Every
//! client is authenticated by `Connect` on a backend of fixed capacity (`--backend-capacity`
//! calls at once, `--backend-latency-ms` each; calls beyond it are refused with
//! `RESOURCE_EXHAUSTED`).
//!
//! Each client behaves like a browser client: it opens a WebSocket and waits for its welcome;
//! when the server says `disconnect` (e.g. `server_busy`), closes without a welcome, or nothing
//! comes within `--client-timeout` (Action Cable's client gives up on a silent connection
//! after 6 s), it closes and tries again after an exponential backoff with jitter
//! (`min(5 s, 0.5 s × 2^(n-1))`, times 0.5 to 1.5). The scenario reports how long until every
//! client was welcomed, what the clients went through, what the backend saw (calls, peak
//! concurrency, refusals), and the server's RPC counters from its `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::client::{connect, Message, Receive, Socket};
use crate::fixture::CLIENT_TOKEN;
use crate::options::Options;
use crate::progress::Progress;
use crate::report::Report;
use crate::target::Target;

/// The server's `/metrics` path in this scenario (see `main.rs`).
pub const METRICS_PATH: &str = "/metrics";
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What the clients went through, all attempts together.
#[derive(Default)]
struct Tally {
    retries: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
    /// Why the first attempt that failed otherwise failed.
    first_failure: std::sync::OnceLock<String>,
}

/// Why an attempt got no welcome.
enum Refusal {
    /// `disconnect` with reason `server_busy`.
    Busy,
    Other(String),
}

pub async fn storm(
    target: &Target,
    options: &Options,
    progress: &Progress,
) -> Result<Report, String> {
    let backend = target
        .backend
        .as_ref()
        .ok_or("storm needs its RPC backend")?;
    let path = format!("/cable?{CLIENT_TOKEN}");
    let tally = Arc::new(Tally::default());
    let (go, start) = watch::channel(false);
    let give_up = options.storm_limit;
    let mut handles = Vec::with_capacity(options.connections);
    for index in 0..options.connections {
        let (path, tally, mut start) = (path.clone(), tally.clone(), start.clone());
        let (addr, timeout) = (target.addr, options.client_timeout);
        handles.push(tokio::spawn(async move {
            let _ = start.wait_for(|go| *go).await;
            let began = Instant::now();
            let client = reconnect(addr, &path, index as u64, timeout, &tally);
            let welcomed = tokio::time::timeout(give_up, client).await.ok()?;
            Some((began.elapsed(), welcomed))
        }));
    }
    progress.phase(format_args!(
        "storm: {} clients reconnect at once",
        options.connections
    ));
    let started = Instant::now();
    go.send_replace(true);
    let mut times = Vec::with_capacity(handles.len());
    let mut sockets = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Some((time, socket)) = handle.await.map_err(|e| e.to_string())? {
            times.push(time);
            sockets.push(socket);
        }
    }
    let wall = started.elapsed();
    times.sort_unstable();
    let at = |q: usize| times.get((times.len() * q / 100).min(times.len().saturating_sub(1)));
    let seconds = |d: Option<&Duration>| d.map_or(f64::NAN, Duration::as_secs_f64);
    let server = server_metrics(target.addr).await.unwrap_or_default();
    let mut report = Report::new("storm");
    report.add("clients", options.connections);
    report.add("welcomed", times.len());
    report.add("all welcomed after (s)", seconds(times.last()));
    report.add("median welcome after (s)", seconds(at(50)));
    report.add("p99 welcome after (s)", seconds(at(99)));
    report.add("wall (s)", wall.as_secs_f64());
    report.add("client retries", tally.retries.load(Ordering::Relaxed));
    report.add("client timeouts", tally.timeouts.load(Ordering::Relaxed));
    report.add(
        "server_busy disconnects",
        tally.busy.load(Ordering::Relaxed),
    );
    report.add(
        "other failed attempts",
        tally.failed.load(Ordering::Relaxed),
    );
    report.add("backend Connect calls", backend.calls().connect);
    if let Some(capacity) = backend.capacity() {
        report.add("backend peak concurrency", capacity.peak);
        report.add("backend refusals (exhausted)", capacity.exhausted);
    }
    for name in [
        "rpc_call_total",
        "rpc_retries_total",
        "rpc_timeout_total",
        "rpc_connect_deferred_total",
        "rpc_canceled_total",
        "rpc_capacity_num",
    ] {
        if let Some(value) = metric(&server, name) {
            report.add(&format!("server {name}"), value);
        }
    }
    drop(sockets);
    if times.len() < options.connections {
        report.print_table();
        return Err(format!(
            "{} of {} clients were never welcomed within {give_up:?}",
            options.connections - times.len(),
            options.connections
        ));
    }
    Ok(report)
}

/// One client: attempts until welcomed (the socket is kept open).
async fn reconnect(
    addr: SocketAddr,
    path: &str,
    seed: u64,
    timeout: Duration,
    tally: &Tally,
) -> Socket {
    let mut jitter = Jitter::new(seed);
    let mut attempt = 0;
    loop {
        if attempt > 0 {
            tally.retries.fetch_add(1, Ordering::Relaxed);
            let delay = BACKOFF_BASE
                .saturating_mul(1 << (attempt - 1).min(10))
                .min(BACKOFF_CAP);
            tokio::time::sleep(delay.mul_f64(jitter.next())).await;
        }
        attempt += 1;
        let once = async {
            let mut socket = connect(addr, path).await.map_err(Refusal::Other)?;
            welcome(&mut socket).await.map(|()| socket)
        };
        match tokio::time::timeout(timeout, once).await {
            Ok(Ok(socket)) => return socket,
            Ok(Err(Refusal::Busy)) => tally.busy.fetch_add(1, Ordering::Relaxed),
            Ok(Err(Refusal::Other(why))) => {
                let _ = tally.first_failure.set(why);
                tally.failed.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => tally.timeouts.fetch_add(1, Ordering::Relaxed),
        };
    }
}

async fn welcome(socket: &mut Socket) -> Result<(), Refusal> {
    loop {
        while let Some(message) = socket.next_message().map_err(Refusal::Other)? {
            match message {
                Message::Text(text) if contains(text, br#""type":"welcome""#) => return Ok(()),
                Message::Text(text) if contains(text, br#""reason":"server_busy""#) => {
                    return Err(Refusal::Busy)
                }
                Message::Text(text) if contains(text, br#""type":"disconnect""#) => {
                    return Err(Refusal::Other(String::from_utf8_lossy(text).into()))
                }
                Message::Closed => return Err(Refusal::Other("closed".into())),
                Message::Text(_) | Message::Other => {}
            }
        }
        if !socket.receive().await.map_err(Refusal::Other)? {
            return Err(Refusal::Other("closed".into()));
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    crate::buffer::find(haystack, needle).is_some()
}

/// 0.5 to 1.5, from a per-client xorshift generator: enough to spread retries.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        Jitter(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        0.5 + (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The server's Prometheus text.
async fn server_metrics(addr: SocketAddr) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {METRICS_PATH} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(body)
}

/// `anycable_go_<name>`'s value in the Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    let prefix = format!("anycable_go_{name}");
    text.lines()
        .find(|l| l.starts_with(&prefix) && l[prefix.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_one_and_a_half() {
        let mut jitter = Jitter::new(7);
        let draws: Vec<f64> = (0..1000).map(|_| jitter.next()).collect();
        assert!(draws.iter().all(|d| (0.5..1.5).contains(d)));
        assert!(draws.iter().any(|d| *d < 0.7) && draws.iter().any(|d| *d > 1.3));
    }

    #[test]
    fn metric_reads_plain_and_tagged_lines() {
        let text = "# HELP x\nanycable_go_rpc_call_total 12\nanycable_go_rpc_call_total_x 3\n\
                    anycable_go_rpc_capacity_num{node=\"a\"} 40\n";
        assert_eq!(metric(text, "rpc_call_total"), Some(12));
        assert_eq!(metric(text, "rpc_capacity_num"), Some(40));
        assert_eq!(metric(text, "rpc_error_total"), None);
    }
}

//! The soak's periodic figures and its verdict.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::shared::Shared;
use crate::procfs::rss_kib;
use crate::target::Target;

/// Counter totals at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub connects: u64,
    pub subscribes: u64,
    pub unsubscribes: u64,
    pub published: u64,
    pub deliveries: u64,
    pub losses: u64,
    pub duplicates: u64,
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub rss_kib: u64,
    /// Entries of /proc/<pid>/fd.
    pub fds: u64,
    /// Healthy and stalled connections the clients hold open.
    pub clients: u64,
    pub totals: Totals,
    /// The server's `disconnected_slow_clients_total` (`too_slow`) and
    /// `timeout_server_msg_total` (writes past `--ws_write_timeout`).
    pub slow_clients: Option<(u64, u64)>,
}

impl Sample {
    pub async fn take(target: &Target, shared: &Shared, at: Duration) -> Result<Sample, String> {
        let c = &shared.counters;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let fds = std::fs::read_dir(format!("/proc/{}/fd", target.pid))
            .map_err(|e| format!("cannot list the server's descriptors: {e}"))?
            .count() as u64;
        let clients =
            c.live.load(Ordering::Relaxed).max(0) + c.stalled.load(Ordering::Relaxed).max(0);
        Ok(Sample {
            at,
            rss_kib: rss_kib(target.pid).ok_or("cannot read the server's RSS")?,
            fds,
            clients: clients as u64,
            totals: Totals {
                connects: load(&c.connects),
                subscribes: load(&c.subscribes),
                unsubscribes: load(&c.unsubscribes),
                published: load(&c.published),
                deliveries: load(&c.deliveries),
                losses: load(&c.losses),
                duplicates: load(&c.duplicates),
                errors: load(&c.errors),
            },
            slow_clients: slow_clients(target).await,
        })
    }

    /// Descriptors that are not a client connection: listeners, Redis, the runtime's own.
    pub fn other_fds(&self) -> i64 {
        self.fds as i64 - self.clients as i64
    }

    /// One line with this period's figures (differences from `previous`).
    pub fn print(&self, previous: Option<&Sample>, error: Option<String>) {
        let before = previous.map(|p| p.totals).unwrap_or_default();
        let (now, was) = (self.totals, before);
        let minutes = self.at.as_secs() / 60;
        let seconds = self.at.as_secs() % 60;
        let slow = slow(self.slow_clients);
        println!(
            "[{minutes:>3}:{seconds:02}] rss {:.1} MiB, fds {} ({} client connections), \
             connects +{}, subscribes +{}, unsubscribes +{}, published +{}, deliveries +{}, \
             losses +{}, duplicates +{}, errors +{}, slow clients dropped so far: {slow}{}",
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.clients,
            now.connects - was.connects,
            now.subscribes - was.subscribes,
            now.unsubscribes - was.unsubscribes,
            now.published - was.published,
            now.deliveries - was.deliveries,
            now.losses - was.losses,
            now.duplicates - was.duplicates,
            now.errors - was.errors,
            error.map_or(String::new(), |e| format!("; last error: {e}"))
        );
    }
}

/// How the slow clients were dropped, for people.
fn slow(counts: Option<(u64, u64)>) -> String {
    counts.map_or("?".into(), |(too_slow, timeouts)| {
        format!("{too_slow} too_slow, {timeouts} write timeouts")
    })
}

/// `disconnected_slow_clients_total` and `timeout_server_msg_total` from the server's
/// Prometheus endpoint.
async fn slow_clients(target: &Target) -> Option<(u64, u64)> {
    let scrape = async {
        let mut stream = TcpStream::connect(target.addr).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        let value = |name: &str| {
            body.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
        };
        Some((
            value("anycable_go_disconnected_slow_clients_total")?,
            value("anycable_go_timeout_server_msg_total")?,
        ))
    };
    tokio::time::timeout(Duration::from_secs(5), scrape)
        .await
        .ok()
        .flatten()
}

/// The sample growth is measured from: the end of the first third of the run (warmed up,
/// every client connected).
pub fn baseline(samples: &[Sample]) -> &Sample {
    &samples[(samples.len() / 3).max(1).min(samples.len() - 1)]
}

/// The soak's outcome.
pub struct Verdict {
    failures: Vec<String>,
    summary: Vec<String>,
}

impl Verdict {
    /// Judges the periodic `samples` and the `last` one (taken after every client left);
    /// `connections` is how many client connections the soak holds at a time.
    pub fn of(samples: &[Sample], last: &Sample, connections: usize) -> Verdict {
        let mut failures = Vec::new();
        let mut summary = Vec::new();
        let totals = last.totals;
        summary.push(format!(
            "{} connections made, {} subscriptions, {} publications, {} deliveries, {} losses, \
             {} duplicates, {} failed client lives; slow clients dropped: {}",
            totals.connects,
            totals.subscribes,
            totals.published,
            totals.deliveries,
            totals.losses,
            totals.duplicates,
            totals.errors,
            slow(last.slow_clients)
        ));
        if totals.losses > 0 || totals.duplicates > 0 {
            failures.push(format!(
                "healthy clients lost {} and got {} duplicate publications",
                totals.losses, totals.duplicates
            ));
        }
        if totals.deliveries == 0 {
            failures.push("nothing was delivered".into());
        }
        // Under churn on a loaded machine a handshake may time out now and then.
        if totals.errors * 200 > totals.connects.max(1) {
            failures.push(format!(
                "{} of {} client lives failed (more than 0.5%)",
                totals.errors, totals.connects
            ));
        }
        let baseline = baseline(samples);
        let end = &samples[samples.len() - 1];
        let allowed_rss = baseline.rss_kib / 10 + 16 * 1024;
        summary.push(format!(
            "RSS {:.1} MiB at {:?}, {:.1} MiB at {:?} (allowed growth {:.1} MiB)",
            baseline.rss_kib as f64 / 1024.0,
            baseline.at,
            end.rss_kib as f64 / 1024.0,
            end.at,
            allowed_rss as f64 / 1024.0
        ));
        if end.rss_kib > baseline.rss_kib + allowed_rss {
            failures.push("the server's RSS grew beyond noise".into());
        }
        // Connections come and go during a sample: allow for those in flight.
        let allowed_fds = 64 + connections as i64 / 100;
        summary.push(format!(
            "descriptors besides client connections: {} at {:?}, {} at {:?}, {} after every \
             client left (allowed growth {allowed_fds})",
            baseline.other_fds(),
            baseline.at,
            end.other_fds(),
            end.at,
            last.fds
        ));
        if end.other_fds() > baseline.other_fds() + allowed_fds
            || last.fds as i64 > baseline.other_fds() + allowed_fds
        {
            failures.push("the server's open descriptors grew beyond its connections".into());
        }
        Verdict { failures, summary }
    }

    pub fn print(&self) {
        for line in &self.summary {
            println!("soak: {line}");
        }
    }

    pub fn result(&self) -> Result<(), String> {
        if self.failures.is_empty() {
            println!("soak: passed");
            Ok(())
        } else {
            Err(format!("soak failed: {}", self.failures.join("; ")))
        }
    }
}

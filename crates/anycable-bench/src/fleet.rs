//! A fleet of subscribed clients that record what they receive, over WebSocket or SSE.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anycable_rs::identity::issue_token;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::buffer::find;
use crate::client::{connect, now_nanos, parse_stamp, subscribe, Message, Receive};
use crate::fixture::{CHANNEL, CLIENT_TOKEN, SECRET, STREAM};
use crate::options::{Auth, Options, Transport};
use crate::sse;
use crate::target::Target;

/// What one client saw, indexed by message sequence number.
struct Log {
    /// Delivery latency in microseconds, `u32::MAX` when not received.
    latency_us: Vec<u32>,
    duplicates: u64,
}

struct Member {
    log: Arc<Mutex<Log>>,
    reader: JoinHandle<()>,
}

pub struct Fleet {
    members: Vec<Member>,
    delivered: Arc<AtomicU64>,
    /// Server pings received by all members.
    pings: Arc<AtomicU64>,
}

/// Delivery figures over a range of sequence numbers.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub deliveries: u64,
    pub losses: u64,
    pub duplicates: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Per message, from its publication to its last delivery (messages every member got).
    pub completion_p50_ms: f64,
    pub completion_p99_ms: f64,
    pub completion_max_ms: f64,
}

/// Delivery figures from each member's latencies (microseconds, `u32::MAX` for a miss) over the
/// same `messages` sequence numbers, with its duplicate count.
fn summarize<'a>(logs: impl Iterator<Item = (&'a [u32], u64)>, messages: usize) -> DeliveryStats {
    let mut latencies = Vec::new();
    // The slowest delivery of each message; `u32::MAX` once a member missed it.
    let mut completions = vec![0u32; messages];
    let mut stats = DeliveryStats::default();
    for (log, duplicates) in logs {
        stats.duplicates += duplicates;
        for (completion, &latency) in completions.iter_mut().zip(log) {
            *completion = (*completion).max(latency);
            if latency == u32::MAX {
                stats.losses += 1;
            } else {
                latencies.push(latency);
            }
        }
    }
    latencies.sort_unstable();
    stats.deliveries = latencies.len() as u64;
    stats.p50_ms = percentile_ms(&latencies, 0.50);
    stats.p99_ms = percentile_ms(&latencies, 0.99);
    stats.max_ms = percentile_ms(&latencies, 1.0);
    completions.retain(|&c| c != u32::MAX);
    completions.sort_unstable();
    stats.completion_p50_ms = percentile_ms(&completions, 0.50);
    stats.completion_p99_ms = percentile_ms(&completions, 0.99);
    stats.completion_max_ms = percentile_ms(&completions, 1.0);
    stats
}

/// The `q` quantile of sorted microsecond figures, in milliseconds (0 when there are none).
fn percentile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

/// Reads until the connection closes, recording each broadcast's latency. Messages that
/// arrived in one read share one clock reading and one lock of the log.
async fn record(
    mut client: impl Receive,
    log: Arc<Mutex<Log>>,
    delivered: Arc<AtomicU64>,
    pings: Arc<AtomicU64>,
) {
    while let Ok(true) = client.receive().await {
        let now = now_nanos();
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = 0;
        loop {
            let text = match client.next_message() {
                Ok(Some(Message::Text(text))) => text,
                Ok(Some(Message::Other)) => continue,
                Ok(None) => break,
                Ok(Some(Message::Closed)) | Err(_) => return,
            };
            let Some(stamp) = parse_stamp(text) else {
                if find(text, b"\"type\":\"ping\"").is_some() {
                    pings.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            };
            let latency = now.saturating_sub(stamp.sent_nanos) / 1000;
            if let Some(slot) = log.latency_us.get_mut(stamp.seq as usize) {
                if *slot == u32::MAX {
                    *slot = latency.min(u32::MAX as u64 - 1) as u32;
                    fresh += 1;
                } else {
                    log.duplicates += 1;
                }
            }
        }
        delivered.fetch_add(fresh, Ordering::Relaxed);
    }
}

/// The WebSocket path and the channel identifier of a client authenticated as `auth`: the
/// public stream, or the RPC backend's channel (which streams from the same stream).
fn login(auth: Auth) -> (String, String) {
    let public = serde_json::json!({"channel": "$pubsub", "stream_name": STREAM}).to_string();
    match auth {
        Auth::None | Auth::Public => ("/cable".into(), public),
        Auth::Jwt => {
            let token = issue_token(SECRET, r#"{"user":"bench"}"#, None);
            (format!("/cable?jid={token}"), public)
        }
        Auth::Rpc => (format!("/cable?{CLIENT_TOKEN}"), CHANNEL.into()),
    }
}

impl Fleet {
    /// Connects `options.connections` clients (at most `options.concurrency` handshakes at a
    /// time), authenticated as `options.auth` says, and subscribes each to [`STREAM`].
    /// `capacity` bounds the sequence numbers that will be published.
    pub async fn start(
        target: &Target,
        options: &Options,
        capacity: usize,
    ) -> Result<Fleet, String> {
        let (count, transport) = (options.connections, options.transport);
        let delivered = Arc::new(AtomicU64::new(0));
        let pings = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let (cable_path, identifier) = login(options.auth);
        let events_path = format!("/events?stream={STREAM}");
        let mut pending = Vec::with_capacity(count);
        for _ in 0..count {
            let gate = gate.clone();
            let (addr, identifier, events_path) =
                (target.addr, identifier.clone(), events_path.clone());
            let cable_path = cable_path.clone();
            let delivered = delivered.clone();
            let pings = pings.clone();
            pending.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let log = Arc::new(Mutex::new(Log {
                    latency_us: vec![u32::MAX; capacity],
                    duplicates: 0,
                }));
                let reader_log = log.clone();
                let reader = match transport {
                    Transport::Ws => {
                        let mut ws = connect(addr, &cable_path).await?;
                        subscribe(&mut ws, &identifier).await?;
                        tokio::spawn(record(ws, reader_log, delivered, pings))
                    }
                    Transport::Sse => {
                        let events = sse::subscribe(addr, &events_path).await?;
                        tokio::spawn(record(events, reader_log, delivered, pings))
                    }
                };
                Ok::<Member, String>(Member { log, reader })
            }));
        }
        let mut members = Vec::with_capacity(count);
        for handle in pending {
            members.push(handle.await.map_err(|e| e.to_string())??);
        }
        Ok(Fleet {
            members,
            delivered,
            pings,
        })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Waits until `total` deliveries have been recorded since the fleet started, or `limit`.
    pub async fn wait_for(&self, total: u64, limit: Duration) -> bool {
        let started = Instant::now();
        while self.delivered.load(Ordering::Relaxed) < total {
            if started.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub fn stats(&self, seqs: std::ops::Range<usize>) -> DeliveryStats {
        let logs: Vec<_> = self
            .members
            .iter()
            .map(|member| member.log.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        summarize(
            logs.iter()
                .map(|log| (&log.latency_us[seqs.clone()], log.duplicates)),
            seqs.len(),
        )
    }

    /// Members whose connection is still open.
    pub fn open(&self) -> usize {
        self.members
            .iter()
            .filter(|m| !m.reader.is_finished())
            .count()
    }

    /// Server pings received so far by all members.
    pub fn pings(&self) -> u64 {
        self.pings.load(Ordering::Relaxed)
    }

    pub fn close(self) {
        for member in self.members {
            member.reader.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_the_slowest_delivery_of_each_fully_delivered_message() {
        const MISS: u32 = u32::MAX;
        // Two members, three messages; the second member missed message 1.
        let a = [1_000, 2_000, 3_000];
        let b = [4_000, MISS, 1_000];
        let stats = summarize([(&a[..], 0), (&b[..], 2)].into_iter(), 3);
        assert_eq!(stats.deliveries, 5);
        assert_eq!(stats.losses, 1);
        assert_eq!(stats.duplicates, 2);
        assert_eq!(stats.max_ms, 4.0);
        // Messages 0 and 2 completed, at 4 ms and 3 ms; message 1 never did.
        assert_eq!(stats.completion_p50_ms, 3.0);
        assert_eq!(stats.completion_max_ms, 4.0);
    }
}

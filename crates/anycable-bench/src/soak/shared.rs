//! What the soak's clients, publishers and reporter share: the streams with their publication
//! counters, the counters of what happened, and the stop signal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::buffer::find;

/// Index of a stream: `0..ordinary` are the ordinary streams, `ordinary` is the firehose.
pub type StreamId = usize;

/// The prefix of every stream name: `soak-<index>`.
const PREFIX: &[u8] = b"soak-";

pub struct Stream {
    pub name: String,
    pub identifier: String,
    /// The last publication the publisher started to send.
    pub sent: AtomicU64,
    /// The last publication the server acknowledged (`201`).
    pub acked: AtomicU64,
}

/// Totals since the start; the reporter takes differences.
#[derive(Default)]
pub struct Counters {
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    pub subscribes: AtomicU64,
    pub unsubscribes: AtomicU64,
    pub published: AtomicU64,
    pub deliveries: AtomicU64,
    pub losses: AtomicU64,
    pub duplicates: AtomicU64,
    /// Lives that failed (connect, handshake, confirmation, server closed).
    pub errors: AtomicU64,
    /// Healthy connections open now.
    pub live: AtomicI64,
    /// Stalled connections open now (as far as the client knows).
    pub stalled: AtomicI64,
}

pub struct Shared {
    pub addr: SocketAddr,
    pub streams: Vec<Stream>,
    /// A client's life is uniform in `[lifetime / 2, lifetime * 3 / 2)`.
    pub lifetime: Duration,
    pub counters: Counters,
    stop: AtomicBool,
    stopped: Notify,
    last_error: Mutex<Option<String>>,
    /// Losses and duplicates described so far (only the first few are printed).
    losses_shown: AtomicU64,
}

/// How many losses or duplicates are described on stderr.
const LOSSES_SHOWN: u64 = 20;

impl Shared {
    pub fn new(addr: SocketAddr, ordinary: usize, lifetime: Duration) -> Shared {
        let streams = (0..=ordinary)
            .map(|index| {
                let name = format!("soak-{index}");
                Stream {
                    identifier: serde_json::json!({"channel": "$pubsub", "stream_name": name})
                        .to_string(),
                    name,
                    sent: AtomicU64::new(0),
                    acked: AtomicU64::new(0),
                }
            })
            .collect();
        Shared {
            addr,
            streams,
            lifetime,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            stopped: Notify::new(),
            last_error: Mutex::new(None),
            losses_shown: AtomicU64::new(0),
        }
    }

    pub fn ordinary_streams(&self) -> usize {
        self.streams.len() - 1
    }

    pub fn firehose(&self) -> StreamId {
        self.streams.len() - 1
    }

    pub fn identifier(&self, stream: StreamId) -> &str {
        &self.streams[stream].identifier
    }

    pub fn sent(&self, stream: StreamId) -> u64 {
        self.streams[stream].sent.load(Ordering::Acquire)
    }

    pub fn acked(&self, stream: StreamId) -> u64 {
        self.streams[stream].acked.load(Ordering::Acquire)
    }

    /// The stream a confirmation names.
    pub fn stream_of(&self, text: &[u8]) -> Option<StreamId> {
        let at = find(text, PREFIX)? + PREFIX.len();
        let index = number(&text[at..])? as usize;
        (index < self.streams.len()).then_some(index)
    }

    /// The stream and number of a publication (`{"s":<stream>,"i":<number>,...}`).
    pub fn publication_of(&self, text: &[u8]) -> Option<(StreamId, u64)> {
        let stream = number(&text[find(text, b"\"s\":")? + 4..])? as usize;
        let seq = number(&text[find(text, b"\"i\":")? + 4..])?;
        (stream < self.streams.len()).then_some((stream, seq))
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.stopped.notify_waiters();
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Resolves once [`Shared::stop`] was called (at once if it was already).
    pub async fn stopped(&self) {
        let notified = self.stopped.notified();
        if !self.stopping() {
            notified.await;
        }
    }

    pub fn note_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// Describes a loss or a duplicate on stderr (the first few of them).
    pub fn note_loss(&self, what: String) {
        if self.losses_shown.fetch_add(1, Ordering::Relaxed) < LOSSES_SHOWN {
            eprintln!("soak: {what}");
        }
    }

    pub fn take_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The decimal number at the start of `digits`.
fn number(digits: &[u8]) -> Option<u64> {
    let end = digits
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_and_publications_are_recognised() {
        let shared = Shared::new("127.0.0.1:1".parse().unwrap(), 3, Duration::from_secs(1));
        let confirm = br#"{"identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"soak-2\"}","type":"confirm_subscription"}"#;
        assert_eq!(shared.stream_of(confirm), Some(2));
        let publication = br#"{"identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"soak-3\"}","message":{"s":3,"i":117,"t":5,"p":"xx"}}"#;
        assert_eq!(shared.publication_of(publication), Some((3, 117)));
        assert_eq!(
            shared.publication_of(br#"{"type":"ping","message":1}"#),
            None
        );
        // The firehose is the last stream; nothing beyond it.
        assert_eq!(shared.firehose(), 3);
        assert_eq!(shared.stream_of(b"soak-4"), None);
    }
}

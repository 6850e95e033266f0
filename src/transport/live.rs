//! The outboxes of every open WebSocket and SSE connection, so that shutdown reaches each
//! connection in one pass, or, with `--shutdown_slowdrain`, one after the other across the
//! shutdown window (see [`Drain`]).
//!
//! The alternative, every connection task waiting on the shared cancellation token, costs two
//! locks shared by all connections (the token's and its `Notify`'s) each time a task wakes up
//! to write, which is once per delivered message under fan-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AppConfig;
use crate::protocol::DisconnectReason;
use crate::session::Outbox;

const SHARDS: usize = 16;

/// With slow drain, consecutive disconnects are never further apart than this, so a node with
/// few clients does not keep them for the whole window (as in AnyCable-Go PRO).
const MAX_DRAIN_STEP: Duration = Duration::from_millis(500);

/// The part of the shutdown timeout kept after a slow drain for what follows it: the last
/// clients' `Disconnect` calls, then the broadcasters, brokers and pub/sub.
fn drain_reserve(timeout: Duration) -> Duration {
    (timeout / 5).min(Duration::from_secs(5))
}

/// How open connections are told to close on shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every connection at once.
    AtOnce,
    /// `--shutdown_slowdrain`: one after the other, evenly across this window, so that the
    /// clients come back to the other nodes (and their backend) at a rate they can take.
    Slowly(Duration),
}

impl Drain {
    /// The window is what the shutdown timeout leaves after `--shutdown_delay` and a reserve
    /// for the steps that follow (see [`drain_reserve`]).
    pub fn from_config(app: &AppConfig) -> Drain {
        let timeout = Duration::from_secs(app.shutdown_timeout_secs);
        let window = timeout
            .saturating_sub(Duration::from_secs(app.shutdown_delay_secs))
            .saturating_sub(drain_reserve(timeout));
        if app.shutdown_slowdrain && !window.is_zero() {
            Drain::Slowly(window)
        } else {
            Drain::AtOnce
        }
    }
}

#[derive(Default)]
pub struct LiveOutboxes {
    shards: [Mutex<HashMap<u64, Weak<Outbox>>>; SHARDS],
    next_id: AtomicU64,
    /// Set once shutdown started: later registrations are told at once.
    shutting_down: AtomicBool,
}

/// Keeps an outbox listed while the connection lives.
pub struct Registration<'a> {
    live: &'a LiveOutboxes,
    id: u64,
}

impl LiveOutboxes {
    /// A list whose outboxes are all told to close once `shutdown` is cancelled, as `drain`
    /// says. The task doing it belongs to `tracker`, so shutdown waits for a slow drain.
    pub fn watch(
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
        drain: Drain,
    ) -> Arc<LiveOutboxes> {
        let live = Arc::new(LiveOutboxes::default());
        let (notify, shutdown) = (live.clone(), shutdown.clone());
        tracker.spawn(async move {
            shutdown.cancelled().await;
            match drain {
                Drain::AtOnce => notify.shut_down(),
                Drain::Slowly(window) => notify.drain(window).await,
            }
        });
        live
    }

    pub fn register(&self, outbox: &Arc<Outbox>) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.shard(id).insert(id, Arc::downgrade(outbox));
        // Checked after inserting, under the same shard lock order as `shut_down`: either this
        // sees the flag, or `shut_down` sees the entry.
        if self.shutting_down.load(Ordering::SeqCst) {
            server_restart(outbox);
        }
        Registration { live: self, id }
    }

    /// Queues the `server_restart` disconnect and the close frame on every open connection.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            let outboxes: Vec<Arc<Outbox>> =
                lock(shard).values().filter_map(Weak::upgrade).collect();
            for outbox in outboxes {
                server_restart(&outbox);
            }
        }
    }

    /// Queues `server_restart` on the connections open now one after the other, evenly over
    /// `window` (at most [`MAX_DRAIN_STEP`] apart). Connections that arrive meanwhile are told
    /// at once, and connections that close by themselves are skipped.
    pub async fn drain(&self, window: Duration) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let outboxes: Vec<Weak<Outbox>> = self
            .shards
            .iter()
            .flat_map(|shard| lock(shard).values().cloned().collect::<Vec<_>>())
            .collect();
        let Some(count) = u32::try_from(outboxes.len()).ok().filter(|&n| n > 0) else {
            return;
        };
        let step = (window / count).min(MAX_DRAIN_STEP);
        tracing::info!(
            context = "node",
            "Draining {count} active connections slowly for {:.1}s",
            (step * count).as_secs_f64()
        );
        let start = Instant::now();
        for (index, outbox) in (0..count).zip(outboxes) {
            // Timers are coarser than a small step: after each wake-up, every connection
            // already due goes at once, so the drain keeps to its window.
            let due = start + step * index;
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if let Some(outbox) = outbox.upgrade() {
                server_restart(&outbox);
            }
        }
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, HashMap<u64, Weak<Outbox>>> {
        lock(&self.shards[id as usize % SHARDS])
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.live.shard(self.id).remove(&self.id);
    }
}

fn server_restart(outbox: &Arc<Outbox>) {
    outbox.disconnect(
        DisconnectReason::ServerRestart,
        true,
        1001,
        "Server restart",
    );
}

/// Each update is one map operation, so a poisoned lock still holds consistent data.
fn lock(shard: &Mutex<HashMap<u64, Weak<Outbox>>>) -> MutexGuard<'_, HashMap<u64, Weak<Outbox>>> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Outgoing;
    use std::collections::VecDeque;

    async fn closes(outbox: &Outbox) -> bool {
        let mut batch = VecDeque::new();
        outbox.take_batch(&mut batch).await;
        batch.back()
            == Some(&Outgoing::Close {
                code: 1001,
                reason: "Server restart",
            })
    }

    #[tokio::test]
    async fn shutdown_reaches_open_and_later_connections_only() {
        let live = LiveOutboxes::default();
        let open = Arc::new(Outbox::new(0));
        let gone = Arc::new(Outbox::new(0));
        let _open = live.register(&open);
        drop(live.register(&gone));
        live.shut_down();
        assert!(closes(&open).await);
        assert!(!gone.overflowed() && gone.disconnect(DisconnectReason::Remote, false, 1000, ""));
        let late = Arc::new(Outbox::new(0));
        let _late = live.register(&late);
        assert!(closes(&late).await);
        let listed: usize = live.shards.iter().map(|s| lock(s).len()).sum();
        assert_eq!(listed, 2);
    }

    #[test]
    fn the_drain_window_keeps_a_reserve_after_the_delay() {
        let app = |slowdrain, timeout, delay| AppConfig {
            shutdown_slowdrain: slowdrain,
            shutdown_timeout_secs: timeout,
            shutdown_delay_secs: delay,
            ..AppConfig::default()
        };
        assert_eq!(Drain::from_config(&app(false, 30, 0)), Drain::AtOnce);
        assert_eq!(
            Drain::from_config(&app(true, 30, 0)),
            Drain::Slowly(Duration::from_secs(25))
        );
        assert_eq!(
            Drain::from_config(&app(true, 10, 3)),
            Drain::Slowly(Duration::from_secs(5))
        );
        assert_eq!(Drain::from_config(&app(true, 2, 2)), Drain::AtOnce);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_drain_spreads_the_disconnects_over_the_window() {
        let live = Arc::new(LiveOutboxes::default());
        let outboxes: Vec<Arc<Outbox>> = (0..4).map(|_| Arc::new(Outbox::new(0))).collect();
        let _listed: Vec<_> = outboxes.iter().map(|o| live.register(o)).collect();
        let started = Instant::now();
        let draining = tokio::spawn({
            let live = live.clone();
            async move { live.drain(Duration::from_secs(1)).await }
        });
        let mut closed_at = Vec::new();
        for outbox in &outboxes {
            // Each outbox is told in turn: its close arrives while the later ones wait.
            assert!(closes(outbox).await);
            closed_at.push(started.elapsed());
        }
        draining.await.unwrap();
        let mut sorted = closed_at.clone();
        sorted.sort();
        assert_eq!(sorted[0], Duration::ZERO);
        assert_eq!(sorted[3], Duration::from_millis(750), "{closed_at:?}");
        let late = Arc::new(Outbox::new(0));
        let _late = live.register(&late);
        assert!(
            closes(&late).await,
            "a connection arriving meanwhile is told at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_drain_of_few_connections_is_short() {
        let live = LiveOutboxes::default();
        let outboxes: Vec<Arc<Outbox>> = (0..3).map(|_| Arc::new(Outbox::new(0))).collect();
        let _listed: Vec<_> = outboxes.iter().map(|o| live.register(o)).collect();
        let started = Instant::now();
        live.drain(Duration::from_secs(60)).await;
        assert_eq!(started.elapsed(), MAX_DRAIN_STEP * 2);
    }
}

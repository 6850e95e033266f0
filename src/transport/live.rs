//! The outboxes of every open WebSocket and SSE connection, so that shutdown reaches each
//! connection in one pass.
//!
//! The alternative, every connection task waiting on the shared cancellation token, costs two
//! locks shared by all connections (the token's and its `Notify`'s) each time a task wakes up
//! to write, which is once per delivered message under fan-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::DisconnectReason;
use crate::session::Outbox;

const SHARDS: usize = 16;

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
    /// A list whose outboxes are all told to close once `shutdown` is cancelled.
    pub fn watch(shutdown: &CancellationToken, tracker: &TaskTracker) -> Arc<LiveOutboxes> {
        let live = Arc::new(LiveOutboxes::default());
        let (notify, shutdown) = (live.clone(), shutdown.clone());
        tracker.spawn(async move {
            shutdown.cancelled().await;
            notify.shut_down();
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
}

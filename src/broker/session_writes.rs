//! Session writes of the distributed brokers. Saving and touching a session never waits (the
//! node calls them from connection tasks); the writes are queued, bounded, and applied in
//! order by one task, so an older snapshot never overwrites a newer one.

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ServiceError, SessionSnapshot};

/// Session writes waiting for the store; beyond this, writes are dropped (and logged).
const QUEUE: usize = 10_000;

/// Where a distributed broker keeps session snapshots.
pub trait SessionStore: Send + Sync + 'static {
    /// Writes the snapshot (JSON) and restarts its time to live.
    fn save<'a>(
        &'a self,
        sid: &'a str,
        snapshot: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;
    /// Restarts the time to live of a saved snapshot, if there is one.
    fn touch<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<(), ServiceError>>;
}

enum Write {
    Save(String, Vec<u8>),
    Touch(String),
}

/// A snapshot read back from a distributed broker: `None` (logged) when it could not be read
/// or decoded, as when there is none.
pub fn decode(
    provider: &'static str,
    read: Result<Option<&[u8]>, &ServiceError>,
) -> Option<SessionSnapshot> {
    let bytes = read
        .inspect_err(|error| {
            tracing::warn!(
                context = "broker",
                provider,
                "cannot read a session: {error}"
            )
        })
        .ok()??;
    serde_json::from_slice(bytes)
        .inspect_err(|error| {
            tracing::warn!(
                context = "broker",
                provider,
                "cannot decode a session: {error}"
            )
        })
        .ok()
}

/// The queue of session writes; its task stops with `shutdown`.
pub struct SessionWrites {
    queue: mpsc::Sender<Write>,
    provider: &'static str,
}

impl SessionWrites {
    pub fn start(
        store: impl SessionStore,
        provider: &'static str,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> SessionWrites {
        let (queue, writes) = mpsc::channel(QUEUE);
        tracker.spawn(apply(store, provider, writes, shutdown.clone()));
        SessionWrites { queue, provider }
    }

    pub fn save(&self, sid: &str, snapshot: &SessionSnapshot) {
        match serde_json::to_vec(snapshot) {
            Ok(bytes) => self.push(Write::Save(sid.to_string(), bytes)),
            Err(error) => tracing::warn!(
                context = "broker",
                provider = self.provider,
                "cannot encode a session: {error}"
            ),
        }
    }

    pub fn touch(&self, sid: &str) {
        self.push(Write::Touch(sid.to_string()));
    }

    fn push(&self, write: Write) {
        if self.queue.try_send(write).is_err() {
            tracing::warn!(
                context = "broker",
                provider = self.provider,
                "session writes are not keeping up: one dropped"
            );
        }
    }
}

async fn apply(
    store: impl SessionStore,
    provider: &'static str,
    mut writes: mpsc::Receiver<Write>,
    shutdown: CancellationToken,
) {
    loop {
        let write = tokio::select! {
            _ = shutdown.cancelled() => break,
            write = writes.recv() => match write {
                Some(write) => write,
                None => break,
            },
        };
        let result = match write {
            Write::Save(sid, bytes) => store.save(&sid, bytes).await,
            Write::Touch(sid) => store.touch(&sid).await,
        };
        if let Err(error) = result {
            tracing::warn!(
                context = "broker",
                provider,
                "cannot write a session: {error}"
            );
        }
    }
}

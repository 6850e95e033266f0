//! The disconnect queue: `Disconnect` calls for closed sessions, sent at a limited rate so that a
//! mass reconnect does not flood the backend, and flushed without a rate limit on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{DisconnectRequest, Rpc, Status};

struct Job {
    sid: Arc<str>,
    request: DisconnectRequest,
}

pub struct Disconnector {
    rpc: Arc<Rpc>,
    jobs: mpsc::Sender<Job>,
    shutdown: CancellationToken,
}

impl Disconnector {
    /// Starts the worker. `rate` is in calls per second (1..=1000), `backlog` the queue
    /// capacity: when it is full, closing sessions wait for room.
    pub fn start(
        rpc: Arc<Rpc>,
        rate: u64,
        backlog: usize,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Disconnector {
        let (jobs, mut queue) = mpsc::channel::<Job>(backlog.max(1));
        let period = Duration::from_millis(1000 / rate.clamp(1, 1000));
        let worker_rpc = rpc.clone();
        let worker_shutdown = shutdown.clone();
        tracker.spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                tokio::select! {
                    biased;
                    _ = worker_shutdown.cancelled() => break,
                    job = queue.recv() => match job {
                        Some(job) => {
                            ticker.tick().await;
                            call(&worker_rpc, job).await;
                        }
                        None => return,
                    },
                }
            }
            queue.close();
            let remaining = queue.len();
            if remaining > 0 {
                tracing::info!(
                    context = "disconnector",
                    "invoking remaining disconnects num={remaining}"
                );
            }
            while let Some(job) = queue.recv().await {
                call(&worker_rpc, job).await;
            }
            if remaining > 0 {
                tracing::info!(
                    context = "disconnector",
                    "disconnected sessions num={remaining}"
                );
            }
        });
        Disconnector {
            rpc,
            jobs,
            shutdown,
        }
    }

    /// Calls waiting in the queue (the `disconnect_queue_size` gauge).
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Queues a `Disconnect` call. Once shutdown has started the call is made right away, so
    /// that sessions closed by the shutdown are reported before the process exits.
    pub async fn enqueue(&self, sid: Arc<str>, request: DisconnectRequest) {
        let job = Job { sid, request };
        if self.shutdown.is_cancelled() {
            return call(&self.rpc, job).await;
        }
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(job).await {
            call(&self.rpc, job).await;
        }
    }
}

async fn call(rpc: &Rpc, job: Job) {
    match rpc.disconnect(&job.sid, job.request).await {
        Ok(reply) if reply.status == Status::Error as i32 => {
            tracing::error!(
                context = "disconnector",
                sid = &*job.sid,
                "Application error: {}",
                reply.error_msg
            );
        }
        Ok(_) => {}
        Err(error) => tracing::error!(
            context = "disconnector",
            sid = &*job.sid,
            "Disconnect failed: {error}"
        ),
    }
}

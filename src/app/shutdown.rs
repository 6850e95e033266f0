//! The shutdown sequence. Like AnyCable-Go's `cli/cli.go`, the order is written down as a
//! list with the reason beside each step; every step is a signal (a cancelled token) followed
//! by a wait for the step's tasks, bounded by the one `--shutdown_timeout` deadline.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use super::context::{Failure, Scope};
use super::Running;

/// One step of the shutdown order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Listeners stop accepting and every client gets `server_restart`, while everything the
    /// connections rely on (broker, backend for the disconnect calls, pub/sub) still works.
    Connections,
    /// Broadcasters, then the distributed brokers' tasks: no publication is taken in once
    /// nobody is left to receive it, the Redis Streams consumer leaves its group, and queued
    /// session writes are flushed.
    Background,
    /// Node-to-node pub/sub, last of all (after the broadcasters, as in the reference).
    PubSub,
}

/// The written order (see [`Step`] for the reason of each).
const ORDER: [Step; 3] = [Step::Connections, Step::Background, Step::PubSub];

/// How waiting for one step ended.
enum Waited {
    Done,
    Deadline,
    /// A second signal: stop at once.
    Forced,
}

impl Running {
    /// Waits for `stop`, then shuts down: optional delay, then each step of [`ORDER`] is
    /// signalled and awaited until the deadline. A second `stop` ends the wait at once.
    ///
    /// Returns `Err` with the reason when a component failure (not a signal) stopped the
    /// server; the process then exits with status 1.
    pub async fn run_until<F, G>(
        self,
        stop: F,
        mut force: G,
        timeout: Duration,
        delay: Duration,
    ) -> Result<(), Failure>
    where
        F: Future<Output = ()>,
        G: FnMut() -> Pin<Box<dyn Future<Output = ()> + Send>>,
    {
        let failure = tokio::select! {
            _ = stop => None,
            _ = self.fatal.token.cancelled() => self.fatal.take(),
        };
        let outcome = match failure {
            Some(reason) => Err(reason),
            None => Ok(()),
        };
        let delay = if outcome.is_err() {
            Duration::ZERO
        } else {
            delay
        };
        tracing::info!("Shutting down... (hit Ctrl-C to stop immediately or wait for up to {}s for graceful shutdown)", timeout.as_secs());
        let deadline = Instant::now() + timeout;
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.min(Instant::now() + delay)) => {}
                _ = force() => {
                    tracing::warn!("Immediate termination requested. Stopped");
                    return outcome;
                }
            }
        }
        for step in ORDER {
            if step == Step::Connections {
                let sessions = self.node.sessions_count();
                tracing::info!(
                    context = "node",
                    "closing active connections num={sessions}"
                );
            }
            match stop_scope(self.scope(step), deadline, &mut force).await {
                Waited::Done if step == Step::Connections => {
                    tracing::info!(context = "node", "all active connections closed")
                }
                Waited::Deadline if step == Step::Connections => {
                    tracing::warn!(
                        context = "node",
                        "terminated while disconnecting active sessions num={}",
                        self.node.sessions_count()
                    );
                }
                Waited::Done | Waited::Deadline => {}
                Waited::Forced => {
                    tracing::warn!("Immediate termination requested. Stopped");
                    return outcome;
                }
            }
        }
        outcome
    }

    fn scope(&self, step: Step) -> &Scope {
        match step {
            Step::Connections => &self.connections,
            Step::Background => &self.background,
            Step::PubSub => &self.pubsub,
        }
    }
}

/// Signals one step's tasks and waits for them, the deadline, or a second signal.
async fn stop_scope<G>(scope: &Scope, deadline: Instant, force: &mut G) -> Waited
where
    G: FnMut() -> Pin<Box<dyn Future<Output = ()> + Send>>,
{
    scope.shutdown.cancel();
    scope.tracker.close();
    tokio::select! {
        _ = scope.tracker.wait() => Waited::Done,
        _ = tokio::time::sleep_until(deadline) => Waited::Deadline,
        _ = force() => Waited::Forced,
    }
}

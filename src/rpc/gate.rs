//! The concurrency slots of RPC calls: at most `limit` calls in flight, the limit fixed
//! (`--rpc_concurrency`) or adaptive (`--rpc_concurrency=0`, see `limiter.rs`), and the calls
//! waiting for a slot in two queues.
//!
//! Calls of established sessions (`Command`, `Disconnect`) are served before new connections'
//! `Connect` when admission control is on (`--rpc_connect_max_wait`): finishing the work of
//! clients already let in comes before letting more in. A `Connect` that would wait longer than
//! its bound, judged from the calls ahead of it, the limit and the measured latency, is refused
//! at once ([`Busy`]) rather than queued to time out.
//!
//! Waiting is cancel-safe: a waiter that goes away leaves its place, and a slot handed to a
//! waiter that left at that very moment comes back with the [`Slot`]'s drop.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::lag::Lag;
use super::limiter::{Aimd, Bounds, Sample, Start};
use crate::metrics::{Gauge, Metrics};

/// Weight of the newest attempt in the mean latency used for wait estimates.
const LATENCY_WEIGHT: f64 = 0.1;

/// Which queue a call waits in; the first is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Calls of established sessions, and every call when admission control is off.
    Session = 0,
    /// `Connect` under admission control.
    Connect = 1,
}

/// A `Connect` that would wait too long for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The fixed or adaptive limit.
#[derive(Debug)]
pub enum Limit {
    Fixed(usize),
    Adaptive(Bounds),
}

enum Current {
    Fixed(usize),
    /// With the runtime's lag, which the limit discounts from latencies.
    Adaptive(Aimd, Arc<Lag>),
}

impl Current {
    fn value(&self) -> usize {
        match self {
            Current::Fixed(n) => *n,
            Current::Adaptive(aimd, _) => aimd.limit(),
        }
    }
}

struct State {
    limit: Current,
    in_flight: usize,
    /// Senders to waiting calls, by [`Class`]; a sender whose receiver is gone is skipped.
    queues: [VecDeque<oneshot::Sender<Slot>>; 2],
    /// Calls still waiting, by class (the queues may also hold senders of calls that left).
    waiting: [usize; 2],
    /// Mean attempt latency, once there is one.
    latency: Option<Duration>,
}

pub struct Gate {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

/// One call's place in flight; dropping it frees the place.
pub struct Slot {
    gate: Option<Arc<Gate>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

impl Slot {
    /// Forgets the place without releasing it (the caller holds the gate's lock and accounts
    /// for it).
    fn disarm(mut self) {
        self.gate = None;
    }
}

/// Keeps the waiting count right however the wait ends.
struct Waiting<'a> {
    gate: &'a Gate,
    class: Class,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.gate.lock().waiting[self.class as usize] -= 1;
    }
}

impl Gate {
    pub fn new(limit: Limit, metrics: Arc<Metrics>) -> Arc<Gate> {
        let limit = match limit {
            Limit::Fixed(n) => Current::Fixed(n),
            Limit::Adaptive(bounds) => {
                Current::Adaptive(Aimd::new(bounds, Instant::now()), Lag::start())
            }
        };
        let gate = Arc::new(Gate {
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                queues: Default::default(),
                waiting: [0; 2],
                latency: None,
            }),
            metrics,
        });
        gate.publish(&gate.lock());
        gate
    }

    /// Waits for a slot in `class`'s queue. With `max_wait`, gives up when the wait would be
    /// (or becomes) longer than that.
    pub async fn acquire(
        self: &Arc<Self>,
        class: Class,
        max_wait: Option<Duration>,
    ) -> Result<Slot, Busy> {
        let receiver = {
            let mut state = self.lock();
            let limit = state.limit.value();
            if state.in_flight < limit && state.waiting == [0, 0] {
                state.in_flight += 1;
                self.publish(&state);
                return Ok(Slot {
                    gate: Some(self.clone()),
                });
            }
            if let (Some(bound), Some(latency)) = (max_wait, state.latency) {
                // The calls ahead leave at about `limit` per mean latency.
                let ahead = state.waiting[0] + state.waiting[1];
                let expected = latency.mul_f64((ahead + 1) as f64 / limit.max(1) as f64);
                if expected > bound {
                    return Err(Busy);
                }
            }
            let (sender, receiver) = oneshot::channel();
            state.queues[class as usize].push_back(sender);
            state.waiting[class as usize] += 1;
            // A slot may be free while calls granted one have not woken up yet.
            self.grant(&mut state);
            receiver
        };
        let _waiting = Waiting { gate: self, class };
        let granted = async {
            // The gate drops a sender only after sending on it, or once its receiver is gone.
            receiver.await.map_err(|_| Busy)
        };
        match max_wait {
            Some(bound) => tokio::time::timeout(bound, granted)
                .await
                .unwrap_or(Err(Busy)),
            None => granted.await,
        }
    }

    /// What an attempt starting now should later report with its [`Sample`].
    pub fn start(&self) -> Start {
        let state = self.lock();
        let limit = state.limit.value();
        Start {
            generation: match &state.limit {
                Current::Adaptive(aimd, _) => aimd.generation(),
                Current::Fixed(_) => 0,
            },
            saturated: state.waiting != [0, 0] || state.in_flight * 2 >= limit,
        }
    }

    /// Records an attempt's outcome: the mean latency, and the adaptive limit.
    pub fn record(self: &Arc<Self>, sample: Sample, start: Start) {
        let mut state = self.lock();
        if let Sample::Latency(latency) = sample {
            state.latency = Some(match state.latency {
                Some(mean) => mean.mul_f64(1.0 - LATENCY_WEIGHT) + latency.mul_f64(LATENCY_WEIGHT),
                None => latency,
            });
        }
        if let Current::Adaptive(aimd, lag) = &mut state.limit {
            let before = aimd.limit();
            aimd.record(sample, start, Instant::now(), lag.current());
            if aimd.limit() != before {
                tracing::debug!(context = "rpc", "RPC concurrency limit: {}", aimd.limit());
                self.grant(&mut state);
                self.publish(&state);
            }
        }
    }

    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        state.in_flight -= 1;
        self.grant(&mut state);
        self.publish(&state);
    }

    /// Hands free slots to waiting calls, established sessions first.
    fn grant(self: &Arc<Self>, state: &mut State) {
        while state.in_flight < state.limit.value() {
            let Some(sender) = state.queues.iter_mut().find_map(VecDeque::pop_front) else {
                return;
            };
            state.in_flight += 1;
            let slot = Slot {
                gate: Some(self.clone()),
            };
            if let Err(slot) = sender.send(slot) {
                // That call left while waiting.
                slot.disarm();
                state.in_flight -= 1;
            }
        }
    }

    fn publish(&self, state: &State) {
        self.metrics
            .set(Gauge::RpcCapacity, state.limit.value() as u64);
        self.metrics.set(Gauge::RpcInflight, state.in_flight as u64);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::limiter::Sample;

    fn gate(limit: Limit) -> Arc<Gate> {
        Gate::new(limit, Arc::new(Metrics::default()))
    }

    #[tokio::test]
    async fn sessions_are_served_before_connects() {
        let gate = gate(Limit::Fixed(1));
        let first = gate.acquire(Class::Session, None).await.unwrap();
        let connect = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(Class::Connect, None).await.map(drop) }
        });
        tokio::task::yield_now().await;
        let session = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(Class::Session, None).await }
        });
        while gate.lock().waiting != [1, 1] {
            tokio::task::yield_now().await;
        }
        drop(first);
        let second = session.await.unwrap().unwrap();
        assert!(!connect.is_finished());
        drop(second);
        connect.await.unwrap().unwrap();
        assert_eq!(gate.lock().in_flight, 0);
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_gives_its_place_up() {
        let gate = gate(Limit::Fixed(1));
        let first = gate.acquire(Class::Session, None).await.unwrap();
        let left = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(Class::Connect, None).await.map(drop) }
        });
        while gate.lock().waiting[1] == 0 {
            tokio::task::yield_now().await;
        }
        left.abort();
        let _ = left.await;
        assert_eq!(gate.lock().waiting, [0, 0]);
        drop(first);
        assert_eq!(gate.lock().in_flight, 0);
        let _again = gate.acquire(Class::Session, None).await.unwrap();
        assert_eq!(gate.lock().in_flight, 1);
    }

    #[tokio::test]
    async fn a_connect_that_would_wait_too_long_is_refused_at_once() {
        let gate = gate(Limit::Fixed(2));
        let start = gate.start();
        gate.record(Sample::Latency(Duration::from_millis(100)), start);
        let _a = gate.acquire(Class::Session, None).await.unwrap();
        let _b = gate.acquire(Class::Session, None).await.unwrap();
        // 1 call ahead at 2 per 100 ms: 50 ms expected.
        let fits = Duration::from_millis(60);
        let queued = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(Class::Connect, Some(fits)).await.map(drop) }
        });
        while gate.lock().waiting[1] == 0 {
            tokio::task::yield_now().await;
        }
        // Now 2 ahead: 100 ms expected, over the bound.
        let refused = gate.acquire(Class::Connect, Some(fits)).await;
        assert_eq!(refused.err(), Some(Busy));
        // And the queued one gives up when its bound passes.
        assert_eq!(queued.await.unwrap(), Err(Busy));
    }

    #[tokio::test]
    async fn a_lower_adaptive_limit_holds_new_calls_back() {
        let bounds = Bounds {
            initial: 2,
            min: 1,
            max: 4,
        };
        let gate = gate(Limit::Adaptive(bounds));
        let a = gate.acquire(Class::Session, None).await.unwrap();
        let start = gate.start();
        gate.record(Sample::Overloaded, start);
        assert_eq!(gate.lock().limit.value(), 1);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(Class::Session, None).await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        waiter.await.unwrap().unwrap();
    }
}

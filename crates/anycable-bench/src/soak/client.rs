//! One healthy soak client: it connects, subscribes, switches streams halfway through its
//! life, leaves, and starts again, checking on the way that it got every publication it was
//! owed (`ledger.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::ledger::Ledger;
use super::shared::{Shared, StreamId};
use crate::buffer::find;
use crate::client::{connect, expect_type, Message, Receive, Socket};

/// How long a leaving subscription waits for the publications it is still owed: what has not
/// arrived by then counts as lost. Generous, because the load generator shares the machine's
/// cores with the server (and maybe with other work).
pub const DRAIN: Duration = Duration::from_secs(30);
/// How long a subscription may wait for its confirmation.
const CONFIRM: Duration = Duration::from_secs(10);

/// Which streams a client uses.
#[derive(Clone, Copy)]
pub enum Role {
    /// One of the ordinary streams, another one after half its life.
    Ordinary,
    /// The firehose, next to the stalled readers.
    Watcher,
}

/// A small, fast pseudo-random sequence (xorshift64*), so that runs are repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `[low, high)`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.next() % span)
    }
}

enum State {
    /// `subscribe` sent at this time.
    Pending(Instant),
    Active(Ledger),
    /// Waiting until publications up to `acked` arrived, or `deadline`.
    Leaving {
        ledger: Ledger,
        acked: u64,
        deadline: Instant,
    },
}

struct Subscription {
    stream: StreamId,
    state: State,
}

/// Lives one client's lives until the soak stops; failures are counted and the client starts
/// again.
pub async fn run(shared: Arc<Shared>, role: Role, seed: u64) {
    let mut rng = Rng::new(seed);
    while !shared.stopping() {
        let result = live_once(&shared, role, &mut rng).await;
        if let Err(error) = result {
            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
            shared.note_error(error);
            // Not a hot loop when the server refuses.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Keeps the live-connections gauge right however a life ends.
struct Live<'a>(&'a Shared);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.counters.live.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn live_once(shared: &Shared, role: Role, rng: &mut Rng) -> Result<(), String> {
    let mut ws = connect(shared.addr, "/cable").await?;
    expect_type(&mut ws, "welcome").await?;
    shared.counters.connects.fetch_add(1, Ordering::Relaxed);
    shared.counters.live.fetch_add(1, Ordering::Relaxed);
    let _live = Live(shared);
    let started = Instant::now();
    let life = rng.between(shared.lifetime / 2, shared.lifetime * 3 / 2);
    let ends = started + life;
    let first = match role {
        Role::Ordinary => rng.below(shared.ordinary_streams()),
        Role::Watcher => shared.firehose(),
    };
    let mut switch_at = matches!(role, Role::Ordinary).then(|| started + life / 2);
    let mut subscriptions = Vec::new();
    subscribe(shared, &mut ws, &mut subscriptions, first).await?;
    let mut ending = false;
    loop {
        while let Some(message) = ws.next_message()? {
            match message {
                Message::Text(text) => handle(shared, &mut subscriptions, ending, text)?,
                Message::Closed => return Err("closed by the server".into()),
                Message::Other => {}
            }
        }
        let now = Instant::now();
        if shared.stopping() || now >= ends {
            if !ending {
                ending = true;
                for subscription in &mut subscriptions {
                    leave(shared, subscription, now);
                }
            }
        } else if switch_at.is_some_and(|at| now >= at) {
            switch_at = None;
            let current = subscriptions[0].stream;
            let next = (current + 1 + rng.below(shared.ordinary_streams() - 1))
                % shared.ordinary_streams();
            leave(shared, &mut subscriptions[0], now);
            subscribe(shared, &mut ws, &mut subscriptions, next).await?;
        }
        finish_left(shared, &mut ws, &mut subscriptions, ending, now).await?;
        if ending && subscriptions.is_empty() {
            shared.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut wake = subscriptions
            .iter()
            .filter_map(|s| match &s.state {
                State::Pending(at) => Some(*at + CONFIRM),
                State::Leaving { deadline, .. } => Some(*deadline),
                State::Active(_) => None,
            })
            .chain(switch_at)
            .min()
            .unwrap_or(ends);
        if !ending {
            wake = wake.min(ends);
        }
        tokio::select! {
            received = ws.receive() => {
                if !received? {
                    return Err("closed by the server".into());
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
            // Once leaving, the stop is already handled (and would be ready at every turn).
            _ = shared.stopped(), if !ending => {}
        }
    }
}

async fn subscribe(
    shared: &Shared,
    ws: &mut Socket,
    subscriptions: &mut Vec<Subscription>,
    stream: StreamId,
) -> Result<(), String> {
    let command =
        serde_json::json!({"command": "subscribe", "identifier": shared.identifier(stream)});
    ws.send_text(&command.to_string()).await?;
    subscriptions.push(Subscription {
        stream,
        state: State::Pending(Instant::now()),
    });
    Ok(())
}

/// Starts leaving: from now on only what was acknowledged so far is owed.
fn leave(shared: &Shared, subscription: &mut Subscription, now: Instant) {
    if let State::Active(ledger) = &subscription.state {
        subscription.state = State::Leaving {
            ledger: ledger.clone(),
            acked: shared.acked(subscription.stream),
            deadline: now + DRAIN,
        };
    }
}

/// Ends the leaving subscriptions that got what they were owed (or ran out of time), and
/// fails on a confirmation that never came.
async fn finish_left(
    shared: &Shared,
    ws: &mut Socket,
    subscriptions: &mut Vec<Subscription>,
    ending: bool,
    now: Instant,
) -> Result<(), String> {
    let mut index = 0;
    while index < subscriptions.len() {
        let subscription = &mut subscriptions[index];
        match &mut subscription.state {
            State::Pending(at) if now >= *at + CONFIRM => {
                return Err(format!("no confirmation within {CONFIRM:?}"));
            }
            State::Leaving {
                ledger,
                acked,
                deadline,
            } if ledger.caught_up(*acked) || now >= *deadline => {
                let lost = ledger.close(*acked);
                if lost > 0 {
                    shared.note_loss(format!(
                        "stream {}: {lost} publication(s) up to {acked} not received within {DRAIN:?}",
                        subscription.stream
                    ));
                }
                shared.counters.losses.fetch_add(lost, Ordering::Relaxed);
                let stream = subscription.stream;
                subscriptions.remove(index);
                if !ending {
                    let command = serde_json::json!({"command": "unsubscribe", "identifier": shared.identifier(stream)});
                    ws.send_text(&command.to_string()).await?;
                    shared.counters.unsubscribes.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    Ok(())
}

/// Handles one message: a confirmation, a publication, or something to skip.
fn handle(
    shared: &Shared,
    subscriptions: &mut [Subscription],
    ending: bool,
    text: &[u8],
) -> Result<(), String> {
    if find(text, b"\"type\":\"confirm_subscription\"").is_some() {
        let stream = shared
            .stream_of(text)
            .ok_or("a confirmation for an unknown stream")?;
        for subscription in subscriptions.iter_mut() {
            if subscription.stream == stream && matches!(subscription.state, State::Pending(_)) {
                shared.counters.subscribes.fetch_add(1, Ordering::Relaxed);
                subscription.state = State::Active(Ledger::confirmed(shared.sent(stream)));
                if ending {
                    leave(shared, subscription, Instant::now());
                }
            }
        }
        return Ok(());
    }
    if find(text, b"\"type\":\"reject_subscription\"").is_some() {
        return Err("subscription rejected".into());
    }
    let Some((stream, seq)) = shared.publication_of(text) else {
        return Ok(()); // welcome, ping, ...
    };
    for subscription in subscriptions.iter_mut() {
        if subscription.stream != stream {
            continue;
        }
        let ledger = match &mut subscription.state {
            State::Active(ledger) | State::Leaving { ledger, .. } => ledger,
            // Published to a stream whose confirmation is still on its way: nothing is owed.
            State::Pending(_) => continue,
        };
        let change = ledger.receive(seq);
        if change.losses > 0 || change.duplicates > 0 {
            shared.note_loss(format!(
                "stream {stream}: received {seq}, {} lost before it, {} duplicate",
                change.losses, change.duplicates
            ));
        }
        let counters = &shared.counters;
        counters
            .deliveries
            .fetch_add(change.deliveries, Ordering::Relaxed);
        counters.losses.fetch_add(change.losses, Ordering::Relaxed);
        counters
            .duplicates
            .fetch_add(change.duplicates, Ordering::Relaxed);
    }
    Ok(())
}

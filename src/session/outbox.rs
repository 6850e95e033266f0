//! The bounded outbound queue of one connection.
//!
//! Producers (the connection's own command handling, the hub's fan-out, remote commands,
//! shutdown) push frames without ever waiting; the connection's writer takes everything queued
//! in one batch and writes it with a single flush. The writer's waker is kept under the same lock
//! as the frames (rather than in a separate `Notify`): a push already takes that lock, so waking
//! the writer costs no further synchronisation. The queue is bounded by the bytes it holds
//! (`--ws_max_pending_size`): a client that does not read fast enough is disconnected with
//! `too_slow` instead of growing memory or slowing down anyone else.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::{DisconnectReason, Reply};

/// One item for the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A text frame; broadcast frames share one buffer across all recipients.
    Text(Utf8Bytes),
    /// A close frame; nothing is written after it.
    Close { code: u16, reason: &'static str },
}

/// Result of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full: it was replaced by a `too_slow` disconnect and the connection is
    /// closing. Returned once per connection, so callers can count slow clients.
    Overflowed,
    /// The connection is already closing; the frame was dropped.
    Closed,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Outgoing>,
    bytes: usize,
    closing: bool,
    /// The queue overflowed: the client is not reading.
    overflowed: bool,
    /// The writer waiting for frames, if it is waiting.
    writer: Option<Waker>,
}

/// A connection's outbound queue.
///
/// The lock is a `std` mutex: it is held only to move frames in or out, never across an await.
pub struct Outbox {
    state: Mutex<State>,
    /// 0 means unbounded, as in AnyCable-Go.
    max_pending_bytes: usize,
}

impl Outbox {
    pub fn new(max_pending_bytes: usize) -> Outbox {
        Outbox {
            state: Mutex::default(),
            max_pending_bytes,
        }
    }

    /// Queues a text frame, or turns the queue into a `too_slow` disconnect when it is full.
    pub fn push(&self, frame: Utf8Bytes) -> Pushed {
        let mut state = self.lock();
        if state.closing {
            return Pushed::Closed;
        }
        if self.max_pending_bytes > 0 && state.bytes >= self.max_pending_bytes {
            state.frames.clear();
            state.bytes = 0;
            state.overflowed = true;
            Self::push_close(&mut state, DisconnectReason::TooSlow, true, 1000, "");
            Self::wake_writer(state);
            return Pushed::Overflowed;
        }
        state.bytes += frame.len();
        state.frames.push_back(Outgoing::Text(frame));
        Self::wake_writer(state);
        Pushed::Queued
    }

    /// Queues a `disconnect` message followed by a close frame, after whatever is queued.
    /// Returns false when the connection was already closing.
    pub fn disconnect(
        &self,
        reason: DisconnectReason,
        reconnect: bool,
        code: u16,
        close_reason: &'static str,
    ) -> bool {
        let mut state = self.lock();
        if state.closing {
            return false;
        }
        Self::push_close(&mut state, reason, reconnect, code, close_reason);
        Self::wake_writer(state);
        true
    }

    /// Queues a close frame without a `disconnect` message.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut state = self.lock();
        if !state.closing {
            state.closing = true;
            state.frames.push_back(Outgoing::Close { code, reason });
            Self::wake_writer(state);
        }
    }

    /// Whether the queue overflowed (the connection is being closed as too slow).
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Waits until something is queued, then moves all of it into `batch`, which must be empty
    /// (its capacity is handed to the queue).
    pub async fn take_batch(&self, batch: &mut VecDeque<Outgoing>) {
        poll_fn(|cx| self.poll_take_batch(cx, batch)).await
    }

    fn poll_take_batch(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Outgoing>) -> Poll<()> {
        let mut state = self.lock();
        if !state.frames.is_empty() {
            // Swapped, so a busy connection's queues keep their capacity; the writer frees a
            // batch's memory when the traffic is light (see the WebSocket writer).
            std::mem::swap(&mut state.frames, batch);
            state.bytes = 0;
            return Poll::Ready(());
        }
        // The connection task polls with the same waker every time: do not clone it again.
        if !state
            .writer
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.writer = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Releases the lock, then wakes the writer if it was waiting (outside the lock, so the
    /// woken task does not run into it).
    fn wake_writer(mut state: std::sync::MutexGuard<'_, State>) {
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    fn push_close(
        state: &mut State,
        reason: DisconnectReason,
        reconnect: bool,
        code: u16,
        close_reason: &'static str,
    ) {
        let notice = Reply::Disconnect { reason, reconnect }.encode();
        state.frames.push_back(Outgoing::Text(notice.into()));
        state.frames.push_back(Outgoing::Close {
            code,
            reason: close_reason,
        });
        state.closing = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update is
        // a single push/clear), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Utf8Bytes {
        s.to_string().into()
    }

    #[tokio::test]
    async fn batches_everything_queued() {
        let outbox = Outbox::new(0);
        outbox.push(text("a"));
        outbox.push(text("b"));
        let mut batch = VecDeque::new();
        outbox.take_batch(&mut batch).await;
        assert_eq!(
            batch,
            [Outgoing::Text(text("a")), Outgoing::Text(text("b"))]
        );
    }

    #[tokio::test]
    async fn overflow_replaces_queue_with_too_slow_disconnect() {
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push(text("0123456789")), Pushed::Queued);
        assert_eq!(outbox.push(text("x")), Pushed::Overflowed);
        assert_eq!(outbox.push(text("y")), Pushed::Closed);
        let mut batch = VecDeque::new();
        outbox.take_batch(&mut batch).await;
        assert_eq!(
            batch,
            [
                Outgoing::Text(text(
                    r#"{"type":"disconnect","reason":"too_slow","reconnect":true}"#
                )),
                Outgoing::Close {
                    code: 1000,
                    reason: ""
                },
            ]
        );
    }

    #[tokio::test]
    async fn disconnect_keeps_queued_frames_first() {
        let outbox = Outbox::new(0);
        outbox.push(text("a"));
        assert!(outbox.disconnect(
            DisconnectReason::ServerRestart,
            true,
            1001,
            "Server restart"
        ));
        assert!(!outbox.disconnect(DisconnectReason::Remote, false, 1000, "Closed remotely"));
        let mut batch = VecDeque::new();
        outbox.take_batch(&mut batch).await;
        assert_eq!(batch.len(), 3);
        assert_eq!(
            batch[2],
            Outgoing::Close {
                code: 1001,
                reason: "Server restart"
            }
        );
    }
}

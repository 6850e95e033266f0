//! The bounded outbound queue of one connection.
//!
//! Producers (the connection's own command handling, the hub's fan-out, remote commands,
//! shutdown) push frames without ever waiting. The queue is bounded by the bytes it holds
//! (`--ws_max_pending_size`): a client that does not read fast enough is disconnected with
//! `too_slow` instead of growing memory or slowing down anyone else.
//!
//! Who writes the queued frames is the outbox's *writer*:
//!
//! - the connection's own task, woken by a push (its waker is kept under the same lock as the
//!   frames, so waking it costs no further synchronisation), takes everything queued in one
//!   batch and writes it with one flush;
//! - or, for a plain TCP WebSocket, a shared flusher (`transport::ws::flusher`): a push to an
//!   idle outbox puts the outbox on the flusher's list instead of waking the connection's task,
//!   and the flusher writes what the socket takes at once. Under fan-out each delivery then costs
//!   a queue push and a non-blocking send, not a task wake-up and poll. Whatever the flusher
//!   cannot write at once (a full send buffer, a close frame, an error) is handed back to the
//!   task, which stays the writer until the queue is empty again.
//!
//! Such an outbox holds the socket itself, next to the queue, so that the flusher finds both in
//! the same few cache lines: under fan-out, cache misses on per-connection memory are most of
//! the cost of a delivery outside the kernel.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::protocol::{DisconnectReason, Reply, TextFrame};

/// One item for the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A text frame; broadcast frames share one buffer across all recipients.
    Text(TextFrame),
    /// A WebSocket ping (native pings).
    Ping,
    /// A WebSocket pong answering the client's ping.
    Pong(Bytes),
    /// Bytes already framed for the wire: what the flusher could not send at once.
    Framed(Bytes),
    /// A close frame; nothing is written after it.
    Close { code: u16, reason: &'static str },
}

impl Outgoing {
    /// Bytes the item holds, for the queue's bound.
    fn len(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Pong(bytes) | Outgoing::Framed(bytes) => bytes.len(),
            Outgoing::Ping | Outgoing::Close { .. } => 0,
        }
    }
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

/// Who writes the queued frames next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Writer {
    /// The connection's task (always, without a flusher).
    #[default]
    Task,
    /// The flusher, when something is queued; nothing is queued.
    Idle,
    /// On the flusher's list.
    Listed,
    /// The flusher took a batch and is writing it.
    Flushing,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Outgoing>,
    bytes: usize,
    closing: bool,
    /// The queue overflowed: the client is not reading.
    overflowed: bool,
    writer: Writer,
    /// The connection task, if it is waiting.
    task: Option<Waker>,
}

/// What to do once the lock is released.
enum Then {
    Nothing,
    Wake(Waker),
    List,
}

/// Where the flusher writes an outbox's frames, how it frames them, and the list it is put on.
pub struct Direct {
    pub socket: TcpStream,
    pub list: Arc<FlushList>,
    pub framer: Framer,
}

/// Frames queued items for the wire into `out`, up to the first close item, which is left in
/// the batch with whatever follows it; returns the text frames and payload bytes framed. One per
/// wire format (WebSocket frames, an SSE stream's chunks), so that one flusher serves both.
pub type Framer = fn(&mut VecDeque<Outgoing>, &mut Vec<u8>) -> (u64, u64);

/// A connection's outbound queue.
///
/// The lock is a `std` mutex: it is held only to move frames in or out, never across an await
/// or a write.
pub struct Outbox {
    state: Mutex<State>,
    /// 0 means unbounded, as in AnyCable-Go.
    max_pending_bytes: usize,
    direct: Option<Direct>,
}

impl Outbox {
    /// An outbox written by the connection's task.
    pub fn new(max_pending_bytes: usize) -> Outbox {
        Outbox {
            state: Mutex::default(),
            max_pending_bytes,
            direct: None,
        }
    }

    /// An outbox written by a flusher, and by the connection's task when the flusher hands over.
    pub fn direct(max_pending_bytes: usize, direct: Direct) -> Outbox {
        Self::direct_from(Writer::Idle, max_pending_bytes, direct)
    }

    /// The same, but its task writes first (what it must send before anything queued, such as
    /// an HTTP response head); it hands the writing to the flusher with [`Outbox::written`].
    pub fn direct_task_first(max_pending_bytes: usize, direct: Direct) -> Outbox {
        Self::direct_from(Writer::Task, max_pending_bytes, direct)
    }

    fn direct_from(writer: Writer, max_pending_bytes: usize, direct: Direct) -> Outbox {
        let state = State {
            writer,
            ..State::default()
        };
        Outbox {
            state: Mutex::new(state),
            max_pending_bytes,
            direct: Some(direct),
        }
    }

    /// Queues a text frame, or turns the queue into a `too_slow` disconnect when it is full.
    pub fn push(self: &Arc<Self>, frame: TextFrame) -> Pushed {
        let mut state = self.lock();
        if state.closing {
            return Pushed::Closed;
        }
        if self.max_pending_bytes > 0 && state.bytes >= self.max_pending_bytes {
            state.frames.clear();
            state.bytes = 0;
            state.overflowed = true;
            Self::push_close(&mut state, DisconnectReason::TooSlow, true, 1000, "");
            self.notify(state);
            return Pushed::Overflowed;
        }
        state.bytes += frame.len();
        state.frames.push_back(Outgoing::Text(frame));
        self.notify(state);
        Pushed::Queued
    }

    /// Queues a WebSocket control frame (ping or pong), unbounded: they are few and small.
    pub fn push_control(self: &Arc<Self>, item: Outgoing) {
        let mut state = self.lock();
        if !state.closing {
            state.frames.push_back(item);
            self.notify(state);
        }
    }

    /// Queues a `disconnect` message followed by a close frame, after whatever is queued.
    /// Returns false when the connection was already closing.
    pub fn disconnect(
        self: &Arc<Self>,
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
        self.notify(state);
        true
    }

    /// Queues a close frame without a `disconnect` message.
    pub fn close(self: &Arc<Self>, code: u16, reason: &'static str) {
        let mut state = self.lock();
        if !state.closing {
            state.closing = true;
            state.frames.push_back(Outgoing::Close { code, reason });
            self.notify(state);
        }
    }

    /// Whether the queue overflowed (the connection is being closed as too slow).
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Waits until something is queued for the task, then moves all of it into `batch`, which
    /// must be empty (its capacity is handed to the queue).
    pub async fn take_batch(&self, batch: &mut VecDeque<Outgoing>) {
        poll_fn(|cx| {
            self.poll_take(cx, batch);
            if batch.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Moves everything queued into `batch` (which must be empty) when the task is the writer.
    /// When nothing is taken, the task is woken by the next push it must write.
    pub fn poll_take(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Outgoing>) {
        let mut state = self.lock();
        if state.writer == Writer::Task && !state.frames.is_empty() {
            // Swapped, so a busy connection's queues keep their capacity; the writer frees a
            // batch's memory when the traffic is light (see the WebSocket writer).
            std::mem::swap(&mut state.frames, batch);
            state.bytes = 0;
            return;
        }
        // The connection task polls with the same waker every time: do not clone it again.
        if !state.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.task = Some(cx.waker().clone());
        }
    }

    /// The task wrote its batch: with a flusher, it gives the writing back once nothing is left.
    pub fn written(&self) {
        if self.direct.is_none() {
            return;
        }
        let mut state = self.lock();
        if state.writer == Writer::Task && state.frames.is_empty() {
            state.writer = Writer::Idle;
        }
    }

    /// The socket of an outbox written by a flusher.
    pub fn socket(&self) -> Option<&TcpStream> {
        self.direct.as_ref().map(|direct| &direct.socket)
    }

    /// The flusher's side: takes what is queued, with the socket to write it to and its framing.
    /// `None` when the outbox is not the flusher's to write (the task took over meanwhile).
    pub fn take_for_flush(&self) -> Option<(&Direct, VecDeque<Outgoing>)> {
        let direct = self.direct.as_ref()?;
        let mut state = self.lock();
        if state.writer != Writer::Listed {
            return None;
        }
        state.writer = Writer::Flushing;
        state.bytes = 0;
        // Taken, not swapped: an outbox between messages holds no queue memory.
        Some((direct, std::mem::take(&mut state.frames)))
    }

    /// The flusher wrote all but `unsent` (bytes framed but not sent) and `left` (items not
    /// framed, from a close frame on): anything left goes back to the front of the queue for
    /// the task. Lists the outbox again when more was queued meanwhile.
    pub fn flushed(self: &Arc<Self>, unsent: &[u8], left: &mut VecDeque<Outgoing>) {
        let mut state = self.lock();
        if unsent.is_empty() && left.is_empty() {
            state.writer = if state.frames.is_empty() {
                Writer::Idle
            } else {
                Writer::Listed
            };
            let listed = state.writer == Writer::Listed;
            drop(state);
            if listed {
                self.list();
            }
            return;
        }
        for item in left.drain(..).rev() {
            state.bytes += item.len();
            state.frames.push_front(item);
        }
        if !unsent.is_empty() {
            state.bytes += unsent.len();
            state
                .frames
                .push_front(Outgoing::Framed(Bytes::copy_from_slice(unsent)));
        }
        state.writer = Writer::Task;
        self.notify(state);
    }

    /// Tells the writer about new frames, once the lock is released (so that a woken task does
    /// not run into it).
    fn notify(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        let then = match state.writer {
            Writer::Task => state.task.take().map_or(Then::Nothing, Then::Wake),
            Writer::Idle => {
                state.writer = Writer::Listed;
                Then::List
            }
            Writer::Listed | Writer::Flushing => Then::Nothing,
        };
        drop(state);
        match then {
            Then::Nothing => {}
            Then::Wake(task) => task.wake(),
            Then::List => self.list(),
        }
    }

    fn list(self: &Arc<Self>) {
        if let Some(direct) = &self.direct {
            direct.list.add(self.clone());
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update is
        // a single push/clear), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The outboxes a flusher has to write, in the order they were listed.
#[derive(Default)]
pub struct FlushList {
    state: Mutex<(Vec<Arc<Outbox>>, Option<Waker>)>,
}

impl FlushList {
    fn add(&self, outbox: Arc<Outbox>) {
        let mut state = self.lock();
        state.0.push(outbox);
        let flusher = state.1.take();
        drop(state);
        if let Some(flusher) = flusher {
            flusher.wake();
        }
    }

    /// Waits until something is listed, then moves the list into `due` (which must be empty).
    pub async fn take(&self, due: &mut Vec<Arc<Outbox>>) {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.0.is_empty() {
                state.1 = Some(cx.waker().clone());
                return Poll::Pending;
            }
            std::mem::swap(&mut state.0, due);
            Poll::Ready(())
        })
        .await
    }

    fn lock(&self) -> MutexGuard<'_, (Vec<Arc<Outbox>>, Option<Waker>)> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> TextFrame {
        s.to_string().into()
    }

    #[tokio::test]
    async fn batches_everything_queued() {
        let outbox = Arc::new(Outbox::new(0));
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
        let outbox = Arc::new(Outbox::new(10));
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
        let outbox = Arc::new(Outbox::new(0));
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

    /// An outbox written by a flusher, over a connected loopback socket.
    async fn direct_outbox() -> (Arc<Outbox>, Arc<FlushList>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        drop(client);
        let list = Arc::new(FlushList::default());
        let direct = Direct {
            socket: accepted.unwrap().0,
            list: list.clone(),
            framer: |_, _| (0, 0),
        };
        (Arc::new(Outbox::direct(0, direct)), list)
    }

    fn listed(list: &FlushList) -> usize {
        let mut due = Vec::new();
        futures_util::FutureExt::now_or_never(list.take(&mut due));
        due.len()
    }

    fn task_takes(outbox: &Outbox) -> VecDeque<Outgoing> {
        let mut batch = VecDeque::new();
        outbox.poll_take(&mut Context::from_waker(Waker::noop()), &mut batch);
        batch
    }

    #[tokio::test]
    async fn a_direct_outbox_is_listed_once_and_left_to_the_flusher() {
        let (outbox, list) = direct_outbox().await;
        outbox.push(text("a"));
        outbox.push(text("b"));
        assert_eq!(listed(&list), 1);
        assert!(task_takes(&outbox).is_empty(), "the task must not write");

        let (_, mut batch) = outbox.take_for_flush().unwrap();
        assert_eq!(batch.len(), 2);
        batch.clear();
        outbox.flushed(&[], &mut batch);
        assert_eq!(listed(&list), 0, "nothing was queued meanwhile");

        outbox.push(text("c"));
        assert_eq!(listed(&list), 1, "idle again: the next push lists it");
    }

    #[tokio::test]
    async fn what_the_flusher_cannot_send_goes_to_the_task_first() {
        let (outbox, list) = direct_outbox().await;
        outbox.push(text("a"));
        listed(&list);
        let (_, mut batch) = outbox.take_for_flush().unwrap();
        outbox.push(text("b"));
        assert_eq!(listed(&list), 0, "being flushed: not listed twice");

        batch.clear();
        outbox.flushed(b"unsent", &mut batch);
        assert_eq!(listed(&list), 0);
        assert_eq!(
            task_takes(&outbox),
            [
                Outgoing::Framed(Bytes::from_static(b"unsent")),
                Outgoing::Text(text("b"))
            ]
        );
        outbox.push(text("c"));
        assert_eq!(listed(&list), 0, "the task writes until its queue is empty");
        assert_eq!(task_takes(&outbox), [Outgoing::Text(text("c"))]);
        outbox.written();
        outbox.push(text("d"));
        assert_eq!(listed(&list), 1, "then the flusher again");
    }

    #[tokio::test]
    async fn close_frames_are_left_to_the_task() {
        let (outbox, list) = direct_outbox().await;
        outbox.disconnect(DisconnectReason::Remote, false, 1000, "");
        listed(&list);
        let (_, mut batch) = outbox.take_for_flush().unwrap();
        batch.pop_front(); // the `disconnect` message, written by the flusher
        outbox.flushed(&[], &mut batch);
        assert_eq!(
            task_takes(&outbox),
            [Outgoing::Close {
                code: 1000,
                reason: ""
            }]
        );
    }
}

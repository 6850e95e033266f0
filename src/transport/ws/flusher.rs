//! The shared writers of plain-TCP connections: WebSocket connections, and SSE streams once
//! their response head is out (each outbox says how its frames are framed).
//!
//! A push to an idle outbox lists it with one of a few flushers (one per CPU) instead of waking
//! the connection's task; the flusher frames what is queued and sends it with one non-blocking
//! `send`. On a stream with thousands of subscribers this replaces a task wake-up, a poll of the
//! connection's state and a trip through the runtime's IO readiness per delivery with a queue
//! push and a syscall. Frames pushed while a batch is written wait for the next round, so busy
//! connections still get many frames per write. What a socket does not take at once, and every
//! close frame, goes back to the connection's task (see `session::outbox`), which waits for the
//! socket and keeps the write deadline.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustix::net::SendFlags;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::frame::frame_items;
use crate::metrics::{Counter, Metrics};
use crate::session::{Direct, FlushList, Framer, Outbox};

/// Outboxes a flusher writes before letting other tasks on its thread run.
const ROUND: usize = 256;

/// Beyond this, the frame buffer's memory is given back after a round.
const KEPT_BUFFER: usize = 64 * 1024;

/// The flushers of one listener's endpoints; connections are spread over them in turn. Clones
/// share the flushers.
#[derive(Clone)]
pub struct Flushers {
    lists: Arc<[Arc<FlushList>]>,
    next: Arc<AtomicUsize>,
}

impl Flushers {
    /// Starts one flusher per available CPU. Must be called within the runtime; the flushers
    /// live as long as it does.
    pub fn start(metrics: Arc<Metrics>) -> Flushers {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let lists = (0..count)
            .map(|_| {
                let list = Arc::new(FlushList::default());
                tokio::spawn(flush(list.clone(), metrics.clone()));
                list
            })
            .collect();
        Flushers {
            lists,
            next: Arc::default(),
        }
    }

    /// The outbox of a new WebSocket connection over `socket`, written by the next flusher in
    /// turn, and the connection task's side of the socket.
    pub fn open(&self, socket: TcpStream, max_pending_bytes: usize) -> (Arc<Outbox>, DirectSocket) {
        let outbox = Outbox::direct(max_pending_bytes, self.direct(socket, frame_items));
        let outbox = Arc::new(outbox);
        (outbox.clone(), DirectSocket(outbox))
    }

    /// Where the next flusher in turn writes `socket`'s frames, framed by `framer`.
    pub fn direct(&self, socket: TcpStream, framer: Framer) -> Direct {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.lists.len();
        Direct {
            socket,
            list: self.lists[turn].clone(),
            framer,
        }
    }
}

async fn flush(list: Arc<FlushList>, metrics: Arc<Metrics>) {
    let mut due: Vec<Arc<Outbox>> = Vec::new();
    let mut wire = Vec::new();
    loop {
        list.take(&mut due).await;
        let (mut frames, mut bytes) = (0, 0);
        for (n, outbox) in due.drain(..).enumerate() {
            if n > 0 && n % ROUND == 0 {
                tokio::task::yield_now().await;
            }
            let Some((direct, mut batch)) = outbox.take_for_flush() else {
                continue;
            };
            wire.clear();
            let framed = (direct.framer)(&mut batch, &mut wire);
            frames += framed.0;
            bytes += framed.1;
            let sent = send_now(&direct.socket, &wire);
            outbox.flushed(&wire[sent..], &mut batch);
        }
        metrics.add(Counter::ServerMsg, frames);
        metrics.add(Counter::DataSent, bytes);
        if wire.capacity() > KEPT_BUFFER {
            wire = Vec::new();
        }
    }
}

/// Sends what the socket takes without waiting. An error sends nothing: the connection's task
/// then writes the frames itself and meets the error there.
fn send_now(socket: &TcpStream, bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        return 0;
    }
    // No MSG_NOSIGNAL (not portable): Rust programs ignore SIGPIPE, a vanished peer is EPIPE.
    rustix::net::send(socket, bytes, SendFlags::DONTWAIT).unwrap_or(0)
}

/// The connection task's side of a socket its outbox holds: reads, and the writes the flusher
/// hands back, through the runtime's readiness.
pub struct DirectSocket(Arc<Outbox>);

impl DirectSocket {
    /// `outbox` must hold its socket (made with a [`Direct`]).
    pub fn new(outbox: Arc<Outbox>) -> DirectSocket {
        DirectSocket(outbox)
    }

    fn tcp(&self) -> &TcpStream {
        self.0
            .socket()
            .expect("a DirectSocket is only made for an outbox holding its socket")
    }

    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp().poll_write_ready(cx))?;
            match write(self.tcp()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
        }
    }
}

/// The socket lives as long as the outbox (the hub may still hold it for a moment): the client
/// is told at once that the connection is over.
impl Drop for DirectSocket {
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(self.tcp(), rustix::net::Shutdown::Both);
    }
}

impl AsyncRead for DirectSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.tcp().poll_read_ready(cx))?;
            match self.tcp().try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for DirectSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |socket| socket.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |socket| socket.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = rustix::net::shutdown(self.tcp(), rustix::net::Shutdown::Write);
        Poll::Ready(result.map_err(io::Error::from))
    }
}

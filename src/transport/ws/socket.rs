//! A server-side WebSocket over an upgraded connection: reads client messages, writes frames.
//!
//! An idle connection holds no read buffer: bytes are read into a chunk on the stack and kept
//! on the heap only while a frame is incomplete (or messages wait to be taken), which keeps the
//! per-connection memory small for the many connections that mostly listen.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::codec::{DecodeError, Decoder, Message};

/// The largest read: `--read_buffer_size` above it reads in chunks of this size.
pub const MAX_READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub struct Socket<S> {
    io: S,
    /// Received bytes not yet decoded; empty, and without an allocation, between messages.
    buffer: BytesMut,
    decoder: Decoder,
    /// Bytes read at most per read call (`--read_buffer_size`).
    read_chunk: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// `received`: bytes already read from `io` past the upgrade request.
    pub fn new(io: S, received: Bytes, max_message: usize, read_chunk: usize) -> Socket<S> {
        Socket {
            io,
            buffer: BytesMut::from(received),
            decoder: Decoder::new(max_message),
            read_chunk: read_chunk.clamp(256, MAX_READ_CHUNK),
        }
    }

    /// The next message from the client; `None` once the connection is closed. Cancel safe:
    /// bytes read are kept in the buffer until a message is complete.
    pub async fn next(&mut self) -> Option<Result<Message, ReadError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`Socket::next`] as a poll: `cx`'s waker is the one the socket wakes when readable.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, ReadError>>> {
        loop {
            match self.decoder.decode(&mut self.buffer) {
                Ok(Some(message)) => {
                    self.release_empty_buffer();
                    return Poll::Ready(Some(Ok(message)));
                }
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) => return Poll::Ready(None),
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            }
        }
    }

    /// Reads once into a chunk on the stack, then appends what arrived to the buffer.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); MAX_READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk[..self.read_chunk]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        self.buffer.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    }

    fn release_empty_buffer(&mut self) {
        if self.buffer.is_empty() && self.buffer.capacity() > 0 {
            self.buffer = BytesMut::new();
        }
    }

    /// Writes `bytes` (whole frames) and flushes.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        // A no-op on TCP; TLS may keep the end of a record buffered until flushed.
        self.io.flush().await
    }
}

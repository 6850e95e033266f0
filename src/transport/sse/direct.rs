//! Event streams served on the raw socket, written by the shared flushers.
//!
//! Served through hyper, an event stream keeps hyper's connection for its whole life: an 8 KiB
//! read buffer, an 8 KiB write buffer, the dispatcher and the in-flight service future (22 KiB
//! per idle stream, against 3–4 KiB for a WebSocket), and each event goes through two task
//! wake-ups (the stream's task, then hyper's connection task through the body channel). So on
//! plain TCP a `GET` of the SSE path is answered here, before hyper sees the connection: the
//! request head is peeked and parsed in place, then consumed; the stream's task writes the
//! response head with the first events, and from then on the stream is written like a
//! WebSocket connection: by the flushers, one chunk per batch, without waking the task, which
//! only sends pings, notices the client leaving, and writes what a socket does not take at once.
//!
//! Everything else (TLS, `POST`, `OPTIONS`, a head not complete in the first bytes received,
//! any other path) is left to hyper, and SSE requests among it to the streaming-body path.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode, Version};
use rustix::net::RecvFlags;
use tokio::io::{AsyncRead, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::encoder::{framer, Format};
use super::{empty, stream_headers, Pings, SseEndpoint};
use crate::http::{add_cors_headers, RemoteAddr};
use crate::metrics::{Counter, Gauge};
use crate::node::Node;
use crate::session::{Outbox, Outgoing, Session};
use crate::transport::live::LiveOutboxes;
use crate::transport::ws::{with_deadline, DirectSocket};

/// How long the first bytes of a connection are waited for before it is left to hyper (whose
/// own header deadline then applies).
const FIRST_BYTES_WAIT: Duration = Duration::from_secs(5);

/// Request heads larger than this are left to hyper.
const MAX_HEAD: usize = 8 * 1024;

/// Headers of a request head parsed here, at most.
const MAX_HEADERS: usize = 64;

/// The last chunk of a chunked body: the end of the response.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A plain TCP connection the SSE endpoint did not take, for hyper.
pub type Declined = (TcpStream, Option<OwnedSemaphorePermit>);

impl SseEndpoint {
    /// Serves the connection here when its first request is a complete `GET` of `path`;
    /// otherwise gives it back untouched. The `--max-conn` permit lives as long as the stream.
    pub async fn take_over(
        self: &Arc<Self>,
        stream: TcpStream,
        path: &str,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), Declined> {
        let deadline = Instant::now() + FIRST_BYTES_WAIT;
        let peeked = loop {
            let readable = tokio::time::timeout_at(deadline, stream.readable()).await;
            if !matches!(readable, Ok(Ok(()))) {
                break None;
            }
            // Readiness can be reported before any byte arrived (a new socket's first
            // readiness, for one): `try_io` clears it when the peek finds nothing, and the
            // loop waits again.
            match stream.try_io(Interest::READABLE, || peek_get(&stream, path)) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => break None,
                Ok(peeked) => break peeked,
            }
        };
        let Some((mut request, head_len)) = peeked else {
            return Err((stream, permit));
        };
        if !consume(&stream, head_len) {
            return Ok(());
        }
        let started = Instant::now();
        request.extensions_mut().insert(RemoteAddr(peer));
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let cors = |headers: &mut HeaderMap| {
            add_cors_headers(headers, &self.origins, origin.as_deref());
        };
        let ask = match self.get_commands(&request) {
            Ok(commands) => self.ask(&request, commands),
            Err(error) => {
                tracing::debug!("SSE request refused: {error}");
                let mut stream = stream;
                let head = refusal_head(StatusCode::BAD_REQUEST, cors);
                let _ = with_deadline(self.write_timeout, stream.write_all(&head)).await;
                return Ok(());
            }
        };
        let format = ask.format;
        let direct = self.flushers.direct(stream, framer(format));
        let outbox = Arc::new(Outbox::direct_task_first(self.max_pending_bytes, direct));
        let mut socket = DirectSocket::new(outbox.clone());
        let session = match self.open(ask, &outbox).await {
            Ok(session) => session,
            Err(status) => {
                let head = refusal_head(status, cors);
                let _ = with_deadline(self.write_timeout, socket.write_all(&head)).await;
                return Ok(());
            }
        };
        let stream = DirectStream {
            node: self.node.clone(),
            session,
            socket,
            head: stream_head(cors),
            format,
            write_timeout: self.write_timeout,
            pings: self.pings(format),
            live: self.live.clone(),
            _permit: permit,
            started,
        };
        self.tracker.spawn(stream.run());
        Ok(())
    }
}

/// The head of the connection's received bytes, parsed, when it is a complete `GET` of `path`
/// over HTTP/1.1 without a body; and its length. `WouldBlock` when nothing was received yet.
fn peek_get(stream: &TcpStream, path: &str) -> io::Result<Option<(Request<()>, usize)>> {
    let mut buffer = [0u8; MAX_HEAD];
    let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
    let (received, _) = rustix::net::recv(stream, &mut buffer[..], flags)?;
    Ok(parse_get(&buffer[..received], path))
}

fn parse_get(bytes: &[u8], path: &str) -> Option<(Request<()>, usize)> {
    let target = bytes.strip_prefix(b"GET ")?.strip_prefix(path.as_bytes())?;
    if !matches!(target.first(), Some(b' ' | b'?')) {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(bytes) else {
        return None;
    };
    if parsed.version != Some(1) {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .version(Version::HTTP_11)
        .uri(parsed.path?);
    for field in parsed.headers.iter() {
        request = request.header(field.name, field.value);
    }
    let request = request.body(()).ok()?;
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0");
    (!has_body).then_some((request, head_len))
}

/// Reads the `len` bytes of the request head, already received (they were peeked).
fn consume(stream: &TcpStream, len: usize) -> bool {
    let mut buffer = [0u8; MAX_HEAD];
    let read = rustix::net::recv(stream, &mut buffer[..len], RecvFlags::DONTWAIT);
    matches!(read, Ok((n, _)) if n == len)
}

/// The head of a refusal: the event stream's headers, no body, and the connection closed.
fn refusal_head(status: StatusCode, cors: impl FnOnce(&mut HeaderMap)) -> Vec<u8> {
    let mut response = stream_headers(empty(status));
    let headers = response.headers_mut();
    cors(headers);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    encode_head(status, headers)
}

/// The head of an accepted stream: the same headers as over hyper, the body chunked.
fn stream_head(cors: impl FnOnce(&mut HeaderMap)) -> Vec<u8> {
    let mut response = stream_headers(empty(StatusCode::OK));
    let headers = response.headers_mut();
    cors(headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    encode_head(StatusCode::OK, headers)
}

fn encode_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let reason = status.canonical_reason().unwrap_or("");
    head.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).as_bytes());
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    head.extend_from_slice(format!("date: {date}\r\n").as_bytes());
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The life of one event stream served on its socket.
struct DirectStream {
    node: Arc<Node>,
    session: Session,
    socket: DirectSocket,
    /// The response head, written with the first events and then dropped.
    head: Vec<u8>,
    format: Format,
    write_timeout: Duration,
    pings: Pings,
    live: Arc<LiveOutboxes>,
    _permit: Option<OwnedSemaphorePermit>,
    started: Instant,
}

/// What the stream's task was woken for.
enum Wake {
    /// Something to write: the head, or what the outbox holds for the task.
    Write,
    /// The client closed the connection, or it failed.
    Gone,
    Ping,
}

impl DirectStream {
    async fn run(mut self) {
        let node = self.node.clone();
        let _client = node.metrics().track(Gauge::SseClients);
        let outbox = self.session.outbox.clone();
        let live = self.live.clone();
        let _listed = live.register(&outbox);
        let mut batch = VecDeque::new();
        let ping = self.pings.start();
        tokio::pin!(ping);
        let ended = loop {
            let wake = poll_fn(|cx| {
                outbox.poll_take(cx, &mut batch);
                if !batch.is_empty() || !self.head.is_empty() {
                    return Poll::Ready(Wake::Write);
                }
                if poll_gone(&mut self.socket, cx).is_ready() {
                    return Poll::Ready(Wake::Gone);
                }
                if self.pings.on() && ping.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Ping);
                }
                Poll::Pending
            })
            .await;
            match wake {
                // Boxed: the write future (with its deadline timer) is not kept in every idle
                // stream's task between writes.
                Wake::Write => match Box::pin(self.write(&mut batch)).await {
                    Ok(true) => outbox.written(),
                    Ok(false) => break "closed by the server",
                    Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                        tracing::debug!(sid = &*self.session.sid, "SSE write timed out");
                        break "write timed out";
                    }
                    Err(error) => {
                        tracing::debug!(sid = &*self.session.sid, "SSE write failed: {error}");
                        break "write failed";
                    }
                },
                Wake::Gone => {
                    tracing::debug!(sid = &*self.session.sid, "SSE client went away");
                    break "client went away";
                }
                Wake::Ping => self.pings.send(&self.node, &self.session, ping.as_mut()),
            }
        };
        Box::pin(self.node.disconnect(&mut self.session)).await;
        tracing::debug!(
            context = "sse",
            sid = &*self.session.sid,
            reason = ended,
            duration = ?self.started.elapsed(),
            "SSE session completed"
        );
    }

    /// Writes the head (the first time), then the batch as one chunk, under the write deadline
    /// (armed only if the socket cannot take it at once). After a close item, the last chunk
    /// ends the response: returns false then.
    async fn write(&mut self, batch: &mut VecDeque<Outgoing>) -> io::Result<bool> {
        let mut wire = std::mem::take(&mut self.head);
        let (events, bytes) = framer(self.format)(batch, &mut wire);
        let open = batch.is_empty();
        if !open {
            wire.extend_from_slice(LAST_CHUNK);
        }
        // Light traffic frees the queue's memory, as over WebSocket.
        *batch = VecDeque::new();
        let metrics = self.node.metrics();
        match with_deadline(self.write_timeout, self.socket.write_all(&wire)).await {
            Ok(Ok(())) => {
                metrics.add(Counter::ServerMsg, events);
                metrics.add(Counter::DataSent, bytes);
                Ok(open)
            }
            Ok(Err(error)) => {
                metrics.inc(Counter::FailedServerMsg);
                Err(error)
            }
            Err(_) => {
                metrics.inc(Counter::FailedServerMsg);
                metrics.inc(Counter::TimeoutServerMsg);
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }
}

/// Ready once the client closed its side or the connection failed. Whatever the client sends
/// on an event stream's connection is read and ignored.
fn poll_gone(socket: &mut DirectSocket, cx: &mut Context<'_>) -> Poll<()> {
    let mut chunk = [MaybeUninit::<u8>::uninit(); 256];
    loop {
        let mut read = ReadBuf::uninit(&mut chunk);
        match Pin::new(&mut *socket).poll_read(cx, &mut read) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) if !read.filled().is_empty() => {}
            Poll::Ready(_) => return Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_bodiless_gets_of_the_path_are_taken() {
        let head = b"GET /events?stream=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\n\r\n";
        let (request, len) = parse_get(head, "/events").expect("taken");
        assert_eq!(len, head.len());
        assert_eq!(request.uri().query(), Some("stream=a"));
        assert_eq!(request.headers()["last-event-id"], "1");
        for other in [
            &b"GET /events?stream=a HTTP/1.1\r\nHost: x\r\n"[..],
            b"GET /eventsx HTTP/1.1\r\n\r\n",
            b"POST /events HTTP/1.1\r\n\r\n",
            b"GET /events HTTP/1.0\r\n\r\n",
            b"GET /events HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /cable HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse_get(other, "/events").is_none(), "{other:?}");
        }
    }

    #[test]
    fn heads_are_http_1_1_with_the_stream_headers() {
        let head = String::from_utf8(stream_head(|_| {})).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\ndate: "), "{head}");
        assert!(head.contains("\r\ncontent-type: text/event-stream; charset=utf-8\r\n"));
        assert!(head.contains("\r\ntransfer-encoding: chunked\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        let refusal = String::from_utf8(refusal_head(StatusCode::UNAUTHORIZED, |_| {})).unwrap();
        assert!(refusal.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(refusal.contains("\r\ncontent-length: 0\r\n"));
        assert!(refusal.contains("\r\nconnection: close\r\n"));
    }
}

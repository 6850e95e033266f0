//! The Server-Sent Events transport: one HTTP request is one session. The request names its
//! subscriptions (GET query parameters or a POST body of JSON Lines); the server authenticates,
//! subscribes, decides the status from the outcome, then streams events until either side ends.
//!
//! The response body is fed through a small bounded channel by one task per connection, which
//! owns the `Session` and selects over the outbox, the ping timer and the client going away (the
//! channel's receiver is dropped with the response). Shutdown reaches it through
//! `transport::live`, as for WebSocket connections.

mod direct;
mod encoder;
pub(crate) mod request;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{sleep_until, timeout, Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use direct::Declined;
pub use encoder::{Format, NO_RECONNECT_RETRY_MS};
pub use request::{RequestError, Subscribe, MAX_BODY_BYTES};

use super::live::LiveOutboxes;
use super::ws::Flushers;
use super::{connection_id, find_token, first_ping_delay, EnvBuilder, Precision};
use crate::config::Config;
use crate::http::{with_cors, AllowedOrigins, BodyReadError, ConnectionAbort};
use crate::metrics::Gauge;
use crate::node::{ConnectRequest, Node, Subscribed};
use crate::protocol::{Reply, TRY_AGAIN_LATER};
use crate::session::{Outbox, Outgoing, RequestEnv, Session};

/// Body chunks (one per outbox batch) that may wait for the socket before the writer task
/// itself waits; the outbox behind it is the real, byte-bounded queue.
const CHANNEL_CAPACITY: usize = 8;

/// Everything the SSE endpoint needs, built once from the config.
pub struct SseEndpoint {
    node: Arc<Node>,
    /// Used only to build CORS headers: SSE never refuses a request by origin.
    origins: AllowedOrigins,
    jwt_param: Option<String>,
    /// Where the cleartext `turbo_stream_name` parameter subscribes, if anywhere.
    plain_turbo_name: request::PlainTurboName,
    /// What the backend learns about each request.
    env_builder: EnvBuilder,
    max_pending_bytes: usize,
    write_timeout: Duration,
    ping_interval: Option<Duration>,
    ping_precision: Precision,
    /// Every open connection's outbox: shutdown queues the `server_restart` disconnect on each.
    live: Arc<LiveOutboxes>,
    /// The WebSocket endpoint's writers, which also write streams served on their sockets.
    flushers: Flushers,
    tracker: TaskTracker,
}

impl SseEndpoint {
    pub fn new(
        config: &Config,
        node: Arc<Node>,
        env_builder: EnvBuilder,
        jwt_enabled: bool,
        live: Arc<LiveOutboxes>,
        flushers: Flushers,
        tracker: TaskTracker,
    ) -> SseEndpoint {
        SseEndpoint {
            node,
            env_builder,
            origins: AllowedOrigins::new(&config.server.allowed_origins),
            jwt_param: jwt_enabled.then(|| config.jwt.param.clone()),
            plain_turbo_name: request::PlainTurboName::from_config(&config.streams),
            max_pending_bytes: config.ws.max_pending_size,
            write_timeout: Duration::from_secs(config.ws.write_timeout_secs.max(1)),
            ping_interval: (config.app.ping_interval_secs > 0)
                .then(|| Duration::from_secs(config.app.ping_interval_secs)),
            ping_precision: config.app.ping_timestamp_precision,
            live,
            flushers,
            tracker,
        }
    }

    /// Answers one request: CORS preflight, an error status, or a stream of events.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<SseBody> {
        with_cors(Some(&self.origins), request, |request| {
            self.respond(request)
        })
        .await
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<SseBody> {
        let method = request.method().clone();
        if method == Method::OPTIONS {
            return empty(StatusCode::OK);
        }
        if method != Method::GET && method != Method::POST {
            return empty(StatusCode::METHOD_NOT_ALLOWED);
        }
        let started = Instant::now();
        let abort = request
            .extensions()
            .get::<ConnectionAbort>()
            .map(|a| a.0.clone());
        let mut ask = self.ask(&request, Vec::new());
        let commands = if method == Method::POST {
            read_body(request)
                .await
                .and_then(|b| request::from_body(&b))
        } else {
            self.get_commands(&request)
        };
        ask.commands = match commands {
            Ok(commands) => commands,
            Err(error) => {
                tracing::debug!("SSE request refused: {error}");
                return match error {
                    RequestError::BodyTimedOut => BodyReadError::TimedOut
                        .add_headers(stream_headers(empty(StatusCode::REQUEST_TIMEOUT))),
                    RequestError::BodyBusy => BodyReadError::Busy
                        .add_headers(stream_headers(empty(StatusCode::SERVICE_UNAVAILABLE))),
                    _ => stream_headers(empty(StatusCode::BAD_REQUEST)),
                };
            }
        };
        let format = ask.format;
        let outbox = Arc::new(Outbox::new(self.max_pending_bytes));
        match self.open(ask, &outbox).await {
            Ok(session) => self.stream(session, format, abort, started).await,
            Err(status) => stream_headers(empty(status)),
        }
    }

    /// The pings of a stream in `format` (raw streams get none).
    fn pings(&self, format: Format) -> Pings {
        Pings {
            interval: self.ping_interval.filter(|_| !format.raw),
            precision: self.ping_precision,
        }
    }

    /// What a request asks for, with the subscriptions given.
    fn ask<B>(&self, request: &Request<B>, commands: Vec<Subscribe>) -> Ask {
        let query = request.uri().query();
        let headers = request.headers();
        Ask {
            token: self
                .jwt_param
                .as_deref()
                .and_then(|param| find_token(headers, query, param)),
            sid: connection_id(headers).into(),
            env: self.env_builder.build(request),
            commands,
            format: Format {
                full_messages: request.method() == Method::POST,
                raw: request::raw_mode(query),
            },
        }
    }

    /// The subscription of a GET request (query parameters and `Last-Event-ID`).
    fn get_commands<B>(&self, request: &Request<B>) -> Result<Vec<Subscribe>, RequestError> {
        let last_event_id = request
            .headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        request::from_query(request.uri().query(), last_event_id, self.plain_turbo_name)
            .map(|s| vec![s])
    }

    /// Authenticates and subscribes, the session's frames queued in `outbox`; or the status
    /// that refuses the request.
    async fn open(&self, ask: Ask, outbox: &Arc<Outbox>) -> Result<Session, StatusCode> {
        tracing::debug!(context = "sse", sid = &*ask.sid, "SSE session established");
        // A client that goes away drops this request, and the connect with it.
        let left = CancellationToken::new();
        let connect = ConnectRequest {
            token: ask.token.as_deref(),
            sid: ask.sid,
            extended: false,
            restore_sid: None,
            env: ask.env,
            left: &left,
        };
        let Some(mut session) = Box::pin(self.node.connect(connect, outbox.clone())).await else {
            let mut batch = VecDeque::new();
            outbox.take_batch(&mut batch).now_or_never();
            // A rejection comes with a `disconnect` message; an authentication error closes
            // without one.
            let rejected = batch.iter().any(|item| matches!(item, Outgoing::Text(_)));
            let busy = batch.iter().any(
                |item| matches!(item, Outgoing::Close { code, .. } if *code == TRY_AGAIN_LATER),
            );
            return Err(if busy {
                StatusCode::SERVICE_UNAVAILABLE
            } else if rejected {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            });
        };
        for command in ask.commands {
            let outcome = Box::pin(self.node.subscribe(
                &mut session,
                command.identifier,
                command.history,
            ))
            .await;
            if outcome != Subscribed::Confirmed {
                tracing::debug!(sid = &*session.sid, ?outcome, "SSE subscription refused");
                Box::pin(self.node.disconnect(&mut session)).await;
                return Err(StatusCode::BAD_REQUEST);
            }
        }
        Ok(session)
    }

    /// Streams an opened session through hyper: spawns the connection task that feeds the
    /// response body.
    async fn stream(
        &self,
        mut session: Session,
        format: Format,
        abort: Option<CancellationToken>,
        started: Instant,
    ) -> Response<SseBody> {
        // What authentication and the subscriptions produced is written first, in order.
        let mut batch = VecDeque::new();
        session.outbox.take_batch(&mut batch).now_or_never();
        let (first, closed) = encode_batch(&mut batch, format);
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        if !first.is_empty() {
            // The channel is new and empty: this cannot fail for lack of room.
            let _ = sender.try_send(Bytes::from(first));
        }
        if closed {
            self.node.disconnect(&mut session).await;
        } else {
            let connection = Connection {
                node: self.node.clone(),
                session,
                sender,
                format,
                write_timeout: self.write_timeout,
                pings: self.pings(format),
                live: self.live.clone(),
                abort,
                started,
            };
            self.tracker.spawn(connection.run());
        }
        let mut response = Response::new(SseBody::streaming(receiver));
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        stream_headers(response)
    }
}

/// A stream's pings: the first at a random point in [0.5, 1.5) × the interval (as over
/// WebSocket), then one per interval; none without an interval (or in raw mode).
#[derive(Clone, Copy)]
struct Pings {
    interval: Option<Duration>,
    precision: Precision,
}

impl Pings {
    /// The timer of the first ping. It lives across the task's loop turns (a new one per turn
    /// would register with the timer wheel each time) and is polled only when [`Pings::on`].
    fn start(self) -> Sleep {
        let first = self.interval.map(first_ping_delay).unwrap_or_default();
        sleep_until(Instant::now() + first)
    }

    fn on(self) -> bool {
        self.interval.is_some()
    }

    /// Sends a ping and sets `timer` for the next one.
    fn send(self, node: &Node, session: &Session, timer: Pin<&mut Sleep>) {
        if let Some(interval) = self.interval {
            timer.reset(Instant::now() + interval);
        }
        let ping = Reply::Ping {
            message: self.precision.timestamp(),
        };
        node.send(session, ping.encode());
    }
}

/// What an SSE request asks for.
struct Ask {
    token: Option<String>,
    sid: Arc<str>,
    env: Arc<RequestEnv>,
    commands: Vec<Subscribe>,
    format: Format,
}

/// Reads a POST body of at most [`MAX_BODY_BYTES`], under the shared body deadline.
async fn read_body(request: Request<Incoming>) -> Result<Bytes, RequestError> {
    crate::http::read_body(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|error| match error {
            BodyReadError::TooLarge => RequestError::BodyTooLarge,
            BodyReadError::TimedOut => RequestError::BodyTimedOut,
            BodyReadError::Busy => RequestError::BodyBusy,
            BodyReadError::Unreadable => RequestError::BodyUnreadable,
        })
}

/// The life of one accepted SSE session.
struct Connection {
    node: Arc<Node>,
    session: Session,
    sender: mpsc::Sender<Bytes>,
    format: Format,
    write_timeout: Duration,
    pings: Pings,
    live: Arc<LiveOutboxes>,
    /// Drops the HTTP connection when the client stopped reading: the response could never be
    /// finished, and the socket would otherwise stay open until TCP gives up.
    abort: Option<CancellationToken>,
    /// When the request came in, for the session's duration in the log.
    started: Instant,
}

impl Connection {
    /// Hands a chunk to the response body; false once the connection is over. The write
    /// deadline is armed only when the channel is full: a timer per chunk would cost more than
    /// the chunk.
    async fn send(&self, chunk: Bytes) -> bool {
        let chunk = match self.sender.try_send(chunk) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(chunk)) => chunk,
        };
        match timeout(self.write_timeout, self.sender.send(chunk)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::debug!(sid = &*self.session.sid, "SSE write timed out");
                self.node.drops().write_timeouts.record(1);
                self.abort_connection();
                false
            }
        }
    }

    fn abort_connection(&self) {
        if let Some(abort) = &self.abort {
            abort.cancel();
        }
    }

    async fn run(mut self) {
        let _client = self.node.metrics().track(Gauge::SseClients);
        let outbox = self.session.outbox.clone();
        let live = self.live.clone();
        let _listed = live.register(&outbox);
        let mut batch = VecDeque::new();
        let ping = self.pings.start();
        tokio::pin!(ping);
        loop {
            tokio::select! {
                biased;
                _ = self.sender.closed() => {
                    tracing::debug!(sid = &*self.session.sid, "SSE client went away");
                    break;
                }
                _ = outbox.take_batch(&mut batch) => {
                    let (chunk, closed) = encode_batch(&mut batch, self.format);
                    if !chunk.is_empty() && !self.send(Bytes::from(chunk)).await {
                        break;
                    }
                    if closed {
                        // A client too slow to drain its queue will not read the end of the
                        // response either.
                        if outbox.overflowed() {
                            self.abort_connection();
                        }
                        break;
                    }
                }
                _ = &mut ping, if self.pings.on() => {
                    self.pings.send(&self.node, &self.session, ping.as_mut());
                }
            }
        }
        self.node.disconnect(&mut self.session).await;
        tracing::debug!(
            context = "sse",
            sid = &*self.session.sid,
            duration = ?self.started.elapsed(),
            "SSE session completed"
        );
    }
}

/// Encodes everything taken from the outbox into one chunk; stops at a close item and
/// reports it.
fn encode_batch(batch: &mut VecDeque<Outgoing>, format: Format) -> (String, bool) {
    let mut chunk = String::new();
    while let Some(item) = batch.pop_front() {
        match item {
            Outgoing::Text(text) => chunk.push_str(encoder::event(&text, format)),
            // WebSocket-only items; never queued for an event stream.
            Outgoing::Ping | Outgoing::Pong(_) | Outgoing::Framed(_) => {}
            Outgoing::Close { .. } => {
                batch.clear();
                return (chunk, true);
            }
        }
    }
    (chunk, false)
}

/// The first ping comes at a random point in [0.5, 1.5) × interval, as over WebSocket.
fn empty(status: StatusCode) -> Response<SseBody> {
    let mut response = Response::new(SseBody::empty());
    *response.status_mut() = status;
    response
}

/// Headers of the event stream. They are set before the status is known, so error answers
/// carry them too, as in the reference.
fn stream_headers(mut response: Response<SseBody>) -> Response<SseBody> {
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set("content-type", "text/event-stream; charset=utf-8");
    set(
        "cache-control",
        "private, no-cache, no-store, must-revalidate, max-age=0",
    );
    set("pragma", "no-cache");
    // Sic: the reference sends `Expire`, not `Expires`.
    set("expire", "0");
    set("x-content-type-options", "nosniff");
    set("x-accel-buffering", "no");
    set("x-anycable-version", crate::config::VERSION);
    response
}

/// The body of an SSE response: empty (error statuses, preflight) or the event stream fed by
/// the connection task. The stream ends when the task drops its sender.
pub struct SseBody {
    events: Option<mpsc::Receiver<Bytes>>,
}

impl SseBody {
    fn empty() -> SseBody {
        SseBody { events: None }
    }

    fn streaming(events: mpsc::Receiver<Bytes>) -> SseBody {
        SseBody {
            events: Some(events),
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.events.as_mut() {
            None => Poll::Ready(None),
            Some(events) => events
                .poll_recv(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.events.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.events {
            None => SizeHint::with_exact(0),
            Some(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stop_at_close() {
        let mut batch = VecDeque::from([
            Outgoing::Text(r#"{"type":"welcome","sid":"s"}"#.to_string().into()),
            Outgoing::Text(
                r#"{"type":"disconnect","reason":"remote","reconnect":false}"#
                    .to_string()
                    .into(),
            ),
            Outgoing::Close {
                code: 1000,
                reason: "",
            },
            Outgoing::Text(r#"{"type":"ping","message":1}"#.to_string().into()),
        ]);
        let format = Format {
            full_messages: false,
            raw: false,
        };
        let (chunk, closed) = encode_batch(&mut batch, format);
        assert!(closed);
        assert!(batch.is_empty());
        assert_eq!(
            chunk,
            "event: welcome\ndata: {\"type\":\"welcome\",\"sid\":\"s\"}\n\n\
             event: disconnect\ndata: {\"type\":\"disconnect\",\"reason\":\"remote\",\"reconnect\":false}\nretry: 31536000000\n\n"
        );
    }

    #[test]
    fn first_ping_is_jittered_around_the_interval() {
        let interval = Duration::from_secs(3);
        for _ in 0..100 {
            let delay = first_ping_delay(interval);
            assert!(delay >= Duration::from_millis(1500) && delay < Duration::from_millis(4500));
        }
    }
}

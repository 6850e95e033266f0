//! The WebSocket transport: the upgrade handshake, then one task per connection that reads
//! client frames, writes the session's outbox, and sends pings.

pub(crate) mod codec;
mod flusher;
mod frame;
mod socket;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::error::Elapsed;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::flusher::{DirectSocket, Flushers};

use self::codec::Message;
use self::frame::{append_close_frame, frame_items, text_frame_len};
use self::socket::{ReadError, Socket};
use super::live::LiveOutboxes;
use super::{
    connection_id, find_token, first_ping_delay, offered_protocols, query_param, EnvBuilder,
    Precision,
};
use crate::config::Config;
use crate::http::{plain, AllowedOrigins, Body, ConnectionPermit};
use crate::metrics::Counter;
use crate::node::{ConnectRequest, Node};
use crate::protocol::{DisconnectReason, Reply, EXTENDED_PROTOCOL, SUPPORTED_SUBPROTOCOLS};
use crate::session::{Outbox, Outgoing};
use crate::session::{RequestEnv, Session};

/// How long to wait for the client's close frame after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a restored session waits for the client's `history` commands before its
/// subscriptions are re-attached anyway (replaying what was published since the restore).
const RESTORE_HISTORY_GRACE: Duration = Duration::from_secs(3);

/// Everything the WebSocket endpoint needs, built once from the config.
pub struct WsEndpoint {
    pub node: Arc<Node>,
    pub handshake: Handshake,
    pub limits: Limits,
    pub heartbeat: Heartbeat,
    /// Every open connection's outbox: shutdown queues the `server_restart` disconnect on each.
    pub live: Arc<LiveOutboxes>,
    /// Write plain-TCP connections' frames without waking their tasks.
    flushers: Flushers,
    pub tracker: TaskTracker,
}

/// What the upgrade request is checked and described with.
pub struct Handshake {
    /// What the backend learns about each connection request.
    pub env_builder: EnvBuilder,
    pub origins: AllowedOrigins,
    /// Where the JWT is looked for; `None` when JWT is off.
    pub jwt_param: Option<String>,
}

/// Sizes and deadlines of one connection's IO.
pub struct Limits {
    /// `--max_message_size`: larger client messages close the connection (1009).
    pub max_message_bytes: usize,
    /// `--read_buffer_size`: bytes read at most per read.
    pub read_chunk: usize,
    /// `--ws_max_pending_size`: the bound of each connection's outbox.
    pub max_pending_bytes: usize,
    pub write_timeout: Duration,
}

/// The timers a connection keeps besides its writes.
pub struct Heartbeat {
    pub ping_interval: Duration,
    pub ping_precision: Precision,
    /// `--pong_timeout`; armed for extended-protocol sessions and with native pings.
    pub pong_timeout: Option<Duration>,
    pub native_pings: bool,
    /// How often an extended-protocol session refreshes its cached snapshot and its presence
    /// records (the shorter of half of each time to live).
    pub sessions_keepalive: Option<Duration>,
}

impl WsEndpoint {
    pub fn new(
        config: &Config,
        node: Arc<Node>,
        env_builder: EnvBuilder,
        jwt_enabled: bool,
        live: Arc<LiveOutboxes>,
        tracker: TaskTracker,
    ) -> WsEndpoint {
        let ws = &config.ws;
        let flushers = Flushers::start(node.shared_metrics());
        WsEndpoint {
            node,
            handshake: Handshake {
                env_builder,
                origins: AllowedOrigins::new(&config.server.allowed_origins),
                jwt_param: jwt_enabled.then(|| config.jwt.param.clone()),
            },
            limits: Limits {
                max_message_bytes: ws.max_message_size,
                read_chunk: ws.read_buffer_size,
                max_pending_bytes: ws.max_pending_size,
                write_timeout: Duration::from_secs(ws.write_timeout_secs.max(1)),
            },
            heartbeat: Heartbeat {
                ping_interval: Duration::from_secs(config.app.ping_interval_secs),
                ping_precision: config.app.ping_timestamp_precision,
                pong_timeout: (config.app.pong_timeout_secs > 0)
                    .then(|| Duration::from_secs(config.app.pong_timeout_secs)),
                native_pings: config.app.enable_native_pings,
                sessions_keepalive: keepalive(config),
            },
            live,
            flushers,
            tracker,
        }
    }

    /// Answers an upgrade request and spawns the connection task.
    pub fn upgrade(self: &Arc<Self>, mut request: Request<Incoming>) -> Response<Body> {
        let headers = request.headers();
        let is_upgrade = request.method() == hyper::Method::GET
            && header_has_token(headers, header::CONNECTION, "upgrade")
            && header_has_token(headers, header::UPGRADE, "websocket")
            && headers
                .get(header::SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v == "13");
        let Some(key) = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .filter(|_| is_upgrade)
        else {
            return plain(StatusCode::BAD_REQUEST, "Bad Request");
        };
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if !self.handshake.origins.allows(origin) {
            tracing::debug!(origin, "WebSocket origin rejected");
            let mut response = plain(StatusCode::FORBIDDEN, "Forbidden");
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return response;
        }

        let accept = derive_accept_key(key.as_bytes());
        let protocol = offered_protocols(headers)
            .find(|p| SUPPORTED_SUBPROTOCOLS.contains(p))
            .map(str::to_string);
        let query = request.uri().query();
        let token = self
            .handshake
            .jwt_param
            .as_deref()
            .and_then(|param| find_token(headers, query, param));
        let sid: Arc<str> = connection_id(headers).into();
        let env = self.handshake.env_builder.build(&request);
        let extended = protocol.as_deref() == Some(EXTENDED_PROTOCOL);
        let restore_sid = headers
            .get("x-anycable-restore-sid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| query_param(query, "sid"))
            .filter(|s| extended && !s.is_empty());
        let ping_interval = match query_param(query, "pi") {
            Some(value) => match value.parse::<i64>() {
                Ok(seconds) if seconds > 0 => Some(Duration::from_secs(seconds as u64)),
                Ok(_) => None,
                Err(_) => {
                    tracing::warn!(sid = &*sid, value, "invalid ping interval in ?pi=, ignored");
                    self.default_ping_interval()
                }
            },
            None => self.default_ping_interval(),
        };
        let precision = query_param(query, "ptp")
            .map_or(self.heartbeat.ping_precision, |p| Precision::parse(&p));

        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let response_headers = response.headers_mut();
        response_headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        response_headers.insert(
            "x-anycable-version",
            HeaderValue::from_static(crate::config::VERSION),
        );
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = protocol
            .as_deref()
            .and_then(|p| HeaderValue::from_str(p).ok())
        {
            response_headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }

        let endpoint = self.clone();
        let permit = request.extensions_mut().remove::<ConnectionPermit>();
        let on_upgrade = hyper::upgrade::on(&mut request);
        self.tracker.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let options = ConnectionOptions {
                        token,
                        env,
                        sid,
                        extended,
                        restore_sid,
                        ping_interval,
                        precision,
                    };
                    let limits = &endpoint.limits;
                    let (max, chunk) = (limits.max_message_bytes, limits.read_chunk);
                    // Plain TCP, the common case, is served without hyper's boxed IO in between.
                    match upgraded.downcast::<TokioIo<TcpStream>>() {
                        Ok(parts) => {
                            let tcp = parts.io.into_inner();
                            let pending = endpoint.limits.max_pending_bytes;
                            let (outbox, tcp) = endpoint.flushers.open(tcp, pending);
                            let socket = Socket::new(tcp, parts.read_buf, max, chunk);
                            endpoint.run(socket, outbox, options).await;
                        }
                        Err(upgraded) => {
                            let io = TokioIo::new(upgraded);
                            let socket = Socket::new(io, Bytes::new(), max, chunk);
                            let outbox = Arc::new(Outbox::new(endpoint.limits.max_pending_bytes));
                            endpoint.run(socket, outbox, options).await;
                        }
                    }
                    drop(permit);
                }
                Err(error) => tracing::debug!("WebSocket upgrade failed: {error}"),
            }
        });
        response
    }

    /// The shared writers, for the other endpoints of the listener (SSE).
    pub fn flushers(&self) -> Flushers {
        self.flushers.clone()
    }

    fn default_ping_interval(&self) -> Option<Duration> {
        let interval = self.heartbeat.ping_interval;
        (!interval.is_zero()).then_some(interval)
    }

    /// The life of one connection: authenticate, then serve until either side closes.
    ///
    /// Commands of a connection run one at a time, in order; while one is in flight (an RPC
    /// call may take a while) no further frame is read, but queued frames keep being written
    /// and pings keep going.
    async fn run<S>(
        &self,
        mut socket: Socket<S>,
        outbox: Arc<Outbox>,
        mut options: ConnectionOptions,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let _listed = self.live.register(&outbox);
        let started = Instant::now();
        tracing::debug!(
            context = "ws",
            sid = &*options.sid,
            "WebSocket session established"
        );
        // Why the connection ended, first cause wins; logged with the session's duration.
        let mut ended: Option<String> = None;
        let left = CancellationToken::new();
        let request = ConnectRequest {
            token: options.token.as_deref(),
            sid: options.sid.clone(),
            extended: options.extended,
            restore_sid: options.restore_sid.as_deref(),
            env: options.env.clone(),
            left: &left,
        };
        // Boxed so that the (large, possibly RPC) connect future does not count toward the size
        // every connection task keeps for its whole life.
        let mut connect = Box::pin(self.node.connect(request, outbox.clone()));
        // While the backend decides, the client's first frame is read and kept for the loop
        // below: if it is the client's close or the end of the connection, the client left and
        // a `Connect` call not made yet is not made.
        let mut early: Option<Option<Result<Message, ReadError>>> = None;
        let mut session = poll_fn(|cx| loop {
            if let Poll::Ready(session) = connect.as_mut().poll(cx) {
                return Poll::Ready(session);
            }
            if early.is_some() {
                return Poll::Pending;
            }
            let Poll::Ready(frame) = socket.poll_next(cx) else {
                return Poll::Pending;
            };
            let gone = !matches!(
                frame,
                Some(Ok(Message::Text(_)
                    | Message::Binary(_)
                    | Message::Ping(_)
                    | Message::Pong))
            );
            early = Some(frame);
            if gone {
                left.cancel();
            }
        })
        .await;
        drop(connect);
        // The token and the restore id are not needed any more: do not keep them for the
        // connection's whole life.
        drop(options.token.take());
        drop(options.restore_sid.take());
        let connected = session.is_some();
        let mut in_flight: Option<Pin<Box<dyn Future<Output = Session> + Send + '_>>> = None;
        let mut batch = VecDeque::new();
        // Set once the client closed or sent garbage: our close frame is queued, nothing more is
        // read.
        let mut read_closed = false;
        let mut next_ping = options
            .ping_interval
            .filter(|_| connected)
            .map(|interval| Instant::now() + first_ping_delay(interval));
        let heartbeat = &self.heartbeat;
        let pong_timeout = heartbeat
            .pong_timeout
            .filter(|_| options.extended || heartbeat.native_pings);
        let mut pong_deadline: Option<Instant> = None;
        let keepalive = heartbeat.sessions_keepalive.filter(|_| options.extended);
        let mut next_keepalive = keepalive.map(|every| Instant::now() + every);
        let restored = session
            .as_ref()
            .is_some_and(|s| s.subscriptions.values().any(|sub| sub.awaiting_history));
        let mut restore_deadline = restored.then(|| Instant::now() + RESTORE_HISTORY_GRACE);
        // The timer lives across loop turns: re-creating it on every turn would register with the
        // timer wheel each time a frame is written.
        let sleep = sleep_until(Instant::now());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;

        loop {
            let session_timers = if session.is_some() {
                [next_keepalive, restore_deadline]
            } else {
                [None, None]
            };
            let timer = [next_ping, pong_deadline]
                .into_iter()
                .chain(session_timers)
                .flatten()
                .min();
            if let Some(at) = timer.filter(|&at| armed != Some(at)) {
                sleep.as_mut().reset(at);
                armed = Some(at);
            }
            // In order: frames to write (the task is the writer only for TLS, slow clients and
            // close frames), the command in flight or else the next client frame, the timer.
            let event = poll_fn(|cx| {
                if let Some(frame) = early.take() {
                    return Poll::Ready(Event::Frame(frame));
                }
                outbox.poll_take(cx, &mut batch);
                if !batch.is_empty() {
                    return Poll::Ready(Event::Batch);
                }
                if let Some(command) = in_flight.as_mut() {
                    if let Poll::Ready(session) = command.as_mut().poll(cx) {
                        return Poll::Ready(Event::CommandDone(session));
                    }
                } else if !read_closed {
                    if let Poll::Ready(frame) = socket.poll_next(cx) {
                        return Poll::Ready(Event::Frame(frame));
                    }
                }
                if timer.is_some() && sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Batch => {
                    let metrics = self.node.metrics();
                    match Box::pin(with_deadline(
                        self.limits.write_timeout,
                        write_batch(&mut socket, &mut batch),
                    ))
                    .await
                    {
                        Ok(Ok((written, count))) => {
                            metrics.add(Counter::ServerMsg, count.frames);
                            metrics.add(Counter::DataSent, count.bytes);
                            if let Written::Closed { code, reason } = written {
                                ended.get_or_insert_with(|| {
                                    format!("closed by the server ({code} {reason})")
                                });
                                if !read_closed {
                                    wait_for_close(&mut socket).await;
                                }
                                break;
                            }
                            outbox.written();
                        }
                        Ok(Err(error)) => {
                            metrics.inc(Counter::FailedServerMsg);
                            ended.get_or_insert_with(|| format!("write failed: {error}"));
                            break;
                        }
                        Err(_) => {
                            metrics.inc(Counter::FailedServerMsg);
                            metrics.inc(Counter::TimeoutServerMsg);
                            self.node.drops().write_timeouts.record(1);
                            ended.get_or_insert_with(|| "write timed out".into());
                            break;
                        }
                    }
                }
                Event::CommandDone(done) => {
                    in_flight = None;
                    session = Some(done);
                }
                Event::Frame(frame) => {
                    let data: Bytes = match frame {
                        Some(Ok(Message::Text(data) | Message::Binary(data))) => data,
                        Some(Ok(Message::Pong)) => {
                            if let (Some(deadline), Some(pong_timeout)) =
                                (pong_deadline.as_mut(), pong_timeout)
                            {
                                *deadline += pong_timeout;
                            }
                            continue;
                        }
                        Some(Ok(Message::Ping(payload))) => {
                            outbox.push_control(Outgoing::Pong(payload));
                            continue;
                        }
                        Some(Ok(Message::Close(code))) => {
                            // Answer the client's close, as RFC 6455 asks, then hang up once
                            // the answer is written.
                            outbox.close(code.unwrap_or(1000), "");
                            read_closed = true;
                            ended.get_or_insert_with(|| match code {
                                Some(code) => format!("closed by the client ({code})"),
                                None => "closed by the client".into(),
                            });
                            continue;
                        }
                        None => {
                            ended.get_or_insert_with(|| "connection lost".into());
                            break;
                        }
                        Some(Err(ReadError::Decode(error))) => {
                            ended.get_or_insert_with(|| format!("invalid frame: {error}"));
                            let (code, reason) = error.close();
                            outbox.close(code, reason);
                            read_closed = true;
                            continue;
                        }
                        Some(Err(error)) => {
                            ended.get_or_insert_with(|| format!("read failed: {error}"));
                            break;
                        }
                    };
                    pong_deadline = None;
                    self.node
                        .metrics()
                        .add(Counter::DataRcvd, data.len() as u64);
                    if let Some(mut current) = session.take() {
                        let node = &self.node;
                        in_flight = Some(Box::pin(async move {
                            node.handle_frame(&mut current, &data).await;
                            current
                        }));
                    }
                }
                // One timer for every deadline keeps the connection task small; the keepalive
                // and restore deadlines need the session, which is away while a command runs.
                Event::Timer => {
                    armed = None;
                    let now = Instant::now();
                    if next_ping.is_some_and(|at| at <= now) {
                        next_ping = options.ping_interval.map(|interval| now + interval);
                        let ping = Reply::Ping {
                            message: options.precision.timestamp(),
                        }
                        .encode();
                        self.node.send_to(&outbox, ping);
                        if heartbeat.native_pings {
                            outbox.push_control(Outgoing::Ping);
                        }
                        if let (None, Some(pong_timeout)) = (pong_deadline, pong_timeout) {
                            pong_deadline = Some(now + pong_timeout);
                        }
                    }
                    if pong_deadline.is_some_and(|at| at <= now) {
                        pong_deadline = None;
                        outbox.disconnect(DisconnectReason::NoPong, true, 1000, "No Pong");
                    }
                    if let Some(current) = session.as_mut() {
                        if next_keepalive.is_some_and(|at| at <= now) {
                            next_keepalive = keepalive.map(|every| now + every);
                            self.node.touch_snapshot(current);
                            self.node.touch_presence(current);
                        }
                        if restore_deadline.is_some_and(|at| at <= now) {
                            restore_deadline = None;
                            self.node.finish_restore(current);
                        }
                    }
                }
            }
        }
        if let Some(in_flight) = in_flight {
            session = Some(in_flight.await);
        }
        if let Some(mut session) = session {
            Box::pin(self.node.disconnect(&mut session)).await;
        }
        tracing::debug!(
            context = "ws",
            sid = &*options.sid,
            reason = ended.as_deref().unwrap_or("closed"),
            duration = ?started.elapsed(),
            "WebSocket session completed"
        );
    }
}

/// Per-connection settings taken from the upgrade request.
struct ConnectionOptions {
    token: Option<String>,
    env: Arc<RequestEnv>,
    sid: Arc<str>,
    extended: bool,
    restore_sid: Option<String>,
    ping_interval: Option<Duration>,
    precision: Precision,
}

/// What the connection task was woken for, in the order it looks.
enum Event {
    /// Frames were taken from the outbox into the batch.
    Batch,
    /// The command in flight finished.
    CommandDone(Session),
    /// A message from the client, the end of the connection, or a read error.
    Frame(Option<Result<Message, ReadError>>),
    Timer,
}

enum Written {
    Open,
    /// Our close frame went out.
    Closed {
        code: u16,
        reason: &'static str,
    },
}

/// What a batch put on the wire, for the metrics.
#[derive(Default)]
struct Count {
    frames: u64,
    bytes: u64,
}

/// Writes everything taken from the outbox at once (one syscall when the socket has room): the
/// text frames framed into one buffer, and the close frame if one was queued.
async fn write_batch<S>(
    socket: &mut Socket<S>,
    batch: &mut VecDeque<Outgoing>,
) -> std::io::Result<(Written, Count)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut count = Count::default();
    let size = batch
        .iter()
        .map(|item| match item {
            Outgoing::Text(text) => text_frame_len(text.len()),
            Outgoing::Ping => 2,
            Outgoing::Pong(payload) => 2 + payload.len(),
            Outgoing::Framed(framed) => framed.len(),
            Outgoing::Close { reason, .. } => 4 + reason.len(),
        })
        .sum();
    let mut wire = Vec::with_capacity(size);
    // A batch of one frame is light traffic (a ping, a message now and then): its memory is
    // freed, so that connections between messages hold none. Busy connections keep it.
    let light = batch.len() <= 1;
    (count.frames, count.bytes) = frame_items(batch, &mut wire);
    let mut written = Written::Open;
    if let Some(Outgoing::Close { code, reason }) = batch.pop_front() {
        append_close_frame(code, reason, &mut wire);
        written = Written::Closed { code, reason };
        batch.clear();
    }
    if light {
        *batch = VecDeque::new();
    }
    socket.write_all(&wire).await?;
    Ok((written, count))
}

/// Runs `write` with a deadline, armed only when the write cannot finish at once: most batches
/// fit in the socket's send buffer, and a timer per write (a clock read and a reference to the
/// runtime's shared handle) would cost more than the framing.
pub async fn with_deadline<F: Future>(limit: Duration, write: F) -> Result<F::Output, Elapsed> {
    let mut write = std::pin::pin!(write);
    if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        return Ok(output);
    }
    timeout(limit, write).await
}

/// After our close frame, give the client a moment to answer so the close is clean.
async fn wait_for_close<S>(socket: &mut Socket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Close(_) = message {
                break;
            }
        }
    })
    .await;
}

fn header_has_token(headers: &hyper::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Half of the sessions TTL and of `--presence_ttl`, whichever is shorter (with a broker).
fn keepalive(config: &Config) -> Option<Duration> {
    if !config.broker.adapter.is_enabled() {
        return None;
    }
    let sessions = (config.broker.sessions_ttl_secs > 1)
        .then(|| Duration::from_secs(config.broker.sessions_ttl_secs / 2));
    let presence = (config.broker.presence_ttl_secs > 0)
        .then(|| Duration::from_millis(config.broker.presence_ttl_secs.saturating_mul(500)));
    sessions.into_iter().chain(presence).min()
}

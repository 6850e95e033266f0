//! HTTP listeners: the main one (WebSocket paths, SSE, health, and the broadcast and metrics
//! endpoints when they share the main port) and the broadcast and metrics listeners when they
//! have their own.

mod paths;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use paths::PathPattern;

use crate::api::ApiEndpoint;
use crate::broadcast::http::HttpBroadcaster;
use crate::http::{plain, Body, ConnectionAbort, ConnectionPermit, RemoteAddr};
use crate::metrics::Exporter;
use crate::notices::ListenerTrouble;
use crate::readiness::Status;
use crate::transport::sse::{SseBody, SseEndpoint};
use crate::transport::ws::WsEndpoint;

/// The health endpoint's body, as AnyCable-Go answers it.
pub const HEALTH_BODY: &str = "Ah, ha, ha, ha, stayin' alive, stayin' alive.";

/// Time allowed for a client to send the request headers. Hyper starts it again as soon as a
/// keep-alive connection goes idle, so it also closes connections that send nothing between
/// requests. Bodies have their own deadline (`crate::http::read_body`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of any response: a complete one, or an SSE event stream.
pub type RouteBody = Either<Body, SseBody>;

/// What one listener serves.
#[derive(Default)]
pub struct Routes {
    pub health_path: Option<String>,
    /// The readiness path and the checks' status (`--readiness_path`).
    pub readiness: Option<(String, Arc<Status>)>,
    pub ws_paths: Vec<PathPattern>,
    pub ws: Option<Arc<WsEndpoint>>,
    pub broadcast: Option<(String, Arc<HttpBroadcaster>)>,
    /// The SSE path and endpoint (`--sse`).
    pub sse: Option<(String, Arc<SseEndpoint>)>,
    /// The Prometheus path and exporter (`--metrics_http`).
    pub metrics: Option<(String, Arc<Exporter>)>,
    /// The REST API (`--api_path`), served under its base path.
    pub api: Option<Arc<ApiEndpoint>>,
}

impl Routes {
    /// The handlers' futures are boxed: hyper keeps room for this future, sized for the largest
    /// handler, for as long as the connection lives, which for an event stream is its whole life.
    async fn handle(&self, request: Request<Incoming>) -> Response<RouteBody> {
        let path = request.uri().path();
        if self.health_path.as_deref() == Some(path) {
            return plain(StatusCode::OK, HEALTH_BODY).map(Either::Left);
        }
        if let Some((readiness_path, status)) = &self.readiness {
            if readiness_path == path {
                return status.respond().map(Either::Left);
            }
        }
        if let Some((metrics_path, exporter)) = &self.metrics {
            if metrics_path == path {
                return exporter.respond().map(Either::Left);
            }
        }
        if let Some((broadcast_path, broadcaster)) = &self.broadcast {
            if broadcast_path == path {
                return Box::pin(broadcaster.handle(request))
                    .await
                    .map(Either::Left);
            }
        }
        if let Some(api) = &self.api {
            if api.serves(path) {
                return Box::pin(api.handle(request)).await.map(Either::Left);
            }
        }
        if let Some((sse_path, sse)) = &self.sse {
            if sse_path == path {
                return Box::pin(sse.handle(request)).await.map(Either::Right);
            }
        }
        if let Some(ws) = &self.ws {
            if self.ws_paths.iter().any(|p| p.matches(path)) {
                return ws.upgrade(request).map(Either::Left);
            }
        }
        plain(StatusCode::NOT_FOUND, "404 page not found\n").map(Either::Left)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot resolve listen address {0}")]
    Resolve(String, #[source] std::io::Error),
    #[error("failed to listen on {0}")]
    Bind(String, #[source] std::io::Error),
}

/// A bound listener, ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    max_conn: Option<Arc<Semaphore>>,
    /// Rate-limited log lines about connections it could not take.
    trouble: ListenerTrouble,
}

impl Listener {
    /// Binds `host:port`. A host name is resolved and its first IPv4 address preferred, like
    /// Go's listener does for `localhost`; an empty host binds every interface.
    pub async fn bind(
        host: &str,
        port: u16,
        tls: Option<TlsAcceptor>,
        max_conn: usize,
    ) -> Result<Listener, ServerError> {
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let target = format!("{host}:{port}");
        let addrs: Vec<SocketAddr> = match crate::resolve::localhost(host, port) {
            Some(loopback) => loopback,
            None => tokio::net::lookup_host(&target)
                .await
                .map_err(|e| ServerError::Resolve(target.clone(), e))?
                .collect(),
        };
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| {
                ServerError::Resolve(target.clone(), std::io::Error::other("no addresses"))
            })?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Bind(target.clone(), e))?;
        let trouble = ListenerTrouble::new(target, max_conn);
        let max_conn = (max_conn > 0).then(|| Arc::new(Semaphore::new(max_conn)));
        Ok(Listener {
            tcp,
            tls,
            max_conn,
            trouble,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    /// Accepts connections until `shutdown`; each HTTP connection finishes its current request
    /// and closes once shutdown starts. Upgraded WebSockets are handled by their own tasks.
    pub async fn serve(
        self,
        routes: Arc<Routes>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        loop {
            // With --max-conn, extra connections wait in the accept queue instead of being
            // refused, as in the reference.
            let permit = match &self.max_conn {
                Some(limit) => match limit.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        self.trouble.connection_limit.record(1);
                        tokio::select! {
                            permit = limit.clone().acquire_owned() => permit.ok(),
                            _ = shutdown.cancelled() => return,
                        }
                    }
                },
                None => None,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        self.trouble.accept_failed.record_with(error.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let _ = stream.set_nodelay(true);
            let routes = routes.clone();
            let shutdown = shutdown.clone();
            let tls = self.tls.clone();
            tracker.spawn(async move {
                match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => {
                            serve_connection(stream, peer, routes, shutdown, permit).await
                        }
                        Err(error) => tracing::debug!("TLS handshake failed: {error}"),
                    },
                    None => {
                        // Event streams over plain TCP are served on the raw socket.
                        let (stream, permit) = match &routes.sse {
                            Some((path, sse)) => {
                                match sse.take_over(stream, path, peer, permit).await {
                                    Ok(()) => return,
                                    Err(declined) => declined,
                                }
                            }
                            None => (stream, permit),
                        };
                        serve_connection::<TcpStream>(stream, peer, routes, shutdown, permit).await
                    }
                }
            });
        }
    }
}

/// Serves one HTTP/1.1 connection. The `--max-conn` permit lives as long as the connection,
/// including after a WebSocket upgrade (the upgraded task keeps a clone).
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    routes: Arc<Routes>,
    shutdown: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let permit = permit.map(Arc::new);
    let abort = CancellationToken::new();
    let abort_handle = abort.clone();
    let service = service_fn(move |mut request: Request<Incoming>| {
        let routes = routes.clone();
        request.extensions_mut().insert(RemoteAddr(peer));
        request
            .extensions_mut()
            .insert(ConnectionAbort(abort_handle.clone()));
        if let Some(permit) = &permit {
            request
                .extensions_mut()
                .insert(ConnectionPermit::new(permit.clone()));
        }
        async move { Ok::<_, Infallible>(routes.handle(request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!("HTTP connection error: {error}");
            }
        }
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = abort.cancelled() => {}
            }
        }
        // Dropping the connection closes the socket.
        _ = abort.cancelled() => tracing::debug!("HTTP connection aborted by its handler"),
    }
}

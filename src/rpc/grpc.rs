//! gRPC transport (tonic): unary calls to `/anycable.RPC/*` with the `sid` and `protov`
//! metadata, round-robin over one channel per backend address, counting live connections.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::proto::{
    CommandMessage, CommandResponse, ConnectionRequest, ConnectionResponse, DisconnectRequest,
    DisconnectResponse,
};
use super::tls::Trust;
use super::{CallError, HostError, SetupError, Transport};
use crate::config::RpcConfig;

/// How often `dns:///` targets are resolved again, so that a backend deployment scaled up or
/// down is followed.
const DNS_REFRESH: Duration = Duration::from_secs(10);
/// After a call found no backend reachable, the name is resolved again at once (the backends
/// may have moved), but not more often than this.
const DNS_RETRY: Duration = Duration::from_secs(1);
/// HTTP/2 keepalive pings, also while idle, as the reference does.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// A connection whose ping is not answered within this time is dropped and made again: a
/// backend that died without closing its connections (host gone, network cut, a replaced pod
/// behind the same address) is noticed within `KEEPALIVE + KEEPALIVE_TIMEOUT`.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// A TCP connection to a backend must be made within this time (a vanished host does not
/// refuse, it never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct GrpcTransport {
    /// One lazily connected channel per backend address, used in turn.
    pool: Arc<Pool>,
    /// Live connections to the backends (`grpc_active_conn_num`).
    live: Arc<AtomicUsize>,
    request_timeout: Option<Duration>,
    max_recv: Option<usize>,
    max_send: Option<usize>,
}

/// What `--rpc_host` names.
#[derive(Debug, PartialEq)]
enum Target {
    /// One `host:port`, resolved by the connector.
    Single(String),
    /// `grpc-list://a:1,b:2`: a fixed list, round-robin.
    List(Vec<String>),
    /// `dns:///host:port`: every address of the name, round-robin, re-resolved periodically.
    Dns(String),
}

fn parse_target(host: &str) -> Result<Target, HostError> {
    if let Some(list) = host.strip_prefix("grpc-list://") {
        let addresses: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if addresses.is_empty() {
            return Err(HostError::EmptyList);
        }
        return Ok(Target::List(addresses));
    }
    if let Some(name) = host
        .strip_prefix("dns:///")
        .or_else(|| host.strip_prefix("dns://"))
    {
        return Ok(Target::Dns(name.trim_start_matches('/').to_string()));
    }
    let address = host.strip_prefix("grpc://").unwrap_or(host);
    if address.is_empty() || address.contains("://") {
        return Err(HostError::UnknownForm);
    }
    Ok(Target::Single(address.to_string()))
}

/// An endpoint for one address; with TLS, `domain` is the name the certificate must carry
/// (the address may be an IP resolved from it).
fn endpoint(
    address: &str,
    tls: Option<&ClientTlsConfig>,
    domain: &str,
) -> Result<Endpoint, HostError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(HostError::Endpoint)?
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.clone().domain_name(domain))
            .map_err(HostError::Endpoint),
        None => Ok(endpoint),
    }
}

fn tls_config(trust: Option<Trust>) -> Result<Option<ClientTlsConfig>, SetupError> {
    let Some(trust) = trust else {
        return Ok(None);
    };
    let roots = super::tls::roots(Some(&trust))?;
    Ok(Some(
        ClientTlsConfig::new().trust_anchors(roots.roots.iter().cloned()),
    ))
}

/// The host part of `host:port`, the name TLS certificates are checked against.
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Keeps the pool's channels in line with the addresses `name` resolves to: every
/// [`DNS_REFRESH`], and as soon as a call found no backend reachable (at most every
/// [`DNS_RETRY`]). Channels of addresses still resolved are kept; ends with the pool.
async fn follow_dns(
    name: String,
    tls: Option<ClientTlsConfig>,
    connector: CountingConnector,
    pool: std::sync::Weak<Pool>,
) {
    let mut known: HashMap<SocketAddr, Channel> = HashMap::new();
    loop {
        match tokio::net::lookup_host(&name).await {
            Ok(found) => {
                let found: Vec<SocketAddr> = found.collect();
                known.retain(|address, _| found.contains(address));
                for address in found {
                    if let Entry::Vacant(slot) = known.entry(address) {
                        if let Ok(endpoint) =
                            endpoint(&address.to_string(), tls.as_ref(), host_of(&name))
                        {
                            slot.insert(endpoint.connect_with_connector_lazy(connector.clone()));
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(context = "rpc", "cannot resolve {name}: {error}"),
        }
        let Some(live) = pool.upgrade() else { return };
        live.replace(known.values().cloned().collect());
        let unreachable = live.unreachable.clone();
        drop(live);
        tokio::time::sleep(DNS_RETRY).await;
        tokio::select! {
            _ = tokio::time::sleep(DNS_REFRESH - DNS_RETRY) => {}
            _ = unreachable.notified() => {}
        }
    }
}

impl GrpcTransport {
    pub fn new(config: &RpcConfig, trust: Option<Trust>) -> Result<GrpcTransport, SetupError> {
        let invalid = |reason: HostError| SetupError::Host {
            host: config.host.clone(),
            reason,
        };
        let tls = tls_config(trust)?;
        let live = Arc::new(AtomicUsize::new(0));
        let connector = CountingConnector::new(live.clone());
        let pool = Arc::new(Pool::default());
        match parse_target(&config.host).map_err(invalid)? {
            Target::Single(address) => {
                let endpoint =
                    endpoint(&address, tls.as_ref(), host_of(&address)).map_err(invalid)?;
                pool.replace(vec![endpoint.connect_with_connector_lazy(connector)]);
            }
            Target::List(addresses) => {
                let channels = addresses
                    .iter()
                    .map(|a| {
                        endpoint(a, tls.as_ref(), host_of(a))
                            .map(|e| e.connect_with_connector_lazy(connector.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                pool.replace(channels);
            }
            Target::Dns(name) => {
                endpoint(&name, tls.as_ref(), host_of(&name)).map_err(invalid)?;
                tokio::spawn(follow_dns(name, tls, connector, Arc::downgrade(&pool)));
            }
        }
        Ok(GrpcTransport {
            pool,
            live,
            request_timeout: (config.request_timeout_ms > 0)
                .then(|| Duration::from_millis(config.request_timeout_ms)),
            max_recv: (config.max_recv_size > 0).then_some(config.max_recv_size),
            max_send: (config.max_send_size > 0).then_some(config.max_send_size),
        })
    }

    async fn unary<Req, Resp>(
        &self,
        path: &'static str,
        sid: &str,
        message: Req,
    ) -> Result<Resp, CallError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let Some(channel) = self.pool.next() else {
            self.pool.unreachable.notify_one();
            return Err(CallError::Unavailable(
                "no RPC server address resolved yet".into(),
            ));
        };
        let mut client = tonic::client::Grpc::new(channel);
        if let Some(limit) = self.max_recv {
            client = client.max_decoding_message_size(limit);
        }
        if let Some(limit) = self.max_send {
            client = client.max_encoding_message_size(limit);
        }
        let attempt = async {
            client
                .ready()
                .await
                .map_err(|e| CallError::Unavailable(e.to_string()))?;
            let mut request = tonic::Request::new(message);
            if let Ok(sid) = MetadataValue::try_from(sid) {
                request.metadata_mut().insert("sid", sid);
            }
            request
                .metadata_mut()
                .insert("protov", MetadataValue::from_static("v1"));
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            client
                .unary(request, PathAndQuery::from_static(path), codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(map_status)
        };
        let outcome = match self.request_timeout {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or(Err(CallError::DeadlineExceeded)),
            None => attempt.await,
        };
        if matches!(outcome, Err(CallError::Unavailable(_))) {
            self.pool.unreachable.notify_one();
        }
        outcome
    }
}

fn map_status(status: tonic::Status) -> CallError {
    let message = status.message().to_string();
    match status.code() {
        tonic::Code::ResourceExhausted => CallError::Exhausted(message),
        tonic::Code::Unavailable => CallError::Unavailable(message),
        tonic::Code::DeadlineExceeded => CallError::DeadlineExceeded,
        code => CallError::Failed(format!("{code:?}: {message}")),
    }
}

/// Round-robin over the channels of every known backend address.
#[derive(Default)]
struct Pool {
    channels: RwLock<Vec<Channel>>,
    turn: AtomicUsize,
    /// Signalled when a call could not reach a backend (`dns:///` resolves the name again).
    unreachable: Arc<tokio::sync::Notify>,
}

impl Pool {
    fn replace(&self, channels: Vec<Channel>) {
        *self.channels.write().unwrap_or_else(|p| p.into_inner()) = channels;
    }

    fn all(&self) -> Vec<Channel> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn next(&self) -> Option<Channel> {
        let channels = self.channels.read().unwrap_or_else(|p| p.into_inner());
        if channels.is_empty() {
            return None;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Some(channels[turn % channels.len()].clone())
    }
}

/// Opens TCP connections to the backends (TLS, when configured, is layered on top by tonic) and
/// counts the ones alive.
#[derive(Clone)]
struct CountingConnector {
    inner: HttpConnector,
    live: Arc<AtomicUsize>,
}

impl CountingConnector {
    fn new(live: Arc<AtomicUsize>) -> CountingConnector {
        let mut inner = HttpConnector::new();
        inner.enforce_http(false);
        inner.set_nodelay(true);
        CountingConnector { inner, live }
    }
}

impl tower_service::Service<Uri> for CountingConnector {
    type Response = Counted<TokioIo<TcpStream>>;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let live = self.live.clone();
        Box::pin(async move {
            let io = connecting.await?;
            live.fetch_add(1, Ordering::Relaxed);
            Ok(Counted { io, live })
        })
    }
}

/// A connection that is counted while it exists.
struct Counted<T> {
    io: T,
    live: Arc<AtomicUsize>,
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl Transport for GrpcTransport {
    fn active_connections(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn connect<'a>(
        &'a self,
        sid: &'a str,
        request: ConnectionRequest,
    ) -> BoxFuture<'a, Result<ConnectionResponse, CallError>> {
        Box::pin(self.unary("/anycable.RPC/Connect", sid, request))
    }

    fn command<'a>(
        &'a self,
        sid: &'a str,
        request: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, CallError>> {
        Box::pin(self.unary("/anycable.RPC/Command", sid, request))
    }

    fn disconnect<'a>(
        &'a self,
        sid: &'a str,
        request: DisconnectRequest,
    ) -> BoxFuture<'a, Result<DisconnectResponse, CallError>> {
        Box::pin(self.unary("/anycable.RPC/Disconnect", sid, request))
    }

    /// The standard gRPC health check (`grpc.health.v1.Health/Check` for `anycable.RPC`) on
    /// every backend address at once; the backend answers when one of them does. A server
    /// without the health service answers `UNIMPLEMENTED`, which proves it is up just as well.
    fn probe(&self, limit: Duration) -> BoxFuture<'_, Result<(), CallError>> {
        Box::pin(async move {
            let channels = self.pool.all();
            if channels.is_empty() {
                return Err(CallError::Unavailable(
                    "no RPC server address resolved yet".into(),
                ));
            }
            let checks = channels.into_iter().map(|channel| async move {
                tokio::time::timeout(limit, health_check(channel))
                    .await
                    .unwrap_or(Err(CallError::DeadlineExceeded))
            });
            let results = futures_util::future::join_all(checks).await;
            let mut first_error = None;
            for result in results {
                match result {
                    Ok(()) => return Ok(()),
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            Err(first_error.unwrap_or(CallError::DeadlineExceeded))
        })
    }
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`; `status` 1 is `SERVING`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;

async fn health_check(channel: Channel) -> Result<(), CallError> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| CallError::Unavailable(e.to_string()))?;
    let request = tonic::Request::new(HealthCheckRequest {
        service: "anycable.RPC".into(),
    });
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let path = PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    match client.unary(request, path, codec).await {
        Ok(response) if response.get_ref().status == SERVING => Ok(()),
        Ok(response) => Err(CallError::Unavailable(format!(
            "health status {}",
            response.get_ref().status
        ))),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unimplemented | tonic::Code::NotFound
            ) =>
        {
            Ok(())
        }
        Err(status) => Err(map_status(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            parse_target("localhost:50051").ok(),
            Some(Target::Single("localhost:50051".into()))
        );
        assert_eq!(
            parse_target("grpc://a:1").ok(),
            Some(Target::Single("a:1".into()))
        );
        assert_eq!(
            parse_target("dns:///rpc:50051").ok(),
            Some(Target::Dns("rpc:50051".into()))
        );
        assert_eq!(
            parse_target("grpc-list://a:1,,b:2").ok(),
            Some(Target::List(vec!["a:1".into(), "b:2".into()]))
        );
        assert!(parse_target("grpc-list://").is_err());
        assert!(parse_target("ftp://x").is_err());
    }
}

//! A gRPC RPC backend for tests, in the test process (HTTP/2 from hyper, gRPC framing from
//! tonic): `anycable.RPC/Connect` accepts everyone, and `grpc.health.v1.Health/Check` answers
//! `SERVING` unless started without it. Calls are counted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anycable_rs::rpc::proto::{ConnectionRequest, ConnectionResponse, Status};
use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::{Grpc, UnaryService};

#[derive(Clone, Default)]
struct Calls {
    connects: Arc<AtomicUsize>,
    health: Arc<AtomicUsize>,
}

/// A running backend; stopped (listener and connections closed at once) by
/// [`GrpcBackend::stop`] or on drop.
pub struct GrpcBackend {
    pub port: u16,
    calls: Calls,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl GrpcBackend {
    /// On `127.0.0.1:<port>`.
    pub async fn start(port: u16) -> GrpcBackend {
        GrpcBackend::start_on([127, 0, 0, 1], port).await
    }

    /// On `<ip>:<port>` (any loopback address).
    pub async fn start_on(ip: [u8; 4], port: u16) -> GrpcBackend {
        GrpcBackend::serve((ip, port).into(), true).await
    }

    pub async fn start_without_health(port: u16) -> GrpcBackend {
        GrpcBackend::serve(([127, 0, 0, 1], port).into(), false).await
    }

    async fn serve(address: SocketAddr, health: bool) -> GrpcBackend {
        let port = address.port();
        let calls = Calls::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = TcpListener::bind(address)
            .await
            .expect("bind the gRPC backend");
        let served = calls.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: every connection closes with the backend.
            let mut connections = tokio::task::JoinSet::new();
            tokio::pin!(stopped);
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                    _ = &mut stopped => return,
                };
                let calls = served.clone();
                let service = service_fn(move |request: http::Request<Incoming>| {
                    let calls = calls.clone();
                    async move { Ok::<_, Infallible>(route(calls, health, request).await) }
                });
                connections.spawn(async move {
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GrpcBackend {
            port,
            calls,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn connects(&self) -> usize {
        self.calls.connects.load(Ordering::SeqCst)
    }

    pub fn health_checks(&self) -> usize {
        self.calls.health.load(Ordering::SeqCst)
    }

    /// Stops listening and closes its connections (as a killed process would).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `anycable.RPC/Connect` (welcomes everyone) and, with `health`,
/// `grpc.health.v1.Health/Check` (always `SERVING`); anything else is `UNIMPLEMENTED`.
async fn route(
    calls: Calls,
    health: bool,
    request: http::Request<Incoming>,
) -> http::Response<Body> {
    match request.uri().path() {
        "/anycable.RPC/Connect" => {
            let codec = tonic_prost::ProstCodec::<ConnectionResponse, ConnectionRequest>::default();
            Grpc::new(codec).unary(Connect(calls), request).await
        }
        "/grpc.health.v1.Health/Check" if health => {
            let codec =
                tonic_prost::ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            Grpc::new(codec).unary(Check(calls), request).await
        }
        _ => tonic::Status::unimplemented("not in the test backend").into_http(),
    }
}

struct Connect(Calls);

impl UnaryService<ConnectionRequest> for Connect {
    type Response = ConnectionResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<ConnectionResponse>, tonic::Status>>;

    fn call(&mut self, _request: tonic::Request<ConnectionRequest>) -> Self::Future {
        self.0.connects.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(tonic::Response::new(ConnectionResponse {
                status: Status::Success as i32,
                identifiers: r#"{"user":"grpc"}"#.into(),
                transmissions: vec![r#"{"type":"welcome"}"#.into()],
                ..Default::default()
            }))
        })
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

struct Check(Calls);

impl UnaryService<HealthCheckRequest> for Check {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, _request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        self.0.health.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(tonic::Response::new(HealthCheckResponse { status: 1 })) })
    }
}

//! A gRPC backend (the `anycable.RPC` service over tonic's HTTP/2 server) whose behaviour a test
//! steers while it runs: how long each call takes, `RESOURCE_EXHAUSTED` for every call, and
//! `Connect` calls held until released. It counts the calls it gets and the most it had in
//! flight at once.
//!
//! Every connection is accepted as `{"user":"u"}`; every `Command` succeeds and transmits
//! `{"identifier": <identifier>, "message": <command>}`, so a client sees each one finish.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anycable_rs::rpc::proto::{
    CommandMessage, CommandResponse, ConnectionRequest, ConnectionResponse, DisconnectRequest,
    DisconnectResponse, Status,
};
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::Grpc;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_prost::ProstCodec;

/// What the test steers and reads.
pub struct Control {
    latency_ms: AtomicU64,
    exhausted: AtomicBool,
    /// `true` while `Connect` calls are held.
    hold: watch::Sender<bool>,
    connects: AtomicU64,
    commands: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
    /// `connect`, or the command's name, of every call in the order they arrived.
    arrivals: Mutex<Vec<String>>,
}

impl Control {
    /// Every call takes this long (before any hold).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Every call is answered `RESOURCE_EXHAUSTED` (after the latency) while this is set.
    pub fn set_exhausted(&self, exhausted: bool) {
        self.exhausted.store(exhausted, Ordering::Relaxed);
    }

    /// Holds `Connect` calls (counted on arrival) until released.
    pub fn hold_connects(&self, hold: bool) {
        self.hold.send_replace(hold);
    }

    /// `Connect` calls received.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    /// `connect`, or the command's name (`subscribe`, `message`...), of every call so far, in
    /// the order they arrived.
    pub fn arrivals(&self) -> Vec<String> {
        self.arrivals.lock().unwrap().clone()
    }

    /// The most calls in flight at once so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    async fn call<T>(&self, answer: impl FnOnce() -> T) -> Result<T, tonic::Status> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        let latency = self.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.exhausted.load(Ordering::Relaxed) {
            return Err(tonic::Status::resource_exhausted(
                "the test backend is full",
            ));
        }
        Ok(answer())
    }

    async fn connect(&self, _: ConnectionRequest) -> Result<ConnectionResponse, tonic::Status> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.arrivals.lock().unwrap().push("connect".into());
        let mut held = self.hold.subscribe();
        let _ = held.wait_for(|hold| !hold).await;
        self.call(|| ConnectionResponse {
            status: Status::Success as i32,
            identifiers: r#"{"user":"u"}"#.into(),
            transmissions: vec![r#"{"type":"welcome","sid":"from-the-backend"}"#.into()],
            ..ConnectionResponse::default()
        })
        .await
    }

    async fn command(&self, request: CommandMessage) -> Result<CommandResponse, tonic::Status> {
        self.commands.fetch_add(1, Ordering::Relaxed);
        self.arrivals.lock().unwrap().push(request.command.clone());
        self.call(|| {
            let reply = if request.command == "subscribe" {
                serde_json::json!({"type": "confirm_subscription", "identifier": request.identifier})
            } else {
                serde_json::json!({"identifier": request.identifier, "message": request.command})
            };
            CommandResponse {
                status: Status::Success as i32,
                transmissions: vec![reply.to_string()],
                ..CommandResponse::default()
            }
        })
        .await
    }
}

/// Starts the backend on a free port; returns the port and its control.
pub async fn grpc_backend() -> (u16, Arc<Control>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let control = Arc::new(Control {
        latency_ms: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
        hold: watch::Sender::new(false),
        connects: AtomicU64::new(0),
        commands: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        peak: AtomicU64::new(0),
        arrivals: Mutex::default(),
    });
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = Rpc(control.clone());
    tokio::spawn(async move {
        let _ = Server::builder()
            .serve_with_incoming(service, incoming)
            .await;
    });
    (port, control)
}

#[derive(Clone)]
struct Rpc(Arc<Control>);

impl Service<http::Request<Body>> for Rpc {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let control = self.0.clone();
        Box::pin(async move {
            Ok(match request.uri().path() {
                "/anycable.RPC/Connect" => unary(request, control, connect).await,
                "/anycable.RPC/Command" => unary(request, control, command).await,
                "/anycable.RPC/Disconnect" => unary(request, control, disconnect).await,
                other => tonic::Status::unimplemented(other).into_http(),
            })
        })
    }
}

type Answer<Resp> = BoxFuture<'static, Result<Resp, tonic::Status>>;

fn connect(control: Arc<Control>, request: ConnectionRequest) -> Answer<ConnectionResponse> {
    Box::pin(async move { control.connect(request).await })
}

fn command(control: Arc<Control>, request: CommandMessage) -> Answer<CommandResponse> {
    Box::pin(async move { control.command(request).await })
}

fn disconnect(_: Arc<Control>, _: DisconnectRequest) -> Answer<DisconnectResponse> {
    Box::pin(std::future::ready(Ok(DisconnectResponse {
        status: Status::Success as i32,
        ..DisconnectResponse::default()
    })))
}

async fn unary<Req, Resp>(
    request: http::Request<Body>,
    control: Arc<Control>,
    answer: fn(Arc<Control>, Req) -> Answer<Resp>,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    Grpc::new(ProstCodec::<Resp, Req>::default())
        .unary(Unary { control, answer }, request)
        .await
}

/// One method's answer in the shape `Grpc::unary` calls (a `tower` service).
struct Unary<Req, Resp> {
    control: Arc<Control>,
    answer: fn(Arc<Control>, Req) -> Answer<Resp>,
}

impl<Req, Resp: Send + 'static> Service<tonic::Request<Req>> for Unary<Req, Resp> {
    type Response = tonic::Response<Resp>;
    type Error = tonic::Status;
    type Future = BoxFuture<'static, Result<tonic::Response<Resp>, tonic::Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let answer = (self.answer)(self.control.clone(), request.into_inner());
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

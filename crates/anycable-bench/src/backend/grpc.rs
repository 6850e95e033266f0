//! The backend over gRPC: unary `/anycable.RPC/*` calls served by tonic's HTTP/2 server,
//! with the server-side codec of the same prost messages the server's client uses, so no
//! protobuf code generation is needed.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::TcpListener;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::Grpc;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_prost::ProstCodec;

use super::Answers;

pub async fn serve(listener: TcpListener, answers: Arc<Answers>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    // The server's RPC client sets no-delay too; without it small HTTP/2 frames wait for ACKs.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .serve_with_incoming(Rpc(answers), incoming)
        .await
        .map_err(|e| e.to_string())
}

/// Routes each request by its path to the method's answer.
#[derive(Clone)]
struct Rpc(Arc<Answers>);

impl Service<http::Request<Body>> for Rpc {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let answers = self.0.clone();
        Box::pin(async move {
            Ok(match request.uri().path() {
                "/anycable.RPC/Connect" => match answers.capacity.as_ref().map(|c| c.enter()) {
                    Some(None) => {
                        tonic::Status::resource_exhausted("backend at capacity").into_http()
                    }
                    Some(Some(busy)) => {
                        busy.work().await;
                        unary(request, |r| answers.connect(r)).await
                    }
                    None => unary(request, |r| answers.connect(r)).await,
                },
                "/anycable.RPC/Command" => unary(request, |r| answers.command(r)).await,
                "/anycable.RPC/Disconnect" => unary(request, |r| answers.disconnect(r)).await,
                other => tonic::Status::unimplemented(other).into_http(),
            })
        })
    }
}

async fn unary<Req, Resp>(
    request: http::Request<Body>,
    answer: impl Fn(Req) -> Resp,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    Grpc::new(ProstCodec::<Resp, Req>::default())
        .unary(Unary(answer), request)
        .await
}

/// A synchronous answer in the shape `Grpc::unary` calls (a `tower` service).
struct Unary<F>(F);

impl<Req, Resp, F: Fn(Req) -> Resp> Service<tonic::Request<Req>> for Unary<F> {
    type Response = tonic::Response<Resp>;
    type Error = tonic::Status;
    type Future = Ready<Result<tonic::Response<Resp>, tonic::Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        ready(Ok(tonic::Response::new((self.0)(request.into_inner()))))
    }
}

//! The backend over HTTP RPC: `POST <base>/connect|command|disconnect` with JSON bodies (the
//! same serde shapes the server's client sends and reads), behind the bearer key the server
//! derives from `--secret`.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anycable_rs::streams::hex_hmac_sha256;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Answers;
use crate::fixture::SECRET;

/// Where the methods live under the backend's address (`--rpc_host`).
pub const BASE_PATH: &str = "/_anycable";

pub async fn serve(listener: TcpListener, answers: Arc<Answers>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    // AnyCable-Go's `http_rpc_secret` default: HMAC of the application secret.
    let authorization: Arc<str> = format!(
        "Bearer {}",
        hex_hmac_sha256(SECRET.as_bytes(), b"rpc-cable")
    )
    .into();
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (answers, authorization) = (answers.clone(), authorization.clone());
        let service = service_fn(move |request| {
            let (answers, authorization) = (answers.clone(), authorization.clone());
            async move { Ok::<_, Infallible>(respond(&answers, &authorization, request).await) }
        });
        tokio::spawn(async move {
            // Errors here are the server closing its pooled connections when it stops.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    answers: &Answers,
    authorization: &str,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.headers().get(AUTHORIZATION).map(|v| v.as_bytes()) != Some(authorization.as_bytes())
    {
        answers.refused.fetch_add(1, Ordering::Relaxed);
        return status(StatusCode::UNAUTHORIZED);
    }
    let method = request
        .uri()
        .path()
        .strip_prefix(BASE_PATH)
        .unwrap_or_default()
        .to_string();
    let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    match method.as_str() {
        "/connect" => json(&body, |r| answers.connect(r)),
        "/command" => json(&body, |r| answers.command(r)),
        "/disconnect" => json(&body, |r| answers.disconnect(r)),
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn json<Req: DeserializeOwned, Resp: Serialize>(
    body: &[u8],
    answer: impl Fn(Req) -> Resp,
) -> Response<Full<Bytes>> {
    let Ok(request) = serde_json::from_slice(body) else {
        return status(StatusCode::UNPROCESSABLE_ENTITY);
    };
    let Ok(reply) = serde_json::to_vec(&answer(request)) else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = code;
    response
}

//! HTTP RPC: `POST <rpc_host>/connect|command|disconnect` with JSON bodies, the bearer secret
//! and the `x-anycable-meta-*` headers. Failures map onto gRPC codes so the retry policy is the
//! same as for gRPC: only errors without any HTTP response are retried.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::breaker::Breaker;
use super::proto::{
    CommandMessage, CommandResponse, ConnectionRequest, ConnectionResponse, DisconnectRequest,
    DisconnectResponse,
};
use super::tls::{rustls_config, Trust};
use super::{CallError, HostError, SetupError, Transport};
use crate::config::RpcConfig;

/// Per-attempt timeout when neither `--http_rpc_timeout` nor `--rpc_request_timeout` is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);
/// Responses larger than this are treated as garbage.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

pub struct HttpTransport {
    breaker: Breaker,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    authorization: Option<String>,
    timeout: Duration,
}

impl HttpTransport {
    /// `https://` hosts are verified against the root CA when one is configured, against the
    /// system's store and the bundled roots otherwise.
    pub fn new(config: &RpcConfig, trust: Option<Trust>) -> Result<HttpTransport, SetupError> {
        let base = config.host.trim_end_matches('/').to_string();
        if base.parse::<hyper::Uri>().is_err() {
            return Err(SetupError::Host {
                host: config.host.clone(),
                reason: HostError::NotUrl,
            });
        }
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(rustls_config(trust.as_ref())?);
        let connector = builder.https_or_http().enable_http1().build();
        let timeout_ms = [config.http_request_timeout_ms, config.request_timeout_ms]
            .into_iter()
            .find(|&ms| ms > 0);
        Ok(HttpTransport {
            breaker: Breaker::new(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            base,
            authorization: config.secret.as_ref().map(|s| format!("Bearer {s}")),
            timeout: timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
        })
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        sid: &str,
        body: &Req,
    ) -> Result<Resp, CallError> {
        let body = serde_json::to_vec(body).map_err(|e| CallError::Failed(e.to_string()))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/{method}", self.base))
            .header("content-type", "application/json")
            .header("x-anycable-meta-sid", sid)
            .header("x-anycable-meta-protov", "v1");
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Failed(e.to_string()))?;
        if !self.breaker.admit() {
            return Err(CallError::Failed(
                "http rpc is temporarily unavailable".into(),
            ));
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                let text = format!("{error:?}");
                if text.contains("tls") || text.contains("Tls") {
                    CallError::Failed(format!("unauthenticated: {error}"))
                } else {
                    CallError::Unavailable(error.to_string())
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| CallError::Failed(format!("failed to read the response: {e}")))?
                .to_bytes();
            Ok::<_, CallError>((status, body))
        };
        let outcome = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CallError::DeadlineExceeded)
            .and_then(|result| result);
        // Only calls that got no HTTP response at all count as failures.
        self.breaker.record(!matches!(
            outcome,
            Err(CallError::Unavailable(_) | CallError::DeadlineExceeded)
        ));
        let (status, body) = outcome?;
        let text = || String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        match status {
            StatusCode::OK => serde_json::from_slice(&body)
                .map_err(|e| CallError::Failed(format!("invalid response: {e}"))),
            StatusCode::UNAUTHORIZED => Err(CallError::Failed(
                "unauthenticated: http returned 401".into(),
            )),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Err(CallError::Failed(format!("invalid argument: {}", text())))
            }
            other => Err(CallError::Failed(format!(
                "http returned {other}: {}",
                text()
            ))),
        }
    }
}

impl Transport for HttpTransport {
    fn connect<'a>(
        &'a self,
        sid: &'a str,
        request: ConnectionRequest,
    ) -> BoxFuture<'a, Result<ConnectionResponse, CallError>> {
        Box::pin(async move { self.post("connect", sid, &request).await })
    }

    fn command<'a>(
        &'a self,
        sid: &'a str,
        request: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, CallError>> {
        Box::pin(async move { self.post("command", sid, &request).await })
    }

    fn disconnect<'a>(
        &'a self,
        sid: &'a str,
        request: DisconnectRequest,
    ) -> BoxFuture<'a, Result<DisconnectResponse, CallError>> {
        Box::pin(async move { self.post("disconnect", sid, &request).await })
    }

    /// `HEAD <rpc_host>`: any HTTP answer below 500 (typically 404 or 405: the RPC methods are
    /// POSTs under it) shows the application is up; no answer, or a proxy's 502/503/504, does
    /// not. The circuit breaker is left alone: it guards the application's calls.
    fn probe(&self, limit: Duration) -> BoxFuture<'_, Result<(), CallError>> {
        Box::pin(async move {
            let mut request = Request::builder().method(Method::HEAD).uri(&self.base);
            if let Some(authorization) = &self.authorization {
                request = request.header("authorization", authorization);
            }
            let request = request
                .body(Full::new(Bytes::new()))
                .map_err(|e| CallError::Failed(e.to_string()))?;
            let response = tokio::time::timeout(limit, self.client.request(request))
                .await
                .map_err(|_| CallError::DeadlineExceeded)?
                .map_err(|e| CallError::Unavailable(e.to_string()))?;
            match response.status() {
                status if status.is_server_error() => {
                    Err(CallError::Unavailable(format!("http returned {status}")))
                }
                _ => Ok(()),
            }
        })
    }
}

//! Calls to the application backend (RPC): `Connect`, `Command` and `Disconnect`, over gRPC or
//! HTTP. [`Rpc`] adds what both transports share: the concurrency limit, retries of
//! `RESOURCE_EXHAUSTED`/`UNAVAILABLE` with exponential backoff, the whole-call timeout and the
//! metrics.

mod breaker;
pub mod controller;
pub mod disconnector;
mod grpc;
mod http;
pub mod proto;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;

use crate::config::{Config, RpcImpl};
use crate::metrics::{Counter, Gauge, Metrics};
pub use proto::{
    CommandMessage, CommandResponse, ConnectionRequest, ConnectionResponse, DisconnectRequest,
    DisconnectResponse, Env, Status,
};

/// The reference's default when `--rpc_concurrency` is not positive.
const DEFAULT_CONCURRENCY: usize = 28;

/// Why one attempt failed, in gRPC terms (HTTP failures are mapped onto them).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("resource exhausted: {0}")]
    Exhausted(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("request timeout")]
    DeadlineExceeded,
    #[error("{0}")]
    Failed(String),
}

/// Why a call failed after retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    #[error("RPC call timed out")]
    Timeout,
    #[error("RPC call failed: {0}")]
    Failed(String),
}

/// One attempt of each RPC method over some transport.
pub trait Transport: Send + Sync {
    fn connect<'a>(
        &'a self,
        sid: &'a str,
        request: ConnectionRequest,
    ) -> BoxFuture<'a, Result<ConnectionResponse, CallError>>;
    fn command<'a>(
        &'a self,
        sid: &'a str,
        request: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, CallError>>;
    /// Live connections to the backend, when the transport keeps track of them (gRPC).
    fn active_connections(&self) -> usize {
        0
    }

    fn disconnect<'a>(
        &'a self,
        sid: &'a str,
        request: DisconnectRequest,
    ) -> BoxFuture<'a, Result<DisconnectResponse, CallError>>;

    /// A cheap request that proves the backend answers, for the readiness check; never one of
    /// the application's methods. Bounded by `limit`.
    fn probe(&self, limit: Duration) -> BoxFuture<'_, Result<(), CallError>>;
}

/// What is wrong with `--rpc_host`.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("empty address list")]
    EmptyList,
    #[error("expected host:port, dns:///host:port or grpc-list://host:port,...")]
    UnknownForm,
    #[error("not a URL")]
    NotUrl,
    #[error("{0}")]
    Endpoint(#[source] tonic::transport::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid --rpc_host {host:?}: {reason}")]
    Host {
        host: String,
        #[source]
        reason: HostError,
    },
    #[error("RPC TLS: --rpc_tls_verify=false is not supported: certificates of the RPC server are always verified")]
    TlsVerifyOff,
    #[error("RPC TLS: --rpc_tls_root_ca {value:?} is neither a file nor PEM")]
    RootCaNotPem { value: String },
    #[error("RPC TLS: {0}")]
    Trust(#[from] crate::trust::TrustError),
}

/// The RPC client used by the node.
pub struct Rpc {
    transport: Box<dyn Transport>,
    slots: Semaphore,
    command_timeout: Option<Duration>,
    metrics: Arc<Metrics>,
    /// For the startup log.
    pub description: String,
}

impl Rpc {
    /// Builds the client chosen by the config, or `None` for `--norpc`.
    pub fn from_config(config: &Config, metrics: Arc<Metrics>) -> Result<Option<Rpc>, SetupError> {
        let rpc = &config.rpc;
        let implementation = config.rpc_impl();
        let transport: Box<dyn Transport> = match implementation {
            RpcImpl::None => return Ok(None),
            RpcImpl::Http => Box::new(http::HttpTransport::new(rpc, tls::trust(rpc)?)?),
            RpcImpl::Grpc | RpcImpl::Auto => {
                Box::new(grpc::GrpcTransport::new(rpc, tls::trust(rpc)?)?)
            }
        };
        let concurrency = match rpc.concurrency {
            n if n > 0 => n,
            _ => {
                tracing::warn!(
                    context = "rpc",
                    "RPC concurrency must be positive, reverted to the default value"
                );
                DEFAULT_CONCURRENCY
            }
        };
        let description = format!(
            "{} (concurrency: {concurrency}, impl: {implementation}, enable_tls: {}, proto_versions: v1, proxy_headers: {}, proxy_cookies: {})",
            rpc.host,
            rpc.tls.enabled || !rpc.tls.root_ca.is_empty(),
            if rpc.proxy_headers.is_empty() { "<none>".to_string() } else { rpc.proxy_headers.join(",") },
            if rpc.proxy_cookies.is_empty() { "<all>".to_string() } else { rpc.proxy_cookies.join(",") },
        );
        Ok(Some(Rpc {
            transport,
            slots: Semaphore::new(concurrency),
            command_timeout: (rpc.command_timeout_ms > 0)
                .then(|| Duration::from_millis(rpc.command_timeout_ms)),
            metrics,
            description,
        }))
    }

    /// Live connections to the backend (`grpc_active_conn_num`).
    pub fn active_connections(&self) -> usize {
        self.transport.active_connections()
    }

    /// Whether the backend answers (see [`Transport::probe`]): outside the concurrency limit
    /// and without retries, so a busy backend is not made busier and a dead one is seen at once.
    pub async fn probe(&self, limit: Duration) -> Result<(), CallError> {
        self.transport.probe(limit).await
    }

    pub async fn connect(
        &self,
        sid: &str,
        request: ConnectionRequest,
    ) -> Result<ConnectionResponse, RpcError> {
        let call = self.invoke(|| self.transport.connect(sid, request.clone()));
        logged(call, sid, "Connect", None).await
    }

    pub async fn command(
        &self,
        sid: &str,
        request: CommandMessage,
    ) -> Result<CommandResponse, RpcError> {
        let call = self.invoke(|| self.transport.command(sid, request.clone()));
        logged(call, sid, "Command", Some(&request.command)).await
    }

    pub async fn disconnect(
        &self,
        sid: &str,
        request: DisconnectRequest,
    ) -> Result<DisconnectResponse, RpcError> {
        let call = self.invoke(|| self.transport.disconnect(sid, request.clone()));
        logged(call, sid, "Disconnect", None).await
    }

    /// Runs attempts until one succeeds, fails with a non-retryable error, or the whole-call
    /// timeout passes. Waiting for a concurrency slot counts against that timeout too.
    async fn invoke<T, F, Fut>(&self, attempt: F) -> Result<T, RpcError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let call = async {
            let pending = self.metrics.track(Gauge::RpcPending);
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|e| RpcError::Failed(e.to_string()))?;
            drop(pending);
            self.metrics.inc(Counter::RpcCall);
            let mut backoff = Backoff::default();
            loop {
                match attempt().await {
                    Ok(reply) => return Ok(reply),
                    Err(error @ (CallError::Exhausted(_) | CallError::Unavailable(_))) => {
                        self.metrics.inc(Counter::RpcRetries);
                        let delay = backoff.next(&error);
                        tracing::debug!(context = "rpc", "{error}; retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                    }
                    Err(CallError::DeadlineExceeded) => {
                        self.metrics.inc(Counter::RpcTimeout);
                        return Err(RpcError::Timeout);
                    }
                    Err(CallError::Failed(message)) => return Err(RpcError::Failed(message)),
                }
            }
        };
        let result = match self.command_timeout {
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                self.metrics.inc(Counter::RpcTimeout);
                Err(RpcError::Timeout)
            }),
            None => call.await,
        };
        if result.is_err() {
            self.metrics.inc(Counter::RpcError);
        }
        result
    }
}

/// The application's verdict in a reply, for the debug log.
trait ReplyStatus {
    fn status(&self) -> i32;
}

impl ReplyStatus for ConnectionResponse {
    fn status(&self) -> i32 {
        self.status
    }
}

impl ReplyStatus for CommandResponse {
    fn status(&self) -> i32 {
        self.status
    }
}

impl ReplyStatus for DisconnectResponse {
    fn status(&self) -> i32 {
        self.status
    }
}

/// Runs a call and logs (at debug level) how it went and how long it took, waiting for a
/// concurrency slot and retries included.
async fn logged<T: ReplyStatus>(
    call: impl Future<Output = Result<T, RpcError>>,
    sid: &str,
    method: &'static str,
    command: Option<&str>,
) -> Result<T, RpcError> {
    let started = std::time::Instant::now();
    let result = call.await;
    let duration = started.elapsed();
    match &result {
        Ok(reply) => {
            let status = match Status::try_from(reply.status()) {
                Ok(Status::Success) => "success",
                Ok(Status::Failure) => "failure",
                _ => "error",
            };
            tracing::debug!(
                context = "rpc",
                sid,
                method,
                command,
                status,
                ?duration,
                "RPC call"
            );
        }
        Err(error) => {
            tracing::debug!(context = "rpc", sid, method, command, %error, ?duration, "RPC call failed");
        }
    }
    result
}

/// `2^attempt × base`, with the base depending on the error kind (10 ms for exhausted, 100 ms
/// for unavailable) and the attempt count restarting when the kind changes.
#[derive(Default)]
struct Backoff {
    attempt: u32,
    last_exhausted: Option<bool>,
}

impl Backoff {
    fn next(&mut self, error: &CallError) -> Duration {
        let exhausted = matches!(error, CallError::Exhausted(_));
        if self.last_exhausted != Some(exhausted) {
            self.attempt = 0;
            self.last_exhausted = Some(exhausted);
        }
        let base = if exhausted { 10 } else { 100 };
        let delay = Duration::from_millis(base << self.attempt.min(16));
        self.attempt += 1;
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_restarts_on_kind_change() {
        let mut backoff = Backoff::default();
        let exhausted = CallError::Exhausted(String::new());
        let unavailable = CallError::Unavailable(String::new());
        assert_eq!(backoff.next(&exhausted), Duration::from_millis(10));
        assert_eq!(backoff.next(&exhausted), Duration::from_millis(20));
        assert_eq!(backoff.next(&exhausted), Duration::from_millis(40));
        assert_eq!(backoff.next(&unavailable), Duration::from_millis(100));
        assert_eq!(backoff.next(&unavailable), Duration::from_millis(200));
    }
}

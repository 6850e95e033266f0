//! Calls to the application backend (RPC): `Connect`, `Command` and `Disconnect`, over gRPC or
//! HTTP. [`Rpc`] adds what both transports share: the concurrency limit (fixed or adaptive,
//! `gate.rs` and `limiter.rs`) with the admission of `Connect` calls, retries of
//! `RESOURCE_EXHAUSTED`/`UNAVAILABLE` with exponential backoff, the whole-call timeout and the
//! metrics.

mod breaker;
pub mod controller;
pub mod disconnector;
mod gate;
mod grpc;
mod http;
mod lag;
mod limiter;
pub mod proto;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RpcImpl};
use crate::metrics::{Counter, Gauge, Metrics};
use gate::{Class, Gate, Limit};
use limiter::{Bounds, Sample};
pub use proto::{
    CommandMessage, CommandResponse, ConnectionRequest, ConnectionResponse, DisconnectRequest,
    DisconnectResponse, Env, Status,
};

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
    /// `Connect` only: no slot within `--rpc_connect_max_wait`; no call was made.
    #[error("the backend is busy: Connect deferred")]
    Busy,
    /// `Connect` only: the client left before the call was made.
    #[error("the client left before the call was made")]
    Canceled,
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
    #[error("adaptive RPC concurrency: expected 1 <= --rpc_concurrency_min ({min}) <= --rpc_concurrency_initial ({initial}) <= --rpc_concurrency_max ({max})")]
    AdaptiveBounds {
        min: usize,
        initial: usize,
        max: usize,
    },
}

/// The RPC client used by the node.
pub struct Rpc {
    transport: Box<dyn Transport>,
    slots: Arc<Gate>,
    command_timeout: Option<Duration>,
    /// `--rpc_connect_max_wait`: `Connect` calls wait at most this long for a slot, behind
    /// the calls of established sessions (`None`: like any call).
    connect_max_wait: Option<Duration>,
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
        let (limit, concurrency) = match rpc.concurrency {
            0 => {
                let bounds = Bounds {
                    initial: rpc.concurrency_initial,
                    min: rpc.concurrency_min,
                    max: rpc.concurrency_max,
                };
                if !(1 <= bounds.min
                    && bounds.min <= bounds.initial
                    && bounds.initial <= bounds.max)
                {
                    return Err(SetupError::AdaptiveBounds {
                        min: bounds.min,
                        initial: bounds.initial,
                        max: bounds.max,
                    });
                }
                let text = format!(
                    "auto (initial={}, min={}, max={})",
                    bounds.initial, bounds.min, bounds.max
                );
                (Limit::Adaptive(bounds), text)
            }
            n => {
                let defaults = crate::config::RpcConfig::default();
                let bounds_given = (
                    rpc.concurrency_initial,
                    rpc.concurrency_min,
                    rpc.concurrency_max,
                ) != (
                    defaults.concurrency_initial,
                    defaults.concurrency_min,
                    defaults.concurrency_max,
                );
                if bounds_given {
                    tracing::warn!(
                        context = "rpc",
                        "--rpc_concurrency_initial, --rpc_concurrency_min and --rpc_concurrency_max apply only with --rpc_concurrency=0 (adaptive); the limit stays {n}"
                    );
                }
                (Limit::Fixed(n), n.to_string())
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
            slots: Gate::new(limit, metrics.clone()),
            command_timeout: (rpc.command_timeout_ms > 0)
                .then(|| Duration::from_millis(rpc.command_timeout_ms)),
            connect_max_wait: (rpc.connect_max_wait_ms > 0)
                .then(|| Duration::from_millis(rpc.connect_max_wait_ms)),
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

    /// `Connect`. Under admission control it waits behind established sessions' calls, at
    /// most `--rpc_connect_max_wait` (else `Busy`); it is not made once `left` fires
    /// (`Canceled`), but a call already made completes.
    pub async fn connect(
        &self,
        sid: &str,
        request: ConnectionRequest,
        left: &CancellationToken,
    ) -> Result<ConnectionResponse, RpcError> {
        let wait = Wait::Connect {
            max: self.connect_max_wait,
            left,
        };
        let call = self.invoke(wait, || self.transport.connect(sid, request.clone()));
        logged(call, sid, "Connect", None).await
    }

    pub async fn command(
        &self,
        sid: &str,
        request: CommandMessage,
    ) -> Result<CommandResponse, RpcError> {
        let call = self.invoke(Wait::Session, || {
            self.transport.command(sid, request.clone())
        });
        logged(call, sid, "Command", Some(&request.command)).await
    }

    pub async fn disconnect(
        &self,
        sid: &str,
        request: DisconnectRequest,
    ) -> Result<DisconnectResponse, RpcError> {
        let call = self.invoke(Wait::Session, || {
            self.transport.disconnect(sid, request.clone())
        });
        logged(call, sid, "Disconnect", None).await
    }

    /// Runs attempts until one succeeds, fails with a non-retryable error, or the whole-call
    /// timeout passes. Waiting for a concurrency slot counts against that timeout too. Each
    /// attempt's outcome feeds the concurrency limit.
    async fn invoke<T, F, Fut>(&self, wait: Wait<'_>, attempt: F) -> Result<T, RpcError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let deadline = self.command_timeout.map(|limit| Instant::now() + limit);
        let result = self.attempts(wait, deadline, attempt).await;
        match &result {
            Err(RpcError::Timeout) => {
                self.metrics.inc(Counter::RpcTimeout);
                self.metrics.inc(Counter::RpcError);
            }
            Err(RpcError::Failed(_)) => self.metrics.inc(Counter::RpcError),
            Err(RpcError::Busy) => self.metrics.inc(Counter::RpcConnectDeferred),
            Err(RpcError::Canceled) => self.metrics.inc(Counter::RpcCanceled),
            Ok(_) => {}
        }
        result
    }

    async fn attempts<T, F, Fut>(
        &self,
        wait: Wait<'_>,
        deadline: Option<Instant>,
        attempt: F,
    ) -> Result<T, RpcError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let (class, max_wait, left) = match wait {
            Wait::Session => (Class::Session, None, None),
            Wait::Connect {
                max: Some(max),
                left,
            } => (Class::Connect, Some(max), Some(left)),
            Wait::Connect { max: None, left } => (Class::Session, None, Some(left)),
        };
        // Held across retries, freed when the call ends.
        let _slot = {
            let _pending = self.metrics.track(Gauge::RpcPending);
            let acquire = self.slots.acquire(class, max_wait);
            let acquire = async {
                match left {
                    Some(left) => tokio::select! {
                        biased;
                        _ = left.cancelled() => Err(RpcError::Canceled),
                        slot = acquire => slot.map_err(|_| RpcError::Busy),
                    },
                    None => acquire.await.map_err(|_| RpcError::Busy),
                }
            };
            within(deadline, acquire).await.ok_or(RpcError::Timeout)??
        };
        self.metrics.inc(Counter::RpcCall);
        let mut backoff = Backoff::default();
        loop {
            let start = self.slots.start();
            let began = Instant::now();
            let Some(outcome) = within(deadline, attempt()).await else {
                self.slots.record(Sample::Latency(began.elapsed()), start);
                return Err(RpcError::Timeout);
            };
            match outcome {
                Ok(reply) => {
                    self.slots.record(Sample::Latency(began.elapsed()), start);
                    return Ok(reply);
                }
                Err(error @ (CallError::Exhausted(_) | CallError::Unavailable(_))) => {
                    self.slots.record(Sample::Overloaded, start);
                    self.metrics.inc(Counter::RpcRetries);
                    let delay = backoff.next(&error);
                    tracing::debug!(context = "rpc", "{error}; retrying in {delay:?}");
                    within(deadline, tokio::time::sleep(delay))
                        .await
                        .ok_or(RpcError::Timeout)?;
                    if left.is_some_and(CancellationToken::is_cancelled) {
                        return Err(RpcError::Canceled);
                    }
                }
                Err(CallError::DeadlineExceeded) => {
                    self.slots.record(Sample::Overloaded, start);
                    return Err(RpcError::Timeout);
                }
                Err(CallError::Failed(message)) => {
                    self.slots.record(Sample::Latency(began.elapsed()), start);
                    return Err(RpcError::Failed(message));
                }
            }
        }
    }
}

/// Which queue a call waits in for its slot, and for how long.
#[derive(Clone, Copy)]
enum Wait<'a> {
    /// Calls of established sessions: no bound but the whole-call timeout.
    Session,
    /// `Connect`: `max` is `--rpc_connect_max_wait` (admission control on); the call is not
    /// made once `left` fires.
    Connect {
        max: Option<Duration>,
        left: &'a CancellationToken,
    },
}

/// Runs `future` until `deadline`, if any; `None` when the deadline passed first.
async fn within<F: Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
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

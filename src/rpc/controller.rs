//! The application backend as the node sees it: the [`Controller`] role, implemented over RPC
//! (gRPC or HTTP, [`RpcController`]) and by [`NoController`] when RPC is off (`--norpc`,
//! `--rpc_impl=none`).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::disconnector::Disconnector;
use super::{
    CommandMessage, CommandResponse, ConnectionRequest, ConnectionResponse, DisconnectRequest, Rpc,
    RpcError,
};

/// When the backend is told that a session ended (`--disconnect_mode`).
pub use crate::config::DisconnectMode;

/// Why the backend gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// There is no backend (RPC is off): what only a backend could accept is rejected locally.
    #[error("no backend is configured")]
    NotConfigured,
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// The application backend: authenticates connections the local pipeline (JWT, `--noauth`)
/// leaves undecided, and runs the channels it does not know.
///
/// Contract:
/// - Answers: `Ok` is the backend's answer, whatever its status (`SUCCESS`, `FAILURE`, `ERROR`:
///   the node applies each as the reference does). `Err` means there is no answer, and nothing
///   of the call is applied: `NotConfigured` at once from [`NoController`], `Rpc` when every
///   attempt failed.
/// - Retries: an attempt failing with `RESOURCE_EXHAUSTED` or `UNAVAILABLE` (HTTP: no HTTP
///   response at all) is retried with exponential backoff (10 ms or 100 ms doubling, restarting
///   when the kind changes); any other failure ends the call. HTTP RPC also has a circuit
///   breaker that fails calls at once while most recent ones got no response.
/// - Timeouts: each attempt is bounded by `--rpc_request_timeout` (gRPC) or `--http_rpc_timeout`
///   (HTTP, 3 s by default); the whole call, including the wait for one of `--rpc_concurrency`
///   slots (fixed, or adaptive with 0) and the retries, by `--rpc_command_timeout`. A timed-out
///   call is `RpcError::Timeout`.
/// - Admission (`authenticate` only): with `--rpc_connect_max_wait`, `Connect` waits for a
///   slot behind the other calls, and at most that long: a call that would wait longer is not
///   made (`RpcError::Busy`). It is not made either once `left` fires (`RpcError::Canceled`);
///   a call already made completes.
/// - Cancellation: a call is a future; dropping it abandons it at once (no further attempt,
///   its concurrency slot is freed), and the backend may or may not have run it. The WebSocket
///   transport never drops one: a command in flight when its client goes away completes and
///   its reply is applied to the closing session before `disconnect` is queued. An SSE
///   request's calls go with the request when the HTTP server drops it (its client went away
///   before the response started).
/// - `disconnect` never fails from the caller's point of view: the call is queued (bounded
///   by `--disconnect_backlog_size`, waiting for room when full) and made at
///   `--disconnect_rate` per second; failures are logged. Queued calls are made without the
///   rate limit on shutdown.
/// - Commands of one connection are sent one at a time, in order (the node awaits each);
///   calls of different connections run concurrently.
pub trait Controller: Send + Sync {
    /// `Connect`: authenticates a connection; `left` fires when its client goes away.
    fn authenticate<'a>(
        &'a self,
        sid: &'a str,
        request: ConnectionRequest,
        left: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ConnectionResponse, ControllerError>>;

    /// `Command` `subscribe` (the `command` field is set here).
    fn subscribe<'a>(
        &'a self,
        sid: &'a str,
        message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>>;

    /// `Command` `message`: runs a channel action.
    fn perform<'a>(
        &'a self,
        sid: &'a str,
        message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>>;

    /// `Command` `unsubscribe`.
    fn unsubscribe<'a>(
        &'a self,
        sid: &'a str,
        message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>>;

    /// Queues `Disconnect` for an ended session (see the contract).
    fn disconnect(&self, sid: Arc<str>, request: DisconnectRequest) -> BoxFuture<'_, ()>;

    /// Which ended sessions the backend is told about.
    fn disconnect_mode(&self) -> DisconnectMode;

    /// `Disconnect` calls waiting in the queue (`disconnect_queue_size`).
    fn queued_disconnects(&self) -> usize;

    /// Live connections to the backend (`grpc_active_conn_num`).
    fn active_connections(&self) -> usize;
}

/// The backend over RPC: the client (gRPC or HTTP transport, retries, timeouts, concurrency)
/// and its disconnect queue.
pub struct RpcController {
    pub rpc: Arc<Rpc>,
    pub disconnector: Disconnector,
    pub mode: DisconnectMode,
}

impl RpcController {
    fn command<'a>(
        &'a self,
        command: &'static str,
        sid: &'a str,
        mut message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>> {
        message.command = command.to_string();
        Box::pin(async move { Ok(self.rpc.command(sid, message).await?) })
    }
}

impl Controller for RpcController {
    fn authenticate<'a>(
        &'a self,
        sid: &'a str,
        request: ConnectionRequest,
        left: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ConnectionResponse, ControllerError>> {
        Box::pin(async move { Ok(self.rpc.connect(sid, request, left).await?) })
    }

    fn subscribe<'a>(
        &'a self,
        sid: &'a str,
        message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>> {
        self.command("subscribe", sid, message)
    }

    fn perform<'a>(
        &'a self,
        sid: &'a str,
        message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>> {
        self.command("message", sid, message)
    }

    fn unsubscribe<'a>(
        &'a self,
        sid: &'a str,
        message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>> {
        self.command("unsubscribe", sid, message)
    }

    fn disconnect(&self, sid: Arc<str>, request: DisconnectRequest) -> BoxFuture<'_, ()> {
        Box::pin(self.disconnector.enqueue(sid, request))
    }

    fn disconnect_mode(&self) -> DisconnectMode {
        self.mode
    }

    fn queued_disconnects(&self) -> usize {
        self.disconnector.queued()
    }

    fn active_connections(&self) -> usize {
        self.rpc.active_connections()
    }
}

/// No backend (RPC is off): every call answers `NotConfigured` at once and no session is
/// reported as ended.
pub struct NoController;

impl NoController {
    fn none<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, ControllerError>> {
        Box::pin(std::future::ready(Err(ControllerError::NotConfigured)))
    }
}

impl Controller for NoController {
    fn authenticate<'a>(
        &'a self,
        _sid: &'a str,
        _request: ConnectionRequest,
        _left: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<ConnectionResponse, ControllerError>> {
        NoController::none()
    }

    fn subscribe<'a>(
        &'a self,
        _sid: &'a str,
        _message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>> {
        NoController::none()
    }

    fn perform<'a>(
        &'a self,
        _sid: &'a str,
        _message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>> {
        NoController::none()
    }

    fn unsubscribe<'a>(
        &'a self,
        _sid: &'a str,
        _message: CommandMessage,
    ) -> BoxFuture<'a, Result<CommandResponse, ControllerError>> {
        NoController::none()
    }

    fn disconnect(&self, _sid: Arc<str>, _request: DisconnectRequest) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn disconnect_mode(&self) -> DisconnectMode {
        DisconnectMode::Never
    }

    fn queued_disconnects(&self) -> usize {
        0
    }

    fn active_connections(&self) -> usize {
        0
    }
}

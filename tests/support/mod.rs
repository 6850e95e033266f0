//! Shared harness of the integration tests: starts the real `anycable-rs` binary on free
//! ports, speaks WebSocket (with a hand-made handshake, so that response headers, refused
//! upgrades and odd sub-protocol lists can be checked), and talks HTTP to the health and
//! broadcast endpoints.
//!
//! Synchronisation is always on events (a frame arrives, a port answers, the process exits),
//! bounded by timeouts. To show that something does *not* happen, tests send a later marker
//! (`{"command":"ping"}` → `{"type":"pong"}`, or a broadcast on another stream) and check
//! that the marker is the next thing to arrive.

#![allow(dead_code)]

use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_anycable-rs");

/// How long a test waits for an expected frame.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test waits to be reasonably sure that nothing (more) arrives.
pub const SILENCE: Duration = Duration::from_millis(300);
/// Health polling: every 20 ms, up to 10 s.
pub const HEALTH_POLL: Duration = Duration::from_millis(20);
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(10);

pub const HEALTH_BODY: &str = "Ah, ha, ha, ha, stayin' alive, stayin' alive.";

mod grpc_backend;
mod hosts;
mod http;
mod process;
mod proxy;
mod rpc_backend;
mod server;
mod services;
mod stalled;
mod steerable_grpc;
mod tls;
mod tokens;
mod traffic;

/// Not re-exported: only the Redis and NATS tests use it (`use support::publishing::*`).
pub mod publishing;
/// Not re-exported: only the SSE tests use it (`use support::sse::*`).
pub mod sse;
mod ws;

// Each test binary uses a part of the harness: re-exports unused by one of them are fine.
#[allow(unused_imports)]
pub use {
    grpc_backend::*, hosts::*, http::*, process::*, proxy::*, rpc_backend::*, server::*,
    services::*, stalled::*, steerable_grpc::*, tls::*, tokens::*, traffic::*, ws::*,
};

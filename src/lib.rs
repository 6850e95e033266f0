//! anycable-rs: a drop-in replacement for the AnyCable-Go real-time server.
//!
//! Data flows socket -> [`transport`] -> [`protocol`] -> [`session`] -> [`node`] -> [`hub`] ->
//! each session's outbox -> socket; publications enter through [`broadcast`] and reach the same
//! hub. See `docs/architecture.md`.

pub mod api;
pub mod app;
pub mod broadcast;
pub mod broker;
pub mod clients;
pub mod config;
pub mod doctor;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod notices;
pub mod open_files;
pub mod protocol;
pub mod publication;
pub mod pubsub;
pub mod readiness;
pub mod resolve;
pub mod rpc;
pub mod server;
pub mod session;
pub mod streams;
pub mod transport;
pub mod trust;

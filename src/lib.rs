//! anycable-rs: a drop-in replacement for the AnyCable-Go real-time server.
//!
//! Data flows socket -> `transport` -> `protocol` -> `session` -> `node` -> `hub` -> socket;
//! publications enter through `broadcast` and reach the same `hub`. See `docs/architecture.md`.

pub mod config;

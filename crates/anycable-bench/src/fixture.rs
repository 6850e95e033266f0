//! The names the spawned server, the stand-in RPC backend and the clients agree on.

/// The application secret the spawned server runs with.
pub const SECRET: &str = "bench-secret";
/// The stream every client subscribes to and every publication goes to.
pub const STREAM: &str = "bench";
/// What the clients put in their URL's query in RPC mode; the backend's Connect looks for it.
pub const CLIENT_TOKEN: &str = "token=bench-token";
/// The channel the clients subscribe to in RPC mode; the backend's Command confirms only this
/// one.
pub const CHANNEL: &str = r#"{"channel":"BenchChannel"}"#;

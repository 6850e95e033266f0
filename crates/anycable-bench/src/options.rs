//! What one scenario run uses: sizes and rates, the clients' transport, the broadcaster.

use std::time::Duration;

/// Benchmark parameters after defaults.
pub struct Options {
    pub connections: usize,
    pub messages: usize,
    pub rate: f64,
    pub throughput_rates: Vec<f64>,
    pub step: Duration,
    pub hold: Duration,
    pub concurrency: usize,
    pub transport: Transport,
    pub broadcaster: Broadcaster,
    /// storm: how long a client waits for its welcome before it closes and tries again.
    pub client_timeout: Duration,
    /// storm: how long a client keeps trying before the scenario counts it as never welcomed.
    pub storm_limit: Duration,
}

/// How the clients connect: Action Cable over WebSocket, or an SSE stream (`GET
/// /events`, which the server must have enabled: `--sse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
}

impl Transport {
    pub fn parse(name: &str) -> Result<Transport, String> {
        match name {
            "ws" => Ok(Transport::Ws),
            "sse" => Ok(Transport::Sse),
            other => Err(format!("--transport: expected ws or sse, got {other}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }
}

/// The server's broadcaster the benchmark publishes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broadcaster {
    Http,
    /// The legacy `redis` broadcaster (Redis Pub/Sub).
    Redis,
}

impl Broadcaster {
    pub fn parse(name: &str) -> Result<Broadcaster, String> {
        match name {
            "http" => Ok(Broadcaster::Http),
            "redis" => Ok(Broadcaster::Redis),
            other => Err(format!(
                "--broadcaster: expected http or redis, got {other}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Broadcaster::Http => "http",
            Broadcaster::Redis => "redis",
        }
    }
}

//! What one scenario run uses: sizes and rates, the clients' transport, the broadcaster; and
//! the command line they come from.

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
    pub auth: Auth,
}

/// How the server authenticates the idle scenario's WebSocket clients (every mode subscribes
/// them to the stream `bench`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `--noauth --norpc`: no identification, the public stream.
    None,
    /// `--norpc`: each client brings a JWT (identifiers `{"user":"bench"}`), the public stream.
    Jwt,
    /// `--public` with an RPC host configured that nothing calls: what a session keeps for a
    /// backend that is never asked.
    Public,
    /// The in-process gRPC backend authenticates each client (identifiers and connection
    /// state) and subscribes it to its channel (channel state).
    Rpc,
}

impl Auth {
    pub const ALL: [Auth; 4] = [Auth::None, Auth::Jwt, Auth::Public, Auth::Rpc];

    pub fn parse(name: &str) -> Result<Auth, String> {
        Auth::ALL
            .into_iter()
            .find(|auth| auth.name() == name)
            .ok_or(format!(
                "--auth: expected noauth, jwt, public or rpc, got {name}"
            ))
    }

    pub fn name(self) -> &'static str {
        match self {
            Auth::None => "noauth",
            Auth::Jwt => "jwt",
            Auth::Public => "public",
            Auth::Rpc => "rpc",
        }
    }
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

/// Command-line flags, `--name value` or `--name=value`, up to `--` (the server's arguments
/// follow it).
pub struct Flags<'a> {
    rest: std::slice::Iter<'a, String>,
    /// The current flag's name and inline value.
    current: (&'a str, Option<&'a str>),
}

impl<'a> Flags<'a> {
    pub fn new(args: &'a [String]) -> Flags<'a> {
        Flags {
            rest: args.iter(),
            current: ("", None),
        }
    }

    /// The next flag's name.
    pub fn next_flag(&mut self) -> Option<&'a str> {
        let arg = self.rest.next()?;
        self.current = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.as_str(), None),
        };
        Some(self.current.0)
    }

    /// The current flag's value: after `=`, or the next argument.
    pub fn value(&mut self) -> Result<String, String> {
        let (name, inline) = self.current;
        inline
            .map(str::to_string)
            .or_else(|| self.rest.next().cloned())
            .ok_or(format!("{name} needs a value"))
    }

    /// The current flag's value as a finite, non-negative number.
    pub fn number(&mut self) -> Result<f64, String> {
        let value = self.value()?;
        self.parse_number(&value)
    }

    /// `value` as a finite, non-negative number for the current flag.
    pub fn parse_number(&self, value: &str) -> Result<f64, String> {
        value
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or(format!(
                "{}: not a non-negative number: {value}",
                self.current.0
            ))
    }

    /// Everything after `--`.
    pub fn remaining(&mut self) -> Vec<String> {
        self.rest.by_ref().cloned().collect()
    }
}

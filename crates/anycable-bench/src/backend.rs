//! The application backend of the `connect` scenario in RPC mode (`--rpc grpc|http`): an
//! in-process stand-in for AnyCable's `anycable.RPC` service (Connect, Command, Disconnect).
//!
//! It runs on its own one-thread runtime, so its calls do not queue behind the thousands of
//! client tasks, and it answers from prepared strings, so the figures measure the server's RPC
//! path rather than the backend. Every call is still checked (the client's token, the
//! connection identifiers and the channel), so each connection costs a real authentication
//! round trip.

mod capacity;
mod grpc;
mod http;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use capacity::{Capacity, CapacityFigures};

use anycable_rs::rpc::proto::{
    CommandMessage, CommandResponse, ConnectionRequest, ConnectionResponse, DisconnectRequest,
    DisconnectResponse, EnvResponse, Status,
};
use tokio::runtime::Runtime;

use crate::fixture::{CHANNEL, CLIENT_TOKEN, STREAM};
use crate::procfs::CpuTime;

/// The identifiers Connect gives every connection; Command checks them.
const IDENTIFIERS: &str = r#"{"user":"bench"}"#;

/// State a Rails application typically keeps, so that the server holds some for every
/// connection: a connection state key (given by Connect) and a channel state key (Command).
fn connection_state() -> Option<EnvResponse> {
    Some(EnvResponse {
        cstate: [("current_user".into(), r#"{"id":1,"name":"bench"}"#.into())].into(),
        ..EnvResponse::default()
    })
}

fn channel_state() -> Option<EnvResponse> {
    Some(EnvResponse {
        istate: [("room".into(), "lobby".into())].into(),
        ..EnvResponse::default()
    })
}

/// The backend's threads, named so their CPU time can be told apart from the clients'.
const THREAD_NAME: &str = "bench-rpc";

/// How the server reaches the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    pub fn parse(name: &str) -> Result<Protocol, String> {
        match name {
            "grpc" => Ok(Protocol::Grpc),
            "http" => Ok(Protocol::Http),
            other => Err(format!("--rpc: expected grpc or http, got {other}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// Calls answered so far.
pub struct Calls {
    pub connect: u64,
    pub command: u64,
    /// Calls that failed a check (the HTTP key, the client's token, the identifiers or the
    /// channel).
    pub refused: u64,
}

/// The answers, the same whichever protocol carries them.
struct Answers {
    /// The storm scenario's model of a backend that can run only so many `Connect` calls at
    /// once (gRPC only); unbounded otherwise.
    capacity: Option<Capacity>,
    connect: AtomicU64,
    command: AtomicU64,
    refused: AtomicU64,
    confirmation: String,
    rejection: String,
}

impl Answers {
    fn new(capacity: Option<Capacity>) -> Answers {
        let reply =
            |kind: &str| serde_json::json!({"identifier": CHANNEL, "type": kind}).to_string();
        Answers {
            capacity,
            connect: AtomicU64::new(0),
            command: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            confirmation: reply("confirm_subscription"),
            rejection: reply("reject_subscription"),
        }
    }

    fn connect(&self, request: ConnectionRequest) -> ConnectionResponse {
        self.connect.fetch_add(1, Ordering::Relaxed);
        let url = request.env.map(|env| env.url).unwrap_or_default();
        let authorized = url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|pair| pair == CLIENT_TOKEN));
        if !authorized {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return ConnectionResponse {
                status: Status::Failure as i32,
                transmissions: vec![
                    r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#.into(),
                ],
                ..ConnectionResponse::default()
            };
        }
        ConnectionResponse {
            status: Status::Success as i32,
            identifiers: IDENTIFIERS.into(),
            transmissions: vec![r#"{"type":"welcome"}"#.into()],
            env: connection_state(),
            ..ConnectionResponse::default()
        }
    }

    fn command(&self, request: CommandMessage) -> CommandResponse {
        self.command.fetch_add(1, Ordering::Relaxed);
        let confirmed = request.command == "subscribe"
            && request.identifier == CHANNEL
            && request.connection_identifiers == IDENTIFIERS;
        if !confirmed {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return CommandResponse {
                status: Status::Failure as i32,
                transmissions: vec![self.rejection.clone()],
                ..CommandResponse::default()
            };
        }
        CommandResponse {
            status: Status::Success as i32,
            streams: vec![STREAM.into()],
            transmissions: vec![self.confirmation.clone()],
            env: channel_state(),
            ..CommandResponse::default()
        }
    }

    /// Not counted: the server queues Disconnect calls at `--disconnect_rate` (100/s), so most
    /// arrive after the scenario has ended.
    fn disconnect(&self, _: DisconnectRequest) -> DisconnectResponse {
        DisconnectResponse {
            status: Status::Success as i32,
            ..DisconnectResponse::default()
        }
    }
}

pub struct Backend {
    pub protocol: Protocol,
    addr: SocketAddr,
    answers: Arc<Answers>,
    /// Taken on drop, to stop it without blocking the benchmark's runtime.
    runtime: Option<Runtime>,
}

impl Backend {
    /// Listens on a free loopback port and serves there until dropped.
    pub fn start(protocol: Protocol) -> Result<Backend, String> {
        Backend::start_with(protocol, None)
    }

    /// [`Backend::start`] with at most `capacity` Connect calls at once (gRPC only).
    pub fn start_with(protocol: Protocol, capacity: Option<Capacity>) -> Result<Backend, String> {
        if capacity.is_some() && protocol != Protocol::Grpc {
            return Err("a backend of limited capacity is modelled over gRPC only".into());
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("RPC backend: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .map_err(|e| format!("RPC backend runtime: {e}"))?;
        let answers = Arc::new(Answers::new(capacity));
        let served = answers.clone();
        runtime.spawn(async move {
            let outcome = match protocol {
                Protocol::Grpc => grpc::serve(listener, served).await,
                Protocol::Http => http::serve(listener, served).await,
            };
            if let Err(error) = outcome {
                eprintln!("RPC backend stopped: {error}");
            }
        });
        Ok(Backend {
            protocol,
            addr,
            answers,
            runtime: Some(runtime),
        })
    }

    /// The server's `--rpc_host` (an `http://` URL selects HTTP RPC).
    pub fn rpc_host(&self) -> String {
        match self.protocol {
            Protocol::Grpc => self.addr.to_string(),
            Protocol::Http => format!("http://{}{}", self.addr, http::BASE_PATH),
        }
    }

    /// CPU time the backend has used so far.
    pub fn cpu(&self) -> Option<CpuTime> {
        CpuTime::of_own_threads(THREAD_NAME)
    }

    pub fn calls(&self) -> Calls {
        Calls {
            connect: self.answers.connect.load(Ordering::Relaxed),
            command: self.answers.command.load(Ordering::Relaxed),
            refused: self.answers.refused.load(Ordering::Relaxed),
        }
    }

    /// What the capacity model saw, when there is one.
    pub fn capacity(&self) -> Option<CapacityFigures> {
        self.answers.capacity.as_ref().map(Capacity::figures)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use anycable_rs::rpc::proto::Env;

    use super::*;

    fn connect(answers: &Answers, url: &str) -> ConnectionResponse {
        answers.connect(ConnectionRequest {
            env: Some(Env {
                url: url.into(),
                ..Env::default()
            }),
        })
    }

    fn subscribe(answers: &Answers, identifier: &str, identifiers: &str) -> CommandResponse {
        answers.command(CommandMessage {
            command: "subscribe".into(),
            identifier: identifier.into(),
            connection_identifiers: identifiers.into(),
            ..CommandMessage::default()
        })
    }

    #[test]
    fn connect_needs_the_client_token() {
        let answers = Answers::new(None);
        let accepted = connect(&answers, &format!("http://h/cable?a=1&{CLIENT_TOKEN}"));
        assert_eq!(accepted.status, Status::Success as i32);
        assert_eq!(accepted.identifiers, IDENTIFIERS);
        assert_eq!(accepted.transmissions, [r#"{"type":"welcome"}"#]);
        let refused = connect(&answers, &format!("http://h/cable?x{CLIENT_TOKEN}"));
        assert_eq!(refused.status, Status::Failure as i32);
        assert_eq!(answers.connect.load(Ordering::Relaxed), 2);
        assert_eq!(answers.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn subscribe_confirms_the_bench_channel_for_its_identifiers() {
        let answers = Answers::new(None);
        let confirmed = subscribe(&answers, CHANNEL, IDENTIFIERS);
        assert_eq!(confirmed.status, Status::Success as i32);
        assert_eq!(confirmed.streams, [STREAM]);
        let confirmation: serde_json::Value =
            serde_json::from_str(&confirmed.transmissions[0]).unwrap();
        assert_eq!(
            confirmation,
            serde_json::json!({"identifier": CHANNEL, "type": "confirm_subscription"})
        );
        assert_eq!(
            subscribe(&answers, r#"{"channel":"Other"}"#, IDENTIFIERS).status,
            Status::Failure as i32
        );
        assert_eq!(
            subscribe(&answers, CHANNEL, r#"{"user":"else"}"#).status,
            Status::Failure as i32
        );
        assert_eq!(answers.command.load(Ordering::Relaxed), 3);
        assert_eq!(answers.refused.load(Ordering::Relaxed), 2);
    }
}

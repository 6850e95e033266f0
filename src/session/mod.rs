//! Per-connection state: who the client is, what it is subscribed to, and its outbound queue.

mod outbox;

use std::collections::HashMap;
use std::sync::Arc;

pub use outbox::{Direct, FlushList, Outbox, Outgoing, Pushed};

/// One subscription (one channel identifier) of a connection.
#[derive(Debug, Default)]
pub struct Subscription {
    /// Streams this subscription receives broadcasts from.
    pub streams: Vec<Arc<str>>,
    /// The stream whispers go to, when whispering is allowed.
    pub whisper_stream: Option<Arc<str>>,
    /// The stream presence commands apply to, when presence is allowed.
    pub presence_stream: Option<Arc<str>>,
    /// Set on a restored session until the client asks for the history it missed: its streams
    /// are attached behind the hub's gate meanwhile, so that live messages follow the replay
    /// without duplicates (or are let through if the client never asks).
    pub awaiting_history: bool,
    /// The channel lives in the application backend (commands go over RPC).
    pub remote: bool,
    /// Channel state (`istate`) kept for the backend and sent back with every command.
    pub state: HashMap<String, String>,
}

/// The state of one authenticated connection. Owned by its connection task: only that task
/// mutates it, so it needs no lock; other tasks reach the client through the shared [`Outbox`].
pub struct Session {
    /// Process-unique number, used as the key in the hub and registry.
    pub id: u64,
    /// The public connection id (`sid` in the welcome message, `exclude_socket` in broadcasts).
    pub sid: Arc<str>,
    /// Connection identifiers (JSON text): the JWT `ext` claim or `{"sid":"..."}`.
    pub identifiers: Arc<str>,
    pub outbox: Arc<Outbox>,
    pub subscriptions: HashMap<Arc<str>, Subscription>,
    /// Frames that were not valid commands; too many of them end the connection.
    pub malformed_frames: u32,
    /// Negotiated `actioncable-v1-ext-json`: the session is cached for restore.
    pub extended: bool,
    /// The request as the backend sees it (URL, proxied headers).
    pub env: Arc<RequestEnv>,
    /// Connection state (`cstate`) kept for the backend.
    pub state: HashMap<String, String>,
    /// The backend must be told when this session ends (`Disconnect` RPC).
    pub disconnectable: bool,
}

/// What the backend learns about the client's HTTP request, captured once at the handshake.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestEnv {
    /// `http(s)://host/path?query` of the connection request.
    pub url: String,
    /// The proxied headers (lower-case names) plus `REMOTE_ADDR`.
    pub headers: HashMap<String, String>,
}

/// Applies state changes from the backend: an empty value deletes the key.
pub fn merge_state(state: &mut HashMap<String, String>, changes: &HashMap<String, String>) {
    for (key, value) in changes {
        if value.is_empty() {
            state.remove(key);
        } else {
            state.insert(key.clone(), value.clone());
        }
    }
}

impl Session {
    pub fn new(
        id: u64,
        sid: Arc<str>,
        identifiers: Arc<str>,
        outbox: Arc<Outbox>,
        extended: bool,
        env: Arc<RequestEnv>,
    ) -> Session {
        Session {
            id,
            sid,
            identifiers,
            outbox,
            subscriptions: HashMap::new(),
            malformed_frames: 0,
            extended,
            env,
            state: HashMap::new(),
            disconnectable: false,
        }
    }

    /// Queues a protocol message for this client.
    pub fn send(&self, frame: String) -> Pushed {
        self.outbox.push(frame.into())
    }
}

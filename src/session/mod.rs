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

/// A connection's subscriptions by channel identifier, in the order they were made.
///
/// A vector searched in order rather than a hash map: clients hold a handful of subscriptions,
/// and the smallest hash table has room for four (half a KiB for one subscription), which adds
/// up on a server holding many mostly idle connections. A client with very many subscriptions
/// pays a linear search per command, its own cost.
#[derive(Debug, Default)]
pub struct Subscriptions(Vec<Entry>);

impl Subscriptions {
    pub fn get(&self, identifier: &str) -> Option<&Subscription> {
        self.position(identifier).map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, identifier: &str) -> Option<&mut Subscription> {
        self.position(identifier).map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, identifier: &str) -> bool {
        self.position(identifier).is_some()
    }

    /// Adds or replaces the subscription of `identifier`; returns the replaced one.
    pub fn insert(
        &mut self,
        identifier: Arc<str>,
        subscription: Subscription,
    ) -> Option<Subscription> {
        if let Some(i) = self.position(&identifier) {
            return Some(std::mem::replace(&mut self.0[i].1, subscription));
        }
        // Exact room for the first few: most connections never have more.
        if self.0.len() < 4 {
            self.0.reserve_exact(1);
        }
        self.0.push((identifier, subscription));
        None
    }

    pub fn remove(&mut self, identifier: &str) -> Option<Subscription> {
        let i = self.position(identifier)?;
        Some(self.0.remove(i).1)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(identifier, _)| identifier)
    }

    pub fn values(&self) -> impl Iterator<Item = &Subscription> {
        self.0.iter().map(|(_, subscription)| subscription)
    }

    pub fn iter(&self) -> <&Subscriptions as IntoIterator>::IntoIter {
        self.into_iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut Subscription)> {
        self.0
            .iter_mut()
            .map(|(identifier, subscription)| (&*identifier, subscription))
    }

    fn position(&self, identifier: &str) -> Option<usize> {
        self.0.iter().position(|(key, _)| **key == *identifier)
    }
}

type Entry = (Arc<str>, Subscription);

impl<'a> IntoIterator for &'a Subscriptions {
    type Item = (&'a Arc<str>, &'a Subscription);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Entry>, fn(&'a Entry) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0
            .iter()
            .map(|(identifier, subscription)| (identifier, subscription))
    }
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
    pub subscriptions: Subscriptions,
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
            subscriptions: Subscriptions::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_streams(streams: &[&str]) -> Subscription {
        Subscription {
            streams: streams.iter().map(|s| Arc::from(*s)).collect(),
            ..Subscription::default()
        }
    }

    #[test]
    fn subscriptions_keep_their_order_and_replace_by_identifier() {
        let mut subscriptions = Subscriptions::default();
        for id in ["a", "b", "c", "d", "e"] {
            assert!(subscriptions
                .insert(id.into(), with_streams(&[id]))
                .is_none());
        }
        let replaced = subscriptions.insert("b".into(), with_streams(&["b2"]));
        assert_eq!(replaced.unwrap().streams, [Arc::from("b")]);
        assert_eq!(subscriptions.get("b").unwrap().streams, [Arc::from("b2")]);
        assert!(subscriptions.remove("c").is_some());
        assert!(subscriptions.remove("c").is_none());
        assert!(!subscriptions.contains_key("c"));
        let ids: Vec<&str> = subscriptions.keys().map(|k| &**k).collect();
        assert_eq!(ids, ["a", "b", "d", "e"]);
        subscriptions.get_mut("e").unwrap().remote = true;
        let remote: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, s)| s.remote)
            .map(|(k, _)| &**k)
            .collect();
        assert_eq!(remote, ["e"]);
    }
}

//! Per-connection state: who the client is, what it is subscribed to, and its outbound queue.

mod outbox;

use std::collections::HashMap;
use std::sync::Arc;

pub use outbox::{Direct, FlushList, Framer, Outbox, Outgoing, Pushed};

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

/// A connection's subscriptions by channel identifier.
///
/// A short vector searched in order while the connection holds a handful of subscriptions (the
/// common case): the smallest hash table has room for four (half a KiB for one subscription),
/// which adds up on a server holding many mostly idle connections. Past [`INDEXED_FROM`]
/// subscriptions a hash index of positions is added, so that a connection with thousands of
/// them still finds, adds and removes one in constant time instead of scanning them all on
/// every command (which let one client keep a core busy for minutes).
///
/// Iteration follows the order subscriptions were made, except that a removal moves the last
/// one into the gap (constant time; nothing depends on the order, AnyCable-Go keeps them in a
/// map).
#[derive(Debug, Default)]
pub struct Subscriptions {
    entries: Vec<Entry>,
    /// Positions in `entries` by identifier, only while there are many. Boxed so that every
    /// connection pays one pointer for it rather than an empty table's 48 bytes.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<Arc<str>, usize>>>,
}

/// The number of subscriptions from which a connection keeps a hash index of them. Below it a
/// scan compares a few identifiers, as cheap as hashing one.
pub const INDEXED_FROM: usize = 16;

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, identifier: &str) -> Option<&Subscription> {
        self.position(identifier).map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, identifier: &str) -> Option<&mut Subscription> {
        self.position(identifier).map(|i| &mut self.entries[i].1)
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
            return Some(std::mem::replace(&mut self.entries[i].1, subscription));
        }
        // Exact room for the first few: most connections never have more.
        if self.entries.len() < 4 {
            self.entries.reserve_exact(1);
        }
        let position = self.entries.len();
        match &mut self.index {
            Some(index) => {
                index.insert(identifier.clone(), position);
            }
            None if position + 1 >= INDEXED_FROM => {
                let index = self
                    .entries
                    .iter()
                    .map(|(key, _)| key.clone())
                    .chain(std::iter::once(identifier.clone()))
                    .zip(0..)
                    .collect();
                self.index = Some(Box::new(index));
            }
            None => {}
        }
        self.entries.push((identifier, subscription));
        None
    }

    pub fn remove(&mut self, identifier: &str) -> Option<Subscription> {
        let i = self.position(identifier)?;
        let (_, removed) = self.entries.swap_remove(i);
        if let Some(index) = &mut self.index {
            index.remove(identifier);
            if let Some((moved, _)) = self.entries.get(i) {
                index.insert(moved.clone(), i);
            }
            // Well below the threshold again: back to the plain vector (hysteresis, so that
            // one subscription coming and going does not rebuild the index each time).
            if self.entries.len() < INDEXED_FROM / 2 {
                self.index = None;
            }
        }
        Some(removed)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.index = None;
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries.iter().map(|(identifier, _)| identifier)
    }

    pub fn values(&self) -> impl Iterator<Item = &Subscription> {
        self.entries.iter().map(|(_, subscription)| subscription)
    }

    pub fn iter(&self) -> <&Subscriptions as IntoIterator>::IntoIter {
        self.into_iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut Subscription)> {
        self.entries
            .iter_mut()
            .map(|(identifier, subscription)| (&*identifier, subscription))
    }

    fn position(&self, identifier: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(identifier).copied(),
            None => self
                .entries
                .iter()
                .position(|(key, _)| **key == *identifier),
        }
    }
}

type Entry = (Arc<str>, Subscription);

impl<'a> IntoIterator for &'a Subscriptions {
    type Item = (&'a Arc<str>, &'a Subscription);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Entry>, fn(&'a Entry) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries
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
    /// A subscription was refused for the per-connection limit (logged once per connection).
    pub subscription_limit_reached: bool,
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
///
/// Kept for the session's whole life for the calls it may make (Command, Disconnect), so kept
/// compactly: boxed strings and a slice of header pairs instead of a hash map, whose smallest
/// table alone is larger than the few headers a request passes on. The map the RPC messages
/// carry is built per call. Without a backend, every session shares one empty env.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestEnv {
    url: Box<str>,
    headers: Box<[(Box<str>, Box<str>)]>,
}

impl RequestEnv {
    /// `url`: `http(s)://host/path?query` of the connection request; `headers`: the proxied
    /// headers (lower-case names) plus `REMOTE_ADDR`.
    pub fn new(url: String, headers: impl IntoIterator<Item = (String, String)>) -> RequestEnv {
        RequestEnv {
            url: url.into_boxed_str(),
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.into_boxed_str(), value.into_boxed_str()))
                .collect(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers as an RPC message carries them.
    pub fn headers(&self) -> HashMap<String, String> {
        self.headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }
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
            subscription_limit_reached: false,
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
    fn subscriptions_replace_by_identifier_and_fill_gaps_with_the_last() {
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
        assert_eq!(ids, ["a", "b", "e", "d"]);
        subscriptions.get_mut("e").unwrap().remote = true;
        let remote: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, s)| s.remote)
            .map(|(k, _)| &**k)
            .collect();
        assert_eq!(remote, ["e"]);
    }

    #[test]
    fn many_subscriptions_are_indexed_and_stay_consistent() {
        let mut subscriptions = Subscriptions::default();
        let ids: Vec<String> = (0..200).map(|i| format!("id{i}")).collect();
        for id in &ids {
            subscriptions.insert(id.as_str().into(), with_streams(&[id]));
        }
        assert!(subscriptions.index.is_some());
        // Remove from the front, the middle and the end: every remaining one is still found
        // under its own identifier.
        for id in ids.iter().step_by(3) {
            assert_eq!(
                subscriptions.remove(id).unwrap().streams,
                [Arc::from(&**id)]
            );
        }
        for (n, id) in ids.iter().enumerate() {
            let found = subscriptions.get(id).map(|s| s.streams[0].to_string());
            assert_eq!(found, (n % 3 != 0).then(|| id.clone()), "{id}");
        }
        assert_eq!(subscriptions.len(), subscriptions.keys().count());
        // Back to a plain vector once few are left, still consistent.
        let left: Vec<String> = subscriptions.keys().map(|k| k.to_string()).collect();
        for id in &left[3..] {
            assert!(subscriptions.remove(id).is_some());
        }
        assert!(subscriptions.index.is_none());
        for id in &left[..3] {
            assert!(subscriptions.contains_key(id));
        }
        assert_eq!(subscriptions.len(), 3);
    }
}

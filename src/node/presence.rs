//! Presence: who is in a stream (`join`/`leave`/`presence` commands, the REST API query).

use super::Node;

/// Answer of a presence query for the REST API.
pub enum PresenceLookup {
    /// `{"type":"info","total":N,"records":[...]}` as JSON text.
    Found(String),
    /// The broker keeps no presence (no broker configured).
    Unsupported,
}

impl Node {
    /// The presence records of `stream`, as the REST API answers them.
    pub fn presence_users(&self, _stream: &str) -> PresenceLookup {
        PresenceLookup::Unsupported
    }
}

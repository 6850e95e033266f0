//! The NATS broker (`--broker=nats`): everything lives in JetStream, shared by every node of a
//! cluster, so a client can resume its session on any node and get the messages it missed.
//!
//! - History: one JetStream stream per AnyCable stream, named `_ac_<stream>` (its only subject
//!   has the same name), limited to `--history_limit` messages and `--history_ttl` seconds.
//!   The offset of a message is its JetStream sequence. A stream name that is not a valid
//!   JetStream name (dots, slashes, wildcards, ...) is stored as `_acx_<sha256 hex>` instead.
//! - Sessions: the key-value bucket `_anycable_` (key = sid, entries live `--sessions_ttl`).
//! - Epoch: key `_epoch_` of the bucket `_anycable_epoch_`, created by the first node and
//!   adopted by the others; it lives 10 × max(history TTL, sessions TTL) after the last check,
//!   and every node checks it every minute (a new epoch is adopted, a lost one re-created).
//!
//! The names are the reference's, so JetStream data can be inspected with the `nats` CLI.
//! The buckets are used through their JetStream streams (`KV_<bucket>`, subjects
//! `$KV.<bucket>.<key>`, one message per key), the layout of NATS key-value buckets: the
//! client's own key-value API cannot create buckets on NATS 2.9 servers.
//! Presence is not kept by this broker (as in the reference).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::session_writes::{self, SessionStore, SessionWrites};
use super::{
    check_history_from, History, HistoryError, Position, Retention, ServiceError, SessionCache,
    SessionSnapshot, StoreError, StoredMessage, StreamPosition,
};
use crate::clients::nats::NatsOptions;
use crate::protocol::Payload;
use crate::transport::random_id;

const SESSIONS_BUCKET: &str = "_anycable_";
const EPOCH_BUCKET: &str = "_anycable_epoch_";
const EPOCH_KEY: &str = "_epoch_";
const STREAM_PREFIX: &str = "_ac_";
const HASHED_STREAM_PREFIX: &str = "_acx_";
/// Longest AnyCable stream name stored under its own name.
const MAX_PLAIN_NAME: usize = 200;
/// How often each node checks the shared epoch.
const EPOCH_CHECK: Duration = Duration::from_secs(60);
/// Start-up: JetStream must answer within this many attempts (1 s apart, then 2 s, ...).
const START_ATTEMPTS: u32 = 5;
/// A history read waits this long for messages JetStream reported as present.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("JetStream is unavailable: {0}")]
pub struct StartError(#[source] NatsError);

/// A JetStream error of any request kind (the client has one error type per request).
type RequestError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request of the NATS broker failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    #[error("cannot open the key-value bucket {bucket}: {source}")]
    OpenBucket {
        bucket: &'static str,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
    /// A key that is not a subject token (the text is the key).
    #[error("{0:?} cannot be a key")]
    InvalidKey(String),
    /// Publishing was refused before it was sent: the client would buffer it until it
    /// reconnects, long after the caller was told the outcome.
    #[error("not connected to NATS")]
    NotConnected,
    #[error("{0}")]
    Publish(#[source] async_nats::jetstream::context::PublishError),
    /// Any other JetStream request; `action` says which.
    #[error("{action}: {source}")]
    Request {
        action: &'static str,
        #[source]
        source: RequestError,
    },
    #[error("history read timed out")]
    ReadTimeout,
    #[error("the epoch vanished while being read")]
    EpochVanished,
}

impl NatsError {
    fn request(action: &'static str) -> impl FnOnce(RequestError) -> NatsError {
        move |source| NatsError::Request { action, source }
    }
}

/// A key-value bucket kept in its JetStream stream (see the module documentation).
#[derive(Clone)]
struct Bucket {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
}

impl Bucket {
    /// Opens the bucket, creating its stream with `ttl` when it does not exist.
    async fn open(
        jetstream: &jetstream::Context,
        name: &'static str,
        ttl: Duration,
    ) -> Result<Bucket, NatsError> {
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_age: ttl,
                allow_rollup: true,
                deny_delete: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|source| NatsError::OpenBucket {
                bucket: name,
                source,
            })?;
        Ok(Bucket {
            jetstream: jetstream.clone(),
            stream,
            prefix: format!("$KV.{name}."),
        })
    }

    /// The value of `key`; `None` when there is none (or the key cannot be a subject token).
    async fn get(&self, key: &str) -> Result<Option<Bytes>, NatsError> {
        if !valid_key(key) {
            return Ok(None);
        }
        match self
            .stream
            .get_last_raw_message_by_subject(&format!("{}{key}", self.prefix))
            .await
        {
            Ok(message) => Ok(Some(message.payload)),
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(error) => Err(NatsError::request("cannot read a key")(error.into())),
        }
    }

    /// Writes `key` (restarting its time to live).
    async fn put(&self, key: &str, value: Bytes) -> Result<(), NatsError> {
        self.publish(key, Publish::build().payload(value)).await
    }

    /// Writes `key` only if it has no value; `Ok(false)` when it had one.
    async fn create(&self, key: &str, value: Bytes) -> Result<bool, NatsError> {
        let publish = Publish::build()
            .expected_last_subject_sequence(0)
            .payload(value);
        match self.publish(key, publish).await {
            Ok(()) => Ok(true),
            Err(NatsError::Publish(error))
                if error.kind() == PublishErrorKind::WrongLastSequence =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    async fn publish(&self, key: &str, publish: Publish) -> Result<(), NatsError> {
        if !valid_key(key) {
            return Err(NatsError::InvalidKey(key.to_string()));
        }
        self.jetstream
            .send_publish(format!("{}{key}", self.prefix), publish)
            .await
            .map_err(NatsError::Publish)?
            .await
            .map_err(NatsError::Publish)?;
        Ok(())
    }
}

/// Keys are subject tokens: sids and the epoch key are, a client-supplied sid may not be.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'='))
}

pub struct NatsBroker {
    jetstream: jetstream::Context,
    sessions: Bucket,
    epoch: RwLock<Arc<str>>,
    retention: Retention,
    /// JetStream streams this node created (or found) since it started.
    streams: Mutex<HashSet<String>>,
    session_writes: SessionWrites,
}

impl NatsBroker {
    /// Connects, sets up the buckets and the epoch, and starts the session writer and the
    /// epoch check (both stop with `shutdown`).
    pub async fn start(
        options: &NatsOptions,
        retention: Retention,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<NatsBroker>, StartError> {
        let client = options
            .connect("broker")
            .await
            .map_err(|e| StartError(NatsError::Connect(e)))?;
        let jetstream = jetstream::new(client);
        let epoch_ttl = 10 * retention.history_ttl.max(retention.sessions_ttl);
        let mut attempt = 0;
        let (sessions, epochs) = loop {
            let buckets = async {
                let sessions =
                    Bucket::open(&jetstream, SESSIONS_BUCKET, retention.sessions_ttl).await?;
                let epochs = Bucket::open(&jetstream, EPOCH_BUCKET, epoch_ttl).await?;
                Ok::<_, NatsError>((sessions, epochs))
            };
            match buckets.await {
                Ok(buckets) => break buckets,
                Err(error) if attempt + 1 >= START_ATTEMPTS => return Err(StartError(error)),
                Err(error) => {
                    attempt += 1;
                    tracing::warn!(
                        context = "broker",
                        provider = "nats",
                        "JetStream is not ready ({error}), retrying"
                    );
                    tokio::time::sleep(Duration::from_secs(attempt.into())).await;
                }
            }
        };
        let epoch = shared_epoch(&epochs).await.map_err(StartError)?;
        let session_writes = SessionWrites::start(sessions.clone(), "nats", shutdown, tracker);
        let broker = Arc::new(NatsBroker {
            jetstream,
            sessions,
            epoch: RwLock::new(epoch.into()),
            retention,
            streams: Mutex::default(),
            session_writes,
        });
        tracker.spawn(check_epoch(broker.clone(), epochs, shutdown.clone()));
        Ok(broker)
    }

    /// Creates the JetStream stream of `stream` unless this node already did.
    async fn ensure_stream(&self, name: &str) -> Result<(), NatsError> {
        if lock(&self.streams).contains(name) {
            return Ok(());
        }
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: name.to_string(),
                subjects: vec![name.to_string()],
                max_messages: i64::try_from(self.retention.history_limit).unwrap_or(i64::MAX),
                max_age: self.retention.history_ttl,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::request("cannot create a history stream")(e.into()))?;
        lock(&self.streams).insert(name.to_string());
        Ok(())
    }

    /// Stores one publication. Refused at once while the client is disconnected: the client
    /// would buffer it and send it after reconnecting, when the caller has long been told it
    /// failed (and a publisher retrying would store it twice).
    async fn publish(&self, name: &str, payload: &Payload) -> Result<u64, NatsError> {
        if self.jetstream.client().connection_state() != async_nats::connection::State::Connected {
            return Err(NatsError::NotConnected);
        }
        self.ensure_stream(name).await?;
        let published = self
            .jetstream
            .publish(
                name.to_string(),
                Bytes::copy_from_slice(payload.as_json().as_bytes()),
            )
            .await;
        let ack = match published {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        ack.map(|ack| ack.sequence).map_err(NatsError::Publish)
    }

    /// The JetStream stream of `name` and its state; `None` when it does not exist.
    async fn stream_state(&self, name: &str) -> Result<Option<stream::State>, HistoryError> {
        match self.jetstream.get_stream(name).await {
            Ok(stream) => Ok(Some(stream.cached_info().state.clone())),
            Err(error) => match error.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(unavailable("cannot look up a history stream")(error.into())),
            },
        }
    }

    /// The messages of a JetStream stream from `deliver` up to sequence `last`, read through a
    /// short-lived consumer.
    async fn read(
        &self,
        name: &str,
        deliver: consumer::DeliverPolicy,
        last: u64,
    ) -> Result<Vec<StoredMessage>, HistoryError> {
        let stream = self
            .jetstream
            .get_stream(name)
            .await
            .map_err(|e| unavailable("cannot open a history stream")(e.into()))?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: deliver,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(10),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("cannot create a history reader")(e.into()))?;
        let result = tokio::time::timeout(READ_TIMEOUT, async {
            let mut messages = Vec::new();
            let mut batch = consumer
                .fetch()
                .max_messages(self.retention.history_limit.max(1))
                .messages()
                .await
                .map_err(|e| unavailable("cannot fetch history")(e.into()))?;
            while let Some(message) = batch.next().await {
                let message = message.map_err(unavailable("cannot fetch history"))?;
                let offset = message
                    .info()
                    .map_err(|e| unavailable("a history message has no position")(e))?
                    .stream_sequence;
                if offset > last {
                    break;
                }
                let text = String::from_utf8_lossy(&message.payload);
                messages.push(StoredMessage {
                    offset,
                    payload: Payload::from_json(&text),
                });
                if offset == last {
                    break;
                }
            }
            Ok(messages)
        })
        .await
        .unwrap_or_else(|_| Err(HistoryError::Unavailable(NatsError::ReadTimeout.into())));
        let consumer_name = consumer.cached_info().name.clone();
        let _ = stream.delete_consumer(&consumer_name).await;
        result
    }
}

/// A failed JetStream request of a history read.
fn unavailable(action: &'static str) -> impl FnOnce(RequestError) -> HistoryError {
    move |source| HistoryError::Unavailable(NatsError::Request { action, source }.into())
}

impl History for NatsBroker {
    fn epoch(&self) -> Arc<str> {
        self.epoch
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn store<'a>(
        &'a self,
        stream: &'a str,
        payload: &'a Payload,
    ) -> BoxFuture<'a, Result<Position, StoreError>> {
        Box::pin(async move {
            let name = jetstream_name(stream);
            let published = match self.publish(&name, payload).await {
                // The stream was deleted behind this node's back (a NATS restart without
                // storage, an operator): create it again, once. Any other failure is not
                // retried: the publication may still have been stored.
                Err(NatsError::Publish(error))
                    if error.kind() == PublishErrorKind::StreamNotFound =>
                {
                    lock(&self.streams).remove(&name);
                    self.publish(&name, payload).await
                }
                other => other,
            };
            let offset = published.map_err(|error| StoreError {
                stream: stream.to_string(),
                source: error.into(),
            })?;
            Ok(Position {
                offset,
                epoch: self.epoch(),
            })
        })
    }

    fn history_from<'a>(
        &'a self,
        stream: &'a str,
        from: &'a StreamPosition,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, HistoryError>> {
        Box::pin(async move {
            if from.epoch != *self.epoch() {
                return Err(HistoryError::EpochMismatch);
            }
            let name = jetstream_name(stream);
            let state = self
                .stream_state(&name)
                .await?
                .ok_or(HistoryError::UnknownStream)?;
            let oldest = (state.messages > 0).then_some(state.first_sequence);
            check_history_from(from.offset, oldest, state.last_sequence)?;
            if from.offset == state.last_sequence {
                return Ok(Vec::new());
            }
            let deliver = consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.offset + 1,
            };
            self.read(&name, deliver, state.last_sequence).await
        })
    }

    fn history_since<'a>(
        &'a self,
        stream: &'a str,
        since: i64,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, HistoryError>> {
        Box::pin(async move {
            let name = jetstream_name(stream);
            let Some(state) = self.stream_state(&name).await? else {
                return Ok(Vec::new());
            };
            if state.messages == 0 {
                return Ok(Vec::new());
            }
            let start_time = time::OffsetDateTime::from_unix_timestamp(since)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let deliver = consumer::DeliverPolicy::ByStartTime { start_time };
            self.read(&name, deliver, state.last_sequence).await
        })
    }
}

impl SessionCache for NatsBroker {
    fn save_session(&self, sid: &str, snapshot: SessionSnapshot) {
        self.session_writes.save(sid, &snapshot);
    }

    fn touch_session(&self, sid: &str) {
        self.session_writes.touch(sid);
    }

    fn restore_session<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Option<SessionSnapshot>> {
        Box::pin(async move {
            let read = self.sessions.get(sid).await.map_err(ServiceError::from);
            session_writes::decode("nats", read.as_ref().map(|b| b.as_deref()))
        })
    }
}

/// The JetStream stream (and subject) that keeps the history of `stream`.
pub fn jetstream_name(stream: &str) -> String {
    let plain = !stream.is_empty()
        && stream.len() <= MAX_PLAIN_NAME
        && stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("{STREAM_PREFIX}{stream}")
    } else {
        let digest = Sha256::digest(stream.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{HASHED_STREAM_PREFIX}{hex}")
    }
}

/// The cluster's epoch: created with a new random value when there is none.
async fn shared_epoch(epochs: &Bucket) -> Result<String, NatsError> {
    let fresh = random_id()[..4].to_string();
    if epochs.create(EPOCH_KEY, Bytes::from(fresh.clone())).await? {
        return Ok(fresh);
    }
    match epochs.get(EPOCH_KEY).await? {
        Some(value) => Ok(String::from_utf8_lossy(&value).into_owned()),
        None => Err(NatsError::EpochVanished),
    }
}

/// Keeps the epoch alive and adopts a changed one (after it expired, or was set by an
/// operator).
async fn check_epoch(broker: Arc<NatsBroker>, epochs: Bucket, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EPOCH_CHECK);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let current = broker.epoch();
        let shared = match epochs.get(EPOCH_KEY).await {
            Ok(Some(value)) => String::from_utf8_lossy(&value).into_owned(),
            Ok(None) => match shared_epoch(&epochs).await {
                Ok(epoch) => epoch,
                Err(_) => continue,
            },
            Err(_) => continue,
        };
        if *current == *shared {
            // A put restarts the entry's time to live.
            let _ = epochs.put(EPOCH_KEY, Bytes::from(shared)).await;
        } else {
            tracing::warn!(context = "broker", provider = "nats", epoch = %shared, "epoch changed");
            *broker
                .epoch
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = shared.into();
        }
    }
}

impl SessionStore for Bucket {
    fn save<'a>(
        &'a self,
        sid: &'a str,
        snapshot: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move { Ok(self.put(sid, snapshot.into()).await?) })
    }

    /// A key's time to live restarts when it is written again.
    fn touch<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            match self.get(sid).await? {
                Some(bytes) => Ok(self.put(sid, bytes).await?),
                None => Ok(()),
            }
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_keep_the_reference_prefix_and_others_are_hashed() {
        assert_eq!(jetstream_name("chat_42"), "_ac_chat_42");
        let hashed = jetstream_name("gid://app/Room/1");
        assert!(
            hashed.starts_with("_acx_") && hashed.len() == 5 + 64,
            "{hashed}"
        );
        assert_ne!(hashed, jetstream_name("gid://app/Room/2"));
        assert!(jetstream_name(&"a".repeat(300)).starts_with("_acx_"));
    }
}

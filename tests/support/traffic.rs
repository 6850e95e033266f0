//! Continuous publishing and reading of numbered messages.

use super::*;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What became of one publication attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// `201 Created`.
    Accepted,
    /// Another status (the broker refused: `501`).
    Refused(u16),
    /// No answer in time, or the connection failed.
    Failed,
}

/// Publishes `{"n": k}` for k = 1, 2, ... to a stream through a node's `/_broadcast`, one at a
/// time, as fast as the endpoint answers, until stopped; every attempt gets the next `k`, and
/// its outcome is recorded.
pub struct Publisher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Publisher {
    pub fn start(server: &Server, stream: &str) -> Publisher {
        Publisher::paced(server, stream, Duration::ZERO)
    }

    /// Like [`Publisher::start`], waiting `pace` after each attempt.
    pub fn paced(server: &Server, stream: &str, pace: Duration) -> Publisher {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
        let address = server.broadcast_addr();
        let stream = stream.to_string();
        let (stop_flag, record) = (stop.clone(), outcomes.clone());
        let task = tokio::spawn(async move {
            while !stop_flag.load(Ordering::Relaxed) {
                let n = record.lock().unwrap().len() + 1;
                let data = serde_json::json!({ "n": n }).to_string();
                let body = serde_json::json!({"stream": stream, "data": data}).to_string();
                let headers = [("Content-Type", "application/json")];
                let request = http_request(
                    &address,
                    None,
                    "POST",
                    "/_broadcast",
                    &headers,
                    body.as_bytes(),
                );
                let outcome = match tokio::time::timeout(Duration::from_secs(15), request).await {
                    Ok(Ok(response)) if response.status == 201 => Outcome::Accepted,
                    Ok(Ok(response)) => Outcome::Refused(response.status),
                    _ => Outcome::Failed,
                };
                record.lock().unwrap().push(outcome);
                if outcome != Outcome::Accepted {
                    // Not a busy loop while the node cannot store.
                    tokio::time::sleep(pace.max(Duration::from_millis(50))).await;
                } else if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
        });
        Publisher {
            stop,
            outcomes,
            task: Some(task),
        }
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> usize {
        self.outcomes()
            .iter()
            .filter(|o| **o == Outcome::Accepted)
            .count()
    }

    /// Waits (bounded) until `count` publications more than now were accepted.
    pub async fn wait_accepted(&self, more: usize, limit: Duration) {
        let target = self.accepted() + more;
        self.wait_for(limit, |outcomes| {
            outcomes.iter().filter(|o| **o == Outcome::Accepted).count() >= target
        })
        .await;
    }

    /// Waits (bounded) until one attempt made from now on is not accepted.
    pub async fn wait_not_accepted(&self, limit: Duration) {
        let from = self.outcomes().len();
        self.wait_for(limit, |outcomes| {
            outcomes[from..].iter().any(|o| *o != Outcome::Accepted)
        })
        .await;
    }

    async fn wait_for(&self, limit: Duration, done: impl Fn(&[Outcome]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if done(&self.outcomes()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "publisher: not there within {limit:?}; outcomes: {:?}",
                self.outcomes()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops after the attempt in progress and returns every outcome (`k` = index + 1).
    pub async fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.await.expect("publisher task");
        }
        self.outcomes()
    }

    /// Stops and asserts that every attempt was accepted; returns the last `n`.
    pub async fn stop_all_accepted(self) -> u64 {
        let outcomes = self.stop().await;
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Accepted),
            "{outcomes:?}"
        );
        outcomes.len() as u64
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads frames until the broadcast `{"n": last}` arrived, returning every `n` seen in order
/// and the position of the last one.
pub async fn read_until(ws: &mut Ws, last: u64) -> (Vec<u64>, Value) {
    let mut seen = Vec::new();
    let mut position = Value::Null;
    while seen.last() != Some(&last) {
        let frame = ws.recv_json().await;
        if let Some(n) = frame["message"]["n"].as_u64() {
            seen.push(n);
            position = serde_json::json!({"epoch": frame["epoch"], "offset": frame["offset"]});
        }
    }
    (seen, position)
}

/// The next frame that is not a ping (nor another typed message), if one comes in time.
pub async fn next_broadcast(ws: &mut Ws, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match ws.next_frame(left).await {
            Some(Frame::Json(value, _)) if value.get("type").is_none() => return Some(value),
            Some(Frame::Json(..)) => continue,
            _ => return None,
        }
    }
}

/// How long a [`Publisher`] may take for a few dozen publications.
pub const PUBLISHING: Duration = Duration::from_secs(10);

/// Publishes probes through `publisher` until one reaches `ws` (the node of `ws` subscribes to
/// the stream's pub/sub channel in the background), then returns the probe's number.
pub async fn publish_until_delivered(publisher: &Server, stream: &str, ws: &mut Ws) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in 1.. {
        publisher
            .publish(stream, &serde_json::json!({"probe": n}).to_string())
            .await;
        if let Some(Frame::Json(frame, _)) = ws.next_frame(Duration::from_millis(300)).await {
            if frame["message"]["probe"].is_number() {
                return n;
            }
        }
        assert!(Instant::now() < deadline, "no probe reached the client");
    }
    unreachable!()
}

/// `{"command":"history"}` for one stream of `identifier`, from `position`.
pub async fn request_history(ws: &mut Ws, identifier: &str, stream: &str, position: &Value) {
    let history = serde_json::json!({"streams": {stream: position}});
    ws.send_json(
        &serde_json::json!({"command": "history", "identifier": identifier, "history": history}),
    )
    .await;
}

/// Waits until the broker (`nats` at 127.0.0.1:4222 or `redis` at 127.0.0.1:6379; others are
/// not waited for) holds the session of each sid with `stream` among its subscriptions
/// (sessions are written in the background after each subscribe).
pub async fn wait_sessions_saved(broker: &str, sids: &[&str], stream: &str) {
    if !matches!(broker, "nats" | "redis") {
        return;
    }
    let sessions = match broker {
        "nats" => {
            let jetstream = async_nats::jetstream::new(
                async_nats::connect("nats://127.0.0.1:4222").await.unwrap(),
            );
            Some(
                jetstream
                    .get_stream("KV__anycable_")
                    .await
                    .expect("the sessions bucket of the NATS broker"),
            )
        }
        _ => None,
    };
    let deadline = Instant::now() + RECV_TIMEOUT;
    for sid in sids {
        loop {
            let saved = match &sessions {
                Some(bucket) => bucket
                    .get_last_raw_message_by_subject(&format!("$KV._anycable_.{sid}"))
                    .await
                    .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
                    .unwrap_or_default(),
                None => redis_cli(6379, &["GET", &format!("_ac_session:{sid}")]).await,
            };
            if saved.contains(stream) {
                break;
            }
            assert!(Instant::now() < deadline, "session {sid} not saved");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads replayed messages up to `confirm_history`; returns each counted message's `n` and
/// offset (probes and markers are skipped).
pub async fn read_history(ws: &mut Ws) -> Vec<(u64, u64)> {
    let mut replayed = Vec::new();
    loop {
        let frame = ws.recv_json().await;
        match frame["type"].as_str() {
            Some("confirm_history") => return replayed,
            Some(other) => panic!(
                "{other} while replaying: {frame}; frames so far: {:?}",
                ws.log
            ),
            None => {
                if let Some(n) = frame["message"]["n"].as_u64() {
                    replayed.push((n, frame["offset"].as_u64().expect("an offset")));
                }
            }
        }
    }
}

/// A client subscribed to `stream` on `first` reads messages 1–10 of a publisher on
/// `publishing`, drops off, misses about 30, and resumes its session on `second` while
/// publishing goes on; after asking for the history from its last position it must get
/// 11, 12, ... up to the last publication, each once, in order.
pub async fn resume_while_publishing(
    broker: &str,
    first: &Server,
    publishing: &Server,
    second: &Server,
    stream: &str,
) {
    let identifier = public_id(stream);
    let (mut ws, sid) = ext_client(first, "").await;
    ws.subscribe_ok(&identifier).await;
    publish_until_delivered(publishing, stream, &mut ws).await;
    wait_sessions_saved(broker, &[&sid], stream).await;
    let publisher = Publisher::start(publishing, stream);
    let (seen_before, position) = read_until(&mut ws, 10).await;
    assert_contiguous(&seen_before, 1);
    drop(ws);
    publisher.wait_accepted(30, PUBLISHING).await;
    let mut ws = restore(second, &sid, &[&identifier]).await;
    request_history(&mut ws, &identifier, stream, &position).await;
    publisher.wait_accepted(20, PUBLISHING).await;
    let last = publisher.stop_all_accepted().await;
    let (seen_after, _) = read_until(&mut ws, last).await;
    assert_contiguous(&seen_after, 11);
}

pub fn assert_contiguous(seen: &[u64], from: u64) {
    let expected: Vec<u64> = (from..from + seen.len() as u64).collect();
    assert_eq!(
        seen, expected,
        "messages must arrive once each, in order, without gaps"
    );
}

//! Fault tests of a two-node cluster: the NATS server (JetStream broker and pub/sub) and the
//! Redis server (pub/sub) are stopped mid-stream and started again. Each test runs its own
//! `nats-server` / `redis-server` on a spare port (killed on drop, even on panic).
//!
//! What must hold: connected clients stay connected, delivery resumes by itself once the
//! service is back, and no publication acknowledged with `201` is lost — the history after
//! the outage has every one of them, in order, exactly once, and a client that was away
//! during the outage resumes from its last message without a gap. (A publication refused
//! while the broker is down may or may not have been stored; it is only reported.)
//!
//! Killing a node is in `tests/cluster.rs`.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const NATS_URL: &str = "nats://127.0.0.1:4222";
/// How long the cluster may take to get going again after the service came back.
const RECOVERY: Duration = Duration::from_secs(30);
/// Publications about every 20 ms: a few hundred over an outage.
const PACE: Duration = Duration::from_millis(20);

/// Starts a node with these flags and `anycable.toml`.
async fn node(args: &[String], toml: &str) -> Server {
    let builder = ServerBuilder::new()
        .args([
            "--noauth",
            "--public_streams",
            "--norpc",
            "--history_limit=10000",
        ])
        .args(args.iter().cloned())
        .with_config_lookup();
    builder.dir.write("anycable.toml", toml);
    builder.start().await
}

/// Two nodes with a client each on one stream, and a publisher on node 0 that has had ten
/// publications delivered to both clients.
struct Traffic {
    nodes: Vec<Server>,
    stream: String,
    /// Each client with the position of message 10 and the messages it got live.
    clients: Vec<(Ws, Value, Vec<u64>)>,
    /// The position of message 10 of a client of node 1 that left before the outage.
    returning: Value,
    publisher: Publisher,
}

/// Reads live messages until one published after attempt `after` arrives (bounded by
/// [`RECOVERY`]), adding every `n` to `live`.
async fn wait_live(ws: &mut Ws, after: u64, live: &mut Vec<u64>) {
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_frame(left).await {
            Some(Frame::Json(frame, _)) => {
                if let Some(n) = frame["message"]["n"].as_u64() {
                    live.push(n);
                    if n > after {
                        return;
                    }
                }
            }
            other => {
                panic!("no live message after {after} within {RECOVERY:?}: {other:?}; got {live:?}")
            }
        }
    }
}

impl Traffic {
    async fn start(args: &[String], toml: &str) -> Traffic {
        let nodes = vec![node(args, toml).await, node(args, toml).await];
        let stream = unique("outage");
        let mut clients = Vec::new();
        for node in [&nodes[0], &nodes[1], &nodes[1]] {
            let (mut ws, _) = ext_client(node, "").await;
            ws.subscribe_ok(&public_id(&stream)).await;
            publish_until_delivered(&nodes[0], &stream, &mut ws).await;
            clients.push(ws);
        }
        // The first client may have missed nothing but still holds probes: skip them.
        let publisher = Publisher::paced(&nodes[0], &stream, PACE);
        let mut with_positions = Vec::new();
        for mut ws in clients {
            let (seen, position) = read_until(&mut ws, 10).await;
            assert_contiguous(&seen, 1);
            with_positions.push((ws, position, seen));
        }
        let (_, returning, _) = with_positions.pop().expect("the third client");
        Traffic {
            nodes,
            stream,
            clients: with_positions,
            returning,
            publisher,
        }
    }

    /// Waits until every node logged `needle`.
    async fn wait_logs(&self, needle: &str) {
        for node in &self.nodes {
            assert!(
                node.wait_output(needle, RECV_TIMEOUT).await,
                "no {needle:?} in:\n{}",
                node.output.all()
            );
        }
    }

    /// After the outage: waits until every client gets live messages again and 20 more
    /// publications were accepted, stops publishing, and checks every client: still
    /// connected, live messages in order without duplicates, and the history from message 10
    /// holds every accepted publication once, in order, at consecutive offsets in the same
    /// epoch. A client of node 1 that left at message 10 comes back while publishing goes on
    /// (`subscribe` with `history`): the replay and the live messages after it continue each
    /// other without a gap.
    async fn check_recovery(mut self) {
        let from = self.publisher.outcomes().len() as u64;
        for (ws, _, live) in self.clients.iter_mut() {
            wait_live(ws, from, live).await;
        }
        // Comes back while publishing goes on, asking for what it missed since message 10.
        let identifier = public_id(&self.stream);
        let (mut returning, _) = ext_client(&self.nodes[1], "").await;
        let history = serde_json::json!({"streams": {&self.stream: &self.returning}});
        returning
            .send_json(&serde_json::json!({"command": "subscribe", "identifier": identifier, "history": history}))
            .await;
        let confirmed = returning.recv_json().await;
        assert_eq!(confirmed["type"], "confirm_subscription", "{confirmed}");
        let returned: Vec<u64> = read_history(&mut returning)
            .await
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        self.publisher.wait_accepted(20, RECOVERY).await;
        let outcomes = self.publisher.stop().await;
        let accepted: Vec<u64> = (1..=outcomes.len() as u64)
            .filter(|n| outcomes[*n as usize - 1] == Outcome::Accepted)
            .collect();
        let refused: Vec<u64> = (1..=outcomes.len() as u64)
            .filter(|n| outcomes[*n as usize - 1] != Outcome::Accepted)
            .collect();
        let last = *accepted.last().unwrap();
        // The returning client: the replay, then live messages, continue each other.
        let mut resumed = returned.clone();
        resumed.extend(read_until(&mut returning, last).await.0);
        let resumed_accepted: Vec<u64> = resumed
            .iter()
            .copied()
            .filter(|n| accepted.binary_search(n).is_ok())
            .collect();
        assert!(
            resumed.windows(2).all(|w| w[0] < w[1]),
            "returning client: out of order or repeated: {resumed:?}"
        );
        assert_eq!(
            resumed_accepted,
            accepted
                .iter()
                .copied()
                .filter(|n| *n > 10)
                .collect::<Vec<_>>(),
            "returning client: every accepted publication after 10, without a gap \
             (replayed {returned:?}; outcomes: {outcomes:?})"
        );
        for (node, (mut ws, position, mut live)) in self.clients.into_iter().enumerate() {
            // Live delivery came back: the last publication arrives.
            live.extend(read_until(&mut ws, last).await.0);
            assert!(
                live.windows(2).all(|w| w[0] < w[1]),
                "node {node}: live messages out of order or repeated: {live:?}"
            );
            request_history(&mut ws, &identifier, &self.stream, &position).await;
            let replayed = read_history(&mut ws).await;
            let offsets: Vec<u64> = replayed.iter().map(|(_, offset)| *offset).collect();
            let first = position["offset"].as_u64().unwrap() + 1;
            assert_eq!(
                offsets,
                (first..first + offsets.len() as u64).collect::<Vec<_>>(),
                "node {node}: {replayed:?}"
            );
            let stored: Vec<u64> = replayed.iter().map(|(n, _)| *n).collect();
            let accepted_after_10: Vec<u64> =
                accepted.iter().copied().filter(|n| *n > 10).collect();
            let stored_accepted: Vec<u64> = stored
                .iter()
                .copied()
                .filter(|n| accepted.binary_search(n).is_ok())
                .collect();
            assert_eq!(
                stored_accepted, accepted_after_10,
                "node {node}: every publication answered 201 is stored once, in order \
                 (refused: {refused:?}; outcomes: {outcomes:?})"
            );
            assert!(
                stored.windows(2).all(|w| w[0] < w[1]),
                "node {node}: {stored:?}"
            );
            let stored_refused = stored.len() - stored_accepted.len();
            eprintln!(
                "node {node}: {} accepted, {} refused ({stored_refused} of them stored anyway), {} delivered live",
                accepted.len(),
                refused.len(),
                live.len()
            );
            ws.expect_pong_next().await;
        }
        for node in &self.nodes {
            assert_eq!(node.get("/health").await.status, 200);
        }
    }
}

#[tokio::test]
async fn a_nats_restart_loses_no_acknowledged_publication() {
    let mut nats = OwnNats::start().await;
    let args = [
        "--broker=nats".to_string(),
        "--pubsub=nats".to_string(),
        "--broadcast_adapter=http".to_string(),
        format!("--nats_servers={}", nats.url()),
    ];
    // Default settings: the client must not give up (AnyCable-Go's nats.go stops after five
    // attempts 2 s apart, about 10 s).
    let traffic = Traffic::start(&args, "").await;

    nats.stop();
    let stopped = Instant::now();
    traffic.wait_logs("disconnected from NATS").await;
    // While JetStream is away, publications are refused (501) rather than acknowledged.
    traffic
        .publisher
        .wait_not_accepted(Duration::from_secs(20))
        .await;
    // The outage itself (not a synchronisation): longer than five attempts 2 s apart.
    tokio::time::sleep_until((stopped + Duration::from_secs(14)).into()).await;
    nats.restart().await;
    traffic.check_recovery().await;
}

#[tokio::test]
async fn a_redis_restart_is_survived_by_the_redis_pubsub() {
    // The NATS broker keeps storing while Redis is away: publications go on being accepted,
    // their live delivery is dropped, the history keeps them.
    redis_restart("nats").await;
}

/// After a Redis restart the first broker call of each node must succeed: a node that
/// published nothing during the outage (node 1 here) still holds a dead connection, which the
/// broker must reopen rather than answer the client's `history` with `reject_history` (a bug
/// this test caught).
#[tokio::test]
async fn a_redis_restart_loses_no_acknowledged_publication_of_the_redis_broker() {
    // Redis is both the broker and the pub/sub: while it is away, publications are refused.
    redis_restart("redis").await;
}

/// Two nodes with `--pubsub=redis` and `broker`; the own Redis (persistent: the broker's data
/// must survive) is killed mid-stream and started again.
async fn redis_restart(broker: &str) {
    let port = free_port();
    let dir = TempDir::new();
    let mut redis = OwnRedis::start_persistent(port, &dir);
    redis.ready().await;
    let args = [
        format!("--broker={broker}"),
        "--pubsub=redis".to_string(),
        "--broadcast_adapter=http".to_string(),
        format!("--nats_servers={NATS_URL}"),
        format!("--redis_url={}", redis.url()),
    ];
    let traffic = Traffic::start(&args, "").await;

    redis.stop();
    traffic.wait_logs("lost the connection to Redis").await;
    if broker == "redis" {
        traffic
            .publisher
            .wait_not_accepted(Duration::from_secs(20))
            .await;
    } else {
        traffic.publisher.wait_accepted(5, RECV_TIMEOUT).await;
    }
    let mut redis = OwnRedis::start_persistent(port, &dir);
    redis.ready().await;
    traffic.check_recovery().await;
    redis.stop();
}

// --- the history/live seam with a publication still on its way ------------------------------

/// The history/live seam with a publication still on its way: a restored session's `history`
/// is read from the broker while a publication the broker already stored is still in the
/// pub/sub (here: the pub/sub server is frozen with SIGSTOP). The replay has it; when the
/// frame arrives after the gate opened, it must not be delivered a second time (a bug this
/// test caught).
#[tokio::test]
async fn a_frame_in_flight_when_the_history_gate_opens_is_not_delivered_twice_redis_broker() {
    // Broker on the shared Redis, pub/sub on an own NATS that can be frozen.
    let nats = OwnNats::start().await;
    let args = [
        "--broker=redis".to_string(),
        "--pubsub=nats".to_string(),
        "--broadcast_adapter=http".to_string(),
        format!("--nats_servers={}", nats.url()),
        "--redis_url=redis://127.0.0.1:6379".to_string(),
    ];
    seam_with_a_frozen_pubsub(&args, "redis", nats.process()).await;
}

/// The same with the NATS broker and a Redis pub/sub.
#[tokio::test]
async fn a_frame_in_flight_when_the_history_gate_opens_is_not_delivered_twice_nats_broker() {
    let redis = OwnRedis::start(free_port());
    redis.ready().await;
    let args = [
        "--broker=nats".to_string(),
        "--pubsub=redis".to_string(),
        "--broadcast_adapter=http".to_string(),
        format!("--nats_servers={NATS_URL}"),
        format!("--redis_url={}", redis.url()),
    ];
    seam_with_a_frozen_pubsub(&args, "nats", redis.process()).await;
}

/// Client X subscribes on node 0 and client Y on node 1; messages 1–3 reach both; X goes
/// away. With the pub/sub frozen, message 4 is published (stored by the broker, stuck in the
/// pub/sub); X resumes on node 1 and asks for the history after 3: it gets 4 and
/// `confirm_history`. The pub/sub goes on, message 5 is published: X's next message must be
/// 5, Y's 4 then 5.
async fn seam_with_a_frozen_pubsub(args: &[String], broker: &str, pubsub: &Guarded) {
    let nodes = [node(args, "").await, node(args, "").await];
    let stream = unique("seam");
    let identifier = public_id(&stream);
    let (mut x, sid) = ext_client(&nodes[0], "").await;
    let (mut y, _) = ext_client(&nodes[1], "").await;
    for ws in [&mut x, &mut y] {
        ws.subscribe_ok(&identifier).await;
        publish_until_delivered(&nodes[0], &stream, ws).await;
    }
    for n in 1..=3 {
        nodes[0].publish(&stream, &format!(r#"{{"n":{n}}}"#)).await;
    }
    let (_, position) = read_until(&mut x, 3).await;
    read_until(&mut y, 3).await;
    wait_sessions_saved(broker, &[&sid], &stream).await;
    drop(x);

    pubsub.signal("STOP");
    nodes[0].publish(&stream, r#"{"n":4}"#).await;
    let mut x = restore(&nodes[1], &sid, &[&identifier]).await;
    request_history(&mut x, &identifier, &stream, &position).await;
    let replayed = read_history(&mut x).await;
    pubsub.signal("CONT");
    assert_eq!(
        replayed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![4]
    );
    nodes[0].publish(&stream, r#"{"n":5}"#).await;
    let (live, _) = read_until(&mut x, 5).await;
    assert_eq!(live, vec![5], "after the replay of 4, only 5 comes live");
    let (live, _) = read_until(&mut y, 5).await;
    assert_eq!(live, vec![4, 5]);
}

//! Micro-benchmarks of the hot paths, with a small self-contained harness (no extra
//! dependencies): each case runs for about a second after a warm-up and prints ns per
//! operation. Run with `cargo bench --bench hot_paths`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use anycable_rs::hub::{Delivery, Hub, Subscriber};
use anycable_rs::identity::{issue_token, JwtVerifier};
use anycable_rs::protocol::{self, broadcast_frame, Payload, Reply};
use anycable_rs::session::{Direct, FlushList, Outbox};
use anycable_rs::streams::StreamVerifier;

/// Runs `operation` repeatedly for about `budget` and returns the mean time per call.
fn measure(name: &str, budget: Duration, mut operation: impl FnMut()) {
    for _ in 0..1_000 {
        operation();
    }
    let started = Instant::now();
    let mut calls: u64 = 0;
    while started.elapsed() < budget {
        for _ in 0..100 {
            operation();
        }
        calls += 100;
    }
    let per_call = started.elapsed().as_nanos() as f64 / calls as f64;
    println!("{name:<45} {per_call:>12.1} ns/op  ({calls} calls)");
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let identifier = r#"{"channel":"$pubsub","stream_name":"chat_42"}"#;
    let subscribe =
        serde_json::json!({"command": "subscribe", "identifier": identifier}).to_string();
    measure("protocol::decode (subscribe)", budget, || {
        black_box(protocol::decode(black_box(subscribe.as_bytes())).ok());
    });
    measure("Reply::encode (confirm_subscription)", budget, || {
        black_box(
            Reply::ConfirmSubscription {
                identifier: black_box(identifier),
            }
            .encode(),
        );
    });
    let data = r#"{"user":"alice","text":"Hello, everyone in the room!"}"#;
    measure("Payload::from_data + broadcast_frame", budget, || {
        let payload = Payload::from_data(black_box(data));
        black_box(broadcast_frame(identifier, &payload, None, None));
    });

    let verifier = StreamVerifier::new(Some("s3Krit")).expect("secret");
    let signed = verifier.sign("gid://app/Room/42:messages");
    measure("StreamVerifier::verify", budget, || {
        black_box(verifier.verify(black_box(&signed)));
    });
    let jwt = JwtVerifier::new("qwerty");
    let token = issue_token("qwerty", r#"{"user_id":42}"#, Some(4_102_444_800));
    measure("JwtVerifier::verify (HS256)", budget, || {
        black_box(jwt.verify(black_box(&token)).ok());
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let payload = Payload::from_data(data);
    let delivery = Delivery {
        payload: &payload,
        broadcast_type: None,
        exclude_sid: None,
        exclude_session: None,
        position: None,
    };
    for subscribers in [1_usize, 1_000, 10_000] {
        let outboxes: Vec<Arc<Outbox>> =
            (0..subscribers).map(|_| Arc::new(Outbox::new(0))).collect();
        let per_message = fan_out(&outboxes, identifier, &delivery, budget, || {
            // Empty the queues (not timed separately: it is the writer's side of the cost).
            runtime.block_on(async {
                let mut drained = VecDeque::new();
                for outbox in &outboxes {
                    outbox.take_batch(&mut drained).await;
                    drained.clear();
                }
            });
        });
        println!(
            "{:<45} {:>12.1} ns/op  ({:.1} ns per subscriber, queue drain included)",
            format!("Hub::broadcast to {subscribers} subscribers"),
            per_message,
            per_message / subscribers as f64
        );
    }

    // Outboxes written by a flusher, as plain-TCP WebSocket connections are: the push lists the
    // outbox instead of waking a task; the flusher's take and hand-back are included, its
    // framing and `send` are not. 1 000 loopback sockets (2 000 files) stay under the limit.
    let list = Arc::new(FlushList::default());
    let (outboxes, _peers) = runtime.block_on(flusher_outboxes(1_000, &list));
    let per_message = fan_out(&outboxes, identifier, &delivery, budget, || {
        runtime.block_on(async {
            let mut due = Vec::new();
            list.take(&mut due).await;
            for outbox in due {
                if outbox.take_for_flush().is_some() {
                    outbox.flushed(&[], &mut VecDeque::new());
                }
            }
        });
    });
    println!(
        "{:<45} {:>12.1} ns/op  ({:.1} ns per subscriber, list and take included)",
        "Hub::broadcast to 1000 flusher-written",
        per_message,
        per_message / 1_000.0
    );
}

/// Subscribes `outboxes` to one stream, then broadcasts for about `budget`, running `drain`
/// after each message; returns the mean time per message.
fn fan_out(
    outboxes: &[Arc<Outbox>],
    identifier: &str,
    delivery: &Delivery<'_>,
    budget: Duration,
    mut drain: impl FnMut(),
) -> f64 {
    let hub = Hub::new(16);
    let stream: Arc<str> = "chat_42".into();
    let id: Arc<str> = identifier.into();
    for (n, outbox) in outboxes.iter().enumerate() {
        let subscriber = Subscriber {
            session_id: n as u64,
            sid: format!("s{n}").into(),
            outbox: outbox.clone(),
        };
        hub.subscribe(&stream, &id, subscriber);
    }
    let started = Instant::now();
    let mut messages = 0u64;
    while started.elapsed() < budget {
        black_box(hub.broadcast("chat_42", delivery));
        messages += 1;
        drain();
    }
    started.elapsed().as_nanos() as f64 / messages as f64
}

/// `count` flusher-written outboxes over connected loopback sockets, and the peers' ends.
async fn flusher_outboxes(
    count: usize,
    list: &Arc<FlushList>,
) -> (Vec<Arc<Outbox>>, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let addr = listener.local_addr().expect("address");
    let (mut outboxes, mut peers) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let (peer, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        peers.push(peer.expect("connect"));
        let direct = Direct {
            socket: accepted.expect("accept").0,
            list: list.clone(),
            framer: |_, _| (0, 0),
        };
        outboxes.push(Arc::new(Outbox::direct(0, direct)));
    }
    (outboxes, peers)
}

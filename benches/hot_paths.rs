//! Micro-benchmarks of the hot paths, with a small self-contained harness (no extra
//! dependencies): each case runs for about a second after a warm-up and prints ns per
//! operation. Run with `cargo bench --bench hot_paths`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anycable_rs::hub::{Delivery, Hub, Subscriber};
use anycable_rs::identity::{issue_token, JwtVerifier};
use anycable_rs::protocol::{self, broadcast_frame, Payload, Reply};
use anycable_rs::session::Outbox;
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

    for subscribers in [1_usize, 1_000, 10_000] {
        let hub = Hub::new(16);
        let stream: Arc<str> = "chat_42".into();
        let id: Arc<str> = identifier.into();
        let outboxes: Vec<Arc<Outbox>> =
            (0..subscribers).map(|_| Arc::new(Outbox::new(0))).collect();
        for (n, outbox) in outboxes.iter().enumerate() {
            let subscriber = Subscriber {
                session_id: n as u64,
                sid: format!("s{n}").into(),
                outbox: outbox.clone(),
            };
            hub.subscribe(&stream, &id, subscriber);
        }
        let payload = Payload::from_data(data);
        let delivery = Delivery {
            payload: &payload,
            broadcast_type: None,
            exclude_sid: None,
            exclude_session: None,
            position: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut drained = VecDeque::new();
        let per_delivery_budget = budget;
        let started = Instant::now();
        let mut messages = 0u64;
        while started.elapsed() < per_delivery_budget {
            black_box(hub.broadcast("chat_42", &delivery));
            messages += 1;
            // Empty the queues (not timed separately: it is the writer's side of the cost).
            runtime.block_on(async {
                for outbox in &outboxes {
                    outbox.take_batch(&mut drained).await;
                    drained.clear();
                }
            });
        }
        let per_message = started.elapsed().as_nanos() as f64 / messages as f64;
        println!(
            "{:<45} {:>12.1} ns/op  ({:.1} ns per subscriber, queue drain included)",
            format!("Hub::broadcast to {subscribers} subscribers"),
            per_message,
            per_message / subscribers as f64
        );
    }
}

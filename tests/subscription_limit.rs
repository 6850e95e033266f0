//! How many subscriptions one connection may hold (`--max_subscriptions_per_connection`), and
//! that a connection holding very many of them does not stall the others.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const LIMIT_LOG: &str = "subscription limit reached";

#[tokio::test]
async fn subscriptions_past_the_limit_are_rejected_counted_and_logged_once() {
    let server = start(&[
        "--public",
        "--max_subscriptions_per_connection=3",
        "--metrics_http=/metrics",
    ])
    .await;
    let (mut greedy, greedy_sid) = server.ws_welcomed().await;
    for n in 0..3 {
        greedy.subscribe_ok(&public_id(&format!("s{n}"))).await;
    }
    greedy.subscribe_rejected(&public_id("s3")).await;
    greedy.subscribe_rejected(&public_id("s4")).await;
    // The limit is on subscriptions held: one given back makes room for another.
    greedy
        .send_json(&json!({"command": "unsubscribe", "identifier": public_id("s0")}))
        .await;
    greedy.subscribe_ok(&public_id("s3")).await;
    greedy.subscribe_rejected(&public_id("s5")).await;
    // The connections held within the limit still receive their streams.
    server.publish("s3", "still here").await;
    assert_eq!(
        greedy.recv_json().await,
        json!({"identifier": public_id("s3"), "message": "still here"})
    );

    // The limit is per connection: another one has its own.
    let (mut other, other_sid) = server.ws_welcomed().await;
    for n in 0..3 {
        other.subscribe_ok(&public_id(&format!("s{n}"))).await;
    }
    other.subscribe_rejected(&public_id("s9")).await;

    // Logged once per connection, not per rejected attempt: the other connection's line comes
    // after every line the first one could have produced.
    assert!(
        server
            .wait_output(&format!("sid={other_sid}"), RECV_TIMEOUT)
            .await,
        "no limit log line for the second connection:\n{}",
        server.output.all()
    );
    let log = server.output.all();
    let lines_of = |sid: &str| {
        log.lines()
            .filter(|l| l.contains(LIMIT_LOG) && l.contains(&format!("sid={sid}")))
            .count()
    };
    assert_eq!(lines_of(&greedy_sid), 1, "{log}");
    assert_eq!(lines_of(&other_sid), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains(LIMIT_LOG) && l.contains(" WRN ") && l.contains("limit=3")),
        "{log}"
    );

    let metrics = server.get("/metrics").await;
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l == "anycable_go_subscriptions_limit_exceeded_total 4"),
        "{}",
        metrics.body
    );
}

/// Identifiers of the same length that differ only at the end: comparing two of them reads
/// them whole (the worst case of a search by comparison).
fn long_id(n: usize) -> String {
    public_id(&format!("{}{n:06}", "x".repeat(400)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscriptions_on_one_connection_do_not_stall_others() {
    const SUBSCRIPTIONS: usize = 20_000;
    let server = start(&["--public", "--max_subscriptions_per_connection=0"]).await;
    let (mut bystander, _) = server.ws_welcomed().await;
    bystander.subscribe_ok(&public_id("news")).await;
    let (mut greedy, _) = server.ws_welcomed().await;

    let burst_done = AtomicBool::new(false);
    let frames = (0..SUBSCRIPTIONS)
        .map(|n| json!({"command": "subscribe", "identifier": long_id(n)}).to_string())
        .collect();
    let started = Instant::now();
    // The burst is served in time linear in its size: each subscription costs the same,
    // however many the connection already holds.
    let burst = async {
        let replies = greedy
            .pipeline(frames, SUBSCRIPTIONS, Duration::from_secs(10))
            .await;
        burst_done.store(true, Ordering::SeqCst);
        replies
    };
    // Meanwhile another client's broadcasts keep arriving promptly.
    let ticks = async {
        let mut slowest = Duration::ZERO;
        let mut n = 0;
        while !burst_done.load(Ordering::SeqCst) {
            let sent = Instant::now();
            server.publish("news", &format!("tick {n}")).await;
            let tick = bystander.recv_json_within(Duration::from_secs(5)).await;
            assert_eq!(tick["message"], format!("tick {n}"));
            slowest = slowest.max(sent.elapsed());
            n += 1;
        }
        (n, slowest)
    };
    let (replies, (ticks, slowest)) = tokio::join!(burst, ticks);
    let elapsed = started.elapsed();
    eprintln!("{SUBSCRIPTIONS} subscriptions in {elapsed:?}; {ticks} broadcasts meanwhile, the slowest in {slowest:?}");
    for (n, reply) in replies.iter().enumerate() {
        assert_eq!(
            reply,
            &json!({"type": "confirm_subscription", "identifier": long_id(n)})
        );
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a broadcast took {slowest:?} during the burst"
    );
    // Lookups on a connection holding that many: the first one made is still found (a
    // duplicate subscribe is ignored, the pong marker follows directly).
    greedy
        .send_json(&json!({"command": "subscribe", "identifier": long_id(0)}))
        .await;
    greedy.expect_pong_next().await;
}

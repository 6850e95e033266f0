//! `--shutdown_slowdrain` (AnyCable-Go PRO's option): on SIGTERM the clients are disconnected
//! one after the other across the shutdown window, each still with `server_restart`, and the
//! process exits within `--shutdown_timeout`.

mod support;

use std::time::{Duration, Instant};

use support::*;

const CLIENTS: usize = 500;

/// Connects `CLIENTS` welcomed clients, sends SIGTERM and returns how long after the signal
/// each one got its `server_restart` disconnect, sorted, and how long the process took to exit.
async fn disconnect_times(server: &mut Server) -> (Vec<Duration>, Duration) {
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(server.ws_welcomed().await.0);
    }
    let signalled = Instant::now();
    server.signal("TERM");
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                ws.expect_disconnect_within(
                    Duration::from_secs(10),
                    "server_restart",
                    true,
                    1001,
                    Some("Server restart"),
                )
                .await;
                signalled.elapsed()
            })
        })
        .collect();
    let mut times = Vec::with_capacity(CLIENTS);
    for wait in waits {
        times.push(wait.await.expect("every client gets server_restart"));
    }
    let status = server
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the server exits");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    times.sort();
    (times, signalled.elapsed())
}

#[tokio::test]
async fn slow_drain_spreads_server_restart_over_the_shutdown_window() {
    // A 5 s timeout leaves a 4 s drain window (1 s is kept for what follows).
    let mut server = start(&["--noauth", "--shutdown_timeout=5", "--shutdown_slowdrain"]).await;
    let (times, exited_after) = disconnect_times(&mut server).await;
    assert!(
        server
            .wait_output(
                &format!("Draining {CLIENTS} active connections slowly for 4.0s"),
                RECV_TIMEOUT
            )
            .await,
        "no drain log line"
    );
    let (first, last) = (times[0], times[CLIENTS - 1]);
    assert!(
        last - first >= Duration::from_secs(3),
        "disconnects from {first:?} to {last:?}: not spread over the window"
    );
    // Evenly: each second of the window takes about a quarter of the clients.
    for second in 0..4 {
        let from = Duration::from_secs(second);
        let to = from + Duration::from_secs(1);
        let within = times.iter().filter(|t| **t >= from && **t < to).count();
        assert!(
            (CLIENTS / 8..=CLIENTS / 2).contains(&within),
            "{within} of {CLIENTS} disconnects in second {second}: {times:?}"
        );
    }
    assert!(
        exited_after < Duration::from_secs(5) + Duration::from_millis(500),
        "exited {exited_after:?} after SIGTERM"
    );
}

#[tokio::test]
async fn without_slow_drain_everyone_is_disconnected_at_once() {
    let mut server = start(&["--noauth", "--shutdown_timeout=5"]).await;
    let (times, _) = disconnect_times(&mut server).await;
    assert!(
        times[CLIENTS - 1] - times[0] < Duration::from_secs(1),
        "disconnects from {:?} to {:?}",
        times[0],
        times[CLIENTS - 1]
    );
}

//! gRPC backends that die or move are followed without restarting the server: a backend
//! replaced behind the same address, whose old connection goes silent, is noticed by HTTP/2
//! keepalive and reconnected; a `dns:///` name is resolved again, so backends added to it get
//! calls and backends removed from it do not (names from `/etc/hosts`, see support/hosts.rs).

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Connects a client and reports whether it was welcomed (the backend's `Connect` answered).
async fn welcomed(server: &Server) -> bool {
    let Ok(mut ws) = server.try_ws(WsRequest::new("/cable")).await else {
        return false;
    };
    let welcomed = matches!(
        ws.next_frame(Duration::from_secs(10)).await,
        Some(Frame::Json(message, _)) if message["type"] == "welcome"
    );
    ws.close().await;
    welcomed
}

/// Connects clients one after the other until `done` holds, for at most `limit`; returns how
/// long it took.
async fn connect_until(
    server: &Server,
    limit: Duration,
    what: &str,
    done: impl Fn(bool) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if done(welcomed(server).await) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_backend_replaced_behind_the_same_address_is_reconnected() {
    let old = GrpcBackend::start(free_port()).await;
    let proxy = Proxy::start(old.port).await;
    let server = ServerBuilder::new()
        .args([
            "--broadcast_adapter=http",
            "--readiness_path=",
            &format!("--rpc_host=127.0.0.1:{}", proxy.port),
        ])
        .start()
        .await;
    assert!(welcomed(&server).await);
    assert_eq!(old.connects(), 1);

    // The old backend vanishes without closing anything; the address now leads to a new one.
    let new = GrpcBackend::start(free_port()).await;
    proxy.retarget(new.port);
    proxy.freeze_open_connections();
    old.stop().await;

    // The silent connection is found dead by keepalive (10 s pings, 5 s to answer) and the
    // next one reaches the new backend.
    let took = connect_until(
        &server,
        Duration::from_secs(25),
        "reconnected to the new backend",
        |welcomed| welcomed,
    )
    .await;
    assert!(new.connects() >= 1);
    eprintln!("recovered after {took:?}");
    assert!(took < Duration::from_secs(20), "recovered after {took:?}");
}

// Flaky (issue 16, item 5, still open): in 1 of 3 runs the added backend got no call within
// 25 s although the name is re-resolved every 10 s; passes alone most of the time. Run it with
// `cargo test --release --test grpc_recovery -- --ignored` while fixing it.
#[ignore = "flaky: the scaled-up address is sometimes not used within 25 s (issue 16, item 5)"]
#[tokio::test]
async fn a_dns_name_is_followed_as_backends_are_added_and_replaced() {
    let port = free_port();
    let first = GrpcBackend::start_on([127, 0, 0, 2], port).await;
    let second = GrpcBackend::start_on([127, 0, 0, 3], port).await;
    let name = HostsName::new("rpc");
    name.resolve_to(&["127.0.0.2"]);
    let server = ServerBuilder::new()
        .args([
            "--broadcast_adapter=http",
            "--readiness_path=",
            &format!("--rpc_host=dns:///{}:{port}", name.name),
        ])
        .start()
        .await;
    assert!(welcomed(&server).await);
    assert_eq!((first.connects(), second.connects()), (1, 0));

    // Scaled up: the new address gets calls once the name is resolved again (every 10 s). The
    // bound leaves a whole period for a loaded machine (15 s was missed once in the full suite)
    // and stays below the 30 s refresh this test guards against.
    name.resolve_to(&["127.0.0.2", "127.0.0.3"]);
    let took = connect_until(
        &server,
        Duration::from_secs(25),
        "calls reach the added backend",
        |_| second.connects() > 0,
    )
    .await;
    eprintln!("the added backend got calls after {took:?}");

    // Replaced: the first backend is gone from the name and stops; every client is served by
    // the second one (a call that finds the old address unreachable has the name resolved
    // again at once).
    name.resolve_to(&["127.0.0.3"]);
    first.stop().await;
    let took = connect_until(
        &server,
        Duration::from_secs(15),
        "served after the replacement",
        |w| w,
    )
    .await;
    eprintln!("served again {took:?} after the replacement");
    for _ in 0..5 {
        assert!(
            welcomed(&server).await,
            "every client is served by the remaining backend"
        );
    }
}

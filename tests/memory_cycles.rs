//! Memory comes back after waves of connections: SSE clients connect and leave in cycles, and
//! once they are gone the server's resident memory must return near where it started (issue 19:
//! with glibc's allocator it stayed at the peak, see src/allocator.rs).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Clients per cycle, and cycles. Each cycle connects from its own loopback address, so that
/// the closed connections' TIME_WAIT entries never exhaust the ephemeral ports.
const CLIENTS: usize = 5_000;
const CYCLES: u8 = 4;

/// How long the server gets to give the memory back once every client left.
const RETURN_DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_returns_near_its_baseline_after_cycles_of_sse_clients() {
    let server = start(&[
        "--sse",
        "--public_streams",
        "--noauth",
        "--norpc",
        "--metrics_http=/metrics",
        "--log_level=warn",
    ])
    .await;
    let addr: SocketAddr = server.addr().parse().unwrap();
    // A small first wave, so that the baseline includes what the first connections set up
    // once (runtime workers' caches, the hub's shards).
    let warm_up = connect_all(addr, 1, 100).await;
    drop(warm_up);
    wait_no_sse_clients(&server).await;
    let baseline = rss_kib(server.pid());

    let mut peak = baseline;
    for cycle in 0..CYCLES {
        let clients = connect_all(addr, 2 + cycle, CLIENTS).await;
        peak = peak.max(rss_kib(server.pid()));
        drop(clients);
        wait_no_sse_clients(&server).await;
    }
    let grown = peak - baseline;
    assert!(
        grown > 10 * 1024,
        "{CLIENTS} clients should take memory: baseline {baseline} KiB, peak {peak} KiB"
    );
    // Near the baseline: a quarter of what the clients took at most, and no more than 16 MiB.
    let allowed = baseline + (grown / 4).min(16 * 1024);
    let started = Instant::now();
    let mut now = rss_kib(server.pid());
    while now > allowed && started.elapsed() < RETURN_DEADLINE {
        tokio::time::sleep(HEALTH_POLL).await;
        now = rss_kib(server.pid());
    }
    assert!(
        now <= allowed,
        "RSS stayed at {now} KiB {RETURN_DEADLINE:?} after the last of {CYCLES} cycles of \
         {CLIENTS} SSE clients left (baseline {baseline} KiB, peak {peak} KiB, allowed {allowed} KiB)"
    );
    println!(
        "baseline {baseline} KiB, peak {peak} KiB, back to {now} KiB after {:?}",
        started.elapsed()
    );
}

/// Opens `count` SSE streams from 127.0.0.`source` and waits until each is subscribed.
async fn connect_all(addr: SocketAddr, source: u8, count: usize) -> Vec<TcpStream> {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, source));
    let clients = (0..count).map(|_| tokio::spawn(open_stream(addr, source)));
    let mut streams = Vec::with_capacity(count);
    for client in clients {
        streams.push(client.await.expect("client task"));
    }
    streams
}

async fn open_stream(addr: SocketAddr, source: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = format!("GET /events?stream=cycles HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut received = Vec::new();
    let mut chunk = [0u8; 2048];
    let subscribed = tokio::time::timeout(RECV_TIMEOUT * 4, async {
        loop {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed the stream before confirming");
            received.extend_from_slice(&chunk[..n]);
            if received.windows(20).any(|w| w == b"confirm_subscription") {
                return;
            }
        }
    })
    .await;
    assert!(
        subscribed.is_ok(),
        "no confirmation: {}",
        String::from_utf8_lossy(&received)
    );
    stream
}

/// Waits until the server counts no SSE client (every stream's end was noticed).
async fn wait_no_sse_clients(server: &Server) {
    let started = Instant::now();
    loop {
        let metrics = server.get("/metrics").await;
        if metrics
            .body
            .lines()
            .any(|line| line == "anycable_go_sse_clients_num 0")
        {
            return;
        }
        assert!(
            started.elapsed() < HEALTH_DEADLINE,
            "SSE clients still counted: {}",
            metrics.body
        );
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

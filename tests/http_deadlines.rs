//! Request bodies are read under a deadline (docs/compatibility.md, "Request bodies"): a body
//! that does not arrive within 10 s is answered with 408 and its connection closed, at most 64
//! slow bodies (not complete after 1 s) are read at once and more are refused with 503, and a
//! keep-alive connection that sends nothing after its response is closed.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The server's fixed deadline for a whole body (`BODY_READ_TIMEOUT`).
const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// A body unfinished after this long is slow (`SLOW_BODY_AFTER`).
const SLOW_AFTER: Duration = Duration::from_secs(1);
/// How many slow bodies the server reads at once (`MAX_SLOW_BODY_READS`).
const SLOW_SLOTS: usize = 64;
/// Scheduling slack on a loaded machine.
const MARGIN: Duration = Duration::from_secs(5);

/// `--public`: every endpoint takes requests without a key, as in the reported case.
async fn public_server() -> Server {
    start(&["--public", "--sse"]).await
}

/// Sends the head of a POST announcing `length` body bytes, and nothing of the body.
async fn post_head(addr: &str, path: &str, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads until the server closes the connection (or `limit` passes: `None`).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

/// Reads one response head (up to the blank line), bounded by `limit`.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

/// The announced-but-never-sent body gets 408 and a closed connection, not long after the
/// deadline, on each endpoint that reads a body.
async fn assert_stalled_body_times_out(addr: String, path: &'static str) {
    let started = Instant::now();
    let mut stream = post_head(&addr, path, 20_000_000).await;
    let response = read_until_closed(&mut stream, BODY_DEADLINE + MARGIN)
        .await
        .unwrap_or_else(|| {
            panic!(
                "{path}: still open {:?} after the head",
                BODY_DEADLINE + MARGIN
            )
        });
    let elapsed = started.elapsed();
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "{path}: expected 408, got {response:?} after {elapsed:?}"
    );
    assert!(
        elapsed >= BODY_DEADLINE - Duration::from_millis(500),
        "{path}: answered before the deadline ({elapsed:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_body_that_never_comes_gets_408_on_every_endpoint() {
    let server = public_server().await;
    let stalled = [
        tokio::spawn(assert_stalled_body_times_out(
            server.broadcast_addr(),
            "/_broadcast",
        )),
        tokio::spawn(assert_stalled_body_times_out(server.addr(), "/api/publish")),
        tokio::spawn(assert_stalled_body_times_out(server.addr(), "/events")),
    ];
    for task in stalled {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_while_normal_requests_go_on() {
    let server = public_server().await;
    let body = br#"{"stream":"trickle","data":"x"}"#;
    // Padded so that one byte every 100 ms cannot finish within the deadline.
    let length = body.len() + 200;
    let started = Instant::now();
    let stream = post_head(&server.broadcast_addr(), "/_broadcast", length).await;
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        for byte in body.iter().chain(std::iter::repeat(&b' ')).take(length) {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });

    // Meanwhile, an ordinary publication is accepted at once.
    let response = server.broadcast(r#"{"stream":"normal","data":"ok"}"#).await;
    assert_eq!(response.status, 201, "{response:?}");
    assert!(!trickle.is_finished(), "the trickle ended too early");

    let mut response = Vec::new();
    tokio::time::timeout(BODY_DEADLINE + MARGIN, read.read_to_end(&mut response))
        .await
        .expect("the trickling client was not cut off")
        .ok();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "expected 408, got {response:?} after {:?}",
        started.elapsed()
    );
    let sent = tokio::time::timeout(RECV_TIMEOUT, trickle)
        .await
        .expect("the trickle did not stop once the connection closed")
        .unwrap();
    assert!(sent < length, "the whole body went through ({sent} bytes)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_beyond_the_bound_get_503_while_normal_requests_go_on() {
    let server = public_server().await;
    let addr = server.broadcast_addr();
    // One more slow request than there are slots. They turn slow within the same moment, in
    // no set order: exactly one of them, whichever comes last, must be refused.
    let mut slow = Vec::new();
    for _ in 0..=SLOW_SLOTS {
        slow.push(Arc::new(post_head(&addr, "/_broadcast", 1000).await));
    }
    let started = Instant::now();
    let mut answered = JoinSet::new();
    for (index, stream) in slow.iter().enumerate() {
        let stream = stream.clone();
        answered.spawn(async move {
            let mut byte = [0u8; 1];
            let _ = stream.peek(&mut byte).await;
            index
        });
    }
    let refused = tokio::time::timeout(SLOW_AFTER + MARGIN, answered.join_next())
        .await
        .expect("no slow request was answered: nothing bounds them")
        .unwrap()
        .unwrap();
    answered.shutdown().await;
    let mut refused = Arc::try_unwrap(slow.remove(refused)).unwrap();
    let response = read_until_closed(&mut refused, RECV_TIMEOUT)
        .await
        .expect("the refused request's connection stayed open");
    assert!(
        response.starts_with("HTTP/1.1 503"),
        "expected 503, got {response:?} after {:?}",
        started.elapsed()
    );
    assert!(response.contains("retry-after: 1"), "{response:?}");
    assert!(
        started.elapsed() < BODY_DEADLINE,
        "refused only at the deadline"
    );
    // The others hold the slots (that is why one was refused), so none has an answer yet.
    for stream in &slow {
        let mut byte = [0u8; 1];
        let pending = stream.try_read(&mut byte);
        assert!(
            matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a slow request within the bound was answered early: {pending:?}"
        );
    }
    assert!(
        server
            .wait_output("request bodies are arriving slowly", RECV_TIMEOUT)
            .await,
        "the refusal was not logged"
    );

    // A small publication is not slow: it needs no slot and goes through.
    let response = server.broadcast(r#"{"stream":"normal","data":"ok"}"#).await;
    assert_eq!(response.status, 201, "{response:?}");
    // So does a slow body that arrives late but within the deadline.
    let mut first = Arc::try_unwrap(slow.remove(0)).unwrap();
    let body = format!("{:<1000}", r#"{"stream":"late","data":"ok"}"#);
    first.write_all(body.as_bytes()).await.unwrap();
    let head = read_head(&mut first, RECV_TIMEOUT)
        .await
        .expect("no answer to the completed slow body");
    assert!(head.starts_with("HTTP/1.1 201"), "{head:?}");
    drop(first);

    // Its slot is free again: the next slow body waits for its deadline instead of a 503.
    let mut next = post_head(&addr, "/_broadcast", 1000).await;
    let response = read_until_closed(&mut next, BODY_DEADLINE + MARGIN)
        .await
        .expect("the next slow request was neither answered nor closed");
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = public_server().await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream, RECV_TIMEOUT)
        .await
        .expect("no health response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    // The header read timeout (5 s) also covers the wait for the next request.
    let rest = read_until_closed(&mut stream, Duration::from_secs(5) + MARGIN).await;
    assert!(rest.is_some(), "the idle connection was kept open");
}

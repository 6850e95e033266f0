//! HTTP broadcasting, publication format, remote commands, slow clients (docs/broadcasting.md,
//! docs/compatibility.md "Slow clients").

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// hex(HMAC-SHA256("s3cr3t", "broadcast-cable")), the key derived from `--secret=s3cr3t`
/// (docs/broadcasting.md; `printf %s broadcast-cable | openssl dgst -sha256 -hmac s3cr3t`).
const S3CR3T_BROADCAST_KEY: &str =
    "83149057b2f956b5f862c0ef5ad6a24d3677dc076d77e8999c24f77ca17d7a20";

#[test]
fn our_key_derivation_matches_the_spec_vector() {
    assert_eq!(derived_broadcast_key("s3cr3t"), S3CR3T_BROADCAST_KEY);
}

async fn open_server() -> Server {
    start(&["--noauth", "--public_streams"]).await
}

// --- Publications ------------------------------------------------------------------------------

#[tokio::test]
async fn publication_data_is_parsed_as_json_or_kept_as_a_string() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("chat_42");
    ws.subscribe_ok(&id).await;
    let cases: Vec<(&str, Value)> = vec![
        (
            r#"{"text":"hi","n":[1,2]}"#,
            json!({"text": "hi", "n": [1, 2]}),
        ),
        ("Alice: Hey!", json!("Alice: Hey!")),
        (
            r#""<script>alert(1)</script>""#,
            json!("<script>alert(1)</script>"),
        ),
        ("42", json!(42)),
        ("true", json!(true)),
        ("[1,{\"a\":2}]", json!([1, {"a": 2}])),
        // null parses but is not used: the raw text is sent as a string.
        ("null", json!("null")),
        ("{broken", json!("{broken")),
        ("", json!("")),
    ];
    for (data, expected) in cases {
        server.publish("chat_42", data).await;
        assert_eq!(
            ws.recv_json().await,
            json!({"identifier": id, "message": expected}),
            "data {data:?}"
        );
    }
}

#[tokio::test]
async fn publications_reach_every_subscriber_of_the_stream_only() {
    let server = open_server().await;
    let (mut a, _) = server.ws_welcomed().await;
    let (mut b, _) = server.ws_welcomed().await;
    let (mut other, _) = server.ws_welcomed().await;
    a.subscribe_ok(&public_id("s")).await;
    b.subscribe_ok(&public_id("s")).await;
    other.subscribe_ok(&public_id("t")).await;
    server.publish("s", "1").await;
    server.publish("t", "2").await;
    assert_eq!(
        a.recv_json().await,
        json!({"identifier": public_id("s"), "message": 1})
    );
    assert_eq!(
        b.recv_json().await,
        json!({"identifier": public_id("s"), "message": 1})
    );
    assert_eq!(
        other.recv_json().await,
        json!({"identifier": public_id("t"), "message": 2}),
        "a stream's subscriber got another stream's message"
    );
}

#[tokio::test]
async fn batch_publishes_to_two_streams_in_order() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("a")).await;
    ws.subscribe_ok(&public_id("b")).await;
    let body = json!([
        {"stream": "a", "data": "{\"n\":1}"},
        {"stream": "b", "data": "{\"n\":2}"},
        {"stream": "a", "data": "{\"n\":3}"},
    ])
    .to_string();
    let resp = server.broadcast(&body).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(
        recv_n(&mut ws, 3).await,
        vec![
            json!({"identifier": public_id("a"), "message": {"n": 1}}),
            json!({"identifier": public_id("b"), "message": {"n": 2}}),
            json!({"identifier": public_id("a"), "message": {"n": 3}}),
        ]
    );
}

#[tokio::test]
async fn exclude_socket_skips_only_that_connection() {
    let server = open_server().await;
    let (mut author, author_sid) = server.ws_welcomed().await;
    let (mut reader, _) = server.ws_welcomed().await;
    let id = public_id("room");
    author.subscribe_ok(&id).await;
    reader.subscribe_ok(&id).await;
    let body = json!({"stream": "room", "data": "\"not for the author\"", "meta": {"exclude_socket": author_sid, "unknown_key": 1}})
        .to_string();
    assert_eq!(server.broadcast(&body).await.status, 201);
    assert_eq!(
        reader.recv_json().await,
        json!({"identifier": id, "message": "not for the author"})
    );
    server.publish("room", "\"for everyone\"").await;
    assert_eq!(
        author.recv_json().await,
        json!({"identifier": id, "message": "for everyone"}),
        "the excluded socket received the message"
    );
    assert_eq!(
        reader.recv_json().await,
        json!({"identifier": id, "message": "for everyone"})
    );
}

#[tokio::test]
async fn broadcast_type_meta_adds_a_type_field() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("typed");
    ws.subscribe_ok(&id).await;
    let body = json!({"stream": "typed", "data": "{\"a\":1}", "meta": {"broadcast_type": "custom", "transient": true}})
        .to_string();
    assert_eq!(server.broadcast(&body).await.status, 201);
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "custom", "identifier": id, "message": {"a": 1}})
    );
}

#[tokio::test]
async fn two_identifiers_on_one_stream_get_two_frames() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    let first = public_id("shared");
    let second =
        json!({"channel": "$pubsub", "stream_name": "shared", "widget": "sidebar"}).to_string();
    ws.subscribe_ok(&first).await;
    ws.subscribe_ok(&second).await;
    server.publish("shared", "{\"v\":1}").await;
    let mut got = recv_n(&mut ws, 2).await;
    got.sort_by_key(|v| v["identifier"].as_str().unwrap().to_string());
    let mut expected = vec![
        json!({"identifier": first, "message": {"v": 1}}),
        json!({"identifier": second, "message": {"v": 1}}),
    ];
    expected.sort_by_key(|v| v["identifier"].as_str().unwrap().to_string());
    assert_eq!(got, expected);
    ws.expect_pong_next().await;
}

#[tokio::test]
async fn publications_for_streams_without_subscribers_are_accepted() {
    let server = open_server().await;
    server.publish("nobody-listens", "1").await;
}

// --- Endpoint, auth, ports ---------------------------------------------------------------------

#[tokio::test]
async fn broadcast_key_is_required_and_endpoint_is_on_the_main_port() {
    let server = start(&["--noauth", "--public_streams", "--broadcast_key=k123"]).await;
    assert_eq!(server.broadcast_port, server.port);
    let (mut ws, _) = server.ws_welcomed().await;
    let id = public_id("s");
    ws.subscribe_ok(&id).await;
    let body = |n: i32| json!({"stream": "s", "data": n.to_string()}).to_string();

    assert_eq!(server.broadcast_with(&body(1), None).await.status, 401);
    assert_eq!(
        server.broadcast_with(&body(2), Some("wrong")).await.status,
        401
    );
    assert_eq!(
        server.broadcast_with(&body(3), Some("k1234")).await.status,
        401
    );
    let raw = server
        .http(
            "POST",
            "/_broadcast",
            &[("Authorization", "k123")],
            body(4).as_bytes(),
        )
        .await;
    assert_eq!(raw.status, 401, "a key without the Bearer scheme: {raw:?}");
    assert_eq!(
        server.broadcast_with(&body(5), Some("k123")).await.status,
        201
    );
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": 5}),
        "only the authorized publication may be delivered"
    );
}

#[tokio::test]
async fn key_derived_from_secret_matches_the_spec_vector() {
    let server = start(&["--noauth", "--public_streams", "--secret=s3cr3t"]).await;
    assert_eq!(server.broadcast_port, server.port);
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let body = json!({"stream": "s", "data": "\"ok\""}).to_string();
    assert_eq!(server.broadcast_with(&body, None).await.status, 401);
    assert_eq!(
        server.broadcast_with(&body, Some("s3cr3t")).await.status,
        401
    );
    let resp = server
        .broadcast_with(&body, Some(S3CR3T_BROADCAST_KEY))
        .await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": "ok"})
    );
}

#[tokio::test]
async fn broadcast_key_wins_over_the_derived_key() {
    let server = start(&["--noauth", "--secret=s3cr3t", "--broadcast_key=explicit"]).await;
    let body = json!({"stream": "s", "data": "1"}).to_string();
    assert_eq!(
        server
            .broadcast_with(&body, Some(S3CR3T_BROADCAST_KEY))
            .await
            .status,
        401
    );
    assert_eq!(
        server.broadcast_with(&body, Some("explicit")).await.status,
        201
    );
}

#[tokio::test]
async fn without_a_key_the_endpoint_is_on_its_own_port_without_auth() {
    let server = ServerBuilder::new()
        .args(["--noauth", "--public_streams"])
        .broadcast_port(BroadcastPort::Separate)
        .start()
        .await;
    assert_ne!(server.broadcast_port, server.port);
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let body = json!({"stream": "s", "data": "7"}).to_string();
    // Not on the main port.
    let main = server
        .http("POST", "/_broadcast", &[], body.as_bytes())
        .await;
    assert_eq!(main.status, 404, "{main:?}");
    // On the broadcast port, no authorization needed.
    assert_eq!(server.broadcast(&body).await.status, 201);
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": 7})
    );
}

#[tokio::test]
async fn public_with_secret_keeps_the_main_port_but_drops_auth() {
    // docs/broadcasting.md (HTTP): the port is decided before --public clears the key.
    let server = start(&["--public", "--secret=s3cr3t"]).await;
    assert_eq!(server.broadcast_port, server.port);
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("p")).await;
    let body = json!({"stream": "p", "data": "1"}).to_string();
    let resp = server.broadcast_with(&body, None).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("p"), "message": 1})
    );
}

#[tokio::test]
async fn broadcast_key_none_disables_auth() {
    let server = start(&["--noauth", "--broadcast_key=none"]).await;
    assert_ne!(server.broadcast_port, server.port);
    let body = json!({"stream": "p", "data": "1"}).to_string();
    let resp = server.broadcast_with(&body, None).await;
    assert_eq!(resp.status, 201, "{resp:?}");
}

#[tokio::test]
async fn explicit_broadcast_port_with_a_key() {
    let server = ServerBuilder::new()
        .args(["--noauth", "--broadcast_key=kk"])
        .broadcast_port(BroadcastPort::Separate)
        .start()
        .await;
    let body = json!({"stream": "s", "data": "1"}).to_string();
    assert_eq!(server.broadcast_with(&body, None).await.status, 401);
    assert_eq!(server.broadcast_with(&body, Some("kk")).await.status, 201);
}

#[tokio::test]
async fn http_broadcast_path_moves_the_endpoint() {
    let server = start(&["--noauth", "--public_streams", "--http_broadcast_path=/pub"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    let body = json!({"stream": "s", "data": "1"}).to_string();
    let addr = server.broadcast_addr();
    let old = http_request_on(&addr, None, "POST", "/_broadcast", &[], body.as_bytes()).await;
    assert_eq!(old.status, 404, "{old:?}");
    let new = http_request_on(&addr, None, "POST", "/pub", &[], body.as_bytes()).await;
    assert_eq!(new.status, 201, "{new:?}");
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("s"), "message": 1})
    );
}

#[tokio::test]
async fn non_post_methods_get_422() {
    let server = open_server().await;
    for method in ["GET", "PUT", "DELETE"] {
        let resp = http_request_on(
            &server.broadcast_addr(),
            None,
            method,
            "/_broadcast",
            &[],
            b"",
        )
        .await;
        assert_eq!(resp.status, 422, "{method}: {resp:?}");
    }
}

#[tokio::test]
async fn invalid_bodies_get_422_and_deliver_nothing() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("a")).await;
    for body in [
        "not json",
        r#"{"stream":"a","data":{"x":1}}"#,
        r#"{"stream":"a","data":42}"#,
        r#"{"stream":"","data":"x"}"#,
        r#"{"data":"x"}"#,
        "[]",
        "{}",
        "",
        r#"[{"stream":"a","data":{"x":1}}]"#,
        "\u{0}\u{1}binary",
    ] {
        let resp = server.broadcast(body).await;
        assert_eq!(resp.status, 422, "body {body:?}: {resp:?}");
    }
    server.publish("a", "\"marker\"").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": public_id("a"), "message": "marker"})
    );
}

#[tokio::test]
async fn unknown_remote_commands_are_accepted_and_ignored() {
    let server = open_server().await;
    let (mut ws, _) = server.ws_welcomed().await;
    let resp = server
        .broadcast(r#"{"command":"reload","payload":{"x":1}}"#)
        .await;
    assert_eq!(resp.status, 201, "{resp:?}");
    ws.expect_pong_next().await;
}

#[tokio::test]
async fn body_over_16_mib_gets_413() {
    let server = open_server().await;
    let size = 16 * 1024 * 1024 + 4096;
    let stream = tokio::net::TcpStream::connect(server.broadcast_addr())
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /_broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(br#"{"stream":"big","data":""#);
        body.resize(size - 2, b'x');
        body.extend_from_slice(b"\"}");
        write.write_all(&body).await?;
        write.flush().await?;
        Ok::<_, std::io::Error>(write)
    });
    let mut response = Vec::new();
    let read_result = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if response.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await;
    let text = String::from_utf8_lossy(&response).to_string();
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "expected 413, got {text:?} (read result {read_result:?})"
    );
    writer.abort();
}

// --- Remote disconnect -------------------------------------------------------------------------

#[tokio::test]
async fn remote_disconnect_closes_every_connection_with_those_identifiers() {
    let server = start(&["--jwt_secret=s3", "--public_streams"]).await;
    let user1 = r#"{"user_id":1}"#;
    let user2 = r#"{"user_id":2}"#;
    let connect = |identifiers: &str| {
        let path = format!("/cable?jid={}", token("s3", identifiers));
        server.ws_with(WsRequest::new(&path))
    };
    let mut a1 = connect(user1).await;
    a1.expect_welcome().await;
    let mut a2 = connect(user1).await;
    a2.expect_welcome().await;
    let mut b = connect(user2).await;
    b.expect_welcome().await;
    b.subscribe_ok(&public_id("s")).await;

    // Identifiers are matched exactly: a differently spelled JSON does not match.
    let spaced = json!({"command": "disconnect", "payload": {"identifier": "{\"user_id\": 1}", "reconnect": false}});
    assert_eq!(server.broadcast(&spaced.to_string()).await.status, 201);
    a1.expect_pong_next().await;
    a2.expect_pong_next().await;

    let command =
        json!({"command": "disconnect", "payload": {"identifier": user1, "reconnect": false}});
    assert_eq!(server.broadcast(&command.to_string()).await.status, 201);
    a1.expect_disconnect("remote", false, 1000, Some("Closed remotely"))
        .await;
    a2.expect_disconnect("remote", false, 1000, Some("Closed remotely"))
        .await;

    // The other user is unaffected.
    b.expect_pong_next().await;
    server.publish("s", "\"still\"").await;
    assert_eq!(
        b.recv_json().await,
        json!({"identifier": public_id("s"), "message": "still"})
    );
}

#[tokio::test]
async fn remote_disconnect_carries_the_reconnect_flag_and_noauth_identifiers() {
    let server = open_server().await;
    let (mut ws, sid) = server.ws_welcomed().await;
    let (mut other, _) = server.ws_welcomed().await;
    let identifiers = json!({"sid": sid}).to_string();
    let command =
        json!({"command": "disconnect", "payload": {"identifier": identifiers, "reconnect": true}});
    assert_eq!(server.broadcast(&command.to_string()).await.status, 201);
    ws.expect_disconnect("remote", true, 1000, Some("Closed remotely"))
        .await;
    other.expect_pong_next().await;
}

#[tokio::test]
async fn remote_disconnect_without_reconnect_means_false() {
    // `reconnect` missing from the payload is false; publications right after still reach
    // the remaining clients.
    let server = open_server().await;
    let (mut gone, sid) = server.ws_welcomed().await;
    let (mut stays, _) = server.ws_welcomed().await;
    stays.subscribe_ok(&public_id("s")).await;
    let command = json!({"command": "disconnect", "payload": {"identifier": json!({"sid": sid}).to_string()}});
    assert_eq!(server.broadcast(&command.to_string()).await.status, 201);
    gone.expect_disconnect("remote", false, 1000, Some("Closed remotely"))
        .await;
    server.publish("s", "1").await;
    assert_eq!(
        stays.recv_json().await,
        json!({"identifier": public_id("s"), "message": 1})
    );
}

// --- Slow clients ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_at_the_write_timeout() {
    // No pending-size limit: only the write deadline can end this connection.
    let server = start(&[
        "--noauth",
        "--public_streams",
        "--ws_max_pending_size=0",
        "--ws_write_timeout=1",
        // The write timeout is seen in the debug log; the client reads only after it.
        "--log_level=debug",
    ])
    .await;
    let mut slow = stalled_subscriber(&server, "stuck").await;
    // More than loopback buffers between the server and a peer that does not read.
    let filler = "x".repeat(20_000);
    for n in 0..300 {
        let data = json!({"n": n, "filler": filler}).to_string();
        server.publish("stuck", &data).await;
    }
    let started = Instant::now();
    assert!(
        server
            .wait_output("write timed out", Duration::from_secs(10))
            .await,
        "the server never timed out writing to the stalled client"
    );
    let received = read_to_end(&mut slow, Duration::from_secs(10))
        .await
        .expect("the server kept the stalled connection open past its write timeout");
    let delivered = String::from_utf8_lossy(&received)
        .matches("\"filler\"")
        .count();
    assert!(
        delivered < 300,
        "all messages arrived: the connection was never stalled ({:?})",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_disconnected_without_delaying_others() {
    // N × ~20 KB must exceed what the kernel buffers between the server and a non-reading
    // peer on loopback (send buffer autotuning goes up to 4 MiB).
    const N: usize = 300;
    let server = start(&[
        "--noauth",
        "--public_streams",
        // A dozen messages: roomy for a client that reads, tiny next to the 6 MB burst.
        "--ws_max_pending_size=262144",
        // Long enough that only the pending-size limit can explain a prompt disconnect.
        "--ws_write_timeout=30",
    ])
    .await;

    let mut slow = stalled_subscriber(&server, "firehose").await;

    // The normal client reads everything as it comes.
    let (mut fast, _) = server.ws_welcomed().await;
    fast.subscribe_ok(&public_id("firehose")).await;
    let reader = tokio::spawn(async move {
        let started = Instant::now();
        let mut got = Vec::with_capacity(N);
        for _ in 0..N {
            let msg = fast.recv_json().await;
            got.push(msg["message"]["n"].as_u64().expect("numbered message") as usize);
        }
        (got, started.elapsed())
    });

    let filler = "x".repeat(20_000);
    let started = Instant::now();
    for n in 0..N {
        let data = json!({"n": n, "filler": filler}).to_string();
        server.publish("firehose", &data).await;
    }
    let publish_time = started.elapsed();
    let (got, read_time) = reader.await.expect("reader task");
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "the normal client missed messages"
    );
    assert!(
        read_time < Duration::from_secs(3),
        "the normal client needed {read_time:?} for {N} messages (publishing took {publish_time:?}); \
         a stuck slow client must not delay it"
    );

    // Now read the slow socket: the server must have given up on it (EOF/reset after whatever
    // was buffered), and it cannot have received every message.
    let outcome = read_to_end(&mut slow, Duration::from_secs(10)).await;
    let hung_up = outcome.is_some();
    let received = outcome.unwrap_or_default();
    let text = String::from_utf8_lossy(&received);
    let delivered = text.matches("\"filler\"").count();
    assert!(
        hung_up,
        "the slow client was never disconnected (read {} bytes, {delivered} messages)",
        received.len()
    );
    assert!(
        delivered < N,
        "the slow client received all {N} messages: it was not dropped as too slow"
    );
    assert!(
        text.contains(r#"{"type":"disconnect","reason":"too_slow","reconnect":true}"#),
        "the slow client did not get the too_slow disconnect notice ({delivered} messages)"
    );
}

//! Outgoing TLS to Redis (`rediss://`) and NATS trusts the system's certificate store, as
//! AnyCable-Go does: a private CA installed in the image (here: `SSL_CERT_FILE`) is enough, and
//! a server certified by a CA the store lacks is refused. Real `redis-server` and `nats-server`
//! processes serve TLS with a certificate made by the test's own CA. (RPC over TLS: see
//! tests/rpc_tls.rs.)

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// A `redis-server` with a plain port (for the test's own commands) and a TLS port certified by
/// `pki`.
fn tls_redis(pki: &PrivateCa, dir: &TempDir) -> (OwnRedis, u16) {
    let (plain, tls) = (free_port(), free_port());
    let cert = dir.write("redis.pem", &pki.cert_pem);
    let key = dir.write("redis.key", &pki.key_pem);
    let ca = dir.write("redis-ca.pem", &pki.ca_pem);
    let redis = OwnRedis::start_with(
        plain,
        &[
            "--port",
            &plain.to_string(),
            "--tls-port",
            &tls.to_string(),
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            // Required by redis-server even when clients are not asked for certificates.
            "--tls-ca-cert-file",
            ca.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ],
    );
    (redis, tls)
}

async fn redis_server(pki_in_store: &str, tls_port: u16, channel: &str) -> Server {
    ServerBuilder::new()
        .system_store(pki_in_store)
        .args([
            "--noauth",
            "--public_streams",
            "--debug",
            "--broadcast_adapter=redis",
            &format!("--redis_url=rediss://127.0.0.1:{tls_port}"),
            "--redis_tls_verify",
            &format!("--redis_channel={channel}"),
        ])
        .start()
        .await
}

#[tokio::test]
async fn rediss_trusts_a_private_ca_in_the_system_store() {
    let pki = PrivateCa::new();
    let dir = TempDir::new();
    let (redis, tls_port) = tls_redis(&pki, &dir);
    let mut publisher = redis.ready().await;
    let channel = unique("ac-rediss");
    let server = redis_server(&pki.ca_pem, tls_port, &channel).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("s")).await;
    // PUBLISH answers how many subscribers got it: 1 once the server's TLS connection is up.
    let body = json!({"stream": "s", "data": "\"over rediss\""}).to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let receivers = publisher
            .call(&[b"PUBLISH", channel.as_bytes(), body.as_bytes()])
            .await
            .unwrap();
        if receivers == anycable_rs::clients::redis::Value::Int(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never subscribed over TLS:\n{}",
            server.output.all()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ws.recv_json().await["message"], "over rediss");
}

#[tokio::test]
async fn rediss_refuses_a_ca_missing_from_the_system_store() {
    let pki = PrivateCa::new();
    let dir = TempDir::new();
    let (redis, tls_port) = tls_redis(&pki, &dir);
    redis.ready().await;
    let channel = unique("ac-rediss");
    let server = redis_server(&PrivateCa::new().ca_pem, tls_port, &channel).await;
    assert!(
        server
            .wait_output("invalid peer certificate", RECV_TIMEOUT)
            .await,
        "expected the certificate to be refused:\n{}",
        server.output.all()
    );
}

/// A `nats-server` that requires TLS, certified by `pki`.
async fn tls_nats(pki: &PrivateCa, dir: &TempDir) -> (Guarded, u16) {
    let port = free_port();
    let cert = dir.write("nats.pem", &pki.cert_pem);
    let key = dir.write("nats.key", &pki.key_pem);
    let bin = if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    };
    let process = Guarded::spawn(
        Command::new(bin).args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ]),
        "nats-server (Debian package nats-server)",
    );
    wait_port(port, Duration::from_secs(10)).await;
    (process, port)
}

async fn nats_server(pki_in_store: &str, port: u16, subject: &str) -> Server {
    ServerBuilder::new()
        .system_store(pki_in_store)
        .args([
            "--noauth",
            "--public_streams",
            "--debug",
            "--broadcast_adapter=nats",
            &format!("--nats_servers=nats://127.0.0.1:{port}"),
            &format!("--nats_channel={subject}"),
        ])
        .start()
        .await
}

#[tokio::test]
async fn nats_tls_trusts_a_private_ca_in_the_system_store() {
    let pki = PrivateCa::new();
    let dir = TempDir::new();
    let (_nats, port) = tls_nats(&pki, &dir).await;
    let subject = unique("ac-nats-tls");
    let server = nats_server(&pki.ca_pem, port, &subject).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("n")).await;
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(ca)
        .require_tls(true)
        .connect(format!("127.0.0.1:{port}"))
        .await
        .expect("the test's own client connects over TLS");
    // The server's SUB may still be on its way: publish until the first one arrives.
    let mut received = None;
    for attempt in 0..50 {
        let body = json!({"stream": "n", "data": attempt.to_string()}).to_string();
        client.publish(subject.clone(), body.into()).await.unwrap();
        client.flush().await.unwrap();
        if let Some(value) = next_broadcast(&mut ws, Duration::from_millis(200)).await {
            received = Some(value);
            break;
        }
    }
    let received = received.unwrap_or_else(|| {
        panic!(
            "no publication came through NATS over TLS:\n{}",
            server.output.all()
        )
    });
    assert!(received["message"].is_u64(), "{received}");
}

#[tokio::test]
async fn nats_tls_refuses_a_ca_missing_from_the_system_store() {
    let pki = PrivateCa::new();
    let dir = TempDir::new();
    let (_nats, port) = tls_nats(&pki, &dir).await;
    let subject = unique("ac-nats-tls");
    let server = nats_server(&PrivateCa::new().ca_pem, port, &subject).await;
    assert!(
        server.wait_output("NATS: client error", RECV_TIMEOUT).await,
        "expected a NATS connection error:\n{}",
        server.output.all()
    );
    let log = server.output.all();
    assert!(!log.contains("connected to NATS"), "{log}");
}

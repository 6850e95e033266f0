//! TLS between the server and an HTTP RPC backend: certificates are verified against
//! `--rpc_tls_root_ca`, or else the system's certificate store and the bundled public roots;
//! turning verification off is refused.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// An HTTPS RPC backend that accepts every connection with a fixed welcome.
async fn https_backend(cert_pem: &str, key_pem: &str) -> u16 {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let body = if request.uri().path().ends_with("/connect") {
                        r#"{"status":1,"identifiers":"{\"user\":\"tls\"}","transmissions":["{\"type\":\"welcome\",\"sid\":\"over-tls\"}"]}"#
                    } else {
                        r#"{"status":1}"#
                    };
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        body.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn http_rpc_over_tls_trusts_the_given_root_ca() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let port = https_backend(
        &certified.cert.pem(),
        &certified.signing_key.serialize_pem(),
    )
    .await;
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", certified.cert.pem());
    let server = start(&[
        &format!("--rpc_host=https://localhost:{port}/_anycable"),
        &format!("--rpc_tls_root_ca={}", ca.display()),
    ])
    .await;
    let mut ws = server.ws().await;
    let welcome = ws.recv_json().await;
    assert_eq!(
        welcome["sid"], "over-tls",
        "the backend's welcome came through TLS"
    );
}

#[tokio::test]
async fn an_untrusted_backend_certificate_fails_the_connection() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let port = https_backend(
        &certified.cert.pem(),
        &certified.signing_key.serialize_pem(),
    )
    .await;
    // TLS on, public roots only: the self-signed certificate must not be accepted.
    let server = start(&[
        &format!("--rpc_host=https://localhost:{port}/_anycable"),
        "--rpc_enable_tls",
        "--rpc_command_timeout=1000",
    ])
    .await;
    let mut ws = server.ws().await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!((code, reason.as_str()), (1011, "Auth Error"));
}

/// A backend certified by a private CA that is only in the system's store (as a container
/// image would install it): trusted with `--rpc_enable_tls` alone, like Go trusts that store.
#[tokio::test]
async fn a_private_ca_in_the_system_store_is_trusted() {
    let pki = PrivateCa::new();
    let port = https_backend(&pki.cert_pem, &pki.key_pem).await;
    let server = ServerBuilder::new()
        .system_store(&pki.ca_pem)
        .args([
            &format!("--rpc_host=https://localhost:{port}/_anycable"),
            "--rpc_enable_tls",
        ])
        .start()
        .await;
    let mut ws = server.ws().await;
    assert_eq!(ws.recv_json().await["sid"], "over-tls");
}

/// The same backend, with a system store that has another CA: the call fails.
#[tokio::test]
async fn a_ca_missing_from_the_system_store_is_not_trusted() {
    let pki = PrivateCa::new();
    let other = PrivateCa::new();
    let port = https_backend(&pki.cert_pem, &pki.key_pem).await;
    let server = ServerBuilder::new()
        .system_store(&other.ca_pem)
        .args([
            &format!("--rpc_host=https://localhost:{port}/_anycable"),
            "--rpc_enable_tls",
            "--rpc_command_timeout=1000",
        ])
        .start()
        .await;
    let mut ws = server.ws().await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!((code, reason.as_str()), (1011, "Auth Error"));
}

#[test]
fn skipping_certificate_verification_is_refused() {
    let dir = TempDir::new();
    let exited = run_to_exit(
        &[
            "--rpc_enable_tls",
            "--rpc_tls_verify=false",
            "--ignore-config-path",
        ],
        &[],
        dir.path(),
        Duration::from_secs(10),
    );
    assert_ne!(exited.code(), Some(0), "{}", exited.describe());
    let output = format!("{}{}", exited.stdout, exited.stderr);
    assert!(output.contains("rpc_tls_verify"), "{}", exited.describe());
}

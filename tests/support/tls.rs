//! TLS client side.

use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A rustls client configuration that trusts exactly one (self-signed) certificate.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<rustls::ClientConfig>,
}

impl TlsClient {
    pub fn trusting(cert_pem: &str) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        let mut reader = std::io::BufReader::new(cert_pem.as_bytes());
        for cert in rustls_pemfile::certs(&mut reader) {
            roots.add(cert.expect("parse cert PEM")).expect("add root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsClient {
            config: Arc::new(config),
        }
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub async fn open_stream(addr: &str, tls: Option<&TlsClient>) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let name = rustls::pki_types::ServerName::try_from("localhost")
                .expect("server name")
                .to_owned();
            let stream = connector.connect(name, tcp).await?;
            Ok(Box::new(stream))
        }
    }
}

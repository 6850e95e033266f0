//! TLS for every listener (`--ssl_cert`, `--ssl_key`), with rustls.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no certificate found in {0}")]
    NoCertificate(String),
    #[error("no private key found in {0}")]
    NoKey(String),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// Loads the certificate chain and key once, at start-up (no reload, like the reference).
pub fn acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, TlsError> {
    let read_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Read { path, source }
    };
    let mut cert_reader = BufReader::new(File::open(cert_path).map_err(read_error(cert_path))?);
    let certs = rustls_pemfile::certs(&mut cert_reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error(cert_path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.display().to_string()));
    }
    let mut key_reader = BufReader::new(File::open(key_path).map_err(read_error(key_path))?);
    let key = rustls_pemfile::private_key(&mut key_reader)
        .map_err(read_error(key_path))?
        .ok_or_else(|| TlsError::NoKey(key_path.display().to_string()))?;
    // rustls never negotiates below TLS 1.2, which matches the reference's minimum.
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

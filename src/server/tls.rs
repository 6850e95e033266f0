//! TLS for every listener (`--ssl_cert`, `--ssl_key`), with rustls.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or parsing a file; the error names it.
    #[error(transparent)]
    Pem(#[from] crate::trust::TrustError),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// Loads the certificate chain and key once, at start-up (no reload, like the reference).
pub fn acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, TlsError> {
    let (cert_name, key_name) = (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    );
    let certs = crate::trust::read(&cert_name)
        .and_then(|pem| crate::trust::certificates(&pem, &cert_name))
        .map_err(TlsError::Pem)?;
    let key = crate::trust::read(&key_name)
        .and_then(|pem| crate::trust::private_key(&pem, &key_name))
        .map_err(TlsError::Pem)?;
    // rustls never negotiates below TLS 1.2, which matches the reference's minimum.
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

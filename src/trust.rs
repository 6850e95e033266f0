//! Which servers outgoing TLS connections trust: the backend (RPC over TLS), Redis
//! (`rediss://`) and NATS all get their roots here.
//!
//! Like AnyCable-Go (Go's `crypto/x509`), the system's certificate store is trusted, so that a
//! private CA installed in a container image just works. The store is read with
//! `rustls-native-certs`, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR` the way OpenSSL does.
//! It was chosen over `rustls-platform-verifier` because it yields plain certificates: they go
//! into one `RootCertStore` together with the bundled Mozilla roots (`webpki-roots`, kept so
//! that an image without any store still reaches public services), and every client used here
//! (hyper-rustls, tonic, the Redis connector, async-nats) takes such a store; a platform
//! verifier could not be combined with the bundled roots nor handed to tonic.
//!
//! A CA given in the configuration replaces both, as Go's `tls.Config.RootCAs` does.
//!
//! PEM is parsed with rustls-pki-types' `PemObject`.

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::{Error as PemError, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, ConfigBuilder, RootCertStore, WantsVerifier};

/// The system's store plus the bundled roots, read once per process.
pub fn default_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let system = rustls_native_certs::load_native_certs();
            for error in &system.errors {
                // A broken entry must not cost the other certificates; say what was skipped.
                tracing::warn!(context = "tls", "system certificate store: {error}");
            }
            let (added, ignored) = roots.add_parsable_certificates(system.certs);
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            tracing::debug!(
                context = "tls",
                system = added,
                unusable = ignored,
                bundled = webpki_roots::TLS_SERVER_ROOTS.len(),
                "trusted root certificates loaded"
            );
            Arc::new(roots)
        })
        .clone()
}

/// Why certificates, a key or a TLS configuration could not be had. `origin` names where they
/// came from (a file path or a flag).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {source}")]
    Pem {
        origin: String,
        #[source]
        source: PemError,
    },
    #[error("{origin}: no certificate found")]
    NoCertificate { origin: String },
    #[error("{origin}: no private key found")]
    NoPrivateKey { origin: String },
    #[error("{origin}: invalid CA certificate: {source}")]
    InvalidCa {
        origin: String,
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// Roots made of the certificates in `pem` only; `origin` names them in errors.
pub fn roots_from_pem(pem: &[u8], origin: &str) -> Result<Arc<RootCertStore>, TrustError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem, origin)? {
        roots.add(cert).map_err(|source| TrustError::InvalidCa {
            origin: origin.to_string(),
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

/// Every certificate in `pem` (at least one).
pub fn certificates(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TrustError::Pem {
            origin: origin.to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TrustError::NoCertificate {
            origin: origin.to_string(),
        });
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, TrustError> {
    let origin = origin.to_string();
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        PemError::NoItemsFound => TrustError::NoPrivateKey { origin },
        source => TrustError::Pem { origin, source },
    })
}

/// Reads a file for the functions above, naming it in the error.
pub fn read(path: &str) -> Result<Vec<u8>, TrustError> {
    std::fs::read(path).map_err(|source| TrustError::Read {
        path: path.to_string(),
        source,
    })
}

/// A client configuration builder with this crate's crypto provider and protocol versions
/// (TLS 1.2 and 1.3, the reference's minimum being 1.2).
pub fn client_builder() -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, TrustError> {
    Ok(
        ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()?,
    )
}

/// A client configuration trusting `roots`, without a client certificate.
pub fn client_config(roots: Arc<RootCertStore>) -> Result<ClientConfig, TrustError> {
    Ok(client_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_parsing_reports_what_is_missing() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = certified.cert.pem();
        let key = certified.signing_key.serialize_pem();
        assert_eq!(certificates(cert.as_bytes(), "ca.pem").unwrap().len(), 1);
        assert_eq!(roots_from_pem(cert.as_bytes(), "ca.pem").unwrap().len(), 1);
        assert!(private_key(key.as_bytes(), "key.pem").is_ok());
        assert_eq!(
            certificates(key.as_bytes(), "key.pem")
                .unwrap_err()
                .to_string(),
            "key.pem: no certificate found"
        );
        assert_eq!(
            private_key(cert.as_bytes(), "cert.pem")
                .unwrap_err()
                .to_string(),
            "cert.pem: no private key found"
        );
    }
}

//! TLS towards the backend (`--rpc_enable_tls`, `--rpc_tls_root_ca`, `--rpc_tls_verify`).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::SetupError;
use crate::config::RpcConfig;

/// Trust settings for connections to the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    /// PEM certificates to trust instead of the system's store and the bundled roots.
    pub root_pem: Option<String>,
}

/// `None` when TLS is off. TLS is on with `--rpc_enable_tls` or a root CA. Turning certificate
/// verification off is refused: it would accept any man in the middle.
pub fn trust(config: &RpcConfig) -> Result<Option<Trust>, SetupError> {
    if !config.tls.enabled && config.tls.root_ca.is_empty() {
        return Ok(None);
    }
    if !config.tls.verify {
        return Err(SetupError::TlsVerifyOff);
    }
    let root_pem = match config.tls.root_ca.as_str() {
        "" => None,
        // A path that names a regular file wins; anything else must be inline PEM.
        value if Path::new(value).is_file() => {
            Some(std::fs::read_to_string(value).map_err(|source| {
                SetupError::Trust(crate::trust::TrustError::Read {
                    path: value.to_string(),
                    source,
                })
            })?)
        }
        value if value.contains("-----BEGIN") => Some(value.to_string()),
        value => {
            return Err(SetupError::RootCaNotPem {
                value: value.to_string(),
            })
        }
    };
    Ok(Some(Trust { root_pem }))
}

/// The roots TLS to the backend trusts: the root CA when one is given (as the reference), the
/// system's store and the bundled roots otherwise.
pub fn roots(trust: Option<&Trust>) -> Result<Arc<RootCertStore>, SetupError> {
    match trust.and_then(|t| t.root_pem.as_deref()) {
        Some(pem) => Ok(crate::trust::roots_from_pem(
            pem.as_bytes(),
            "--rpc_tls_root_ca",
        )?),
        None => Ok(crate::trust::default_roots()),
    }
}

/// A rustls client configuration trusting [`roots`] (HTTP RPC).
pub fn rustls_config(trust: Option<&Trust>) -> Result<ClientConfig, SetupError> {
    Ok(crate::trust::client_config(roots(trust)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(enable: bool, root: &str, verify: bool) -> RpcConfig {
        RpcConfig {
            tls: crate::config::RpcTlsConfig {
                enabled: enable,
                root_ca: root.into(),
                verify,
            },
            ..RpcConfig::default()
        }
    }

    #[test]
    fn tls_is_on_with_the_flag_or_a_root_ca() {
        assert_eq!(trust(&config(false, "", true)).unwrap(), None);
        assert_eq!(
            trust(&config(true, "", true)).unwrap(),
            Some(Trust { root_pem: None })
        );
        let pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
        assert_eq!(
            trust(&config(false, pem, true)).unwrap(),
            Some(Trust {
                root_pem: Some(pem.into())
            })
        );
        assert!(trust(&config(false, "/no/such/file", true)).is_err());
        assert!(trust(&config(true, "", false)).is_err());
    }
}

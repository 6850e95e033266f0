//! Secret handling shared by post-processing and printing (AnyCable-Go: cli/options.go,
//! utils/message_verifier.go).

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(crate) const BROADCAST_PURPOSE: &str = "broadcast-cable";
pub(crate) const RPC_PURPOSE: &str = "rpc-cable";
pub(crate) const API_PURPOSE: &str = "api-cable";

/// Lowercase hex of HMAC-SHA256(key = `secret`, message = `purpose`).
pub fn derive_key(secret: &str, purpose: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(purpose.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A secret setting as given by the user.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Own {
    /// Empty: fall back to the inherited value.
    Unset,
    /// The literal `none`: explicitly no secret, and nothing inherited.
    Disabled,
    Set(String),
}

impl Own {
    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "" => Own::Unset,
            "none" => Own::Disabled,
            v => Own::Set(v.to_string()),
        }
    }

    /// The effective secret given the value it would inherit.
    pub(crate) fn resolve(self, inherited: Option<String>) -> Option<String> {
        match self {
            Own::Unset => inherited,
            Own::Disabled => None,
            Own::Set(v) => Some(v),
        }
    }
}

//! JWT identification: connections present an HMAC-signed token whose `ext` claim holds the
//! connection identifiers (JSON text), so no backend call is needed to authenticate them.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use crate::protocol::DisconnectReason;

/// The result of authenticating a new connection.
#[derive(Debug, PartialEq)]
pub enum AuthOutcome {
    /// Accepted with these connection identifiers (JSON text).
    Accepted { identifiers: String },
    /// Refused: the client gets a `disconnect` with this reason and must not reconnect.
    Rejected(DisconnectReason),
    /// The server could not decide (a token without identifiers); the connection is closed
    /// with an error code and no message, as the reference does.
    Failed,
    /// No local method decided: the application backend (RPC `Connect`) must, if there is one.
    Undecided,
}

/// The local authentication pipeline: JWT, then `--noauth`; what it leaves undecided goes to
/// the backend.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    enforce_jwt: bool,
    noauth: bool,
}

impl Authenticator {
    pub fn new(jwt_secret: Option<&str>, enforce_jwt: bool, noauth: bool) -> Authenticator {
        let jwt = jwt_secret.filter(|s| !s.is_empty()).map(JwtVerifier::new);
        Authenticator {
            jwt,
            enforce_jwt,
            noauth,
        }
    }

    /// Whether tokens are looked for at all.
    pub fn jwt_enabled(&self) -> bool {
        self.jwt.is_some()
    }

    /// Decides on a connection from its token (if any) and its `sid`.
    pub fn authenticate(&self, token: Option<&str>, sid: &str) -> AuthOutcome {
        if let Some(jwt) = &self.jwt {
            match token.filter(|t| !t.is_empty()) {
                Some(token) => {
                    return match jwt.verify(token) {
                        Ok(identifiers) => AuthOutcome::Accepted { identifiers },
                        Err(TokenError::Expired) => {
                            AuthOutcome::Rejected(DisconnectReason::TokenExpired)
                        }
                        Err(TokenError::Invalid(why)) => {
                            tracing::debug!(sid, "JWT rejected: {why}");
                            AuthOutcome::Rejected(DisconnectReason::Unauthorized)
                        }
                        Err(TokenError::MissingIdentifiers) => {
                            tracing::error!(sid, "JWT is valid but has no string `ext` claim");
                            AuthOutcome::Failed
                        }
                    };
                }
                None if self.enforce_jwt => {
                    return AuthOutcome::Rejected(DisconnectReason::Unauthorized)
                }
                None => {}
            }
        }
        if self.noauth {
            let identifiers = serde_json::json!({ "sid": sid }).to_string();
            return AuthOutcome::Accepted { identifiers };
        }
        AuthOutcome::Undecided
    }
}

/// Why a token was not accepted; each maps to a different answer on the wire.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// Bad format, bad signature, unsupported algorithm, `nbf` in the future...
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// Signature fine, `exp` passed.
    #[error("token expired")]
    Expired,
    /// Signature and times fine, but no string `ext` claim: a server-side (issuer) problem.
    #[error("token has no string `ext` claim")]
    MissingIdentifiers,
}

/// Verifies tokens signed with the shared secret (HS256, HS384 or HS512).
pub struct JwtVerifier {
    secret: Vec<u8>,
}

impl JwtVerifier {
    pub fn new(secret: &str) -> JwtVerifier {
        JwtVerifier {
            secret: secret.as_bytes().to_vec(),
        }
    }

    /// Returns the connection identifiers (the `ext` claim, verbatim).
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        self.verify_at(token, unix_now())
    }

    fn verify_at(&self, token: &str, now: f64) -> Result<String, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid("not a compact JWS"));
        };
        let header: Map<String, Value> = decode_json(header)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Invalid("signature is not base64url"))?;
        let signing_input = &token[..header_and_payload_len(token)];
        let valid = match header.get("alg").and_then(Value::as_str) {
            Some("HS256") => self.check::<Hmac<Sha256>>(signing_input, &signature),
            Some("HS384") => self.check::<Hmac<Sha384>>(signing_input, &signature),
            Some("HS512") => self.check::<Hmac<Sha512>>(signing_input, &signature),
            _ => return Err(TokenError::Invalid("unsupported algorithm")),
        };
        if !valid {
            return Err(TokenError::Invalid("bad signature"));
        }

        let claims: Map<String, Value> = decode_json(payload)?;
        if let Some(exp) = claims.get("exp") {
            let exp = exp
                .as_f64()
                .ok_or(TokenError::Invalid("exp is not a number"))?;
            if now >= exp {
                return Err(TokenError::Expired);
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_f64()
                .ok_or(TokenError::Invalid("nbf is not a number"))?;
            if now < nbf {
                return Err(TokenError::Invalid("token not valid yet"));
            }
        }
        match claims.get("ext") {
            Some(Value::String(identifiers)) => Ok(identifiers.clone()),
            _ => Err(TokenError::MissingIdentifiers),
        }
    }

    /// Constant-time signature check (`verify_slice` compares in constant time).
    fn check<M: Mac + hmac::digest::KeyInit>(&self, input: &str, signature: &[u8]) -> bool {
        let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(&self.secret) else {
            return false;
        };
        mac.update(input.as_bytes());
        mac.verify_slice(signature).is_ok()
    }
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Invalid("segment is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid("segment is not a JSON object"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Issues an HS256 token for `identifiers` (tests and the benchmark act as the application).
pub fn issue_token(secret: &str, identifiers: &str, exp: Option<i64>) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let mut claims = Map::new();
    claims.insert("ext".into(), Value::String(identifiers.into()));
    if let Some(exp) = exp {
        claims.insert("exp".into(), exp.into());
    }
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
    let input = format!("{header}.{payload}");
    let signature = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHQiOiJ7XCJ1c2VyX2lkXCI6NDJ9IiwiZXhwIjoxODkzNDU2MDAwfQ.iJpWkeL_m0xrwXgEMVMrvB-pWeAyz7U-RovpEicU5w4";
    const EXPIRED: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHQiOiJ7XCJ1c2VyX2lkXCI6NDJ9IiwiZXhwIjoxNzAwMDAwMDAwfQ.zM_bz_v6718Hw3c5lbxLv9KGfMsRsJ6Z36DfqLGqJng";

    #[test]
    fn pipeline_order() {
        let jwt_only = Authenticator::new(Some("qwerty"), false, false);
        assert_eq!(
            jwt_only.authenticate(Some(VALID), "s"),
            AuthOutcome::Accepted {
                identifiers: r#"{"user_id":42}"#.into()
            }
        );
        assert_eq!(jwt_only.authenticate(None, "s"), AuthOutcome::Undecided);
        // --noauth does not rescue a bad or expired token.
        let both = Authenticator::new(Some("qwerty"), false, true);
        assert_eq!(
            both.authenticate(Some(EXPIRED), "s"),
            AuthOutcome::Rejected(DisconnectReason::TokenExpired)
        );
        assert_eq!(
            both.authenticate(None, "s1"),
            AuthOutcome::Accepted {
                identifiers: r#"{"sid":"s1"}"#.into()
            }
        );
        let enforced = Authenticator::new(Some("qwerty"), true, true);
        assert_eq!(
            enforced.authenticate(None, "s"),
            AuthOutcome::Rejected(DisconnectReason::Unauthorized)
        );
        let nothing = Authenticator::new(None, false, false);
        assert_eq!(
            nothing.authenticate(Some(VALID), "s"),
            AuthOutcome::Undecided
        );
    }

    #[test]
    fn worked_example_verifies() {
        let v = JwtVerifier::new("qwerty");
        assert_eq!(v.verify(VALID).unwrap(), r#"{"user_id":42}"#);
        assert_eq!(v.verify(EXPIRED), Err(TokenError::Expired));
        assert!(matches!(
            JwtVerifier::new("other").verify(VALID),
            Err(TokenError::Invalid(_))
        ));
        // Signature is checked before expiry.
        assert!(matches!(
            JwtVerifier::new("other").verify(EXPIRED),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn expiry_has_no_leeway() {
        let v = JwtVerifier::new("k");
        let token = issue_token("k", "{}", Some(1000));
        assert!(v.verify_at(&token, 999.9).is_ok());
        assert_eq!(v.verify_at(&token, 1000.0), Err(TokenError::Expired));
    }

    #[test]
    fn rejects_none_algorithm_and_garbage() {
        let v = JwtVerifier::new("k");
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"ext":"{}"}"#);
        assert!(matches!(
            v.verify(&format!("{header}.{payload}.")),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(v.verify("a.b"), Err(TokenError::Invalid(_))));
        assert!(matches!(v.verify("a.b.c.d"), Err(TokenError::Invalid(_))));
        assert!(matches!(v.verify(""), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn ext_must_be_a_string() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"ext":{"user":1}}"#);
        let input = format!("{header}.{payload}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(input.as_bytes());
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            JwtVerifier::new("k").verify(&token),
            Err(TokenError::MissingIdentifiers)
        );
    }

    #[test]
    fn non_numeric_exp_is_invalid() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"ext":"{}","exp":"soon"}"#);
        let input = format!("{header}.{payload}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(input.as_bytes());
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert!(matches!(
            JwtVerifier::new("k").verify(&token),
            Err(TokenError::Invalid(_))
        ));
    }
}

//! JWT verification (`?jid=`, `X-JID`, the `anycable-token.` sub-protocol). Random bytes rarely
//! carry a valid signature, so the target also signs what it is given with the right secret,
//! which takes the claims (`exp`, `nbf`, `ext`) through the checks behind the signature.
#![no_main]

use anycable_rs::identity::{issue_token, AuthOutcome, Authenticator, JwtVerifier, TokenError};
use anycable_rs::protocol::DisconnectReason;
use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::{Sha256, Sha384, Sha512};

const SECRET: &str = "fuzz-secret";

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    /// A token as a client may send anything.
    Raw(&'a str),
    /// Header and claims of the client's choosing, signed with the server's secret.
    Signed {
        header: &'a [u8],
        claims: &'a [u8],
        algorithm: u8,
    },
    /// A token the application would issue.
    Issued {
        identifiers: &'a str,
        exp: Option<i64>,
    },
}

fn sign<M: Mac + hmac::digest::KeyInit>(input: &str) -> String {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn signed(header: &[u8], claims: &[u8], algorithm: u8) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = match algorithm % 3 {
        0 => sign::<Hmac<Sha256>>(&input),
        1 => sign::<Hmac<Sha384>>(&input),
        _ => sign::<Hmac<Sha512>>(&input),
    };
    format!("{input}.{signature}")
}

fuzz_target!(|input: Input| {
    let verifier = JwtVerifier::new(SECRET);
    let token = match input {
        Input::Raw(token) => token.to_string(),
        Input::Signed {
            header,
            claims,
            algorithm,
        } => signed(header, claims, algorithm),
        Input::Issued { identifiers, exp } => {
            let token = issue_token(SECRET, identifiers, exp);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            match exp {
                // Far enough from now that the clock does not move across the boundary.
                Some(exp) if exp < now - 5 => {
                    assert_eq!(verifier.verify(&token), Err(TokenError::Expired))
                }
                Some(exp) if exp <= now + 5 => {}
                _ => assert_eq!(verifier.verify(&token).as_deref(), Ok(identifiers)),
            }
            token
        }
    };
    let verified = verifier.verify(&token);
    let outcome = Authenticator::new(Some(SECRET), true, false).authenticate(Some(&token), "sid");
    match (&verified, outcome) {
        (
            Ok(identifiers),
            AuthOutcome::Accepted {
                identifiers: accepted,
            },
        ) => {
            assert_eq!(*identifiers, accepted)
        }
        (Err(TokenError::Expired), AuthOutcome::Rejected(DisconnectReason::TokenExpired)) => {}
        (Err(TokenError::Invalid(_)), AuthOutcome::Rejected(DisconnectReason::Unauthorized)) => {}
        (Err(TokenError::MissingIdentifiers), AuthOutcome::Failed) => {}
        // An empty token is no token: refused because JWT is enforced.
        (_, AuthOutcome::Rejected(DisconnectReason::Unauthorized)) if token.is_empty() => {}
        (verified, outcome) => panic!("{verified:?} but {outcome:?}"),
    }
});

//! Channels the server handles itself, without a backend: `$pubsub` (signed or public streams),
//! `Turbo::StreamsChannel` and `CableReady::Stream`, all using Rails `MessageVerifier` signed
//! stream names (Turbo and CableReady also take plain names with the legacy cleartext flags).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::StreamsConfig;

const TURBO_CHANNEL: &str = "Turbo::StreamsChannel";
const CABLE_READY_CHANNEL: &str = "CableReady::Stream";

/// Verifies stream names signed like Rails' `MessageVerifier` (SHA256, JSON serializer):
/// `base64(json(name)) + "--" + hex(hmac_sha256(secret, base64_part))`.
#[derive(Clone)]
pub struct StreamVerifier {
    secret: Vec<u8>,
}

impl StreamVerifier {
    /// Returns `None` for an empty secret: nothing signed with an empty key may verify.
    pub fn new(secret: Option<&str>) -> Option<StreamVerifier> {
        secret.filter(|s| !s.is_empty()).map(|s| StreamVerifier {
            secret: s.as_bytes().to_vec(),
        })
    }

    /// Returns the stream name carried by a valid signed name.
    pub fn verify(&self, signed: &str) -> Option<String> {
        let (encoded, digest) = signed.split_once("--")?;
        if digest.contains("--") {
            return None;
        }
        let expected = self.hex_digest(encoded.as_bytes());
        if !bool::from(expected.as_bytes().ct_eq(digest.as_bytes())) {
            return None;
        }
        let json = STANDARD.decode(encoded).ok()?;
        serde_json::from_slice::<String>(&json).ok()
    }

    /// Produces a signed name (used by tests and the benchmark's client side).
    pub fn sign(&self, stream: &str) -> String {
        let json = serde_json::to_string(stream).unwrap_or_default();
        let encoded = STANDARD.encode(json);
        let digest = self.hex_digest(encoded.as_bytes());
        format!("{encoded}--{digest}")
    }

    fn hex_digest(&self, message: &[u8]) -> String {
        hex_hmac_sha256(&self.secret, message)
    }
}

/// Lowercase hex of HMAC-SHA256(key, message).
pub fn hex_hmac_sha256(key: &[u8], message: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(message);
    let mut hex = String::with_capacity(64);
    for byte in mac.finalize().into_bytes() {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    hex
}

/// What to do with a `subscribe` command, decided from its identifier alone.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// Subscribe to `stream` locally; `whisper` tells whether clients may whisper on it and
    /// `presence` whether they may join its presence.
    Stream {
        stream: String,
        whisper: bool,
        presence: bool,
    },
    /// A locally handled channel refused the subscription (bad signature, no stream, ...).
    Reject,
    /// Not a local channel: it belongs to the application backend (RPC).
    Backend,
}

/// How a Turbo or CableReady identifier names its stream.
struct StreamNames {
    verifier: Option<StreamVerifier>,
    /// Plain names are taken as they are (`--turbo_rails_cleartext`, `--cable_ready_cleartext`).
    cleartext: bool,
}

impl StreamNames {
    /// `None` when the channel is off, or on without any way to accept a name (no key, no
    /// cleartext): its subscriptions then go to the backend, as in the reference.
    fn new(on: bool, secret: &Option<String>, cleartext: bool) -> Option<StreamNames> {
        let verifier = StreamVerifier::new(secret.as_deref());
        (on && (verifier.is_some() || cleartext)).then_some(StreamNames {
            verifier,
            cleartext,
        })
    }

    /// The stream of a name. With cleartext on, a name signed with the configured key still
    /// yields its verified stream, so pages that keep signing (turbo-rails always signs) work
    /// alongside plain names; any other value is the stream itself.
    fn stream(&self, name: &str) -> Option<String> {
        let verified = self.verifier.as_ref().and_then(|v| v.verify(name));
        verified.or_else(|| self.cleartext.then(|| name.to_string()))
    }
}

/// Routes identifiers of the locally handled channels.
pub struct StreamsRouter {
    pubsub_channel: String,
    pubsub: Option<StreamVerifier>,
    public: bool,
    whisper_signed: bool,
    presence_signed: bool,
    turbo: Option<StreamNames>,
    cable_ready: Option<StreamNames>,
}

impl StreamsRouter {
    pub fn new(config: &StreamsConfig) -> StreamsRouter {
        StreamsRouter {
            pubsub_channel: config.pubsub_channel.clone(),
            pubsub: StreamVerifier::new(config.secret.as_deref()),
            public: config.public,
            whisper_signed: config.whisper,
            presence_signed: config.presence,
            turbo: StreamNames::new(config.turbo, &config.turbo_secret, config.turbo_cleartext),
            cable_ready: StreamNames::new(
                config.cable_ready,
                &config.cable_ready_secret,
                config.cable_ready_cleartext,
            ),
        }
    }

    /// Names of the channels handled locally, for the startup log.
    pub fn channel_names(&self) -> Vec<&str> {
        let mut names = Vec::new();
        if !self.pubsub_channel.is_empty() {
            names.push(self.pubsub_channel.as_str());
        }
        if self.turbo.is_some() {
            names.push(TURBO_CHANNEL);
        }
        if self.cable_ready.is_some() {
            names.push(CABLE_READY_CHANNEL);
        }
        names
    }

    pub fn route(&self, identifier: &str) -> Route {
        let Ok(serde_json::Value::Object(params)) = serde_json::from_str(identifier) else {
            return Route::Backend;
        };
        let param = |key: &str| {
            params
                .get(key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        };
        let Some(channel) = param("channel") else {
            return Route::Backend;
        };
        let named = |names: &StreamNames, key: &str| {
            param(key)
                .and_then(|name| names.stream(name))
                .map_or(Route::Reject, |stream| Route::Stream {
                    stream,
                    whisper: false,
                    presence: false,
                })
        };

        if channel == self.pubsub_channel {
            if let Some(signed) = param("signed_stream_name") {
                return match self.pubsub.as_ref().and_then(|v| v.verify(signed)) {
                    Some(stream) => Route::Stream {
                        stream,
                        whisper: self.whisper_signed,
                        presence: self.presence_signed,
                    },
                    None => Route::Reject,
                };
            }
            return match param("stream_name") {
                Some(stream) if self.public => Route::Stream {
                    stream: stream.into(),
                    whisper: true,
                    presence: true,
                },
                _ => Route::Reject,
            };
        }
        if let Some(turbo) = self.turbo.as_ref().filter(|_| channel == TURBO_CHANNEL) {
            return named(turbo, "signed_stream_name");
        }
        if let Some(cable_ready) = self
            .cable_ready
            .as_ref()
            .filter(|_| channel == CABLE_READY_CHANNEL)
        {
            return named(cable_ready, "identifier");
        }
        Route::Backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_A: &str =
        "ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c";
    const EXAMPLE_B: &str = "ImdpZDovL2FwcC9Sb29tLzQyOm1lc3NhZ2VzIg==--dc8ca4371f7d6017d3b78cb419b781f9136b9e8f331b0fd063031e18cfc3983f";

    #[test]
    fn verifies_the_worked_examples() {
        let a = StreamVerifier::new(Some("s3Krit")).unwrap();
        assert_eq!(a.verify(EXAMPLE_A).as_deref(), Some("chat/2023"));
        assert_eq!(a.sign("chat/2023"), EXAMPLE_A);
        let b = StreamVerifier::new(Some("my-turbo-secret")).unwrap();
        assert_eq!(
            b.verify(EXAMPLE_B).as_deref(),
            Some("gid://app/Room/42:messages")
        );
    }

    #[test]
    fn rejects_tampering_and_wrong_forms() {
        let v = StreamVerifier::new(Some("s3Krit")).unwrap();
        assert_eq!(v.verify(&EXAMPLE_A.to_uppercase()), None);
        assert_eq!(v.verify(""), None);
        assert_eq!(v.verify("ImNoYXQvMjAyMyI="), None);
        assert_eq!(v.verify(&format!("{EXAMPLE_A}--x")), None);
        assert_eq!(
            StreamVerifier::new(Some("other"))
                .unwrap()
                .verify(EXAMPLE_A),
            None
        );
        // A signed non-string JSON value is not a stream name.
        let signed_number = v
            .sign("x")
            .replace(&STANDARD.encode("\"x\""), &STANDARD.encode("42"));
        assert_eq!(v.verify(&signed_number), None);
    }

    #[test]
    fn empty_secret_verifies_nothing() {
        assert!(StreamVerifier::new(Some("")).is_none());
        assert!(StreamVerifier::new(None).is_none());
    }

    fn config() -> StreamsConfig {
        StreamsConfig {
            secret: Some("s3Krit".into()),
            public: false,
            whisper: false,
            presence: true,
            turbo: true,
            turbo_secret: Some("s3Krit".into()),
            cable_ready: false,
            cable_ready_secret: Some("s3Krit".into()),
            cable_ready_cleartext: false,
            turbo_cleartext: false,
            pubsub_channel: "$pubsub".into(),
        }
    }

    fn id(json: serde_json::Value) -> String {
        json.to_string()
    }

    #[test]
    fn routes_pubsub_turbo_and_backend_channels() {
        let router = StreamsRouter::new(&config());
        let signed = id(serde_json::json!({"channel":"$pubsub","signed_stream_name":EXAMPLE_A}));
        assert_eq!(
            router.route(&signed),
            Route::Stream {
                stream: "chat/2023".into(),
                whisper: false,
                presence: true
            }
        );
        let public = id(serde_json::json!({"channel":"$pubsub","stream_name":"x"}));
        assert_eq!(router.route(&public), Route::Reject);
        let turbo = id(
            serde_json::json!({"channel":"Turbo::StreamsChannel","signed_stream_name":EXAMPLE_A}),
        );
        assert_eq!(
            router.route(&turbo),
            Route::Stream {
                stream: "chat/2023".into(),
                whisper: false,
                presence: false
            }
        );
        let cable_ready =
            id(serde_json::json!({"channel":"CableReady::Stream","identifier":EXAMPLE_A}));
        assert_eq!(
            router.route(&cable_ready),
            Route::Backend,
            "cable_ready is off"
        );
        assert_eq!(router.route(r#"{"channel":"ChatChannel"}"#), Route::Backend);
        assert_eq!(router.route("not json"), Route::Backend);
        assert_eq!(router.route(r#"{"channel":"$pubsub"}"#), Route::Reject);
    }

    #[test]
    fn public_streams_allow_whispers() {
        let router = StreamsRouter::new(&StreamsConfig {
            public: true,
            ..config()
        });
        let public = id(serde_json::json!({"channel":"$pubsub","stream_name":"x"}));
        assert_eq!(
            router.route(&public),
            Route::Stream {
                stream: "x".into(),
                whisper: true,
                presence: true
            }
        );
    }

    #[test]
    fn cleartext_takes_plain_names_and_still_verifies_signed_ones() {
        let turbo = |name: &str| {
            id(serde_json::json!({"channel":"Turbo::StreamsChannel","signed_stream_name":name}))
        };
        let stream = |name: &str| Route::Stream {
            stream: name.into(),
            whisper: false,
            presence: false,
        };
        // Cleartext without any key: the exact command line of the Hotwire guide.
        let plain_only = StreamsRouter::new(&StreamsConfig {
            turbo_cleartext: true,
            turbo_secret: None,
            cable_ready: true,
            cable_ready_cleartext: true,
            cable_ready_secret: None,
            ..config()
        });
        assert_eq!(
            plain_only.route(&turbo("gid://app/Room/1")),
            stream("gid://app/Room/1")
        );
        assert_eq!(plain_only.route(&turbo(EXAMPLE_A)), stream(EXAMPLE_A));
        assert_eq!(plain_only.route(&turbo("")), Route::Reject);
        assert_eq!(
            plain_only.route(&id(
                serde_json::json!({"channel":"CableReady::Stream","identifier":"cr_1"})
            )),
            stream("cr_1")
        );
        // With a key too, a signed name still means its verified stream.
        let both = StreamsRouter::new(&StreamsConfig {
            turbo_cleartext: true,
            ..config()
        });
        assert_eq!(both.route(&turbo(EXAMPLE_A)), stream("chat/2023"));
        assert_eq!(both.route(&turbo("room_1")), stream("room_1"));
        // Turbo on without key nor cleartext: the backend's channel, as before.
        let keyless = StreamsRouter::new(&StreamsConfig {
            turbo_secret: None,
            ..config()
        });
        assert_eq!(keyless.route(&turbo("room_1")), Route::Backend);
    }
}

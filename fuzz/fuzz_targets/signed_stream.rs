//! Signed stream names (`$pubsub` `signed_stream_name`, Turbo Streams, CableReady) and the
//! channel identifiers that carry them, as a client subscribes with them. As for JWT, the
//! target also signs what it is given, to reach the decoding behind the signature check.
#![no_main]

use std::sync::OnceLock;

use anycable_rs::config::StreamsConfig;
use anycable_rs::streams::{hex_hmac_sha256, Route, StreamVerifier, StreamsRouter};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-streams-secret";

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    /// A signed name as a client may send anything.
    Raw(&'a str),
    /// A payload of the client's choosing with a valid signature.
    Signed(&'a str),
    /// A name the application would sign.
    Stream(&'a str),
    /// A channel identifier (JSON) to route.
    Identifier(&'a str),
}

/// Every kind of stream channel on, with signed names, no public streams.
fn router() -> &'static StreamsRouter {
    static ROUTER: OnceLock<StreamsRouter> = OnceLock::new();
    ROUTER.get_or_init(|| {
        StreamsRouter::new(&StreamsConfig {
            secret: Some(SECRET.into()),
            turbo: true,
            turbo_secret: Some(SECRET.into()),
            cable_ready: true,
            cable_ready_secret: Some(SECRET.into()),
            ..StreamsConfig::default()
        })
    })
}

fuzz_target!(|input: Input| {
    let verifier = StreamVerifier::new(Some(SECRET)).unwrap();
    let signed = match input {
        Input::Raw(signed) => signed.to_string(),
        Input::Signed(encoded) => {
            format!(
                "{encoded}--{}",
                hex_hmac_sha256(SECRET.as_bytes(), encoded.as_bytes())
            )
        }
        Input::Stream(stream) => {
            let signed = verifier.sign(stream);
            assert_eq!(verifier.verify(&signed).as_deref(), Some(stream));
            signed
        }
        Input::Identifier(identifier) => {
            router().route(identifier);
            return;
        }
    };
    let verified = verifier.verify(&signed);
    // Through an identifier, as a client subscribes with it.
    let identifier =
        serde_json::json!({"channel": "$pubsub", "signed_stream_name": signed}).to_string();
    match router().route(&identifier) {
        Route::Stream { stream, .. } => assert_eq!(Some(stream), verified),
        Route::Reject => assert_eq!(verified, None),
        route => panic!("{route:?}"),
    }
});

//! Identifiers, tokens, signatures.

use super::*;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// `{"channel":"$pubsub","stream_name":"<stream>"}`
pub fn public_id(stream: &str) -> String {
    serde_json::json!({"channel": "$pubsub", "stream_name": stream}).to_string()
}

/// `{"channel":"$pubsub","signed_stream_name":"<signed>"}`
pub fn signed_id(signed: &str) -> String {
    serde_json::json!({"channel": "$pubsub", "signed_stream_name": signed}).to_string()
}

/// An independent implementation of Rails' MessageVerifier signing (Base64 of the JSON string,
/// `--`, hex HMAC-SHA256; AnyCable's docs/signed_streams.md), so that a
/// bug shared by the server's signer and verifier cannot hide.
pub fn sign_stream(secret: &str, stream: &str) -> String {
    use base64::Engine;
    let json = serde_json::to_string(stream).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    format!("{encoded}--{}", hmac_hex(secret, &encoded))
}

/// The broadcast key derived from an application secret (docs/broadcasting.md).
pub fn derived_broadcast_key(secret: &str) -> String {
    hmac_hex(secret, "broadcast-cable")
}

pub fn hmac_hex(key: &str, message: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An HS256 JWT with the given claims, built independently of the server's code.
pub fn jwt(secret: &str, claims: &Value) -> String {
    jwt_raw(secret, &claims.to_string())
}

/// An HS256 JWT whose payload is exactly `payload_json`.
pub fn jwt_raw(secret: &str, payload_json: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(payload_json.as_bytes());
    let input = format!("{header}.{payload}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// A token for `identifiers` valid for an hour.
pub fn token(secret: &str, identifiers: &str) -> String {
    jwt(
        secret,
        &serde_json::json!({"ext": identifiers, "exp": now_secs() + 3600}),
    )
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Collects every JSON message of `ws` for `n` messages (skipping pings).
pub async fn recv_n(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(ws.recv_json().await);
    }
    out
}

/// Parses `KEY=VALUE`-ish text into a map (used for nothing critical; helper for logs).
pub fn lines_containing<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// The extended protocol's sub-protocol.
pub const EXT: &str = "actioncable-v1-ext-json";

/// Connects with the extended protocol (`query` is appended to `/cable?pi=0`) and returns the
/// socket and the welcome's `sid`.
pub async fn ext_client(server: &Server, query: &str) -> (Ws, String) {
    let mut ws = server
        .ws_with(WsRequest::new(&format!("/cable?pi=0{query}")).protocol(EXT))
        .await;
    let welcome = ws.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome["sid"].as_str().unwrap().to_string())
}

/// Reconnects with `?sid=<sid>` on the extended protocol and expects the session restored with
/// exactly these identifiers, under a new sid.
pub async fn restore(server: &Server, sid: &str, identifiers: &[&str]) -> Ws {
    let mut ws = server
        .ws_with(WsRequest::new(&format!("/cable?pi=0&sid={sid}")).protocol(EXT))
        .await;
    let welcome = ws.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["restored"], true, "{welcome}");
    assert_eq!(welcome["restored_ids"], serde_json::json!(identifiers));
    assert_ne!(welcome["sid"], sid, "{welcome}");
    ws
}

/// A name no other test (or test run) uses: Redis, NATS and the brokers' data outlive the
/// processes. Only letters, digits, `_` and `-`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

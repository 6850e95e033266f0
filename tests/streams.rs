//! Signed and public streams, Turbo Streams, CableReady, whispers (docs/hotwire.md;
//! AnyCable-Go: docs/signed_streams.md).

mod support;

use serde_json::{json, Value};
use support::*;

/// Rails' `ActiveSupport::MessageVerifier.new("s3Krit", digest: "SHA256", serializer: JSON)
/// .generate("chat/2023")`, the signed stream name format of AnyCable's docs/signed_streams.md.
const EXAMPLE_A: &str =
    "ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c";
/// The same format for secret `my-turbo-secret`, stream `gid://app/Room/42:messages` (a Turbo
/// name whose Base64 ends in `==`).
const EXAMPLE_B: &str = "ImdpZDovL2FwcC9Sb29tLzQyOm1lc3NhZ2VzIg==--dc8ca4371f7d6017d3b78cb419b781f9136b9e8f331b0fd063031e18cfc3983f";

fn turbo_id(signed: &str) -> String {
    json!({"channel": "Turbo::StreamsChannel", "signed_stream_name": signed}).to_string()
}

fn cable_ready_id(signed: &str) -> String {
    json!({"channel": "CableReady::Stream", "identifier": signed}).to_string()
}

fn whisper(identifier: &str, data: Value) -> Value {
    json!({"command": "whisper", "identifier": identifier, "data": data})
}

#[test]
fn our_signer_reproduces_the_spec_vectors() {
    assert_eq!(sign_stream("s3Krit", "chat/2023"), EXAMPLE_A);
    assert_eq!(
        sign_stream("my-turbo-secret", "gid://app/Room/42:messages"),
        EXAMPLE_B
    );
    let library = anycable_rs::streams::StreamVerifier::new(Some("s3Krit")).unwrap();
    assert_eq!(library.sign("chat/2023"), EXAMPLE_A);
}

// --- $pubsub signed ----------------------------------------------------------------------------

#[tokio::test]
async fn spec_signed_name_verifies_with_streams_secret() {
    let server = start(&["--noauth", "--streams_secret=s3Krit"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = signed_id(EXAMPLE_A);
    ws.subscribe_ok(&id).await;
    // The verified name is the stream.
    server.publish("chat/2023", r#"{"text":"hi"}"#).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": {"text": "hi"}})
    );
}

#[tokio::test]
async fn spec_signed_name_verifies_with_secret_fallback() {
    let server = start(&["--noauth", "--secret=s3Krit"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = signed_id(EXAMPLE_A);
    ws.subscribe_ok(&id).await;
    let key = derived_broadcast_key("s3Krit");
    server.publish_with("chat/2023", "\"x\"", Some(&key)).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": "x"})
    );
}

#[tokio::test]
async fn streams_secret_wins_over_secret() {
    let server = start(&["--noauth", "--secret=s3Krit", "--streams_secret=other"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_rejected(&signed_id(EXAMPLE_A)).await;
    ws.subscribe_ok(&signed_id(&sign_stream("other", "chat/2023")))
        .await;
}

#[tokio::test]
async fn tampered_signed_names_are_rejected_and_the_connection_stays() {
    let server = start(&["--noauth", "--streams_secret=s3Krit"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    let (encoded, digest) = EXAMPLE_A.split_once("--").unwrap();
    let mut flipped = digest.to_string();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    let other_payload = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("\"chat/2024\"")
    };
    for bad in [
        format!("{encoded}--{flipped}"),
        format!("{encoded}--{}", digest.to_uppercase()),
        format!("{other_payload}--{digest}"),
        format!("{encoded}--{digest}--{digest}"),
        encoded.to_string(),
        sign_stream("wrong", "chat/2023"),
        // Unpadded Base64: not the standard padded alphabet.
        format!(
            "{}--{}",
            encoded.replace('=', ""),
            hmac_hex("s3Krit", &encoded.replace('=', ""))
        ),
        // URL-safe Base64 (`"~~~"` is `In5+fiI=` in the standard alphabet), correctly signed.
        format!("In5-fiI=--{}", hmac_hex("s3Krit", "In5-fiI=")),
    ] {
        ws.subscribe_rejected(&signed_id(&bad)).await;
    }
    ws.expect_pong_next().await;
    ws.subscribe_ok(&signed_id(EXAMPLE_A)).await;
}

#[tokio::test]
async fn signed_name_must_carry_a_json_string() {
    let server = start(&["--noauth", "--streams_secret=k"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    use base64::Engine;
    for json_text in ["42", "{\"a\":1}", "[\"x\"]", "null"] {
        let encoded = base64::engine::general_purpose::STANDARD.encode(json_text);
        let signed = format!("{encoded}--{}", hmac_hex("k", &encoded));
        ws.subscribe_rejected(&signed_id(&signed)).await;
    }
    // Any valid JSON encoding of a string verifies (escapes included).
    let encoded = base64::engine::general_purpose::STANDARD.encode("\"caf\\u00e9\"");
    let signed = format!("{encoded}--{}", hmac_hex("k", &encoded));
    let id = signed_id(&signed);
    ws.subscribe_ok(&id).await;
    server.publish("café", "1").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": 1})
    );
}

#[tokio::test]
async fn without_any_secret_signed_names_never_verify() {
    let server = start(&["--noauth", "--public_streams"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_rejected(&signed_id(EXAMPLE_A)).await;
    // Signed with an empty key (what a naive verifier would accept).
    ws.subscribe_rejected(&signed_id(&sign_stream("", "chat/2023")))
        .await;
    // A signed name wins over stream_name even when the latter alone would be allowed.
    let both =
        json!({"channel": "$pubsub", "signed_stream_name": EXAMPLE_A, "stream_name": "chat/2023"})
            .to_string();
    ws.subscribe_rejected(&both).await;
    ws.expect_pong_next().await;
}

// --- $pubsub public ----------------------------------------------------------------------------

#[tokio::test]
async fn public_stream_names_need_public_streams() {
    let server = start(&["--noauth", "--streams_secret=s3Krit"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_rejected(&public_id("open")).await;
    ws.subscribe_rejected(&json!({"channel": "$pubsub"}).to_string())
        .await;
    ws.subscribe_rejected(&json!({"channel": "$pubsub", "stream_name": ""}).to_string())
        .await;
}

#[tokio::test]
async fn public_streams_flag_allows_stream_names() {
    let server = start(&["--noauth", "--public_streams"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = json!({"channel": "$pubsub", "stream_name": "open", "extra": true}).to_string();
    ws.subscribe_ok(&id).await;
    server.publish("open", "\"hello\"").await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": "hello"})
    );
    ws.subscribe_rejected(&json!({"channel": "$pubsub"}).to_string())
        .await;
}

#[tokio::test]
async fn public_mode_allows_stream_names_without_noauth() {
    let server = start(&["--public"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&public_id("open")).await;
}

#[tokio::test]
async fn unknown_channels_are_rejected_without_a_backend() {
    let server = start(&["--noauth", "--norpc", "--public_streams"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_rejected(r#"{"channel":"ChatChannel","id":42}"#)
        .await;
    ws.subscribe_rejected("not json identifier").await;
}

// --- Turbo Streams -----------------------------------------------------------------------------

#[tokio::test]
async fn turbo_streams_need_the_flag() {
    let server = start(&["--noauth", "--norpc", "--streams_secret=my-turbo-secret"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_rejected(&turbo_id(EXAMPLE_B)).await;
}

#[tokio::test]
async fn turbo_streams_with_turbo_secret() {
    let server = start(&[
        "--noauth",
        "--turbo_streams",
        "--turbo_streams_secret=my-turbo-secret",
    ])
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = turbo_id(EXAMPLE_B);
    ws.subscribe_ok(&id).await;
    let html = r#"<turbo-stream action="append" target="messages"><template><p>Hi & bye</p></template></turbo-stream>"#;
    server.publish("gid://app/Room/42:messages", html).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": html})
    );
    // Tampered name rejected.
    ws.subscribe_rejected(&turbo_id(&EXAMPLE_B.replace("dc8c", "dc8d")))
        .await;
    // Missing signed name rejected.
    ws.subscribe_rejected(&json!({"channel": "Turbo::StreamsChannel"}).to_string())
        .await;
    // Turbo subscriptions never whisper.
    let (mut other, _) = server.ws_welcomed().await;
    other.subscribe_ok(&id).await;
    ws.send_json(&whisper(&id, json!({"typing": true}))).await;
    server
        .publish("gid://app/Room/42:messages", "\"marker\"")
        .await;
    assert_eq!(
        other.recv_json().await,
        json!({"identifier": id, "message": "marker"}),
        "a whisper on a Turbo subscription must not be delivered"
    );
}

#[tokio::test]
async fn turbo_secret_wins_over_secret_and_secret_is_the_fallback() {
    let server = start(&[
        "--noauth",
        "--turbo_streams",
        "--secret=app-secret",
        "--turbo_streams_secret=my-turbo-secret",
    ])
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&turbo_id(EXAMPLE_B)).await;
    ws.subscribe_rejected(&turbo_id(&sign_stream(
        "app-secret",
        "gid://app/Room/42:messages",
    )))
    .await;

    let fallback = start(&["--noauth", "--turbo_streams", "--secret=app-secret"]).await;
    let (mut ws, _) = fallback.ws_welcomed().await;
    ws.subscribe_ok(&turbo_id(&sign_stream("app-secret", "room:1")))
        .await;
    ws.subscribe_rejected(&turbo_id(EXAMPLE_B)).await;
}

#[tokio::test]
async fn turbo_falls_back_to_streams_secret() {
    let server = start(&[
        "--noauth",
        "--turbo_streams",
        "--streams_secret=my-turbo-secret",
    ])
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&turbo_id(EXAMPLE_B)).await;
}

#[tokio::test]
async fn turbo_without_any_secret_is_rejected() {
    let server = start(&["--noauth", "--norpc", "--turbo_streams"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_rejected(&turbo_id(&sign_stream("", "room:1")))
        .await;
}

#[tokio::test]
async fn legacy_turbo_rails_key_enables_turbo() {
    let server = start(&["--noauth", "--turbo_rails_key=my-turbo-secret"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&turbo_id(EXAMPLE_B)).await;
}

// --- Cleartext names (--turbo_rails_cleartext, --cable_ready_cleartext) ------------------------

/// The command line of the Hotwire guide's "unsigned stream names" note: a JWT key and the
/// cleartext flag, nothing else (no --turbo_streams, no Turbo key, no backend).
#[tokio::test]
async fn seed_cleartext_command_line_takes_plain_turbo_names_and_jwt_still_authenticates() {
    let server = start(&["--jwt_id_key=some-secret-key", "--turbo_rails_cleartext"]).await;
    let valid = token("some-secret-key", r#"{"user_id":42}"#);
    let mut ws = server
        .ws_with(WsRequest::new(&format!("/cable?jid={valid}")))
        .await;
    ws.expect_welcome().await;
    let id = turbo_id("gid://app/Room/1");
    ws.subscribe_ok(&id).await;
    let html =
        r#"<turbo-stream action="append" target="messages"><template>hi</template></turbo-stream>"#;
    server.publish("gid://app/Room/1", html).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": html})
    );
    // A bad token is still refused: cleartext names do not open the door.
    let forged = token("other-key", r#"{"user_id":42}"#);
    let mut intruder = server
        .ws_with(WsRequest::new(&format!("/cable?jid={forged}")))
        .await;
    intruder
        .expect_disconnect("unauthorized", false, 1000, Some("Auth Failed"))
        .await;
    assert!(
        server
            .startup_log()
            .await
            .contains("turbo_rails_cleartext option is deprecated, use signed stream names"),
        "the deprecation warning says what to use instead"
    );
}

#[tokio::test]
async fn cleartext_still_takes_names_signed_with_the_turbo_key() {
    let server = start(&[
        "--noauth",
        "--turbo_rails_cleartext",
        "--turbo_streams_secret=my-turbo-secret",
    ])
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    let signed = turbo_id(EXAMPLE_B);
    let plain = turbo_id("gid://app/Room/42:messages");
    ws.subscribe_ok(&signed).await;
    ws.subscribe_ok(&plain).await;
    // Both name the same stream: one publication reaches both subscriptions.
    server.publish("gid://app/Room/42:messages", "\"x\"").await;
    let mut got = [ws.recv_json().await, ws.recv_json().await].map(|f| f["identifier"].clone());
    got.sort_by_key(|v| v.to_string());
    let mut expected = [json!(signed), json!(plain)];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(got, expected);
    // An empty name is still refused.
    ws.subscribe_rejected(&turbo_id("")).await;
}

#[tokio::test]
async fn cable_ready_cleartext_takes_plain_identifiers() {
    let server = start(&["--noauth", "--cable_ready_cleartext"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = cable_ready_id("updates");
    ws.subscribe_ok(&id).await;
    server.publish("updates", r#"{"cableReady":true}"#).await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": {"cableReady": true}})
    );
}

// --- CableReady --------------------------------------------------------------------------------

#[tokio::test]
async fn cable_ready_needs_the_flag() {
    let server = start(&["--noauth", "--norpc", "--secret=cr"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_rejected(&cable_ready_id(&sign_stream("cr", "updates")))
        .await;
}

#[tokio::test]
async fn cable_ready_streams_verify_the_identifier_key() {
    let server = start(&["--noauth", "--cable_ready", "--secret=cr"]).await;
    let (mut ws, _) = server.ws_welcomed().await;
    let id = cable_ready_id(&sign_stream("cr", "updates"));
    ws.subscribe_ok(&id).await;
    let key = derived_broadcast_key("cr");
    server
        .publish_with(
            "updates",
            r#"{"cableReady":true,"operations":[]}"#,
            Some(&key),
        )
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"identifier": id, "message": {"cableReady": true, "operations": []}})
    );
    ws.subscribe_rejected(&cable_ready_id(&sign_stream("nope", "updates")))
        .await;
    // The signed name under signed_stream_name is not what CableReady reads.
    ws.subscribe_rejected(
        &json!({"channel": "CableReady::Stream", "signed_stream_name": sign_stream("cr", "x")})
            .to_string(),
    )
    .await;
}

#[tokio::test]
async fn cable_ready_secret_wins() {
    let server = start(&[
        "--noauth",
        "--cable_ready",
        "--secret=cr",
        "--cable_ready_secret=crs",
    ])
    .await;
    let (mut ws, _) = server.ws_welcomed().await;
    ws.subscribe_ok(&cable_ready_id(&sign_stream("crs", "u")))
        .await;
    ws.subscribe_rejected(&cable_ready_id(&sign_stream("cr", "u")))
        .await;
}

// --- Whispers ----------------------------------------------------------------------------------

#[tokio::test]
async fn whisper_on_a_public_stream_reaches_others_but_not_the_sender() {
    let server = start(&["--noauth", "--public_streams"]).await;
    let (mut alice, _) = server.ws_welcomed().await;
    let (mut bob, _) = server.ws_welcomed().await;
    let id = public_id("room");
    // Bob uses a differently spelled identifier for the same stream.
    let bob_id = json!({"stream_name": "room", "channel": "$pubsub"}).to_string();
    // Alice also has a second identifier on the same stream.
    let alice_second = json!({"channel": "$pubsub", "stream_name": "room", "tab": 2}).to_string();
    alice.subscribe_ok(&id).await;
    alice.subscribe_ok(&alice_second).await;
    bob.subscribe_ok(&bob_id).await;

    let payloads = [
        json!({"event": "typing", "user": "Vova", "nested": {"a": [1, 2.5, null]}, "u": "é<&>"}),
        json!("just a string"),
        json!(42),
    ];
    for data in &payloads {
        alice.send_json(&whisper(&id, data.clone())).await;
        assert_eq!(
            bob.recv_json().await,
            json!({"identifier": bob_id, "message": data})
        );
    }
    // Never echoed to any identifier of the sender's connection.
    alice.expect_pong_next().await;

    // Bob can whisper back.
    bob.send_json(&whisper(&bob_id, json!({"event": "seen"})))
        .await;
    let got: Vec<Value> = recv_n(&mut alice, 2).await;
    assert!(
        got.contains(&json!({"identifier": id, "message": {"event": "seen"}})),
        "{got:?}"
    );
    assert!(
        got.contains(&json!({"identifier": alice_second, "message": {"event": "seen"}})),
        "{got:?}"
    );
    bob.expect_pong_next().await;
}

#[tokio::test]
async fn whisper_on_an_unsubscribed_identifier_is_ignored() {
    let server = start(&["--noauth", "--public_streams"]).await;
    let (mut alice, _) = server.ws_welcomed().await;
    let (mut bob, _) = server.ws_welcomed().await;
    bob.subscribe_ok(&public_id("room")).await;
    alice
        .send_json(&whisper(&public_id("room"), json!({"x": 1})))
        .await;
    alice.expect_pong_next().await;
    server.publish("room", "\"marker\"").await;
    assert_eq!(
        bob.recv_json().await,
        json!({"identifier": public_id("room"), "message": "marker"})
    );
}

#[tokio::test]
async fn whisper_on_signed_streams_needs_streams_whisper() {
    let signed = signed_id(EXAMPLE_A);

    let strict = start(&["--noauth", "--streams_secret=s3Krit"]).await;
    let (mut alice, _) = strict.ws_welcomed().await;
    let (mut bob, _) = strict.ws_welcomed().await;
    alice.subscribe_ok(&signed).await;
    bob.subscribe_ok(&signed).await;
    alice
        .send_json(&whisper(&signed, json!({"typing": 1})))
        .await;
    alice.expect_pong_next().await;
    strict.publish("chat/2023", "\"marker\"").await;
    assert_eq!(
        bob.recv_json().await,
        json!({"identifier": signed, "message": "marker"}),
        "whisper on a signed stream delivered without --streams_whisper"
    );

    let open = start(&["--noauth", "--streams_secret=s3Krit", "--streams_whisper"]).await;
    let (mut alice, _) = open.ws_welcomed().await;
    let (mut bob, _) = open.ws_welcomed().await;
    alice.subscribe_ok(&signed).await;
    bob.subscribe_ok(&signed).await;
    alice
        .send_json(&whisper(&signed, json!({"typing": 1})))
        .await;
    assert_eq!(
        bob.recv_json().await,
        json!({"identifier": signed, "message": {"typing": 1}})
    );
    alice.expect_pong_next().await;
}

//! Authentication: auth modes, JWT identification, allowed origins (AnyCable-Go:
//! docs/jwt_identification.md, identity/jwt.go; differences in docs/compatibility.md).

mod support;

use serde_json::json;
use support::*;

/// HS256 JWT whose `ext` claim holds the identifiers JSON (the token format of AnyCable's
/// docs/jwt_identification.md): secret `qwerty`, `ext` `{"user_id":42}`, exp 2030-01-01.
/// e2e/support/sign.py (Python stdlib only) produces the same token.
const SPEC_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHQiOiJ7XCJ1c2VyX2lkXCI6NDJ9IiwiZXhwIjoxODkzNDU2MDAwfQ.iJpWkeL_m0xrwXgEMVMrvB-pWeAyz7U-RovpEicU5w4";
/// The same token with exp 1700000000 (past).
const SPEC_EXPIRED_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHQiOiJ7XCJ1c2VyX2lkXCI6NDJ9IiwiZXhwIjoxNzAwMDAwMDAwfQ.zM_bz_v6718Hw3c5lbxLv9KGfMsRsJ6Z36DfqLGqJng";

async fn expect_unauthorized(ws: &mut Ws) {
    ws.expect_disconnect("unauthorized", false, 1000, Some("Auth Failed"))
        .await;
}

async fn connect(server: &Server, path: &str) -> Ws {
    server.ws_with(WsRequest::new(path)).await
}

#[test]
fn our_token_helper_reproduces_the_spec_vector() {
    // Guards the independent JWT builder used by the other tests.
    let token = jwt_raw("qwerty", r#"{"ext":"{\"user_id\":42}","exp":1893456000}"#);
    assert_eq!(token, SPEC_TOKEN);
}

// --- Modes -------------------------------------------------------------------------------------

#[tokio::test]
async fn default_secure_mode_rejects_every_connection() {
    // Standalone (no backend): nothing can authenticate the connection.
    let server = start(&["--norpc"]).await;
    let mut ws = server.ws().await;
    expect_unauthorized(&mut ws).await;
    // Even with a token: JWT is not enabled without a secret.
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}")).await;
    expect_unauthorized(&mut ws).await;
}

#[tokio::test]
async fn tokens_are_not_read_when_jwt_is_disabled() {
    let server = start(&["--noauth"]).await;
    let mut ws = connect(&server, "/cable?jid=garbage").await;
    ws.expect_welcome().await;
    let mut ws = server
        .ws_with(WsRequest::new("/cable").header("X-JID", "garbage"))
        .await;
    ws.expect_welcome().await;
}

#[tokio::test]
async fn noauth_welcomes_everyone() {
    let server = start(&["--noauth"]).await;
    let (_ws, sid) = server.ws_welcomed().await;
    assert!(!sid.is_empty());
}

// --- JWT sources -------------------------------------------------------------------------------

#[tokio::test]
async fn spec_token_in_query_is_accepted_and_ext_becomes_the_identifiers() {
    let server = start(&["--jwt_secret=qwerty"]).await;
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}")).await;
    ws.expect_welcome().await;
    // The identifiers are the `ext` claim verbatim: a remote disconnect for them hits us.
    let resp = server
        .broadcast(
            &json!({"command": "disconnect", "payload": {"identifier": "{\"user_id\":42}", "reconnect": false}})
                .to_string(),
        )
        .await;
    assert_eq!(resp.status, 201, "{resp:?}");
    ws.expect_disconnect("remote", false, 1000, Some("Closed remotely"))
        .await;
}

#[tokio::test]
async fn first_query_token_wins() {
    let server = start(&["--jwt_secret=qwerty"]).await;
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}&jid=garbage")).await;
    ws.expect_welcome().await;
    let mut ws = connect(&server, &format!("/cable?jid=garbage&jid={SPEC_TOKEN}")).await;
    expect_unauthorized(&mut ws).await;
}

#[tokio::test]
async fn token_in_x_jid_header_is_accepted() {
    let server = start(&["--jwt_secret=qwerty"]).await;
    let mut ws = server
        .ws_with(WsRequest::new("/cable").header("X-JID", SPEC_TOKEN))
        .await;
    ws.expect_welcome().await;
}

#[tokio::test]
async fn header_token_wins_over_query_token() {
    let server = start(&["--jwt_secret=qwerty"]).await;
    let mut good_header = server
        .ws_with(WsRequest::new("/cable?jid=garbage").header("X-JID", SPEC_TOKEN))
        .await;
    good_header.expect_welcome().await;
    let mut bad_header = server
        .ws_with(WsRequest::new(&format!("/cable?jid={SPEC_TOKEN}")).header("X-JID", "garbage"))
        .await;
    expect_unauthorized(&mut bad_header).await;
}

#[tokio::test]
async fn token_in_subprotocol_is_accepted_and_not_echoed() {
    let server = start(&["--jwt_secret=qwerty"]).await;
    let mut ws = server
        .ws_with(
            WsRequest::new("/cable")
                .protocol("actioncable-v1-json")
                .protocol(&format!("anycable-token.{SPEC_TOKEN}")),
        )
        .await;
    assert_eq!(
        ws.response.header("sec-websocket-protocol"),
        Some("actioncable-v1-json")
    );
    ws.expect_welcome().await;

    // Token entry first: still never selected.
    let mut ws = server
        .ws_with(
            WsRequest::new("/cable")
                .protocol(&format!("anycable-token.{SPEC_TOKEN}"))
                .protocol("actioncable-v1-json"),
        )
        .await;
    assert_eq!(
        ws.response.header("sec-websocket-protocol"),
        Some("actioncable-v1-json")
    );
    ws.expect_welcome().await;
}

#[tokio::test]
async fn bad_token_in_subprotocol_is_rejected() {
    let server = start(&["--jwt_secret=other"]).await;
    let mut ws = server
        .ws_with(
            WsRequest::new("/cable")
                .protocol("actioncable-v1-json")
                .protocol(&format!("anycable-token.{SPEC_TOKEN}")),
        )
        .await;
    expect_unauthorized(&mut ws).await;
}

#[tokio::test]
async fn jwt_param_renames_query_and_header() {
    let server = start(&["--jwt_secret=qwerty", "--jwt_param=token", "--enforce_jwt"]).await;
    let mut ws = connect(&server, &format!("/cable?token={SPEC_TOKEN}")).await;
    ws.expect_welcome().await;
    let mut ws = server
        .ws_with(WsRequest::new("/cable").header("X-Token", SPEC_TOKEN))
        .await;
    ws.expect_welcome().await;
    // The default name is no longer read.
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}")).await;
    expect_unauthorized(&mut ws).await;
    let mut ws = server
        .ws_with(WsRequest::new("/cable").header("X-JID", SPEC_TOKEN))
        .await;
    expect_unauthorized(&mut ws).await;
}

// --- JWT validation ----------------------------------------------------------------------------

#[tokio::test]
async fn wrong_secret_is_unauthorized() {
    let server = start(&["--jwt_secret=not-qwerty", "--noauth"]).await;
    // --noauth does not rescue an invalid token.
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}")).await;
    expect_unauthorized(&mut ws).await;
}

#[tokio::test]
async fn tampered_or_garbage_tokens_are_unauthorized() {
    let server = start(&["--jwt_secret=qwerty"]).await;
    let mut tampered = SPEC_TOKEN.to_string();
    tampered.pop();
    tampered.push(if SPEC_TOKEN.ends_with('A') { 'B' } else { 'A' });
    // Payload swapped for another user, signature kept.
    let other = token("qwerty", "{\"user_id\":1}");
    let parts: Vec<&str> = other.split('.').collect();
    let spec_parts: Vec<&str> = SPEC_TOKEN.split('.').collect();
    let swapped = format!("{}.{}.{}", spec_parts[0], parts[1], spec_parts[2]);
    // alg none
    let none = {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(br#"{"ext":"{\"user_id\":42}"}"#)
        )
    };
    for bad in [
        tampered.as_str(),
        swapped.as_str(),
        none.as_str(),
        "abc",
        "a.b.c",
    ] {
        let mut ws = connect(&server, &format!("/cable?jid={bad}")).await;
        expect_unauthorized(&mut ws).await;
    }
}

#[tokio::test]
async fn expired_spec_token_gives_token_expired() {
    let server = start(&["--jwt_secret=qwerty"]).await;
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_EXPIRED_TOKEN}")).await;
    ws.expect_disconnect("token_expired", false, 1000, Some("Auth Failed"))
        .await;
}

#[tokio::test]
async fn freshly_expired_token_gives_token_expired_but_bad_signature_wins() {
    let server = start(&["--jwt_secret=s3"]).await;
    let expired = jwt("s3", &json!({"ext": "{\"u\":1}", "exp": now_secs() - 5}));
    let mut ws = connect(&server, &format!("/cable?jid={expired}")).await;
    ws.expect_disconnect("token_expired", false, 1000, Some("Auth Failed"))
        .await;
    // Signature is checked first: a badly signed expired token is unauthorized.
    let expired_other = jwt("zz", &json!({"ext": "{\"u\":1}", "exp": now_secs() - 5}));
    let mut ws = connect(&server, &format!("/cable?jid={expired_other}")).await;
    expect_unauthorized(&mut ws).await;
}

#[tokio::test]
async fn token_not_yet_valid_is_unauthorized() {
    let server = start(&["--jwt_secret=s3"]).await;
    let early = jwt("s3", &json!({"ext": "{\"u\":1}", "nbf": now_secs() + 3600}));
    let mut ws = connect(&server, &format!("/cable?jid={early}")).await;
    expect_unauthorized(&mut ws).await;
}

#[tokio::test]
async fn token_without_exp_is_accepted() {
    let server = start(&["--jwt_secret=s3"]).await;
    let forever = jwt("s3", &json!({"ext": "{\"u\":1}"}));
    let mut ws = connect(&server, &format!("/cable?jid={forever}")).await;
    ws.expect_welcome().await;
}

#[tokio::test]
async fn hs512_tokens_are_accepted() {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS512","typ":"JWT"}"#),
        b64(json!({"ext": "{\"u\":5}", "exp": now_secs() + 600})
            .to_string()
            .as_bytes())
    );
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(b"s3").unwrap();
    mac.update(input.as_bytes());
    let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
    let server = start(&["--jwt_secret=s3"]).await;
    let mut ws = connect(&server, &format!("/cable?jid={token}")).await;
    ws.expect_welcome().await;
}

#[tokio::test]
async fn missing_token_with_enforcement_is_unauthorized_even_with_noauth() {
    let server = start(&["--jwt_secret=qwerty", "--enforce_jwt", "--noauth"]).await;
    let mut ws = server.ws().await;
    expect_unauthorized(&mut ws).await;
    // A valid token still gets in.
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}")).await;
    ws.expect_welcome().await;
}

#[tokio::test]
async fn missing_token_without_enforcement_falls_through_to_noauth() {
    let server = start(&["--jwt_secret=qwerty", "--noauth"]).await;
    let (_ws, _) = server.ws_welcomed().await;
}

#[tokio::test]
async fn missing_token_without_enforcement_or_noauth_is_unauthorized() {
    let server = start(&["--jwt_secret=qwerty", "--norpc"]).await;
    let mut ws = server.ws().await;
    expect_unauthorized(&mut ws).await;
}

#[tokio::test]
async fn valid_token_without_string_ext_closes_1011_without_a_message() {
    let server = start(&["--jwt_secret=s3", "--noauth"]).await;
    for claims in [
        json!({"exp": now_secs() + 600}),
        json!({"ext": {"user_id": 1}, "exp": now_secs() + 600}),
        json!({"ext": 42}),
    ] {
        let token = jwt("s3", &claims);
        let mut ws = connect(&server, &format!("/cable?jid={token}")).await;
        let (code, reason) = ws.expect_close().await;
        assert_eq!(
            (code, reason.as_str()),
            (1011, "Auth Error"),
            "claims {claims}"
        );
    }
}

#[tokio::test]
async fn default_mode_asks_the_backend_and_closes_1011_when_it_is_down() {
    // Like AnyCable-Go: without --norpc the backend decides; an unreachable one is an auth error.
    let server = start(&["--rpc_host=127.0.0.1:9", "--rpc_command_timeout=500"]).await;
    let mut ws = server.ws().await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!((code, reason.as_str()), (1011, "Auth Error"));
    // JWT still authenticates without the backend.
    let server = start(&["--secret=qwerty", "--rpc_host=127.0.0.1:9"]).await;
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}")).await;
    ws.expect_welcome().await;
}

#[tokio::test]
async fn secret_alone_enables_jwt() {
    let server = start(&["--secret=qwerty", "--norpc"]).await;
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}")).await;
    ws.expect_welcome().await;
    let mut ws = server.ws().await;
    expect_unauthorized(&mut ws).await;
}

#[tokio::test]
async fn jwt_secret_wins_over_secret() {
    let server = start(&["--secret=qwerty", "--jwt_secret=different"]).await;
    let mut ws = connect(&server, &format!("/cable?jid={SPEC_TOKEN}")).await;
    expect_unauthorized(&mut ws).await;
    let ok = token("different", "{\"u\":2}");
    let mut ws = connect(&server, &format!("/cable?jid={ok}")).await;
    ws.expect_welcome().await;
}

#[tokio::test]
async fn library_issued_tokens_verify() {
    let token =
        anycable_rs::identity::issue_token("lib-secret", "{\"id\":7}", Some(now_secs() + 60));
    let server = start(&["--jwt_secret=lib-secret"]).await;
    let mut ws = connect(&server, &format!("/cable?jid={token}")).await;
    ws.expect_welcome().await;
}

// --- Origins -----------------------------------------------------------------------------------

#[tokio::test]
async fn allowed_origins_are_checked_before_the_upgrade() {
    let server = start(&["--noauth", "--allowed_origins=*.example.com,localhost:3000"]).await;
    for origin in [
        "https://a.example.com",
        "http://deep.sub.example.com",
        "http://localhost:3000",
        "HTTP://LOCALHOST:3000",
    ] {
        let mut ws = server
            .ws_with(WsRequest::new("/cable").header("Origin", origin))
            .await;
        ws.expect_welcome().await;
    }
    for origin in [
        Some("http://localhost:3001"),
        Some("http://localhost"),
        Some("https://evil.com"),
        Some("https://example.com.evil.com"),
        Some("https://example.com"),
        None,
    ] {
        let mut request = WsRequest::new("/cable");
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        match server.try_ws(request).await {
            Ok(_) => panic!("origin {origin:?} was allowed"),
            Err(resp) => {
                assert_eq!(resp.status, 403, "origin {origin:?}: {resp:?}");
                assert!(resp.body.contains("Forbidden"), "{resp:?}");
                assert_eq!(resp.header("sec-websocket-version"), Some("13"), "{resp:?}");
            }
        }
    }
}

#[tokio::test]
async fn no_allowed_origins_means_no_check() {
    let server = start(&["--noauth"]).await;
    let mut ws = server
        .ws_with(WsRequest::new("/cable").header("Origin", "https://anything.test"))
        .await;
    ws.expect_welcome().await;
}

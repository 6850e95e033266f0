//! An SSE request as a client sends it: the GET query (subscription parameters,
//! `history_since`, `raw`), the headers the server reads (`Last-Event-ID`, `X-Request-ID`, the
//! token header and sub-protocols, the headers and cookies passed to the backend) and the POST
//! body (JSON Lines).
#![no_main]

use std::sync::OnceLock;

use anycable_rs::config::Config;
use anycable_rs::fuzzing::{sse_from_body, sse_from_query, sse_raw_mode, PlainTurboName};
use anycable_rs::transport::{connection_id, find_token, EnvBuilder};
use arbitrary::Arbitrary;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Request;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct SseRequest<'a> {
    query: Option<&'a str>,
    last_event_id: Option<&'a str>,
    plain_turbo_name: u8,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
}

/// An env builder that passes cookies (filtered) and a few headers to the backend, with JWT on.
fn env_builder() -> &'static EnvBuilder {
    static BUILDER: OnceLock<EnvBuilder> = OnceLock::new();
    BUILDER.get_or_init(|| {
        let mut config = Config::default();
        config.rpc.proxy_headers = vec!["Cookie".into(), "Origin".into(), "X-Api-Key".into()];
        config.rpc.proxy_cookies = vec!["session".into(), "locale".into()];
        EnvBuilder::new(&config, true, false)
    })
}

fuzz_target!(|input: SseRequest| {
    let plain_turbo_name = match input.plain_turbo_name % 3 {
        0 => PlainTurboName::Refused,
        1 => PlainTurboName::Turbo,
        _ => PlainTurboName::PublicStream,
    };
    sse_raw_mode(input.query);
    let _ = sse_from_query(input.query, input.last_event_id, plain_turbo_name);
    let _ = sse_from_body(input.body);

    let uri = match input.query {
        Some(query) => format!("/events?{query}"),
        None => "/events".to_string(),
    };
    let mut request = Request::builder().uri("/events");
    if let Ok(parsed) = uri.parse::<hyper::Uri>() {
        request = request.uri(parsed);
    }
    let Ok(mut request) = request.body(()) else {
        return;
    };
    for (name, value) in input.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    let query = request.uri().query();
    let _ = find_token(request.headers(), query, "jid");
    let _ = connection_id(request.headers());
    let env = env_builder().build(&request);
    assert!(env
        .url
        .ends_with(request.uri().path_and_query().map_or("/", |p| p.as_str())));
});

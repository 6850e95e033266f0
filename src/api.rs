//! The REST API (`--api_path`, default `/api`): `POST <path>/publish` (a publication, a batch or a
//! remote command, exactly as the HTTP broadcaster takes them) and
//! `GET <path>/presence/<stream>/users` (the presence records of a stream).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::broadcast::http::{bearer_matches, publish_body};
use crate::http::{plain, Body};
use crate::http::{with_cors, AllowedOrigins};
use crate::node::{Node, PresenceLookup};

/// The REST API endpoint, mounted under its base path.
pub struct ApiEndpoint {
    node: Arc<Node>,
    /// Base path without a trailing slash (`/api`).
    base: String,
    /// Expected bearer key; `None` accepts every request (`--public`).
    key: Option<String>,
    /// `Some` when CORS headers are enabled.
    cors: Option<AllowedOrigins>,
}

impl ApiEndpoint {
    pub fn new(
        node: Arc<Node>,
        base: &str,
        key: Option<String>,
        cors: Option<AllowedOrigins>,
    ) -> ApiEndpoint {
        ApiEndpoint {
            node,
            base: base.trim_end_matches('/').to_string(),
            key,
            cors,
        }
    }

    /// Whether `path` is under the base path.
    pub fn serves(&self, path: &str) -> bool {
        path.strip_prefix(self.base.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        with_cors(self.cors.as_ref(), request, |request| self.respond(request)).await
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        if self.cors.is_some() && request.method() == Method::OPTIONS {
            return plain(StatusCode::OK, "");
        }
        // Authorization comes first, so a client without the key learns nothing about which
        // paths exist (the reference answers 404 before checking the key).
        if !self.authorized(&request) {
            return plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
        }
        let rest = request.uri().path()[self.base.len()..].to_string();
        if rest == "/publish" {
            return self.publish(request).await;
        }
        match presence_stream(&rest) {
            Some(stream) => self.presence(request, &stream),
            None => plain(StatusCode::NOT_FOUND, "404 page not found\n"),
        }
    }

    async fn publish(&self, request: Request<Incoming>) -> Response<Body> {
        if request.method() != Method::POST {
            return plain(StatusCode::UNPROCESSABLE_ENTITY, "use POST\n");
        }
        publish_body(&*self.node, request.into_body()).await
    }

    fn presence(&self, request: Request<Incoming>, stream: &str) -> Response<Body> {
        if request.method() != Method::GET {
            return plain(StatusCode::UNPROCESSABLE_ENTITY, "use GET\n");
        }
        match self.node.presence_users(stream) {
            PresenceLookup::Found(json) => {
                let mut response = Response::new(Body::from(json));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            PresenceLookup::Unsupported => plain(
                StatusCode::NOT_IMPLEMENTED,
                "presence is not supported by the broker (use --broker=memory)\n",
            ),
        }
    }

    /// Bearer key check in constant time.
    fn authorized(&self, request: &Request<Incoming>) -> bool {
        bearer_matches(request, self.key.as_deref())
    }
}

/// The stream of `/presence/<stream>/users`, matched on the percent-decoded path as the
/// reference does. Unlike the reference, the stream may contain `/` (Turbo names such as
/// `gid://app/Room/1` do): everything between the fixed prefix and suffix is the stream.
fn presence_stream(rest: &str) -> Option<String> {
    let decoded = percent_decode(rest)?;
    let stream = decoded.strip_prefix("/presence/")?.strip_suffix("/users")?;
    (!stream.is_empty()).then(|| stream.to_string())
}

/// `%XX` decoding; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_paths_match_on_the_decoded_path() {
        assert_eq!(
            presence_stream("/presence/chat_1/users").as_deref(),
            Some("chat_1")
        );
        assert_eq!(
            presence_stream("/presence/chat%201/users").as_deref(),
            Some("chat 1")
        );
        assert_eq!(
            presence_stream("/presence/gid%3A%2F%2Fapp%2FRoom%2F1/users").as_deref(),
            Some("gid://app/Room/1")
        );
        assert_eq!(
            presence_stream("/presence/a/b/users").as_deref(),
            Some("a/b")
        );
        assert_eq!(
            presence_stream("/presence/x/users/users").as_deref(),
            Some("x/users")
        );
        assert_eq!(presence_stream("/presence//users"), None);
        assert_eq!(presence_stream("/presence/users"), None);
        assert_eq!(presence_stream("/presence/x/users/more"), None);
        assert_eq!(presence_stream("/presence/%zz/users"), None);
    }
}

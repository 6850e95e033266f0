//! The HTTP broadcaster: `POST /_broadcast` with a publication, a batch or a remote command.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::http::{plain, read_body, Body, BodyReadError};
use crate::http::{with_cors, AllowedOrigins};
use crate::metrics::Counter;
use crate::node::PublicationHandler;
use crate::publication::parse;

/// Publications larger than this are refused with 413 (the reference has no limit).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The broadcast endpoint.
pub struct HttpBroadcaster {
    node: Arc<dyn PublicationHandler>,
    /// Expected bearer token; `None` accepts every request.
    key: Option<String>,
    /// `Some` when CORS headers are enabled.
    cors: Option<AllowedOrigins>,
}

impl HttpBroadcaster {
    pub fn new(
        node: Arc<dyn PublicationHandler>,
        key: Option<String>,
        cors: Option<AllowedOrigins>,
    ) -> HttpBroadcaster {
        HttpBroadcaster { node, key, cors }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        with_cors(self.cors.as_ref(), request, |request| self.respond(request)).await
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        if self.cors.is_some() && request.method() == Method::OPTIONS {
            return plain(StatusCode::OK, "");
        }
        if request.method() != Method::POST {
            return plain(StatusCode::UNPROCESSABLE_ENTITY, "use POST\n");
        }
        if !self.authorized(&request) {
            return plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
        }
        publish_body(&*self.node, request.into_body()).await
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        bearer_matches(request, self.key.as_deref())
    }
}

/// Whether `request` carries `Authorization: Bearer <key>`, compared in constant time. Without
/// a key every request passes.
pub fn bearer_matches<B>(request: &Request<B>, key: Option<&str>) -> bool {
    let Some(key) = key else {
        return true;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(key.as_bytes()))
}

/// Reads a publication body (a publication, a batch or a remote command) and applies it: the
/// shared core of `/_broadcast` and the REST API's `/publish`.
pub async fn publish_body(node: &dyn PublicationHandler, body: Incoming) -> Response<Body> {
    let body = match read_body(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            tracing::debug!("publication body refused: {error}");
            let response = match error {
                BodyReadError::TooLarge => {
                    plain(StatusCode::PAYLOAD_TOO_LARGE, "publication too large\n")
                }
                BodyReadError::TimedOut => plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive in time\n",
                ),
                BodyReadError::Busy => plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many slow requests, retry later\n",
                ),
                BodyReadError::Unreadable => {
                    plain(StatusCode::UNPROCESSABLE_ENTITY, "failed to read body\n")
                }
            };
            return error.add_headers(response);
        }
    };
    node.metrics().inc(Counter::Publications);
    match parse(&body) {
        Ok(inbound) => match node.publish(inbound).await {
            Ok(()) => plain(StatusCode::CREATED, ""),
            // As in the reference: the broker refused a publication (the ones before it in a
            // batch were delivered).
            Err(_) => plain(
                StatusCode::NOT_IMPLEMENTED,
                "the broker could not store the publication\n",
            ),
        },
        Err(error) => {
            node.metrics().inc(Counter::FailedBroadcastMsg);
            tracing::warn!("failed to parse a publication: {error}");
            plain(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid publication: expected {\"stream\":\"...\",\"data\":\"...\"}, an array of them, or a remote command\n",
            )
        }
    }
}

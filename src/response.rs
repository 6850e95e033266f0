//! Small HTTP response helpers shared by the endpoints.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// The body type of every response this server builds.
pub type Body = Full<Bytes>;

/// A response with a static plain-text body.
pub fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

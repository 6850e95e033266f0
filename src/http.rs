//! HTTP pieces shared by the listeners and every endpoint: the response body type and small
//! response helpers, CORS, and the request extensions the listener attaches (the peer
//! address, the `--max-conn` permit, the connection's abort handle).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// The body type of every response this server builds.
pub type Body = Full<Bytes>;

/// A response with a static plain-text body.
pub fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// The TCP peer of a request, put in its extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Lets a handler drop the whole HTTP connection, e.g. when a streaming client stopped reading
/// and the response can never be finished.
#[derive(Clone)]
pub struct ConnectionAbort(pub CancellationToken);

/// Keeps a `--max-conn` slot taken while a request (or the WebSocket it became) is alive.
#[derive(Clone)]
pub struct ConnectionPermit(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl ConnectionPermit {
    pub fn new(permit: Arc<OwnedSemaphorePermit>) -> ConnectionPermit {
        ConnectionPermit(permit)
    }
}

/// Headers a browser may send cross-origin to the SSE and broadcast endpoints.
const CORS_ALLOW_HEADERS: &str =
    "Origin, X-Requested-With, X-Request-ID, Content-Type, Accept, X-CSRF-Token, Authorization";

/// Runs `respond` and, when CORS is on (`origins` is `Some`), adds the CORS headers for the
/// request's `Origin` to its response.
pub async fn with_cors<B, Fut>(
    origins: Option<&AllowedOrigins>,
    request: Request<hyper::body::Incoming>,
    respond: impl FnOnce(Request<hyper::body::Incoming>) -> Fut,
) -> hyper::Response<B>
where
    Fut: std::future::Future<Output = hyper::Response<B>>,
{
    let origin = request
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut response = respond(request).await;
    if let Some(origins) = origins {
        add_cors_headers(response.headers_mut(), origins, origin.as_deref());
    }
    response
}

/// CORS response headers: `*` without `--allowed_origins`, else the request's origin when it is
/// allowed (never a rejection: only the WebSocket upgrade enforces origins).
pub fn add_cors_headers(headers: &mut HeaderMap, origins: &AllowedOrigins, origin: Option<&str>) {
    use hyper::header::{self, HeaderValue};
    let allow_origin = if origins.is_restricted() {
        origin
            .filter(|o| origins.allows(Some(o)))
            .map(str::to_lowercase)
    } else {
        Some("*".to_string())
    };
    if let Some(value) = allow_origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
}

/// `--allowed_origins`: a list of hosts (with port), `*suffix` entries matching by suffix.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    entries: Vec<String>,
}

impl AllowedOrigins {
    pub fn new(entries: &[String]) -> AllowedOrigins {
        let entries = entries
            .iter()
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        AllowedOrigins { entries }
    }

    /// An empty list allows everything.
    pub fn is_restricted(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Checks an `Origin` header value.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        if !self.is_restricted() {
            return true;
        }
        let Some(host) = origin.and_then(origin_host) else {
            return false;
        };
        self.entries
            .iter()
            .any(|entry| match entry.strip_prefix('*') {
                Some(suffix) => host.ends_with(suffix),
                None => *entry == host,
            })
    }
}

/// The `host[:port]` of an origin URL, lower-cased.
fn origin_host(origin: &str) -> Option<String> {
    let url = url::Url::parse(&origin.to_lowercase()).ok()?;
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_matching() {
        let origins = AllowedOrigins::new(&["*.example.com".into(), "localhost:3000".into()]);
        assert!(origins.allows(Some("https://a.example.com")));
        assert!(origins.allows(Some("http://LOCALHOST:3000")));
        assert!(!origins.allows(Some("http://localhost:3001")));
        assert!(!origins.allows(Some("https://example.com")));
        assert!(!origins.allows(Some("https://evil.com")));
        assert!(!origins.allows(None));
        assert!(AllowedOrigins::new(&[]).allows(None));
    }
}

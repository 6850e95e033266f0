//! HTTP pieces shared by the listeners and every endpoint: the response body type and small
//! response helpers, CORS, reading request bodies under a deadline, and the request extensions
//! the listener attaches (the peer address, the `--max-conn` permit, the connection's abort
//! handle).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, RETRY_AFTER};
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

/// The body type of every response this server builds.
pub type Body = Full<Bytes>;

/// A response with a static plain-text body.
pub fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// The whole request body must arrive within this time of the handler starting to read it
/// (right after the headers). A fixed deadline rather than a minimum transfer rate: it bounds
/// how long any one request can hold its connection and its slot, however the bytes are
/// paced, and 16 MiB (the largest publication) in 10 s is well within a backend's link.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A body still incomplete after this long is a slow one, and needs one of the
/// [`MAX_SLOW_BODY_READS`] slots to go on.
pub const SLOW_BODY_AFTER: Duration = Duration::from_secs(1);

/// How many slow bodies may be read at once, process-wide (every listener and endpoint
/// together). Bodies that complete within [`SLOW_BODY_AFTER`], which is every normal
/// publication, never take a slot, so a burst of ordinary requests is never refused.
pub const MAX_SLOW_BODY_READS: usize = 64;

static SLOW_BODY_READS: Semaphore = Semaphore::const_new(MAX_SLOW_BODY_READS);
/// Set while slow bodies are being refused, so a burst is logged once, not per request.
static SLOW_BODY_READS_FULL: AtomicBool = AtomicBool::new(false);
static SLOW_BODIES_REFUSED: AtomicU64 = AtomicU64::new(0);

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyReadError {
    #[error("the body is larger than the limit")]
    TooLarge,
    #[error("the body did not arrive within {BODY_READ_TIMEOUT:?}")]
    TimedOut,
    #[error("too many slow request bodies are being read ({MAX_SLOW_BODY_READS})")]
    Busy,
    #[error("the body could not be read")]
    Unreadable,
}

impl BodyReadError {
    /// Adds what a timed-out or refused request is answered with to `response`: the connection
    /// is closed (its unread body makes it unusable anyway), and a refused client may retry.
    pub fn add_headers<B>(self, mut response: Response<B>) -> Response<B> {
        let headers = response.headers_mut();
        match self {
            BodyReadError::TimedOut => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            BodyReadError::Busy => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            BodyReadError::TooLarge | BodyReadError::Unreadable => {}
        }
        response
    }
}

/// Reads a whole request body of at most `limit` bytes under [`BODY_READ_TIMEOUT`]. A body that
/// takes longer than [`SLOW_BODY_AFTER`] must get a slow-read slot or is refused at once
/// ([`BodyReadError::Busy`], answered with 503): a flood of stalled uploads cannot pile up.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyReadError> {
    let started = Instant::now();
    let collect = Limited::new(body, limit).collect();
    tokio::pin!(collect);
    let collected = match timeout(SLOW_BODY_AFTER, &mut collect).await {
        Ok(collected) => collected,
        Err(_) => {
            let _slot = enter_slow_read()?;
            timeout_at(started + BODY_READ_TIMEOUT, &mut collect)
                .await
                .map_err(|_| BodyReadError::TimedOut)?
        }
    };
    match collected {
        Ok(body) => Ok(body.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(BodyReadError::TooLarge),
        Err(_) => Err(BodyReadError::Unreadable),
    }
}

/// Takes a slow-read slot, logging when refusals start and, at the next success, how many
/// requests were refused meanwhile.
fn enter_slow_read() -> Result<tokio::sync::SemaphorePermit<'static>, BodyReadError> {
    match SLOW_BODY_READS.try_acquire() {
        Ok(slot) => {
            if SLOW_BODY_READS_FULL.swap(false, Ordering::Relaxed) {
                let refused = SLOW_BODIES_REFUSED.swap(0, Ordering::Relaxed);
                tracing::warn!("slow request bodies: {refused} request(s) refused with 503 while all {MAX_SLOW_BODY_READS} slots were taken");
            }
            Ok(slot)
        }
        Err(_) => {
            SLOW_BODIES_REFUSED.fetch_add(1, Ordering::Relaxed);
            if !SLOW_BODY_READS_FULL.swap(true, Ordering::Relaxed) {
                tracing::warn!("{MAX_SLOW_BODY_READS} request bodies are arriving slowly: refusing more slow ones with 503 until a slot frees");
            }
            Err(BodyReadError::Busy)
        }
    }
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

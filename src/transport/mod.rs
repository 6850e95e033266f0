//! Client transports. Each one turns an HTTP request into a session and moves frames between
//! the socket and the session's outbox: `ws` (WebSocket) and `sse` (Server-Sent Events).

pub mod live;
pub mod sse;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use hyper::{HeaderMap, Request};
use rand::Rng;

use crate::config::Config;
use crate::http::RemoteAddr;
use crate::session::RequestEnv;

pub use crate::config::Precision;

impl Precision {
    /// The `?ptp=` query parameter: `s`, `ms` or `ns`; anything else means seconds, as the
    /// reference does (the `--ping_timestamp_precision` setting is checked at load instead).
    pub fn parse(value: &str) -> Precision {
        crate::config::Choice::from_name(value).unwrap_or(Precision::Seconds)
    }

    /// The current Unix time in this unit.
    pub fn timestamp(self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        match self {
            Precision::Seconds => now.as_secs() as i64,
            Precision::Millis => now.as_millis() as i64,
            Precision::Nanos => now.as_nanos() as i64,
        }
    }
}

/// The first ping comes at a random point in [0.5, 1.5) × interval so that clients connected
/// at the same moment do not all get pinged together.
pub fn first_ping_delay(interval: std::time::Duration) -> std::time::Duration {
    interval.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// Builds what the backend learns about a connection request (`env.url`, `env.headers`).
#[derive(Debug, Clone)]
pub struct EnvBuilder {
    /// `--headers`, lower-cased.
    headers: Vec<String>,
    /// `--proxy-cookies`; empty keeps every cookie.
    cookies: Vec<String>,
    /// `x-<jwt_param>` when JWT is enabled: the token is passed on to the backend.
    jwt_header: Option<String>,
    scheme: &'static str,
    /// Without a backend nobody reads the env: every session shares this empty one instead of
    /// keeping its own copy of the URL and headers.
    unused: Option<Arc<RequestEnv>>,
}

impl EnvBuilder {
    pub fn new(config: &Config, jwt_enabled: bool, tls: bool) -> EnvBuilder {
        let backend = config.rpc_impl() != crate::config::RpcImpl::None;
        EnvBuilder {
            unused: (!backend).then(Arc::default),
            headers: config
                .rpc
                .proxy_headers
                .iter()
                .map(|h| h.to_lowercase())
                .collect(),
            cookies: config.rpc.proxy_cookies.clone(),
            jwt_header: jwt_enabled.then(|| format!("x-{}", config.jwt.param.to_lowercase())),
            scheme: if tls { "https" } else { "http" },
        }
    }

    pub fn build<B>(&self, request: &Request<B>) -> Arc<RequestEnv> {
        if let Some(unused) = &self.unused {
            return unused.clone();
        }
        let request_headers = request.headers();
        let mut headers = HashMap::new();
        for name in &self.headers {
            let Some(value) = request_headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
            else {
                continue;
            };
            let value = if name == "cookie" && !self.cookies.is_empty() {
                filter_cookies(value, &self.cookies)
            } else {
                value.to_string()
            };
            if !value.is_empty() {
                headers.insert(name.clone(), value);
            }
        }
        if let Some(jwt_header) = &self.jwt_header {
            let token = request_headers
                .get(jwt_header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| {
                    offered_protocols(request_headers)
                        .find_map(|p| p.strip_prefix("anycable-token.").map(str::to_string))
                });
            if let Some(token) = token {
                headers.insert(jwt_header.clone(), token);
            }
        }
        if let Some(RemoteAddr(peer)) = request.extensions().get::<RemoteAddr>() {
            headers.insert("REMOTE_ADDR".into(), peer.ip().to_string());
        }
        let uri = request.uri();
        let url = if uri.authority().is_some() {
            uri.to_string()
        } else {
            let host = request_headers
                .get(hyper::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            format!("{}://{host}{path}", self.scheme)
        };
        Arc::new(RequestEnv::new(url, headers))
    }
}

/// Keeps only the named cookies, as `name=value;` pairs.
fn filter_cookies(header: &str, allowed: &[String]) -> String {
    header
        .split(';')
        .filter_map(|piece| piece.trim().split_once('='))
        .filter(|(name, _)| allowed.iter().any(|a| a == name))
        .map(|(name, value)| format!("{name}={value};"))
        .collect()
}

/// Query parameters of a request URI (first value wins, as in Go's `url.Values.Get`).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The connection id: the `X-Request-ID` header when a proxy set one, else a random id.
pub fn connection_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(random_id, str::to_string)
}

/// A 21-character URL-safe random id (nanoid's default alphabet and length).
pub fn random_id() -> String {
    const ALPHABET: &[u8] = b"_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..21)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Finds the JWT of a request: `X-<param>` header, then the `anycable-token.<jwt>` entry of
/// the WebSocket sub-protocols, then the `?<param>=` query parameter.
pub fn find_token(headers: &HeaderMap, query: Option<&str>, param: &str) -> Option<String> {
    let header_name = format!("x-{param}");
    if let Some(value) = headers
        .get(header_name.as_str())
        .and_then(|v| v.to_str().ok())
    {
        return Some(value.to_string());
    }
    let from_protocols = offered_protocols(headers)
        .find_map(|p| p.strip_prefix("anycable-token.").map(str::to_string));
    from_protocols.or_else(|| query_param(query, param))
}

/// Entries of `Sec-WebSocket-Protocol`, trimmed, in the client's order.
pub fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_in_order() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            find_token(&headers, Some("jid=q"), "jid").as_deref(),
            Some("q")
        );
        headers.insert(
            "sec-websocket-protocol",
            "actioncable-v1-json, anycable-token.p".parse().unwrap(),
        );
        assert_eq!(
            find_token(&headers, Some("jid=q"), "jid").as_deref(),
            Some("p")
        );
        headers.insert("x-jid", "h".parse().unwrap());
        assert_eq!(
            find_token(&headers, Some("jid=q"), "jid").as_deref(),
            Some("h")
        );
        assert_eq!(
            find_token(&HeaderMap::new(), Some("token=t"), "token").as_deref(),
            Some("t")
        );
    }

    #[test]
    fn cookie_filter_keeps_named_cookies() {
        let allowed = vec!["a".to_string(), "c".to_string()];
        assert_eq!(filter_cookies("a=1; b=2; c=x=y", &allowed), "a=1;c=x=y;");
        assert_eq!(filter_cookies("b=2", &allowed), "");
    }

    #[test]
    fn random_ids_are_nanoid_shaped() {
        let id = random_id();
        assert_eq!(id.len(), 21);
        assert_ne!(id, random_id());
    }
}

//! The listeners: TLS, the main listener (WebSocket, SSE, health) and the endpoints that may
//! share it or get a listener of their own (HTTP broadcast, Prometheus metrics, REST API).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::context::StartContext;
use super::AppError;
use crate::api::ApiEndpoint;
use crate::broadcast::http::HttpBroadcaster;
use crate::config::{BroadcastAdapter, Config};
use crate::http::AllowedOrigins;
use crate::metrics::{Exporter, Metrics};
use crate::node::Node;
use crate::readiness::Status;
use crate::server::{tls, Listener, PathPattern, Routes};
use crate::transport::live::{Drain, LiveOutboxes};
use crate::transport::sse::SseEndpoint;
use crate::transport::ws::WsEndpoint;
use crate::transport::EnvBuilder;

/// The bound listeners and what each routes. Endpoints on the main host and port join the main
/// listener; another port on the main host shares a listener already bound to it; another host
/// always gets a listener of its own.
pub(super) struct Listeners {
    host: String,
    main_port: u16,
    /// `--max-conn`, for listeners on the main host.
    max_conn: usize,
    tls: Option<TlsAcceptor>,
    scheme: &'static str,
    main: (Listener, Routes),
    extra: Vec<(Listener, Routes)>,
}

impl Listeners {
    /// TLS, then the main listener with the WebSocket and SSE endpoints, the health path and
    /// the readiness path.
    pub async fn bind_main(
        config: &Config,
        node: &Arc<Node>,
        jwt_enabled: bool,
        readiness: Option<Arc<Status>>,
        cx: &StartContext,
    ) -> Result<Listeners, AppError> {
        let tls = match (&config.server.ssl_cert, &config.server.ssl_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            (None, None) => None,
            _ => return Err(AppError::HalfTls),
        };
        let scope = &cx.connections;
        let env_builder = EnvBuilder::new(config, jwt_enabled, tls.is_some());
        // WebSocket and SSE connections, told to close on shutdown.
        let live = LiveOutboxes::watch(
            &scope.shutdown,
            &scope.tracker,
            Drain::from_config(&config.app),
        );
        let ws = Arc::new(WsEndpoint::new(
            config,
            node.clone(),
            env_builder,
            jwt_enabled,
            live.clone(),
            scope.tracker.clone(),
        ));
        let flushers = ws.flushers();
        let routes = Routes {
            health_path: Some(config.server.health_path.clone()),
            readiness: readiness.map(|status| (config.server.readiness_path.clone(), status)),
            ws_paths: config
                .ws
                .paths
                .iter()
                .map(|p| PathPattern::new(p))
                .collect(),
            ws: Some(ws),
            broadcast: None,
            sse: config.sse.enabled.then(|| {
                let sse = SseEndpoint::new(
                    config,
                    node.clone(),
                    EnvBuilder::new(config, jwt_enabled, tls.is_some()),
                    jwt_enabled,
                    live,
                    flushers,
                    scope.tracker.clone(),
                );
                (config.sse.path.clone(), Arc::new(sse))
            }),
            metrics: None,
            api: None,
        };
        let server = &config.server;
        let main = Listener::bind(&server.host, server.port, tls.clone(), server.max_conn).await?;
        Ok(Listeners {
            host: server.host.clone(),
            main_port: server.port,
            max_conn: server.max_conn,
            scheme: if tls.is_some() { "https" } else { "http" },
            tls,
            main: (main, routes),
            extra: Vec::new(),
        })
    }

    pub fn main_addr(&self) -> Option<SocketAddr> {
        self.main.0.local_addr()
    }

    /// Routes an endpoint served at `host:port` ("" = the main host, 0 = the main port).
    /// `own_host_max_conn` limits a listener bound for another host.
    async fn mount(
        &mut self,
        host: &str,
        port: u16,
        own_host_max_conn: usize,
        add: impl FnOnce(&mut Routes),
    ) -> Result<(), AppError> {
        let host = if host.is_empty() {
            self.host.as_str()
        } else {
            host
        };
        let port = if port == 0 { self.main_port } else { port };
        let shared = self
            .extra
            .iter()
            .position(|(l, _)| l.local_addr().is_some_and(|a| a.port() == port));
        let (host, max_conn) = if host != self.host {
            (host.to_string(), own_host_max_conn)
        } else if port == self.main_port {
            add(&mut self.main.1);
            return Ok(());
        } else if let Some(index) = shared {
            add(&mut self.extra[index].1);
            return Ok(());
        } else {
            (self.host.clone(), self.max_conn)
        };
        let listener = Listener::bind(&host, port, self.tls.clone(), max_conn).await?;
        let mut routes = Routes::default();
        add(&mut routes);
        self.extra.push((listener, routes));
        Ok(())
    }

    /// `POST /_broadcast` when `http` is among the broadcast adapters.
    pub async fn mount_http_broadcast(
        &mut self,
        config: &Config,
        node: &Arc<Node>,
    ) -> Result<(), AppError> {
        if !config.broadcast_adapters.contains(&BroadcastAdapter::Http) {
            return Ok(());
        }
        let hb = &config.http_broadcast;
        let cors = hb
            .cors
            .then(|| AllowedOrigins::new(&config.server.allowed_origins));
        let broadcaster = Arc::new(HttpBroadcaster::new(node.clone(), hb.key.clone(), cors));
        let (scheme, host, port, path) = (self.scheme, &self.host, hb.port, hb.path.clone());
        let auth_note = if hb.key.is_some() {
            "authorization required"
        } else {
            "no authorization"
        };
        let cors_note = if hb.cors { ", CORS enabled" } else { "" };
        tracing::info!(
            context = "broadcast",
            provider = "http",
            "Accept broadcast requests at {scheme}://{host}:{port}{path} ({auth_note}{cors_note})"
        );
        if hb.key_derived {
            tracing::info!(
                context = "broadcast",
                provider = "http",
                "auto-generated authorization secret from the application secret"
            );
        }
        self.mount("", port, self.max_conn, |routes| {
            routes.broadcast = Some((path, broadcaster))
        })
        .await
    }

    /// The Prometheus exposition (`--metrics_http`); a host of its own gets a listener without
    /// `--max-conn`.
    pub async fn mount_metrics(
        &mut self,
        config: &Config,
        metrics: &Arc<Metrics>,
    ) -> Result<(), AppError> {
        let settings = &config.metrics;
        if settings.http_path.is_empty() {
            return Ok(());
        }
        let path = settings.http_path.clone();
        let host = match settings.host.as_str() {
            "" => self.host.as_str(),
            other => other,
        };
        let port = match settings.port {
            0 => self.main_port,
            port => port,
        };
        let scheme = self.scheme;
        tracing::info!(
            context = "metrics",
            "Serve metrics at {scheme}://{host}:{port}{path}"
        );
        let route = (
            path,
            Arc::new(Exporter::new(metrics.clone(), &settings.tags)),
        );
        let host = host.to_string();
        self.mount(&host, port, 0, |routes| routes.metrics = Some(route))
            .await
    }

    /// The REST API, when it is enabled (see [`api_endpoint`]).
    pub async fn mount_api(&mut self, config: &Config, node: &Arc<Node>) -> Result<(), AppError> {
        let Some(api) = api_endpoint(config, node, self.scheme) else {
            return Ok(());
        };
        self.mount(&config.api.host, config.api.port, self.max_conn, |routes| {
            routes.api = Some(api)
        })
        .await
    }

    /// Logs what the main listener handles, then serves every listener until shutdown.
    pub fn serve(self, config: &Config, cx: &StartContext) {
        let (scheme, host, port) = (self.scheme, &self.host, self.main_port);
        for path in &config.ws.paths {
            tracing::info!("Handle WebSocket connections at {scheme}://{host}:{port}{path}");
        }
        if config.sse.enabled {
            tracing::info!(
                "Handle SSE requests at {scheme}://{host}:{port}{}",
                config.sse.path
            );
        }
        if !config.server.readiness_path.is_empty() {
            tracing::info!(
                "Handle readiness requests at {scheme}://{host}:{port}{}",
                config.server.readiness_path
            );
        }
        tracing::info!(
            "Handle health requests at {scheme}://{host}:{port}{}",
            config.server.health_path
        );
        let scope = &cx.connections;
        for (listener, routes) in self.extra.into_iter().chain([self.main]) {
            scope.tracker.spawn(listener.serve(
                Arc::new(routes),
                scope.shutdown.clone(),
                scope.tracker.clone(),
            ));
        }
    }
}

/// The REST API when it is protected by a key (`--api_secret`, or derived from `--secret`) or
/// explicitly public (`--public`); otherwise it is not mounted.
fn api_endpoint(config: &Config, node: &Arc<Node>, scheme: &str) -> Option<Arc<ApiEndpoint>> {
    let settings = &config.api;
    if settings.secret.is_none() && !config.public {
        if settings.port != 0 {
            tracing::warn!(
                context = "api",
                "API server is disabled: --api_port is set but there is no --api_secret (or --secret) and no --public"
            );
        } else {
            tracing::info!(
                context = "api",
                "API server is disabled (no --api_secret, --secret or --public)"
            );
        }
        return None;
    }
    let host = match settings.host.as_str() {
        "" => config.server.host.as_str(),
        other => other,
    };
    let port = match settings.port {
        0 => config.server.port,
        port => port,
    };
    let auth_note = if settings.secret.is_some() {
        "authorization required"
    } else {
        "no authorization"
    };
    let cors_note = if settings.cors_headers {
        ", CORS enabled"
    } else {
        ""
    };
    tracing::info!(
        context = "api",
        "Handle API requests at {scheme}://{host}:{port}{} ({auth_note}{cors_note})",
        settings.path
    );
    if settings.secret.is_none() {
        tracing::warn!(
            context = "api",
            "API server is running without authentication"
        );
    }
    let cors = settings
        .cors_headers
        .then(|| AllowedOrigins::new(&settings.cors_hosts));
    Some(Arc::new(ApiEndpoint::new(
        node.clone(),
        &settings.path,
        settings.secret.clone(),
        cors,
    )))
}

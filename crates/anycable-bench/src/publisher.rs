//! Publishes stamped messages: through the HTTP broadcaster (`POST /_broadcast`) over one
//! keep-alive connection, or through Redis (`redis_publisher.rs`).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::options::Broadcaster;
use crate::redis_publisher::RedisPublisher;
use crate::target::Target;

pub enum Publisher {
    Http(HttpPublisher),
    Redis(RedisPublisher),
}

impl Publisher {
    pub async fn connect(target: &Target, broadcaster: Broadcaster) -> Result<Publisher, String> {
        Ok(match broadcaster {
            Broadcaster::Http => Publisher::Http(
                HttpPublisher::connect(target.addr, target.broadcast_key.clone()).await?,
            ),
            Broadcaster::Redis => {
                Publisher::Redis(RedisPublisher::connect(&target.redis_channel).await?)
            }
        })
    }

    /// Sends one body of [`stamped_publications`].
    pub async fn publish(&mut self, body: String) -> Result<(), String> {
        match self {
            Publisher::Http(http) => http.publish(body).await,
            Publisher::Redis(redis) => redis.publish(body).await,
        }
    }
}

pub struct HttpPublisher {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    key: Option<String>,
}

impl HttpPublisher {
    pub async fn connect(addr: SocketAddr, key: Option<String>) -> Result<HttpPublisher, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("publisher connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("publisher handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(HttpPublisher { sender, addr, key })
    }

    /// Sends one broadcast body and checks for `201 Created`.
    pub async fn publish(&mut self, body: String) -> Result<(), String> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/_broadcast")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json");
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        if status == StatusCode::CREATED {
            Ok(())
        } else {
            Err(format!("broadcast answered {status}"))
        }
    }
}

/// Publications whose data carry a sequence number and the publish time: one JSON object for a
/// single message, an array (one `/_broadcast` request or one `PUBLISH` for the whole batch;
/// both broadcasters accept it) for several.
pub fn stamped_publications(stream: &str, seqs: std::ops::Range<u64>, sent_nanos: u64) -> String {
    let mut publications: Vec<serde_json::Value> = seqs
        .map(|seq| {
            let data = format!("{{\"i\":{seq},\"t\":{sent_nanos}}}");
            serde_json::json!({"stream": stream, "data": data})
        })
        .collect();
    if publications.len() == 1 {
        publications.swap_remove(0).to_string()
    } else {
        serde_json::Value::Array(publications).to_string()
    }
}

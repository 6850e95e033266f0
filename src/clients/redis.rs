//! A small Redis client (RESP2) for what the broadcasters and the Redis pub/sub need:
//! SUBSCRIBE, PING, XGROUP, XREADGROUP, XAUTOCLAIM, XACK, XDEL.
//!
//! One [`Connection`] is one TCP (or TLS, `rediss://`) socket, authenticated (`AUTH`) and on
//! the right database (`SELECT`) when [`Connection::open`] returns. Reading is cancel-safe:
//! bytes are buffered in the connection and a reply is only taken out once it is complete,
//! so [`Connection::read`] can sit in a `select!` next to timers and shutdown.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    ring::default_provider, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::config::RedisConfig;

/// Connecting (TCP, TLS, AUTH, SELECT) must finish within this time.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies larger than this are treated as a protocol error (Redis' own limit is 512 MB).
const MAX_REPLY_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL {0}")]
    Url(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("Redis TLS: {0}")]
    Trust(#[from] crate::trust::TrustError),
    #[error("Redis TLS: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
    #[error("Redis TLS: invalid server name {0:?}")]
    ServerName(String),
    #[error("Redis TLS: {0}")]
    Handshake(#[source] std::io::Error),
    #[error("Redis TLS: --redis_tls_client_cert_path and --redis_tls_client_key_path must be given together")]
    HalfClientCertificate,
    #[error("cannot connect to Redis at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out connecting to Redis at {0}")]
    ConnectTimeout(String),
    #[error("Redis connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("Redis connection closed by the server")]
    Closed,
    #[error("Redis protocol error: {0}")]
    Protocol(String),
    /// An error reply (`-ERR ...`).
    #[error("Redis error: {0}")]
    Server(String),
}

/// A decoded reply. Null bulk strings and null arrays are both [`Value::Nil`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(bytes) => Some(bytes),
            Value::Simple(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Where and how to connect, parsed once from the configuration.
#[derive(Clone)]
pub struct RedisOptions {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// Set for `rediss://`.
    pub tls: Option<Arc<ClientConfig>>,
    /// Period of the liveness PING on idle connections (`--redis_keepalive_interval`).
    pub keepalive: Duration,
    /// Consecutive failed reconnections before giving up (`redis.max_reconnect_attempts`).
    pub max_reconnect_attempts: u64,
    /// `--redis_sentinels`: when set, `host` is the name of the master set, and every
    /// connection asks the sentinels (in order) where its master is now.
    pub sentinels: Vec<Sentinel>,
}

/// One `--redis_sentinels` entry: address and the sentinel's own credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Sentinel {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("db", &self.db)
            .field("tls", &self.tls.is_some())
            .field(
                "sentinels",
                &self
                    .sentinels
                    .iter()
                    .map(Sentinel::address)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RedisOptions {
    /// Parses `--redis_url` (`redis://[user:pass@]host[:port][/db]`, `rediss://` for TLS, the
    /// scheme may be left out), `--redis_sentinels` and the TLS settings. Clusters are
    /// refused.
    pub fn from_config(config: &RedisConfig) -> Result<RedisOptions, RedisError> {
        if config.url.contains(',') {
            return Err(RedisError::Unsupported(
                "--redis_url: Redis Cluster (a list of URLs) is not implemented yet".into(),
            ));
        }
        let text = config.url.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("redis://{text}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| RedisError::Url(e.to_string()))?;
        let secure = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(RedisError::Url(format!("unknown scheme {other}://"))),
        };
        let (host, username, password) = host_and_credentials(&url)?;
        let path = url.path().trim_matches('/');
        let db = if path.is_empty() {
            0
        } else {
            path.parse()
                .map_err(|_| RedisError::Url(format!("invalid database number {path:?}")))?
        };
        let tls = if secure {
            Some(Arc::new(tls_config(config)?))
        } else {
            None
        };
        Ok(RedisOptions {
            host,
            port: url.port().unwrap_or(6379),
            username,
            password,
            db,
            tls,
            keepalive: Duration::from_secs(config.keepalive_interval_secs.max(1)),
            max_reconnect_attempts: config.max_reconnect_attempts,
            sentinels: config
                .sentinels
                .iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Sentinel::parse)
                .collect::<Result<_, _>>()?,
        })
    }

    /// `host:port` or the master set and its sentinels, for logs (never the credentials).
    pub fn address(&self) -> String {
        if self.sentinels.is_empty() {
            return host_port(&self.host, self.port);
        }
        let sentinels: Vec<String> = self.sentinels.iter().map(Sentinel::address).collect();
        format!("{} (sentinels: {})", self.host, sentinels.join(","))
    }

    /// The address as a URL without credentials, for log lines.
    pub fn redacted_url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{}", self.address())
    }

    /// Where the data node is: the configured address, or the master the sentinels name.
    async fn data_node(&self) -> Result<(String, u16), RedisError> {
        if self.sentinels.is_empty() {
            return Ok((self.host.clone(), self.port));
        }
        let mut last_error = None;
        for sentinel in &self.sentinels {
            match sentinel.master(&self.host).await {
                Ok(address) => return Ok(address),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| RedisError::Protocol("no sentinel".into())))
    }
}

impl Sentinel {
    /// `host:port`, `[user]:password@host:port` or a `redis://` URL.
    fn parse(entry: &str) -> Result<Sentinel, RedisError> {
        let with_scheme = if entry.contains("://") {
            entry.to_string()
        } else {
            format!("redis://{entry}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|e| RedisError::Url(format!("sentinel {entry:?}: {e}")))?;
        let (host, username, password) = host_and_credentials(&url)?;
        Ok(Sentinel {
            host,
            port: url.port().unwrap_or(26379),
            username,
            password,
        })
    }

    fn address(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// Asks this sentinel for the current master of `name`.
    async fn master(&self, name: &str) -> Result<(String, u16), RedisError> {
        let mut connection = Connection::connect(
            &self.host,
            self.port,
            None,
            self.username.as_deref(),
            self.password.as_deref(),
        )
        .await?;
        let reply = connection
            .call(&[b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()])
            .await?;
        let parts = reply.into_array().unwrap_or_default();
        match (
            parts.first().and_then(Value::as_str),
            parts
                .get(1)
                .and_then(Value::as_str)
                .and_then(|p| p.parse().ok()),
        ) {
            (Some(host), Some(port)) => Ok((host.to_string(), port)),
            _ => Err(RedisError::Protocol(format!(
                "sentinel {} does not know the master {name:?}",
                self.address()
            ))),
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The host and the (percent-decoded) user and password of a URL.
#[allow(clippy::type_complexity)]
fn host_and_credentials(
    url: &url::Url,
) -> Result<(String, Option<String>, Option<String>), RedisError> {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err(RedisError::Url("no host".into())),
    };
    let decode =
        |s: &str| percent_decode(s).map_err(|_| RedisError::Url("bad percent-encoding".into()));
    let username = Some(url.username())
        .filter(|u| !u.is_empty())
        .map(decode)
        .transpose()?;
    let password = url.password().map(decode).transpose()?;
    Ok((host, username, password))
}

fn percent_decode(text: &str) -> Result<String, ()> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// The TLS client configuration of `rediss://`: like the reference, the server certificate is
/// only verified with `--redis_tls_verify`, against `--redis_tls_ca_cert_path` when given, the
/// system's store and the bundled roots otherwise (`crate::trust`);
/// `--redis_tls_client_cert_path`/`_key_path` add a client certificate.
fn tls_config(config: &RedisConfig) -> Result<ClientConfig, RedisError> {
    let provider = Arc::new(default_provider());
    let builder = crate::trust::client_builder()?;
    let builder = if config.tls_verify {
        let roots = match config.tls_ca_cert_path.as_str() {
            "" => crate::trust::default_roots(),
            path => {
                crate::trust::read(path).and_then(|pem| crate::trust::roots_from_pem(&pem, path))?
            }
        };
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    };
    let (cert, key) = (&config.tls_client_cert_path, &config.tls_client_key_path);
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => Ok(builder.with_no_client_auth()),
        (false, false) => {
            let certs =
                crate::trust::read(cert).and_then(|pem| crate::trust::certificates(&pem, cert))?;
            let key_der =
                crate::trust::read(key).and_then(|pem| crate::trust::private_key(&pem, key))?;
            Ok(builder.with_client_auth_cert(certs, key_der)?)
        }
        _ => Err(RedisError::HalfClientCertificate),
    }
}

/// `--redis_tls_verify=false` (the default): the connection is encrypted but the server is
/// not authenticated. Handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One Redis connection.
pub struct Connection {
    io: Box<dyn Io>,
    buffer: BytesMut,
}

impl Connection {
    /// Connects (to the master the sentinels name, with sentinels), authenticates and
    /// selects the database, all within [`CONNECT_TIMEOUT`].
    pub async fn open(options: &RedisOptions) -> Result<Connection, RedisError> {
        let address = options.address();
        let open = async {
            let (host, port) = options.data_node().await?;
            let mut connection = Connection::connect(
                &host,
                port,
                options.tls.as_ref(),
                options.username.as_deref(),
                options.password.as_deref(),
            )
            .await?;
            if options.db != 0 {
                connection
                    .call(&[b"SELECT", options.db.to_string().as_bytes()])
                    .await?;
            }
            Ok(connection)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::ConnectTimeout(address)),
        }
    }

    /// TCP (and TLS) to one server, then `AUTH` when there is a password.
    async fn connect(
        host: &str,
        port: u16,
        tls: Option<&Arc<ClientConfig>>,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Connection, RedisError> {
        let addr = host_port(host, port);
        let connect = async {
            let addrs = crate::resolve::lookup(host, port).await?;
            TcpStream::connect(&addrs[..]).await
        };
        let tcp = connect.await.map_err(|source| RedisError::Connect {
            addr: addr.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match tls {
            Some(config) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|_| RedisError::ServerName(host.to_string()))?;
                let stream = TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(RedisError::Handshake)?;
                Box::new(stream)
            }
            None => Box::new(tcp),
        };
        let mut connection = Connection {
            io,
            buffer: BytesMut::with_capacity(8 * 1024),
        };
        if let Some(password) = password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = username {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            connection.call(&auth).await?;
        }
        Ok(connection)
    }

    /// Writes one command (an array of bulk strings) and flushes it.
    pub async fn send(&mut self, args: &[&[u8]]) -> Result<(), RedisError> {
        self.io.write_all(&encode(args)).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Writes several commands in one flush (a pipeline).
    pub async fn send_all(&mut self, commands: &[Vec<&[u8]>]) -> Result<(), RedisError> {
        let mut out = Vec::new();
        for command in commands {
            out.extend_from_slice(&encode(command));
        }
        self.io.write_all(&out).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Reads the next reply (error replies are returned as [`Value::Error`]). Cancel-safe.
    pub async fn read(&mut self) -> Result<Value, RedisError> {
        loop {
            if let Some((value, used)) = parse(&self.buffer)? {
                self.buffer.advance(used);
                return Ok(value);
            }
            if self.buffer.len() > MAX_REPLY_BYTES {
                return Err(RedisError::Protocol("reply too large".into()));
            }
            if self.io.read_buf(&mut self.buffer).await? == 0 {
                return Err(RedisError::Closed);
            }
        }
    }

    /// Sends a command and reads its reply; an error reply becomes [`RedisError::Server`].
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Value, RedisError> {
        self.send(args).await?;
        match self.read().await? {
            Value::Error(message) => Err(RedisError::Server(message)),
            value => Ok(value),
        }
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one complete reply at the start of `buf`: `Ok(None)` when more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, RedisError> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, rest)) = buf[..line_end].split_first() else {
        return Err(RedisError::Protocol("empty line".into()));
    };
    let line = std::str::from_utf8(rest)
        .map_err(|_| RedisError::Protocol("reply line is not UTF-8".into()))?;
    let after = line_end + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| RedisError::Protocol(format!("bad length or integer {line:?}")))
    };
    match kind {
        b'+' => Ok(Some((Value::Simple(line.to_string()), after))),
        b'-' => Ok(Some((Value::Error(line.to_string()), after))),
        b':' => Ok(Some((Value::Int(number()?), after))),
        b'_' => Ok(Some((Value::Nil, after))),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Value::Nil, after)));
            }
            let len = len as usize;
            if len > MAX_REPLY_BYTES {
                return Err(RedisError::Protocol("bulk string too large".into()));
            }
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err(RedisError::Protocol("bulk string not terminated".into()));
            }
            Ok(Some((
                Value::Bulk(buf[after..after + len].to_vec()),
                after + len + 2,
            )))
        }
        b'*' | b'>' => {
            let count = number()?;
            if count < 0 {
                return Ok(Some((Value::Nil, after)));
            }
            let mut items = Vec::with_capacity((count as usize).min(1024));
            let mut offset = after;
            for _ in 0..count {
                match parse(&buf[offset..])? {
                    Some((item, used)) => {
                        items.push(item);
                        offset += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(items), offset)))
        }
        other => Err(RedisError::Protocol(format!(
            "unexpected reply type {:?}",
            other as char
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Result<RedisOptions, RedisError> {
        RedisOptions::from_config(&RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        })
    }

    #[test]
    fn parses_urls() {
        let o = options("redis://localhost:6379").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.db), ("localhost", 6379, 0));
        assert!(o.password.is_none() && o.tls.is_none());
        let o = options("redis://:p%40ss@10.0.0.1:6380/5").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.db), ("10.0.0.1", 6380, 5));
        assert_eq!(o.password.as_deref(), Some("p@ss"));
        assert!(o.username.is_none());
        let o = options("rediss://user:pw@example.com/").unwrap();
        assert_eq!(o.username.as_deref(), Some("user"));
        assert!(o.tls.is_some());
        assert_eq!(o.address(), "example.com:6379");
        let o = options("localhost:7000").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("localhost", 7000));
        assert!(options("redis://a:1,redis://b:2").is_err());
        assert!(options("redis://host/x").is_err());
        assert!(options("http://host").is_err());
        let o = RedisOptions::from_config(&RedisConfig {
            url: "redis://:datapw@mymaster/2".into(),
            sentinels: vec!["s1:26380, :sentpw@s2".into(), "redis://u:p@s3:1".into()],
            ..RedisConfig::default()
        })
        .unwrap();
        assert_eq!((o.host.as_str(), o.db), ("mymaster", 2));
        assert_eq!(o.password.as_deref(), Some("datapw"));
        let sentinels: Vec<_> = o
            .sentinels
            .iter()
            .map(|s| (s.address(), s.username.as_deref(), s.password.as_deref()))
            .collect();
        assert_eq!(
            sentinels,
            vec![
                ("s1:26380".to_string(), None, None),
                ("s2:26379".to_string(), None, Some("sentpw")),
                ("s3:1".to_string(), Some("u"), Some("p")),
            ]
        );
        assert_eq!(o.address(), "mymaster (sentinels: s1:26380,s2:26379,s3:1)");
    }

    #[test]
    fn password_is_hidden_in_debug() {
        let o = options("redis://:secret@h").unwrap();
        assert!(!format!("{o:?}").contains("secret"));
    }

    #[test]
    fn parses_replies() {
        let (v, n) = parse(b"+OK\r\n").unwrap().unwrap();
        assert_eq!((v, n), (Value::Simple("OK".into()), 5));
        assert_eq!(parse(b"$3\r\nab").unwrap(), None);
        assert_eq!(
            parse(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\n{}\r\n")
                .unwrap()
                .unwrap()
                .0,
            Value::Array(vec![
                Value::Bulk(b"message".to_vec()),
                Value::Bulk(b"c".to_vec()),
                Value::Bulk(b"{}".to_vec())
            ])
        );
        assert_eq!(parse(b"*2\r\n:1\r\n").unwrap(), None);
        assert_eq!(parse(b"$-1\r\n").unwrap().unwrap().0, Value::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap().unwrap().0, Value::Nil);
        assert_eq!(
            parse(b"-ERR x\r\n").unwrap().unwrap().0,
            Value::Error("ERR x".into())
        );
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b"$1\r\nabc\r\n").is_err());
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(encode(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n".to_vec());
    }
}

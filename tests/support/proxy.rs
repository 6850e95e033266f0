//! A TCP proxy on a fixed address whose target can be replaced, and whose open connections can
//! be cut silently: they stay open but carry nothing more, as when a host vanishes or a pod
//! behind a service address is replaced (no FIN, no RST).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    target: Arc<AtomicU16>,
    /// Connections numbered up to this value are frozen.
    frozen_through: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(target));
        let (frozen_through, frozen) = watch::channel(0u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let (to, counter) = (target.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let Ok(upstream) =
                    TcpStream::connect(("127.0.0.1", to.load(Ordering::SeqCst))).await
                else {
                    continue;
                };
                connections.spawn(forward(client, upstream, number, frozen.clone()));
            }
        });
        Proxy {
            port,
            target,
            frozen_through,
            accepted,
            task,
        }
    }

    /// New connections go to `127.0.0.1:<target>` from now on.
    pub fn retarget(&self, target: u16) {
        self.target.store(target, Ordering::SeqCst);
    }

    /// Every connection open now stops carrying data, without being closed.
    pub fn freeze_open_connections(&self) {
        let _ = self
            .frozen_through
            .send(self.accepted.load(Ordering::SeqCst));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn frozen_now(state: &watch::Receiver<u64>, number: u64) -> bool {
    *state.borrow() >= number
}

/// Copies both ways until either side closes or the connection is frozen; a frozen connection
/// keeps both sockets open (and unread) until the proxy goes.
async fn forward(
    mut client: TcpStream,
    mut upstream: TcpStream,
    number: u64,
    mut frozen: watch::Receiver<u64>,
) {
    let (mut client_buf, mut upstream_buf) = (vec![0u8; 16384], vec![0u8; 16384]);
    // Read between copies; `frozen` itself is waited on.
    let state = frozen.clone();
    loop {
        tokio::select! {
            read = client.read(&mut client_buf) => match read {
                Ok(n) if n > 0 => {
                    if frozen_now(&state, number) {
                        break;
                    }
                    if upstream.write_all(&client_buf[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            read = upstream.read(&mut upstream_buf) => match read {
                Ok(n) if n > 0 => {
                    if frozen_now(&state, number) {
                        break;
                    }
                    if client.write_all(&upstream_buf[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            changed = frozen.changed() => match changed {
                Ok(()) if frozen_now(&state, number) => break,
                Ok(()) => {}
                Err(_) => return,
            },
        }
    }
    // Frozen: hold both ends open, carrying nothing.
    std::future::pending::<()>().await;
    drop((client, upstream));
}

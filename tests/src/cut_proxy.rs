//! A TCP proxy on loopback whose connections a test can cut at once, as a failing
//! network would: both sockets are dropped without a WebSocket close, while the server
//! behind it stays up and new connections go through. It can also refuse WebSocket
//! upgrades, as some corporate proxies do: a connection whose first request asks for
//! `Upgrade: websocket` is answered `403` and closed.

// A test helper: failing loudly on a broken setup is the right behaviour.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy to one server; every task it starts ends when it is dropped.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(target: SocketAddr) -> Self {
        Self::listen(target, false).await
    }

    /// As [`CutProxy::start`], refusing WebSocket upgrades (`403`) and passing
    /// everything else.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn refusing_upgrades(target: SocketAddr) -> Self {
        Self::listen(target, true).await
    }

    async fn listen(target: SocketAddr, refuse_upgrades: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = pipes.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    let head = if refuse_upgrades {
                        match first_head(&mut client).await {
                            Some(head) if asks_upgrade(&head) => {
                                let _ = client
                                    .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                    .await;
                                return;
                            }
                            Some(head) => head,
                            None => return,
                        }
                    } else {
                        Vec::new()
                    };
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        if server.write_all(&head).await.is_ok() {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }
                });
                accepted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(pipe);
            }
        });
        Self {
            addr,
            pipes,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection made so far, on both sides.
    pub fn cut(&self) {
        for pipe in self
            .pipes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            pipe.abort();
        }
    }
}

/// The bytes of a connection's first request head (and whatever followed it in the
/// same reads); `None` if the connection ends or sends over 64 KiB without one.
async fn first_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buffer = [0; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 64 << 10 {
            return None;
        }
        let read = client.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    Some(head)
}

/// Whether a request head asks for a WebSocket upgrade.
fn asks_upgrade(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value.trim().eq_ignore_ascii_case("websocket")
        })
    })
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

//! A TCP proxy on loopback whose connections a test can cut at once, as a failing
//! network would: both sockets are dropped without a WebSocket close, while the server
//! behind it stays up and new connections go through.

// A test helper: failing loudly on a broken setup is the right behaviour.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

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
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = pipes.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
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

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

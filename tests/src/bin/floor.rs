//! The reference floor: the least a fan-out server can do. Every frame a client sends is
//! forwarded, as the same shared bytes, to every other connected socket; each socket's
//! writer drains everything queued and flushes once. No framework, no decoding. The
//! benchmark's publisher sends it frames shaped like the ones streampod delivers
//! (`loadgen --publish-template`), so both servers write the same bytes, and reports
//! streampod as a ratio of this.
//!
//! ```text
//! floor [--bind 127.0.0.1:8090]
//! ```
//!
//! It listens with streampod's default backlog (as deep as `net.core.somaxconn` allows),
//! so a connection storm compares the servers' work, not their kernel queue settings.

// A benchmark tool: failing loudly on a broken setup is the right behaviour.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const PING: &str = r#"{"command":"ping","args":{}}"#;
const PONG: &str = r#"{"command":"pong"}"#;

type Peers = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Utf8Bytes>>>>;

fn main() {
    let bind = std::env::args()
        .skip_while(|a| a != "--bind")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let address: std::net::SocketAddr = bind.parse().expect("--bind ip:port");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(address).expect("bind");
        let listener = socket
            .listen(streampod::ServerConfig::default().listen_backlog)
            .expect("listen");
        println!("listening on {}", listener.local_addr().expect("address"));
        let peers: Peers = Arc::default();
        let ids = AtomicU64::new(0);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let id = ids.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve(stream, id, peers.clone()));
        }
    });
}

async fn serve(stream: tokio::net::TcpStream, id: u64, peers: Peers) {
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = 4096;
    config.write_buffer_size = 64 << 10;
    let Ok(socket) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    let self_tx = tx.clone();
    peers.lock().unwrap().insert(id, tx);
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(Message::Text(first)).await.is_err() {
                return;
            }
            while let Ok(next) = rx.try_recv() {
                if sink.feed(Message::Text(next)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut joined = false;
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if text.as_str() == PING {
            // Serverpod's ping gets its pong, as from any server: the storm's "joined".
            let _ = self_tx.send(Utf8Bytes::from_static(PONG));
            continue;
        }
        if !joined {
            // The first frame is the subscriber's join; the floor has one channel.
            joined = true;
            continue;
        }
        let targets: Vec<_> = peers
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| **k != id)
            .map(|(_, t)| t.clone())
            .collect();
        for target in targets {
            let _ = target.send(text.clone());
        }
    }
    peers.lock().unwrap().remove(&id);
    writer.abort();
}

//! The WebSocket codec's conformance target: every message echoed back by streampod's
//! own frame reader and writer (`streampod::__private::ws_echo`), behind a minimal
//! handshake. `tests/autobahn.sh` runs the Autobahn test suite's fuzzing client
//! against it.
//!
//! ```text
//! ws_echo [--bind 127.0.0.1:9001]
//! ```
//!
//! Prints `listening on ADDR` once it accepts connections.

// A test tool: failing loudly on a broken setup is the right behaviour.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use streampod::__private::EchoExtensions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Messages up to this size are echoed (Autobahn's largest are 16 MiB).
const MAX_MESSAGE: usize = 64 << 20;
/// The longest handshake request read.
const MAX_REQUEST: usize = 16 << 10;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bind = args
        .iter()
        .position(|arg| arg == "--bind")
        .and_then(|at| args.get(at + 1))
        .map_or("127.0.0.1:9001", String::as_str);
    let listener = TcpListener::bind(bind).await.expect("bind");
    println!("listening on {}", listener.local_addr().expect("address"));
    loop {
        let (socket, _) = listener.accept().await.expect("accept");
        tokio::spawn(async move {
            if let Some((socket, extensions)) = handshake(socket).await {
                let _ = streampod::__private::ws_echo(socket, MAX_MESSAGE, extensions).await;
            }
        });
    }
}

/// Reads the upgrade request (byte by byte, so no frame byte is read with it) and
/// answers 101 (accepting `permessage-deflate` if offered); `None` for anything else.
async fn handshake(mut socket: TcpStream) -> Option<(TcpStream, EchoExtensions)> {
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        if request.len() > MAX_REQUEST {
            return None;
        }
        request.push(socket.read_u8().await.ok()?);
    }
    let text = String::from_utf8_lossy(&request);
    let header = |wanted: &str| {
        text.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_owned())
        })
    };
    let key = header("sec-websocket-key")?;
    let extensions = EchoExtensions::from_offer(header("sec-websocket-extensions").as_deref());
    let accepted = extensions
        .response()
        .map(|value| format!("sec-websocket-extensions: {value}\r\n"))
        .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n{accepted}\r\n",
        derive_accept_key(key.as_bytes())
    );
    socket.write_all(answer.as_bytes()).await.ok()?;
    Some((socket, extensions))
}

//! A raw WebSocket test client: sends text, reads frames with timeouts, and reports
//! close codes, so tests see exactly what a peer sees.

// Test support: a failed expectation panics with a message, like an assertion.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// One WebSocket connection to a test server.
#[derive(Debug)]
pub struct TestClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl TestClient {
    /// Connects to `ws://addr/websocket` plus `query` (e.g. `"?auth=key"`), asking for
    /// streampod's extended frames (error and batch frames) as streampod's clients do.
    pub async fn connect(addr: SocketAddr, query: &str) -> Self {
        Self::connect_with(addr, query, &[]).await
    }

    /// Connects as a Serverpod client does: no subprotocol, so no error or batch frames.
    pub async fn connect_legacy(addr: SocketAddr, query: &str) -> Self {
        Self::open(addr, query, &[], false).await
    }

    /// Connects with extra request headers.
    pub async fn connect_with(
        addr: SocketAddr,
        query: &str,
        headers: &[(&'static str, &str)],
    ) -> Self {
        Self::open(addr, query, headers, true).await
    }

    async fn open(
        addr: SocketAddr,
        query: &str,
        headers: &[(&'static str, &str)],
        extended: bool,
    ) -> Self {
        let mut request = format!("ws://{addr}/websocket{query}")
            .into_client_request()
            .unwrap();
        if extended {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                streampod::protocol::frame::EXTENDED_SUBPROTOCOL
                    .parse()
                    .unwrap(),
            );
        }
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket connects");
        Self { socket }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.expect("send");
    }

    /// A ping command round trip: everything sent before it has been handled. Frames
    /// other than the pong that arrive meanwhile are skipped.
    pub async fn round_trip(&mut self) {
        self.send_text(r#"{"command":"ping"}"#).await;
        while self.next_json().await != serde_json::json!({"command": "pong"}) {}
    }

    /// Sends a text frame; an error once the server closed the connection.
    ///
    /// # Errors
    ///
    /// When the socket no longer takes frames.
    pub async fn try_send_text(
        &mut self,
        text: &str,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.socket.send(Message::text(text)).await
    }

    /// Sends a raw message (binary, invalid frames, …).
    pub async fn send_message(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// Sends an endpoint message: `{"endpoint":…,"object":{"className":…,"data":…}}`.
    pub async fn send_model(&mut self, endpoint: &str, class_name: &str, data: Value) {
        let frame = serde_json::json!({"endpoint": endpoint, "object": {"className": class_name, "data": data}});
        self.send_text(&frame.to_string()).await;
    }

    /// Joins (or leaves) chat room `room` of the example server's `chat` endpoint.
    pub async fn chat_subscription(&mut self, room: &str, subscribe: bool) {
        self.send_model(
            "chat",
            "ChannelSubscription",
            serde_json::json!({"channelId": room, "subscribe": subscribe}),
        )
        .await;
    }

    /// Sends a ping and reads up to its pong: what was sent before has been handled.
    /// Frames before the pong are skipped.
    pub async fn until_pong(&mut self) {
        self.send_text(r#"{"command":"ping"}"#).await;
        while self.next_json().await != serde_json::json!({"command": "pong"}) {}
    }

    /// The next frame of any kind, skipping pings; `None` when the connection ended.
    pub async fn next_message(&mut self) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a frame within the wait")
            {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next text frame as JSON; panics on anything else.
    pub async fn next_json(&mut self) -> Value {
        match self.next_message().await {
            Some(Message::Text(text)) => {
                serde_json::from_str(&text).expect("server frames are JSON")
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame as JSON if one comes within `wait` (pings skipped); `None`
    /// when none does or the connection ended.
    pub async fn try_next_json(&mut self, wait: std::time::Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(serde_json::from_str(&text).expect("server frames are JSON"))
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) | Err(_) => return None,
            }
        }
    }

    /// The next frame, which must be an error frame with `code`; returns its body.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.next_json().await;
        assert_eq!(
            frame["error"]["code"], code,
            "expected error {code}, got {frame}"
        );
        frame["error"].clone()
    }

    /// Reads until the server closes; returns the close frame (code, reason).
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next_message().await {
                Some(Message::Close(frame)) => {
                    return frame
                        .map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string()))
                }
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// Whether nothing but pings arrives within `quiet` (the socket is read meanwhile,
    /// so the client answers pings).
    pub async fn is_quiet(&mut self, quiet: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }

    /// Sends a WebSocket close frame.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Sends a WebSocket ping.
    pub async fn ping(&mut self) {
        self.socket
            .send(Message::Ping(Bytes::new()))
            .await
            .expect("send ping");
    }

    /// The underlying socket, for tests that need to stop reading it.
    pub fn into_inner(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.socket
    }
}

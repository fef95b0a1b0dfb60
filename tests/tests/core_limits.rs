//! One core for every socket: the channel-name limit and the per-session channel budget
//! hold the same way whether a client joins a room on `/websocket` (an endpoint stream)
//! or opens `chat.messages` on `/v1/websocket` (a streaming method), against the
//! example server, over real sockets.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use streampod::{endpoint, MethodError, Server, ServerConfig, Session};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::Protocol;
use streampod_tests::http::post;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);

/// A `/v1/websocket` client speaking Serverpod's streaming-method frames.
struct MethodSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl MethodSocket {
    async fn connect(addr: SocketAddr) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/websocket"))
            .await
            .unwrap();
        Self { ws }
    }

    /// Opens `chat.messages` for `room` as call `n`.
    async fn open_room(&mut self, n: usize, room: &str) {
        let frame = json!({"type": "omsc", "data": {
            "en": "chat", "m": "messages", "cid": cid(n),
            "args": json!({"channelId": room}).to_string(), "is": [],
        }});
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("the socket is open")
                .unwrap();
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// The frames of call `n` up to its open result, and (when it opened and ended)
    /// its exception and close: what the call answered.
    async fn outcome(&mut self, n: usize) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["data"]["cid"] != cid(n) {
                continue;
            }
            let kind = frame["type"].as_str().unwrap().to_owned();
            let result = frame["data"]["res"].clone();
            frames.push(frame);
            let done = match kind.as_str() {
                "omsr" => result != "success",
                "cmsc" => true,
                _ => false,
            };
            if done {
                return frames;
            }
        }
    }
}

fn cid(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// The `InvalidRequest` message a `/websocket` join of `room` is answered with (other
/// frames, such as member counts of rooms joined before, are skipped).
async fn join_refusal(client: &mut TestClient, room: &str) -> String {
    client.chat_subscription(room, true).await;
    let frame = loop {
        let frame = client.next_json().await;
        if frame["object"]["className"] == "InvalidRequest" {
            break frame;
        }
    };
    assert_eq!(frame["object"]["data"]["field"], "channelId");
    frame["object"]["data"]["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The exception message a `chat.messages` call for `room` ends with, checking that it
/// opened, threw and closed with `error` (the example answers refusals as exceptions).
fn exception_message(frames: &[Value]) -> String {
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["omsr", "msse", "cmsc"], "{frames:?}");
    assert_eq!(frames[0]["data"]["res"], "success");
    assert_eq!(frames[2]["data"]["cr"], "error");
    let exception = &frames[1]["data"]["ex"];
    assert_eq!(exception["className"], "InvalidRequest", "{exception}");
    assert_eq!(exception["data"]["field"], "channelId");
    exception["data"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_megabyte_channel_name_is_refused_the_same_way_on_both_sockets() {
    let server = example_server::server().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    // A megabyte, just under the default frame limit (1 MiB) with the frame around it.
    let huge = "r".repeat(1_000_000);

    let mut endpoint_socket = TestClient::connect(addr, "").await;
    let refused_join = join_refusal(&mut endpoint_socket, &huge).await;
    assert!(
        refused_join.contains("exceeds the limit of 255 bytes"),
        "{refused_join}"
    );

    let mut method_socket = MethodSocket::connect(addr).await;
    for n in 1..=30 {
        method_socket.open_room(n, &huge).await;
        let refused_call = exception_message(&method_socket.outcome(n).await);
        assert_eq!(refused_call, refused_join, "call {n}");
    }
    // Nothing was subscribed on either path.
    assert_eq!(server.handle().messages().total_listeners(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn joins_and_streaming_calls_spend_one_budget_per_socket() {
    let config = ServerConfig::default().max_channels_per_session(2);
    let server: Server<example_server::Protocol> = example_server::server()
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let messages = server.handle().messages();

    // `/websocket`: two rooms, then the third is refused.
    let mut endpoint_socket = TestClient::connect(addr, "").await;
    for room in ["a", "b"] {
        endpoint_socket.chat_subscription(room, true).await;
    }
    let refused_join = join_refusal(&mut endpoint_socket, "c").await;
    assert!(refused_join.contains("holds 2 channels"), "{refused_join}");

    // `/v1/websocket`: two calls listen, the third is refused alike.
    let mut method_socket = MethodSocket::connect(addr).await;
    for (n, room) in [(1, "a"), (2, "b")] {
        method_socket.open_room(n, room).await;
        let frames = method_socket.outcome_opened(n).await;
        assert_eq!(frames["data"]["res"], "success");
    }
    method_socket.open_room(3, "c").await;
    let refused_call = exception_message(&method_socket.outcome(3).await);
    assert_eq!(refused_call, refused_join);

    // A call that ends gives its channel back: the next one opens.
    let close = json!({"type": "cmsc", "data": {
        "en": "chat", "m": "messages", "cid": cid(1), "cr": "done",
    }});
    method_socket
        .ws
        .send(Message::text(close.to_string()))
        .await
        .unwrap();
    streampod_tests::eventually("the ended call's stream is removed", || {
        messages.listener_count("chat-room-a") == 1
    })
    .await;
    method_socket.open_room(4, "c").await;
    let opened = method_socket.outcome_opened(4).await;
    assert_eq!(opened["data"]["res"], "success");

    // Closing the socket gives everything back.
    drop(method_socket);
    streampod_tests::eventually("the closed socket's streams are removed", || {
        messages.listener_count("chat-room-b") == 1 && messages.listener_count("chat-room-c") == 0
    })
    .await;
    server.shutdown().await;
}

impl MethodSocket {
    /// The open result of call `n`, which must have opened.
    async fn outcome_opened(&mut self, n: usize) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == "omsr" && frame["data"]["cid"] == cid(n) {
                return frame;
            }
        }
    }
}

/// Listens to a channel the caller names, refusing through `MethodError`.
#[derive(Debug)]
pub struct Listen;

#[endpoint]
impl Listen {
    /// A stream of the channel's posts (each as 1).
    pub async fn channel(
        &self,
        session: &Session<Protocol>,
        name: String,
    ) -> Result<impl Stream<Item = i64>, MethodError> {
        let posts = session.messages().create_stream(&name)?;
        Ok(posts.map(|_| 1))
    }

    /// Creates a stream of the channel once, over HTTP.
    pub async fn touch(
        &self,
        session: &Session<Protocol>,
        name: String,
    ) -> Result<bool, MethodError> {
        session.messages().create_stream(&name)?;
        Ok(true)
    }
}

#[tokio::test]
async fn a_method_refusing_with_the_core_s_error_gets_invalid_arguments_and_400() {
    let server = Server::builder()
        .methods("listen", Listen)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let long = "n".repeat(256);

    let mut socket = MethodSocket::connect(addr).await;
    for (n, name) in [(1, long.as_str()), (2, "fine")] {
        let frame = json!({"type": "omsc", "data": {
            "en": "listen", "m": "channel", "cid": cid(n),
            "args": json!({"name": name}).to_string(), "is": [],
        }});
        socket
            .ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }
    assert_eq!(
        socket.outcome_opened(1).await["data"]["res"],
        "invalidArguments"
    );
    assert_eq!(socket.outcome_opened(2).await["data"]["res"], "success");
    drop(socket);

    let answer = post(addr, "/listen/touch", &json!({"name": long}).to_string()).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let body = answer.body;
    assert_eq!(body["error"]["code"], "limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 255 bytes"),
        "{body}"
    );
    server.shutdown().await;
}

//! The HTTP fallback over real TCP, with hyper's HTTP/1.1 client: `GET
//! /websocket/events` opens a `streampod.v1` session whose frames arrive as Server-Sent
//! Events and `POST /websocket/events/<token>` sends it frames. The session is the one a
//! WebSocket gets: it joins rooms, hears a WebSocket client's posts and is heard by it,
//! signs in with `?auth=`, ends when the event stream's connection goes (and its token
//! with it), and closes with an `event: close` on shutdown. Bad requests get JSON errors.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use streampod::{Server, ServerConfig};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::Protocol;
use streampod_tests::http::request;
use streampod_tests::rooms::{command, Rooms};

async fn start() -> Server<Protocol> {
    start_with(ServerConfig::default()).await
}

async fn start_with(config: ServerConfig) -> Server<Protocol> {
    Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn rooms(content: &str) -> Value {
    json!({"endpoint": "rooms", "object": {"className": "ChatMessage", "data": {
        "senderName": "sse", "content": content, "channelId": "fallback"}}})
}

/// One event of the stream: its `event:` name (`message` when none) and its data.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    name: String,
    data: String,
}

/// An open event stream, read as events arrive.
struct EventStream {
    body: Incoming,
    /// The client connection's task: aborted with the stream, as a closed page would.
    connection: tokio::task::JoinHandle<()>,
    pending: String,
    /// The session's token, from its first event.
    token: String,
    /// Comments seen (`: ping`).
    comments: usize,
}

impl EventStream {
    async fn open(addr: SocketAddr, query: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let response = sender
            .send_request(
                Request::get(format!("/websocket/events{query}"))
                    .header("host", addr.to_string())
                    .header("accept", "text/event-stream")
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut events = Self {
            body: response.into_body(),
            connection,
            pending: String::new(),
            token: String::new(),
            comments: 0,
        };
        let first = events.next().await.expect("the session event");
        assert_eq!(first.name, "session");
        let data: Value = serde_json::from_str(&first.data).unwrap();
        events.token = data["session"].as_str().unwrap().to_owned();
        assert_eq!(events.token.len(), 32, "128 random bits, in hex");
        events
    }

    /// The next event within 10 s; `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = value.to_owned();
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push(value);
                    } else if line.starts_with(':') {
                        self.comments += 1;
                    }
                }
                if !data.is_empty() {
                    return Some(Event {
                        name,
                        data: data.join("\n"),
                    });
                }
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s");
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                _ => return None,
            }
        }
    }

    /// The next frame (a `message` event) whose text contains `needle`.
    async fn frame_with(&mut self, needle: &str) -> Value {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.name == "message" && event.data.contains(needle) {
                return serde_json::from_str(&event.data).unwrap();
            }
        }
    }

    /// POSTs `frames` to the session.
    async fn post(&self, addr: SocketAddr, frames: &[Value]) -> streampod_tests::http::Answer {
        let path = format!("/websocket/events/{}", self.token);
        let body = Value::from(frames.to_vec()).to_string();
        request(
            addr,
            Method::POST,
            &path,
            &body,
            &[("content-type", "application/json")],
        )
        .await
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

#[tokio::test]
async fn a_fallback_session_chats_with_a_websocket_session() {
    let server = start().await;
    let addr = server.local_addr();
    let mut events = EventStream::open(addr, "").await;
    let answer = events.post(addr, &[rooms("join")]).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 1);
    events.frame_with("ack:join").await;

    let mut socket = TestClient::connect(addr, "").await;
    command(&mut socket, "join", "fallback").await;
    socket
        .send_text(&rooms("hello from the socket").to_string())
        .await;
    let heard = events.frame_with("hello from the socket").await;
    assert_eq!(heard["object"]["data"]["senderName"], "sse");

    // Several frames in one POST arrive in order.
    let answer = events
        .post(addr, &[rooms("one"), rooms("two"), rooms("three")])
        .await;
    assert_eq!(answer.body["accepted"], 3);
    let mut heard = Vec::new();
    while heard.len() < 3 {
        let frame = socket.next_json().await;
        let content = frame["object"]["data"]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if ["one", "two", "three"].contains(&content.as_str()) {
            heard.push(content);
        }
    }
    assert_eq!(heard, ["one", "two", "three"]);

    // Serverpod's ping is answered like on a socket.
    events
        .post(addr, &[json!({"command": "ping", "args": {}})])
        .await;
    let pong = events.frame_with("pong").await;
    assert_eq!(pong["command"], "pong");
}

#[tokio::test]
async fn the_session_ends_with_its_stream_and_its_token_with_it() {
    // The server finds the connection gone at its next write: a keepalive ping at the
    // latest.
    let server =
        start_with(ServerConfig::default().keepalive_interval(Duration::from_millis(300))).await;
    let addr = server.local_addr();
    let handle = server.handle();
    let events = EventStream::open(addr, "").await;
    streampod_tests::eventually("the session to count", || handle.session_count() == 1).await;
    let token = events.token.clone();
    drop(events);
    streampod_tests::eventually("the session to end", || handle.session_count() == 0).await;
    let answer = request(
        addr,
        Method::POST,
        &format!("/websocket/events/{token}"),
        "[]",
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body["error"]["code"], "unknown_session");
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let server = start().await;
    let addr = server.local_addr();
    let events = EventStream::open(addr, "").await;
    let path = format!("/websocket/events/{}", events.token);
    for (method, path, body, status) in [
        (
            Method::POST,
            path.as_str(),
            "{\"not\":\"an array\"}",
            StatusCode::BAD_REQUEST,
        ),
        (Method::POST, path.as_str(), "[1", StatusCode::BAD_REQUEST),
        (
            Method::GET,
            path.as_str(),
            "",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::POST,
            "/websocket/events",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::POST,
            "/websocket/events/0000",
            "[]",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let answer = request(addr, method.clone(), path, body, &[]).await;
        assert_eq!(answer.status, status, "{method} {path} {body}");
        assert!(
            answer.body["error"]["code"].is_string(),
            "{:?}",
            answer.body
        );
    }
    // A frame the session refuses is answered on the stream, as on a socket.
    let mut events = events;
    let mut unknown = rooms("hello");
    unknown["endpoint"] = "nope".into();
    events.post(addr, &[unknown]).await;
    let refused = events.frame_with("unknown_endpoint").await;
    assert_eq!(refused["error"]["code"], "unknown_endpoint");
}

#[tokio::test]
async fn shutdown_closes_the_stream_with_1001() {
    let server = start().await;
    let addr = server.local_addr();
    let mut events = EventStream::open(addr, "").await;
    events.post(addr, &[rooms("join")]).await;
    events.frame_with("ack:join").await;
    let shutdown = tokio::spawn(server.shutdown());
    let close = loop {
        let event = events.next().await.expect("a close event before the end");
        if event.name == "close" {
            break event;
        }
    };
    let close: Value = serde_json::from_str(&close.data).unwrap();
    assert_eq!(close["code"], 1001, "{close}");
    assert_eq!(events.next().await, None, "the stream ends after the close");
    shutdown.await.unwrap();
}

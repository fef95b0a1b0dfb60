//! Two wire modes over real sockets. A client that asks for `streampod.v1`
//! (`Sec-WebSocket-Protocol`) gets error frames and batch frames; one that does not — an
//! unmodified Serverpod client, whose listen loop fails on any frame it does not know —
//! gets only endpoint frames and pongs: its bad frames are logged on the server, a batch
//! reaches it as separate endpoint frames, in order.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{json, Value};
use streampod::messages::Reach;
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::{command, Rooms};

/// Parses a frame the way Serverpod's Dart client does: a command, or an endpoint frame
/// with an object of a class; anything else would throw in its listen loop.
fn dart_parse(frame: &Value) {
    if frame.get("command").is_some() {
        return;
    }
    assert!(
        frame["endpoint"].is_string()
            && frame["object"]["className"].is_string()
            && frame["object"].get("data").is_some(),
        "a Serverpod client cannot parse {frame}"
    );
}

fn chat(content: &str) -> ChatMessage {
    ChatMessage {
        sender_name: "t".into(),
        content: content.into(),
        timestamp: None,
        channel_id: "feed".into(),
        priority: Priority::Normal,
    }
}

async fn start() -> Server<Protocol> {
    Server::builder()
        .endpoint("rooms", Rooms::default())
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test]
async fn a_serverpod_client_never_sees_an_error_frame() {
    let server = start().await;
    let mut legacy = TestClient::connect_legacy(server.local_addr(), "").await;
    for bad in [
        "{not json",
        r#"{"endpoint":"nowhere","object":{"className":"ChatMessage","data":{}}}"#,
        r#"{"endpoint":"rooms","object":{"className":"Nope","data":{}}}"#,
        r#"{"command":"unknown"}"#,
    ] {
        legacy.send_text(bad).await;
    }
    // The pong comes back; nothing before it was an error frame.
    legacy.send_text(r#"{"command":"ping"}"#).await;
    loop {
        let frame = legacy.next_json().await;
        dart_parse(&frame);
        if frame == json!({"command": "pong"}) {
            break;
        }
    }
    assert!(legacy.is_quiet(Duration::from_millis(200)).await);

    // The same frames on a streampod.v1 socket: an error frame each.
    let mut extended = TestClient::connect(server.local_addr(), "").await;
    extended.send_text("{not json").await;
    extended.expect_error("invalid_json").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_batch_reaches_a_serverpod_client_as_separate_frames_in_order() {
    let server = start().await;
    let addr = server.local_addr();
    let mut legacy = TestClient::connect_legacy(addr, "").await;
    let mut extended = TestClient::connect(addr, "").await;
    command(&mut legacy, "join", "feed").await;
    command(&mut extended, "join", "feed").await;

    let batched = server
        .handle()
        .messages()
        .batched("feed", Duration::from_millis(50), 3);
    for i in 0..3 {
        batched.post(chat(&i.to_string())).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let frame = legacy.next_json().await;
        dart_parse(&frame);
        got.push(
            frame["object"]["data"]["content"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(got, ["0", "1", "2"]);

    let frame = extended.next_json().await;
    let batch = frame["batch"].as_array().expect("one batch frame");
    let contents: Vec<&str> = batch
        .iter()
        .map(|object| object["data"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["0", "1", "2"]);

    // A plain post is the same endpoint frame for both.
    server
        .handle()
        .messages()
        .post_message("feed", chat("plain"), Reach::Local)
        .unwrap();
    for client in [&mut legacy, &mut extended] {
        let frame = client.next_json().await;
        dart_parse(&frame);
        assert_eq!(frame["object"]["data"]["content"], "plain");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_server_answers_the_subprotocol_only_when_asked() {
    let server = start().await;
    let ask = |protocols: Option<&'static str>| {
        let addr = server.local_addr();
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = format!("ws://{addr}/websocket")
                .into_client_request()
                .unwrap();
            if let Some(protocols) = protocols {
                request
                    .headers_mut()
                    .insert("sec-websocket-protocol", protocols.parse().unwrap());
            }
            let (_, response) = tokio_tungstenite::connect_async(request).await.unwrap();
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|value| value.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(ask(None).await, None);
    assert_eq!(
        ask(Some("chat.v2, streampod.v1")).await.as_deref(),
        Some("streampod.v1")
    );
    server.shutdown().await;
}

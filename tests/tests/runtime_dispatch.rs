//! Frames in, typed messages to endpoints, and an error frame for every bad input, over
//! real sockets. The connection stays open after each error frame.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use streampod::{Server, ServerConfig};
use streampod_tests::chat_json;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::Protocol;
use streampod_tests::recorder::Recorder;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Bytes, Message};

async fn start(config: ServerConfig) -> Server<Protocol> {
    Server::builder()
        .endpoint("chat", Recorder::default())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test]
async fn typed_message_round_trip() {
    let server = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client
        .send_model("chat", "ChatMessage", chat_json("hi"))
        .await;
    let frame = client.next_json().await;
    assert_eq!(
        frame,
        json!({"endpoint": "chat", "object": {"className": "ChatMessage", "data": {
            "__className__": "ChatMessage", "senderName": "ann", "content": "hi",
            "channelId": "room-1", "priority": "normal"
        }}})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ping_command_gets_pong() {
    let server = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client.send_text(r#"{"command":"ping","args":{}}"#).await;
    assert_eq!(client.next_json().await, json!({"command": "pong"}));
    // Serverpod drops a session on a ping without args; here it is just a ping.
    client.send_text(r#"{"command":"ping"}"#).await;
    assert_eq!(client.next_json().await, json!({"command": "pong"}));
    server.shutdown().await;
}

#[tokio::test]
async fn every_bad_input_gets_an_error_frame_and_the_socket_stays_open() {
    let server = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;

    client.send_text("hello there").await;
    let error = client.expect_error("invalid_json").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("frame is not valid JSON"),
        "{error}"
    );

    client.send_text("{}").await;
    client.expect_error("invalid_frame").await;

    client.send_text(r#"{"endpoint":"chat"}"#).await;
    let error = client.expect_error("invalid_frame").await;
    assert!(
        error["message"].as_str().unwrap().contains("'object'"),
        "{error}"
    );

    client.send_text(r#"{"command":"dance","args":{}}"#).await;
    let error = client.expect_error("unknown_command").await;
    assert!(
        error["message"].as_str().unwrap().contains("'dance'"),
        "{error}"
    );

    client
        .send_model("chatt", "ChatMessage", chat_json("x"))
        .await;
    let error = client.expect_error("unknown_endpoint").await;
    assert_eq!(error["endpoint"], "chatt");
    assert_eq!(
        error["message"],
        "no endpoint named 'chatt' (did you mean 'chat'?)"
    );

    client
        .send_model("chat", "ChatMesage", chat_json("x"))
        .await;
    let error = client.expect_error("unknown_class").await;
    assert_eq!(
        (error["endpoint"].as_str(), error["className"].as_str()),
        (Some("chat"), Some("ChatMesage"))
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown className 'ChatMesage'; known classes: ChatMessage"),
        "{error}"
    );

    client
        .send_model(
            "chat",
            "ChatMessage",
            json!({"senderName": "ann", "content": "x"}),
        )
        .await;
    let error = client.expect_error("invalid_data").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("missing field `channelId`"),
        "{error}"
    );

    client
        .send_model(
            "chat",
            "ChatMessage",
            json!({"senderName": 5, "content": "x", "channelId": "r"}),
        )
        .await;
    client.expect_error("invalid_data").await;

    client
        .send_message(Message::Binary(Bytes::from_static(b"\x00\x01")))
        .await;
    client.expect_error("binary_not_supported").await;

    client
        .send_text(r#"{"error":{"code":"internal","message":"x"}}"#)
        .await;
    client.expect_error("invalid_frame").await;

    // Still open and serving.
    client
        .send_model("chat", "ChatMessage", chat_json("still here"))
        .await;
    assert_eq!(
        client.next_json().await["object"]["data"]["content"],
        "still here"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn handler_errors_and_panics_become_internal_errors() {
    let server = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;

    client
        .send_model("chat", "ChatMessage", chat_json("fail"))
        .await;
    let error = client.expect_error("internal").await;
    assert_eq!(
        error["message"],
        "endpoint 'chat' failed to handle ChatMessage"
    );
    assert!(
        !error.to_string().contains("on purpose"),
        "details stay in the log: {error}"
    );

    client
        .send_model("chat", "ChatMessage", chat_json("panic"))
        .await;
    let error = client.expect_error("internal").await;
    assert!(
        !error.to_string().contains("on purpose"),
        "details stay in the log: {error}"
    );

    // The same socket and a new one both keep working.
    client
        .send_model("chat", "ChatMessage", chat_json("after"))
        .await;
    assert_eq!(
        client.next_json().await["object"]["data"]["content"],
        "after"
    );
    let mut other = TestClient::connect(server.local_addr(), "").await;
    other
        .send_model("chat", "ChatMessage", chat_json("fresh"))
        .await;
    assert_eq!(
        other.next_json().await["object"]["data"]["content"],
        "fresh"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    let frame = Frame::message(
        Bytes::from_static(b"{\"x\":\"\xff\xfe\"}"),
        OpCode::Data(Data::Text),
        true,
    );
    client.send_message(Message::Frame(frame)).await;
    let (code, reason) = client.expect_close().await.expect("a close frame");
    assert_eq!(code, 1007);
    assert_eq!(reason, "invalid UTF-8 in a text frame");
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let server = start(ServerConfig::default().max_frame_size(1024)).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client
        .send_model("chat", "ChatMessage", chat_json(&"x".repeat(1000)))
        .await;
    let (code, reason) = client.expect_close().await.expect("a close frame");
    assert_eq!(code, 1009);
    assert!(
        reason.contains("exceeds the limit of 1024 bytes"),
        "{reason}"
    );

    // A frame under the limit on another socket is fine.
    let mut small = TestClient::connect(server.local_addr(), "").await;
    small
        .send_model("chat", "ChatMessage", chat_json("ok"))
        .await;
    assert_eq!(small.next_json().await["object"]["data"]["content"], "ok");
    server.shutdown().await;
}

#[tokio::test]
async fn frames_are_handled_in_order() {
    let server = start(ServerConfig::default()).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    for i in 0..200 {
        client
            .send_model("chat", "ChatMessage", chat_json(&i.to_string()))
            .await;
    }
    for i in 0..200 {
        assert_eq!(
            client.next_json().await["object"]["data"]["content"],
            i.to_string()
        );
    }
    server.shutdown().await;
}

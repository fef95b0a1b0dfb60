//! Who a post reaches: channel subscribers, every device of a user and nobody else, all
//! but the sender, a filter, everyone; encoded once however many recipients; callback
//! and stream listeners.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use streampod::auth::{self, AuthInfo};
use streampod::messages::Reach;
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::{command, content, Rooms};
use streampod_tests::{eventually, raise_fd_limit};

const QUIET: Duration = Duration::from_millis(300);

async fn start() -> Server<Protocol> {
    Server::builder()
        .endpoint("rooms", Rooms::default())
        .authentication(auth::from_fn(|key: String| async move {
            key.strip_prefix("user-").map(AuthInfo::new)
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn chat(text: &str) -> ChatMessage {
    ChatMessage {
        sender_name: "server".into(),
        content: text.into(),
        timestamp: None,
        channel_id: "room".into(),
        priority: Priority::Normal,
    }
}

#[tokio::test]
async fn a_user_gets_the_message_on_every_device_and_nobody_else_does() {
    let server = start().await;
    let addr = server.local_addr();
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(TestClient::connect(addr, "?auth=user-7").await);
    }
    let mut other_user = TestClient::connect(addr, "?auth=user-8").await;
    let mut anonymous = TestClient::connect(addr, "").await;
    eventually("all connected", || server.handle().session_count() == 5).await;

    let report = server
        .handle()
        .messages()
        .to_user("7", "rooms")
        .post(chat("for 7"))
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 3);
    for device in &mut devices {
        let frame = device.next_json().await;
        assert_eq!(
            (frame["endpoint"].as_str(), content(&frame)),
            (Some("rooms"), "for 7")
        );
    }
    assert!(other_user.is_quiet(QUIET).await);
    assert!(anonymous.is_quiet(QUIET).await);

    // Signing a device out removes it from the user's sessions.
    devices[0]
        .send_text(r#"{"command":"auth","args":{"key":null}}"#)
        .await;
    devices[0].send_text(r#"{"command":"ping"}"#).await;
    devices[0].next_json().await;
    let report = server
        .handle()
        .messages()
        .to_user("7", "rooms")
        .post(chat("again"))
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn all_but_the_sender() {
    let server = start().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut client = TestClient::connect(server.local_addr(), "").await;
        command(&mut client, "join", "room").await;
        clients.push(client);
    }
    clients[0]
        .send_model(
            "rooms",
            "ChatMessage",
            serde_json::json!({"senderName": "a", "content": "others", "channelId": "room"}),
        )
        .await;
    for client in &mut clients[1..] {
        let frame = client.next_json().await;
        assert_eq!(frame["object"]["data"]["senderName"], "a");
    }
    assert!(clients[0].is_quiet(QUIET).await, "the sender gets nothing");

    // A plain post reaches the sender too.
    clients[0]
        .send_model(
            "rooms",
            "ChatMessage",
            serde_json::json!({"senderName": "a", "content": "all", "channelId": "room"}),
        )
        .await;
    for client in &mut clients {
        assert_eq!(content(&client.next_json().await), "all");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn filter_by_tag_and_broadcast_to_everyone() {
    let server = start().await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut client = TestClient::connect(server.local_addr(), "").await;
        if i % 2 == 0 {
            command(&mut client, "tag:beta", "-").await;
        }
        clients.push(client);
    }
    let messages = server.handle().messages();
    let report = messages
        .to_all("rooms")
        .filter(|s| s.has_tag("beta"))
        .post(chat("beta only"))
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 2);
    for (i, client) in clients.iter_mut().enumerate() {
        if i % 2 == 0 {
            assert_eq!(content(&client.next_json().await), "beta only");
        } else {
            assert!(client.is_quiet(QUIET).await, "client {i} is not tagged");
        }
    }
    let report = messages
        .to_all("rooms")
        .post(chat("everyone"))
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 4);
    for client in &mut clients {
        assert_eq!(content(&client.next_json().await), "everyone");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn one_encode_for_a_thousand_recipients() {
    raise_fd_limit();
    let server = start().await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        let mut client = TestClient::connect(server.local_addr(), "").await;
        command(&mut client, "join", "big").await;
        clients.push(client);
    }
    let messages = server.handle().messages();
    assert_eq!(messages.listener_count("big"), 1000);
    let before = messages.stats().frames_encoded;
    let report = messages
        .post_message("big", chat("once"), Reach::Local)
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 1000);
    assert_eq!(
        messages.stats().frames_encoded - before,
        1,
        "one encode for 1,000 recipients"
    );
    for client in &mut clients {
        assert_eq!(content(&client.next_json().await), "once");
    }
    let before = messages.stats().frames_encoded;
    assert_eq!(
        messages
            .to_all("rooms")
            .post(chat("all"))
            .unwrap()
            .delivered(),
        Some(1000)
    );
    assert_eq!(
        messages.stats().frames_encoded - before,
        1,
        "broadcasts encode once too"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn callback_and_stream_listeners() {
    let server = start().await;
    let messages = server.handle().messages();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = messages
        .add_listener("news", move |message: &Protocol| {
            let _ = tx.send(message.clone());
        })
        .expect("a short channel name");
    let mut stream = messages
        .create_stream("news")
        .expect("a short channel name");
    assert_eq!(messages.listener_count("news"), 2);

    // From a background task, as Serverpod's seeds do from method calls and jobs.
    let poster = messages.clone();
    tokio::spawn(async move {
        for i in 0..3 {
            poster
                .post_message("news", chat(&i.to_string()), Reach::Local)
                .unwrap();
        }
    })
    .await
    .unwrap();
    for i in 0..3 {
        let Protocol::ChatMessage(heard) = rx.recv().await.unwrap() else {
            panic!()
        };
        assert_eq!(heard.content, i.to_string());
        let Protocol::ChatMessage(streamed) = &*stream.next().await.unwrap() else {
            panic!()
        };
        assert_eq!(streamed.content, i.to_string());
    }
    assert!(handle.remove());
    drop(stream);
    assert_eq!(messages.listener_count("news"), 0);
    assert_eq!(messages.channel_count(), 0, "an empty channel is dropped");
    let report = messages
        .post_message("news", chat("nobody"), Reach::Local)
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn leaving_a_channel_stops_delivery() {
    let server = start().await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    command(&mut client, "join", "room").await;
    command(&mut client, "join", "room").await; // joining twice is harmless
    let messages = server.handle().messages();
    assert_eq!(messages.listener_count("room"), 1);
    messages
        .post_message("room", chat("in"), Reach::Local)
        .unwrap();
    assert_eq!(content(&client.next_json().await), "in");
    command(&mut client, "leave", "room").await;
    assert_eq!(
        messages
            .post_message("room", chat("out"), Reach::Local)
            .unwrap()
            .delivered(),
        Some(0)
    );
    assert!(client.is_quiet(QUIET).await);
    server.shutdown().await;
}

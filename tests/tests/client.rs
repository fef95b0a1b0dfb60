//! The typed Rust client against a real server: typed messages both ways, batches
//! unpacked, error frames, method calls with typed results and exceptions, and
//! reconnection after a server restart with subscriptions restored by the hook.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// `Lookup` is a fixture whose method names say what each exercises.
#![allow(missing_docs, missing_debug_implementations)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use streampod::client::{Backoff, CallError, Client, ClientError, ConnectionState, Incoming};
use streampod::messages::Reach;
use streampod::protocol::ErrorCode;
use streampod::{endpoint, Server};
use streampod_tests::eventually;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol, RoomNotFound};
use streampod_tests::rooms::Rooms;

pub struct Lookup;

#[endpoint]
impl Lookup {
    pub async fn room(&self, room_id: String) -> Result<ChatMessage, RoomNotFound> {
        if room_id == "lobby" {
            Ok(chat("lobby", "welcome"))
        } else {
            Err(RoomNotFound {
                room_id,
                message: Some("no such room".into()),
            })
        }
    }
}

fn chat(channel: &str, content: &str) -> ChatMessage {
    ChatMessage {
        sender_name: "t".into(),
        content: content.into(),
        timestamp: None,
        channel_id: channel.into(),
        priority: Priority::Normal,
    }
}

async fn start_on(addr: &str) -> Server<Protocol> {
    Server::builder()
        .endpoint("rooms", Rooms::default())
        .methods("lookup", Lookup)
        .bind(addr)
        .await
        .unwrap()
}

async fn next_message(client: &Client<Protocol>) -> (String, ChatMessage) {
    match tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .unwrap()
    {
        Some(Incoming::Message {
            endpoint,
            message: Protocol::ChatMessage(chat),
        }) => (endpoint, chat),
        other => panic!("expected a chat message, got {other:?}"),
    }
}

#[tokio::test]
async fn typed_messages_batches_errors_and_calls() {
    let server = start_on("127.0.0.1:0").await;
    let base = format!("http://{}", server.local_addr());
    let client = Client::<Protocol>::connect(&base).await.unwrap();
    assert_eq!(client.state(), ConnectionState::Connected);

    client.send("rooms", chat("news", "join")).unwrap();
    let (endpoint, ack) = next_message(&client).await;
    assert_eq!(
        (endpoint.as_str(), ack.content.as_str()),
        ("rooms", "ack:join")
    );

    // A batch frame arrives as individual messages, in order.
    let batched = server
        .handle()
        .messages()
        .batched("news", Duration::from_secs(10), 3);
    for i in 0..3 {
        batched.post(chat("news", &format!("b{i}"))).unwrap();
    }
    for i in 0..3 {
        assert_eq!(next_message(&client).await.1.content, format!("b{i}"));
    }

    client.send("no-such-endpoint", chat("news", "x")).unwrap();
    match client.recv().await.unwrap() {
        Incoming::Error { code, message } => {
            assert_eq!(code, ErrorCode::UnknownEndpoint);
            assert!(message.contains("no-such-endpoint"), "{message}");
        }
        other => panic!("expected an error frame, got {other:?}"),
    }

    let welcome: ChatMessage = client
        .call::<ChatMessage, RoomNotFound>("lookup", "room", json!({"roomId": "lobby"}))
        .await
        .unwrap();
    assert_eq!(welcome.content, "welcome");
    match client
        .call::<ChatMessage, RoomNotFound>("lookup", "room", json!({"roomId": "attic"}))
        .await
    {
        Err(CallError::Exception(exception)) => assert_eq!(exception.room_id, "attic"),
        other => panic!("expected the typed exception, got {other:?}"),
    }
    match client
        .call::<ChatMessage, RoomNotFound>("lookup", "rooms", json!({}))
        .await
    {
        Err(CallError::Status { status, body }) => {
            assert_eq!(status, 404);
            assert!(body.contains("did you mean 'room'"), "{body}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    client.close().await;
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert!(matches!(
        client.send("rooms", chat("news", "late")),
        Err(ClientError::NotConnected)
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_a_restart_and_restores_subscriptions() {
    let server = start_on("127.0.0.1:0").await;
    let addr: SocketAddr = server.local_addr();
    let backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    let client = Client::<Protocol>::builder(format!("ws://{addr}"))
        .backoff(backoff)
        .on_connect(|client| async move {
            // Re-join after every connect; the server forgets subscriptions on close.
            client.send("rooms", chat("news", "join")).unwrap();
        })
        .connect()
        .await
        .unwrap();
    assert_eq!(next_message(&client).await.1.content, "ack:join");
    let mut states = client.state_changes();

    server.shutdown().await;
    eventually("the client notices", || {
        client.state() != ConnectionState::Connected
    })
    .await;
    assert!(
        matches!(
            client.send("rooms", chat("news", "lost?")),
            Err(ClientError::NotConnected)
        ),
        "no silent loss"
    );

    // Every delay it waits is within the backoff's cap for that attempt.
    let mut seen = Vec::new();
    let restarted = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        start_on(&addr.to_string()).await
    });
    loop {
        tokio::time::timeout(Duration::from_secs(10), states.changed())
            .await
            .unwrap()
            .unwrap();
        let state = states.borrow_and_update().clone();
        if let ConnectionState::Reconnecting { attempt, delay } = state {
            assert!(
                delay <= backoff.cap(attempt),
                "attempt {attempt} waited {delay:?}"
            );
            seen.push(delay);
        }
        if state == ConnectionState::Connected {
            break;
        }
    }
    assert!(
        seen.len() >= 2,
        "it retried while the server was down: {seen:?}"
    );
    let server = restarted.await.unwrap();

    // The hook re-joined: posts to the channel reach the client again.
    assert_eq!(next_message(&client).await.1.content, "ack:join");
    let report = server
        .handle()
        .messages()
        .post_message("news", chat("news", "after restart"), Reach::Local)
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 1);
    assert_eq!(next_message(&client).await.1.content, "after restart");
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn gives_up_after_the_allowed_attempts() {
    // Nothing listens on this port once the listener is dropped.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let result = Client::<Protocol>::builder(format!("http://{addr}"))
        .backoff(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ))
        .max_attempts(Some(3))
        .connect()
        .await;
    assert!(matches!(result, Err(ClientError::Connect(_))), "{result:?}");
    assert!(matches!(
        Client::<Protocol>::connect("ftp://example").await,
        Err(ClientError::InvalidUrl(_))
    ));
}

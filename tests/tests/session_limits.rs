//! Per-session limits over real sockets: channels per session and name length, closing a
//! session that holds many channels without stalling anyone, bounded error echoes, and
//! the server-wide memory guard.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use streampod::messages::Reach;
use streampod::{RateLimit, Server, ServerConfig};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Protocol};
use streampod_tests::rooms::Rooms;
use streampod_tests::{eventually, raise_fd_limit};

fn subscribe(room: &str) -> serde_json::Value {
    json!({"channelId": room, "subscribe": true})
}

#[tokio::test]
async fn joins_beyond_the_limits_are_refused_with_the_reason() {
    let server = example_server::server()
        .config(ServerConfig::default().max_channels_per_session(3))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut client = TestClient::connect(server.local_addr(), "").await;
    for room in ["a", "b", "c", "d"] {
        client
            .send_model("chat", "ChannelSubscription", subscribe(room))
            .await;
    }
    let refusal = loop {
        let frame = client.next_json().await;
        if frame["object"]["className"] == "InvalidRequest" {
            break frame;
        }
    };
    let message = refusal["object"]["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("room 'd'") && message.contains("3 channels"),
        "{message}"
    );
    assert_eq!(server.handle().messages().total_listeners(), 3);

    // The default name limit is 255 bytes, and the room's channel adds a prefix.
    let server = example_server::server().bind("127.0.0.1:0").await.unwrap();
    let mut client = TestClient::connect(server.local_addr(), "").await;
    let long = "r".repeat(250);
    client
        .send_model("chat", "ChannelSubscription", subscribe(&long))
        .await;
    let refusal = client.next_json().await;
    let message = refusal["object"]["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("exceeds the limit of 255 bytes"),
        "{message}"
    );
    assert!(
        message.len() < 200,
        "the name is not echoed whole: {message}"
    );
    assert_eq!(server.handle().messages().total_listeners(), 0);
}

/// Joins `count` channels with ~1 KB names through the rooms endpoint, pipelined.
async fn join_many(client: &mut TestClient, prefix: &str, count: usize) {
    let padding = "x".repeat(1000);
    let mut indexes = (0..count).peekable();
    while indexes.peek().is_some() {
        // In chunks, so the acks never fill the outbound queue.
        let chunk: Vec<usize> = indexes.by_ref().take(1000).collect();
        for index in &chunk {
            let channel = format!("{prefix}-{index}-{padding}");
            client
                .send_model(
                    "rooms",
                    "ChatMessage",
                    json!({"senderName": "s", "content": "join", "channelId": channel}),
                )
                .await;
        }
        for _ in &chunk {
            assert_eq!(
                client.next_json().await["object"]["data"]["content"],
                "ack:join"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_sessions_that_hold_many_channels_does_not_stall_the_server() {
    raise_fd_limit();
    const CHANNELS: usize = 15_000;
    let server = Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .config(
            ServerConfig::default()
                .max_channels_per_session(CHANNELS)
                .max_channel_name_len(2048)
                .inbound_rate_limit(None),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut heavy = Vec::new();
    for prefix in ["a", "b"] {
        let mut client = TestClient::connect(addr, "").await;
        join_many(&mut client, prefix, CHANNELS).await;
        heavy.push(client);
    }
    let messages = server.handle().messages();
    assert_eq!(messages.total_listeners(), 2 * CHANNELS);

    let mut healthy = TestClient::connect(addr, "").await;
    healthy.round_trip().await;
    for client in heavy {
        client.close().await;
    }
    let mut round_trips = Vec::new();
    let started = Instant::now();
    while messages.total_listeners() > 0 || round_trips.len() < 50 {
        let sent = Instant::now();
        healthy.round_trip().await;
        round_trips.push(sent.elapsed());
        assert!(started.elapsed() < Duration::from_secs(30), "still closing");
    }
    round_trips.sort();
    let p99 = round_trips[round_trips.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(50),
        "ping p99 {p99:?} while {} channels were left",
        2 * CHANNELS
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_memory_guard_closes_the_biggest_holders_first() {
    const FRAME: usize = 64 << 10;
    let server = Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .config(
            ServerConfig::default()
                .outbound_queue_bytes(256 << 20)
                .max_total_queued_bytes(2 << 20),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let join = json!({"senderName": "s", "content": "join", "channelId": "big"});
    let mut stalled = TestClient::connect(addr, "").await;
    stalled
        .send_model("rooms", "ChatMessage", join.clone())
        .await;
    stalled.next_json().await;
    let mut healthy = TestClient::connect(addr, "").await;
    healthy.send_model("rooms", "ChatMessage", join).await;
    healthy.next_json().await;
    // The stalled client stops reading; the healthy one reads everything.
    let stalled = stalled.into_inner();
    const POSTS: usize = 400;
    let reader = tokio::spawn(async move {
        for _ in 0..POSTS {
            let frame = healthy.next_json().await;
            assert_eq!(
                frame["object"]["data"]["content"].as_str().unwrap().len(),
                FRAME
            );
        }
        healthy
    });
    let messages = server.handle().messages();
    for _ in 0..POSTS {
        let message = ChatMessage {
            sender_name: "s".into(),
            content: "y".repeat(FRAME),
            channel_id: "big".into(),
            timestamp: None,
            priority: Default::default(),
        };
        messages.post_message("big", message, Reach::Local).unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut healthy = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the healthy client gets every frame")
        .unwrap();

    eventually("the stalled session is closed", || {
        server.handle().session_count() == 1
    })
    .await;
    healthy.round_trip().await;
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test]
async fn error_frames_do_not_echo_a_huge_input() {
    let server = Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut client = TestClient::connect(server.local_addr(), "").await;
    let huge = "e".repeat(900_000);
    client
        .send_model(&huge, "ChatMessage", json!({"content": "x"}))
        .await;
    let error = client.expect_error("unknown_endpoint").await;
    assert!(
        error.to_string().len() < 1024,
        "{} bytes",
        error.to_string().len()
    );
    server.shutdown().await;
}

/// A server whose rooms endpoint takes the server's limit and whose `fast` endpoint
/// (rooms again) has a higher one of its own.
async fn limited_server(limit: RateLimit) -> Server<Protocol> {
    #[derive(Clone, Default)]
    struct Fast(Rooms);
    impl streampod::Endpoint<Protocol> for Fast {
        async fn handle_stream_message(
            &self,
            session: &streampod::StreamingSession<Protocol>,
            message: Protocol,
        ) -> Result<(), streampod::EndpointError> {
            self.0.handle_stream_message(session, message).await
        }
        fn inbound_rate_limit(&self) -> Option<RateLimit> {
            Some(RateLimit::new(10_000, 10_000))
        }
    }
    Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .endpoint("fast", Fast::default())
        .config(ServerConfig::default().inbound_rate_limit(Some(limit)))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn chat(content: &str) -> serde_json::Value {
    json!({"senderName": "s", "content": content, "channelId": "flood"})
}

#[tokio::test]
async fn a_flood_is_refused_past_the_burst_and_then_closed() {
    let server = limited_server(RateLimit::default()).await;
    let addr = server.local_addr();
    let mut member = TestClient::connect(addr, "").await;
    member
        .send_model("rooms", "ChatMessage", chat("join"))
        .await;
    member.next_json().await;
    let mut flooder = TestClient::connect(addr, "").await;
    // 20,000 posts as fast as the socket takes them (the attack: all within ~0.1 s).
    let mut sent = 0;
    let flood_started = Instant::now();
    let frame =
        json!({"endpoint": "rooms", "object": {"className": "ChatMessage", "data": chat("spam")}})
            .to_string();
    while sent < 20_000 {
        if flooder.try_send_text(&frame).await.is_err() {
            break;
        }
        sent += 1;
    }
    let (mut refused, mut close) = (0, None);
    loop {
        match flooder.next_message().await {
            Some(tokio_tungstenite::tungstenite::Message::Text(text)) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(frame["error"]["code"], "rate_limited", "{frame}");
                refused += 1;
            }
            Some(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            // Closing with unread frames in its socket makes the kernel reset the
            // connection, which may swallow the close frame: the session count shows it.
            None => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    if let Some(close) = close {
        assert_eq!(close, (1008, "inbound rate limit exceeded".to_owned()));
    }
    eventually("the flooder is closed", || {
        server.handle().session_count() == 1
    })
    .await;
    // The bucket refills at 200 per second while the flood lasts.
    let refilled = (flood_started.elapsed().as_secs_f64() * 200.0).ceil() as usize;
    eprintln!("{sent} sent, {refused} refusals read, {refilled} tokens refilled");
    // The room got the burst, not the flood.
    let mut delivered = 0;
    // Each call that is not quiet has taken one frame.
    while !member.is_quiet(Duration::from_millis(300)).await {
        delivered += 1;
    }
    assert!(
        (2000..=2000 + refilled).contains(&delivered),
        "{delivered} of {sent} posts reached the room ({refilled} tokens refilled)"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_with_its_own_limit_counts_apart() {
    let server = limited_server(RateLimit::new(1, 5)).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    for _ in 0..100 {
        client.send_model("fast", "ChatMessage", chat("ping")).await;
    }
    for _ in 0..6 {
        client
            .send_model("rooms", "ChatMessage", chat("join"))
            .await;
    }
    // The fast posts went to a channel nobody had joined yet; five joins fit the
    // server's bucket, the sixth does not.
    for _ in 0..5 {
        assert_eq!(
            client.next_json().await["object"]["data"]["content"],
            "ack:join"
        );
    }
    let error = client.expect_error("rate_limited").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("more than 1 frames per second (bursts of 5)"),
        "{error}"
    );
    server.shutdown().await;
}

//! Slow consumers: a client that never reads never delays the publisher or a healthy
//! client. Under `Disconnect` it is closed with 1008; under `DropOldest` it keeps the
//! newest frames.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streampod::{Server, ServerConfig, SessionHandle, SlowConsumerPolicy};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::recorder::{session_id, Recorder};
use streampod_tests::{eventually, read_indexes_until, sender_index};

/// More than the slow socket's kernel buffers and its queue can hold.
const MESSAGES: usize = 300;
const PAYLOAD: usize = 64 * 1024;

fn message(index: usize, padding: &str) -> ChatMessage {
    ChatMessage {
        sender_name: index.to_string(),
        content: padding.to_owned(),
        timestamp: None,
        channel_id: "flood".into(),
        priority: Priority::Normal,
    }
}

struct Run {
    server: Server<Protocol>,
    recorder: Recorder,
    slow: TestClient,
    slow_id: u64,
    /// Indexes the healthy client received, in order.
    healthy_received: Vec<usize>,
    /// The longest any single send call took.
    slowest_send: Duration,
}

/// Publishes MESSAGES large frames to a healthy client (which reads them) and a slow
/// one (which never reads). The publisher paces itself on the healthy client only.
async fn flood(policy: SlowConsumerPolicy) -> Run {
    let recorder = Recorder::default();
    let config = ServerConfig::default()
        .slow_consumer(policy)
        .outbound_queue_frames(64)
        .close_timeout(Duration::from_secs(5));
    let server = Server::builder()
        .endpoint("chat", recorder.clone())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut healthy = TestClient::connect(server.local_addr(), "").await;
    let healthy_id = session_id(&mut healthy).await;
    let mut slow = TestClient::connect(server.local_addr(), "").await;
    let slow_id = session_id(&mut slow).await;

    let received = Arc::new(AtomicUsize::new(0));
    let reader = tokio::spawn({
        let received = received.clone();
        async move {
            let mut order = Vec::with_capacity(MESSAGES);
            while order.len() < MESSAGES {
                let frame = healthy.next_json().await;
                order.push(sender_index(&frame));
                received.fetch_add(1, Ordering::Relaxed);
            }
            order
        }
    });

    let handle = server.handle();
    let to_healthy: SessionHandle<Protocol> = handle.session(healthy_id).unwrap();
    let to_slow: SessionHandle<Protocol> = handle.session(slow_id).unwrap();
    let padding = "x".repeat(PAYLOAD);
    let mut slowest_send = Duration::ZERO;
    for index in 0..MESSAGES {
        // Stay within the healthy client's queue; never wait for the slow one.
        while received.load(Ordering::Relaxed) + 32 < index {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = std::time::Instant::now();
        to_healthy
            .send("chat", message(index, &padding))
            .expect("the healthy client keeps up");
        let _ = to_slow.send("chat", message(index, &padding));
        slowest_send = slowest_send.max(started.elapsed());
    }
    let healthy_received = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    Run {
        server,
        recorder,
        slow,
        slow_id,
        healthy_received,
        slowest_send,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_reading_client_is_disconnected_and_delays_nobody() {
    let mut run = flood(SlowConsumerPolicy::Disconnect).await;
    assert_eq!(
        run.healthy_received,
        (0..MESSAGES).collect::<Vec<_>>(),
        "healthy client got everything, in order"
    );
    assert!(
        run.slowest_send < Duration::from_secs(1),
        "a send waited {:?}",
        run.slowest_send
    );
    eventually("stream_closed for the slow consumer", || {
        run.recorder.closed_count(run.slow_id) == 1
    })
    .await;
    assert!(run.server.handle().session(run.slow_id).is_none());

    // The slow client drains what reached its socket, then sees why it was closed.
    let close = run.slow.expect_close().await;
    assert_eq!(close, Some((1008, "slow consumer".into())));
    run.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_a_slow_client_with_the_newest_frames() {
    let mut run = flood(SlowConsumerPolicy::DropOldest).await;
    assert_eq!(run.healthy_received, (0..MESSAGES).collect::<Vec<_>>());
    assert!(
        run.slowest_send < Duration::from_secs(1),
        "a send waited {:?}",
        run.slowest_send
    );
    assert_eq!(
        run.recorder.closed_count(run.slow_id),
        0,
        "not disconnected"
    );

    // Now it reads: frames arrive in order with a gap, and end with the newest one.
    let seen = read_indexes_until(&mut run.slow, MESSAGES - 1).await;
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    assert!(
        seen.len() < MESSAGES,
        "older frames were dropped: got {}",
        seen.len()
    );
    run.server.shutdown().await;
}

#[tokio::test]
async fn a_frame_larger_than_the_queue_cap_is_refused_to_its_poster_not_the_reader() {
    use streampod::messages::{PostError, Reach};
    use streampod::SendError;

    let server = Server::builder()
        .endpoint("rooms", streampod_tests::rooms::Rooms::default())
        .config(ServerConfig::default().outbound_queue_bytes(64 << 10))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut reader = TestClient::connect(server.local_addr(), "").await;
    let join = serde_json::json!({"senderName": "r", "content": "join", "channelId": "flood"});
    reader.send_model("rooms", "ChatMessage", join).await;
    assert_eq!(
        reader.next_json().await["object"]["data"]["content"],
        "ack:join"
    );
    let messages = server.handle().messages();
    let handle = server.handle().sessions().pop().unwrap();

    // 100 KB through a 64 KiB queue: no reader could ever take it.
    let big = message(1, &"x".repeat(100_000));
    match messages.post_message("flood", big.clone(), Reach::Local) {
        Err(PostError::TooLarge { bytes, limit }) => {
            assert!(bytes > 100_000, "{bytes}");
            assert_eq!(limit, 64 << 10);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    match handle.send("rooms", big) {
        Err(SendError::TooLarge { limit, .. }) => assert_eq!(limit, 64 << 10),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The reader was not cut for it: it still talks and gets what fits.
    let report = messages
        .post_message("flood", message(2, "small"), Reach::Local)
        .unwrap();
    assert_eq!(report.delivered(), Some(1));
    let frame = reader.next_json().await;
    assert_eq!(frame["object"]["data"]["content"], "small", "{frame}");
    reader.round_trip().await;
    server.shutdown().await;
}

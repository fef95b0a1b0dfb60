//! A never-reading subscriber under each channel policy never delays the publisher or a
//! healthy subscriber, and the delivery reports count what happened to it.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streampod::messages::{ChannelConfig, DeliveryReport, Reach};
use streampod::{Server, ServerConfig, SlowConsumerPolicy};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::{command, Rooms};
use streampod_tests::{eventually, read_indexes_until, sender_index};

const MESSAGES: usize = 300;
const PAYLOAD: usize = 64 * 1024;

struct Outcome {
    server: Server<Protocol>,
    slow: TestClient,
    /// Kept open so the channel keeps its healthy listener.
    _healthy: TestClient,
    healthy_received: Vec<usize>,
    total: DeliveryReport,
    slowest_post: Duration,
}

async fn run(policy: SlowConsumerPolicy) -> Outcome {
    let config = ServerConfig::default()
        .outbound_queue_frames(64)
        .close_timeout(Duration::from_secs(5));
    let server = Server::builder()
        .endpoint("rooms", Rooms::default())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let messages = server.handle().messages();
    messages.configure_channel("feed", ChannelConfig::slow_consumer(policy));
    let mut healthy = TestClient::connect(server.local_addr(), "").await;
    command(&mut healthy, "join", "feed").await;
    let mut slow = TestClient::connect(server.local_addr(), "").await;
    command(&mut slow, "join", "feed").await;

    // The newest index the healthy subscriber has seen, plus one.
    let progress = Arc::new(AtomicUsize::new(0));
    let reader = tokio::spawn({
        let progress = progress.clone();
        async move {
            let mut order = Vec::new();
            while order.last() != Some(&(MESSAGES - 1)) {
                let frame = healthy.next_json().await;
                let index = sender_index(&frame);
                order.push(index);
                progress.store(index + 1, Ordering::Relaxed);
            }
            (order, healthy)
        }
    });
    let padding = "x".repeat(PAYLOAD);
    let mut total = DeliveryReport::default();
    let mut slowest_post = Duration::ZERO;
    for index in 0..MESSAGES {
        // Stay near the healthy subscriber; never wait for the slow one.
        while progress.load(Ordering::Relaxed) + 32 < index {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let message = ChatMessage {
            sender_name: index.to_string(),
            content: padding.clone(),
            timestamp: None,
            channel_id: "feed".into(),
            priority: Priority::Normal,
        };
        let started = std::time::Instant::now();
        let report = messages
            .post_message("feed", message, Reach::Local)
            .unwrap()
            .local()
            .expect("a local post");
        slowest_post = slowest_post.max(started.elapsed());
        total.delivered += report.delivered;
        total.dropped += report.dropped;
        total.disconnected += report.disconnected;
    }
    let (healthy_received, healthy) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    Outcome {
        server,
        slow,
        _healthy: healthy,
        healthy_received,
        total,
        slowest_post,
    }
}

fn check_healthy(outcome: &Outcome) {
    assert_eq!(
        outcome.healthy_received,
        (0..MESSAGES).collect::<Vec<_>>(),
        "the healthy subscriber got everything in order"
    );
    check_publisher(outcome);
}

fn check_publisher(outcome: &Outcome) {
    assert!(
        outcome.slowest_post < Duration::from_secs(1),
        "a post waited {:?}",
        outcome.slowest_post
    );
}

/// Reads the slow client until the newest message; returns the indexes it saw.
async fn drain_to_newest(slow: &mut TestClient) -> Vec<usize> {
    read_indexes_until(slow, MESSAGES - 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_policy_closes_the_slow_subscriber() {
    let mut outcome = run(SlowConsumerPolicy::Disconnect).await;
    check_healthy(&outcome);
    assert_eq!(outcome.total.disconnected, 1, "{:?}", outcome.total);
    let messages = outcome.server.handle().messages();
    eventually("the slow session left the channel", || {
        messages.listener_count("feed") == 1
    })
    .await;
    assert_eq!(
        outcome.slow.expect_close().await,
        Some((1008, "slow consumer".into()))
    );
    outcome.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_policy_keeps_the_slow_subscriber_with_the_newest() {
    let mut outcome = run(SlowConsumerPolicy::DropOldest).await;
    check_healthy(&outcome);
    assert_eq!(outcome.total.disconnected, 0);
    assert!(outcome.total.dropped > 0, "{:?}", outcome.total);
    let seen = drain_to_newest(&mut outcome.slow).await;
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    assert!(seen.len() < MESSAGES);
    outcome.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_value_policy_skips_to_the_newest() {
    let mut outcome = run(SlowConsumerPolicy::LatestValue).await;
    // Every subscriber conflates while it has a frame of the channel waiting, so even a
    // healthy one may skip values; it sees them in order and ends on the newest.
    let healthy = &outcome.healthy_received;
    assert!(
        healthy.windows(2).all(|pair| pair[0] < pair[1]),
        "in order: {healthy:?}"
    );
    assert_eq!(healthy.last(), Some(&(MESSAGES - 1)));
    check_publisher(&outcome);
    assert_eq!(outcome.total.disconnected, 0);
    let seen = drain_to_newest(&mut outcome.slow).await;
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    // Once behind, at most one frame of the channel waits: everything the socket could
    // not take was replaced by newer values.
    assert!(
        seen.len() < MESSAGES / 2,
        "got {} of {MESSAGES}",
        seen.len()
    );
    assert!(
        outcome.total.dropped >= MESSAGES - seen.len() - 1,
        "{:?}",
        outcome.total
    );
    outcome.server.shutdown().await;
}

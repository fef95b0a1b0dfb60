//! Fan-out under concurrency: 8 publishers × 1,000 messages to 500 subscribers arrive
//! complete and in per-publisher order.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use streampod::messages::Reach;
use streampod::{Server, ServerConfig};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority};
use streampod_tests::raise_fd_limit;
use streampod_tests::rooms::{command, Rooms};
use tokio_tungstenite::tungstenite::Message;

const PUBLISHERS: usize = 8;
const MESSAGES: usize = 1000;
const SUBSCRIBERS: usize = 500;

/// `(publisher, sequence)` from a frame's text, without a full JSON parse.
fn publisher_and_sequence(text: &str) -> (usize, usize) {
    let start = text.find("\"content\":\"p").expect("a content field") + "\"content\":\"p".len();
    let rest = &text[start..];
    let end = rest.find('"').unwrap();
    let (publisher, sequence) = rest[..end].split_once(':').unwrap();
    (publisher.parse().unwrap(), sequence.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_reach_every_subscriber_in_order() {
    raise_fd_limit();
    // Queues deep enough for the whole burst: this test is about order, not slowness.
    let config = ServerConfig::default().outbound_queue_frames(PUBLISHERS * MESSAGES + 16);
    let server = Server::builder()
        .endpoint("rooms", Rooms::default())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();

    let mut readers = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        let mut client = TestClient::connect(server.local_addr(), "").await;
        command(&mut client, "join", "fanout").await;
        let mut socket = client.into_inner();
        readers.push(tokio::spawn(async move {
            let mut next_expected = [0_usize; PUBLISHERS];
            let mut received = 0;
            while received < PUBLISHERS * MESSAGES {
                let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
                    .await
                    .expect("frames keep arriving")
                    .expect("socket open")
                    .expect("no socket error");
                let Message::Text(text) = message else {
                    continue;
                };
                let (publisher, sequence) = publisher_and_sequence(&text);
                assert_eq!(
                    sequence, next_expected[publisher],
                    "publisher {publisher} out of order"
                );
                next_expected[publisher] += 1;
                received += 1;
            }
            next_expected
        }));
    }
    let messages = server.handle().messages();
    assert_eq!(messages.listener_count("fanout"), SUBSCRIBERS);

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let messages = messages.clone();
            tokio::spawn(async move {
                for sequence in 0..MESSAGES {
                    let message = ChatMessage {
                        sender_name: "publisher".into(),
                        content: format!("p{publisher}:{sequence}"),
                        timestamp: None,
                        channel_id: "fanout".into(),
                        priority: Priority::Normal,
                    };
                    let report = messages
                        .post_message("fanout", message, Reach::Local)
                        .unwrap()
                        .local()
                        .expect("a local post");
                    assert_eq!(report.delivered, SUBSCRIBERS);
                    if sequence % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), [MESSAGES; PUBLISHERS]);
    }
    server.shutdown().await;
}

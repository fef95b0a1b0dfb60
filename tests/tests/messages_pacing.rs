//! Throttled posts (at most one per interval, the newest wins, none held back longer than
//! the interval) and batched posts (one frame per window or per K messages; clients
//! unpack them in order).

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streampod::messages::Throttle;
use streampod::protocol::frame::Frame;
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::{command, content, Rooms};
use tokio_tungstenite::tungstenite::Message;

fn chat(text: String) -> ChatMessage {
    ChatMessage {
        sender_name: "server".into(),
        content: text,
        timestamp: None,
        channel_id: "ticks".into(),
        priority: Priority::Normal,
    }
}

async fn subscriber() -> (Server<Protocol>, TestClient) {
    let server = Server::builder()
        .endpoint("rooms", Rooms::default())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut client = TestClient::connect(server.local_addr(), "").await;
    command(&mut client, "join", "ticks").await;
    (server, client)
}

#[tokio::test]
async fn throttled_posts_send_the_first_and_the_newest_of_each_interval() {
    let (server, mut client) = subscriber().await;
    let interval = Duration::from_millis(300);
    let throttled = server.handle().messages().throttled("ticks", interval);

    let burst_started = tokio::time::Instant::now();
    assert!(
        matches!(throttled.post(chat("0".into())).unwrap(), Throttle::Sent(report) if report.delivered == 1)
    );
    for i in 1..50 {
        assert_eq!(
            throttled.post(chat(i.to_string())).unwrap(),
            Throttle::Deferred
        );
    }
    assert_eq!(content(&client.next_json().await), "0");
    let newest = client.next_json().await;
    let waited = burst_started.elapsed();
    assert_eq!(content(&newest), "49", "the newest deferred post wins");
    assert!(
        waited >= interval - Duration::from_millis(20),
        "sent after {waited:?}, before the interval ended"
    );
    assert!(
        waited < interval + Duration::from_secs(2),
        "held back {waited:?}"
    );
    assert!(
        client.is_quiet(Duration::from_millis(400)).await,
        "nothing else was sent"
    );

    // After a quiet interval, the next post goes out at once.
    tokio::time::sleep(interval).await;
    assert!(matches!(
        throttled.post(chat("late".into())).unwrap(),
        Throttle::Sent(_)
    ));
    assert_eq!(content(&client.next_json().await), "late");
    server.shutdown().await;
}

/// A throttle with a delivery budget spaces its posts by the channel's size: 300
/// listeners at 1,000 deliveries a second wait 300 ms between posts, not the 20 ms
/// interval; one listener waits the interval.
#[tokio::test]
async fn a_delivery_budget_stretches_the_interval_with_the_channel_size() {
    let server = Server::<Protocol>::builder()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let messages = server.handle().messages();
    let (heard, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let _listeners: Vec<_> = (0..300)
        .map(|index| {
            let heard = heard.clone();
            messages
                .add_listener("crowd", move |message| {
                    if index == 0 {
                        let _ = heard.send((tokio::time::Instant::now(), message.clone()));
                    }
                })
                .expect("a short channel name")
        })
        .collect();
    let interval = Duration::from_millis(20);
    let budget = std::num::NonZeroU32::new(1_000).unwrap();
    let throttled = messages
        .throttled("crowd", interval)
        .with_delivery_budget(budget);

    let started = tokio::time::Instant::now();
    assert!(
        matches!(throttled.post(chat("first".into())).unwrap(), Throttle::Sent(report) if report.delivered == 300)
    );
    tokio::time::sleep(interval * 2).await;
    assert_eq!(
        throttled.post(chat("second".into())).unwrap(),
        Throttle::Deferred,
        "300 deliveries at 1,000 a second hold the next post for 300 ms"
    );
    let (_, first) = arrivals.recv().await.unwrap();
    assert!(matches!(first, Protocol::ChatMessage(ref m) if m.content == "first"));
    let (at, second) = arrivals.recv().await.unwrap();
    assert!(matches!(second, Protocol::ChatMessage(ref m) if m.content == "second"));
    let waited = at - started;
    assert!(
        waited >= Duration::from_millis(290),
        "sent after {waited:?}, inside the budget's 300 ms"
    );
    assert!(waited < Duration::from_secs(2), "held back {waited:?}");

    // One listener: the budget allows more than the interval, so the interval rules.
    let lone = messages
        .throttled("alone", interval)
        .with_delivery_budget(budget);
    let (heard, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let _listener = messages
        .add_listener("alone", move |_| {
            let _ = heard.send(tokio::time::Instant::now());
        })
        .expect("a short channel name");
    let started = tokio::time::Instant::now();
    assert!(matches!(
        lone.post(chat("a".into())).unwrap(),
        Throttle::Sent(_)
    ));
    assert_eq!(lone.post(chat("b".into())).unwrap(), Throttle::Deferred);
    arrivals.recv().await.unwrap();
    let waited = arrivals.recv().await.unwrap() - started;
    assert!(
        (interval - Duration::from_millis(5)..Duration::from_millis(250)).contains(&waited),
        "the second post went out after {waited:?}, not after the 20 ms interval"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn batched_posts_arrive_as_frames_of_at_most_k_or_per_window() {
    let (server, mut client) = subscriber().await;
    let messages = server.handle().messages();
    let heard = Arc::new(AtomicUsize::new(0));
    let counter = heard.clone();
    let _listener = messages
        .add_listener("ticks", move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .expect("a short channel name");
    let batched = messages.batched("ticks", Duration::from_millis(200), 10);
    let started = tokio::time::Instant::now();
    for i in 0..25 {
        batched.post(chat(i.to_string())).unwrap();
    }

    let mut sizes = Vec::new();
    let mut unpacked = Vec::new();
    while unpacked.len() < 25 {
        let Some(Message::Text(text)) = client.next_message().await else {
            panic!("expected a frame")
        };
        let frame = Frame::parse(&text).unwrap();
        assert!(matches!(frame, Frame::Batch(_)), "{text}");
        let items = frame.into_messages();
        sizes.push(items.len());
        for item in items {
            assert_eq!(item.endpoint, "rooms");
            let Protocol::ChatMessage(chat) =
                <Protocol as streampod::ModelSet>::decode(&item.class_name, item.data).unwrap()
            else {
                panic!()
            };
            unpacked.push(chat.content);
        }
    }
    assert_eq!(
        sizes,
        [10, 10, 5],
        "two full batches at once, the rest when the window ends"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(180),
        "the partial batch waited for its window"
    );
    assert_eq!(unpacked, (0..25).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(
        heard.load(Ordering::Relaxed),
        25,
        "callbacks get every message"
    );
    server.shutdown().await;
}

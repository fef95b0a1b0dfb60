//! Graceful drain across a cluster of three servers and one private Redis: 5,000 Rust
//! clients (each given all three addresses) follow a history room while one node is
//! drained over 2 s. The drained node says `draining` on `/health` at once and refuses
//! new sockets; its clients are closed in waves with 1012, move to the other nodes
//! within the window (and the reconnects' own time), and recover the room: every client
//! has every post, once and in order. No second sees more reconnects than the drain's
//! share plus half again (the bound the docs give: `sockets / over` per second, the
//! client's first backoff steps spreading each wave), and they spread over seconds.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use streampod::client::{Client, ConnectionState, Incoming};
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::messages::{ChannelConfig, HistoryConfig};
use streampod::Server;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::http::request;
use streampod_tests::redis_server::RedisServer;
use streampod_tests::rooms::Rooms;

const ROOM: &str = "drain-room";
const CLIENTS: usize = 5_000;
const DRAIN: Duration = Duration::from_secs(2);
/// Posts to the room, one per 200 ms from before the drain to after it.
const POSTS: u64 = 30;

async fn node(redis: &RedisServer) -> Server<Protocol> {
    let server = Server::builder()
        .endpoint("rooms", Rooms::default())
        .cluster(
            ClusterConfig::redis(redis.url())
                .prefix("drain-test")
                .publish_timeout(Duration::from_secs(5)),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    server.handle().messages().configure_channel(
        ROOM,
        ChannelConfig::default().with_history(HistoryConfig::new(10_000, Duration::from_secs(60))),
    );
    let mut changes = server.handle().messages().cluster_state_changes().unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        changes.wait_for(|state| *state == ClusterState::Connected),
    )
    .await
    .expect("connected to Redis within 10 s")
    .unwrap();
    server
}

fn chat(content: String) -> ChatMessage {
    ChatMessage {
        sender_name: "poster".into(),
        content,
        timestamp: None,
        channel_id: ROOM.into(),
        priority: Priority::Normal,
    }
}

/// What one client saw: the posts' numbers in the order they came.
#[derive(Default)]
struct Seen {
    posts: Mutex<Vec<u64>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_s_clients_move_to_the_others_in_waves_and_lose_nothing() {
    streampod_tests::raise_fd_limit();
    let redis = RedisServer::start();
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let urls: Vec<String> = nodes
        .iter()
        .map(|node| format!("ws://{}", node.local_addr()))
        .collect();

    // Client i starts on node i % 3 and knows the other two.
    let joined = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::with_capacity(CLIENTS);
    let mut seen = Vec::with_capacity(CLIENTS);
    for chunk in (0..CLIENTS).collect::<Vec<_>>().chunks(250) {
        let opened = futures_util::future::join_all(chunk.iter().map(|&i| {
            let first = i % 3;
            let builder = Client::<Protocol>::builder(urls[first].clone())
                .alternate_url(urls[(first + 1) % 3].clone())
                .alternate_url(urls[(first + 2) % 3].clone())
                .on_connect(|client| async move {
                    // The room again after every connect; the client recovers it.
                    let _ = client.send("rooms", chat("join".into()));
                });
            builder.connect()
        }))
        .await;
        for client in opened {
            let client = client.unwrap();
            let saw = Arc::new(Seen::default());
            let (reader, saw_it, joined) = (client.clone(), saw.clone(), joined.clone());
            tokio::spawn(async move {
                let mut first_join = true;
                while let Some(incoming) = reader.recv().await {
                    if let Incoming::Message {
                        message: Protocol::ChatMessage(chat),
                        ..
                    } = incoming
                    {
                        if chat.content == "ack:join" && first_join {
                            first_join = false;
                            joined.fetch_add(1, Ordering::Relaxed);
                        } else if let Some(n) = chat.content.strip_prefix("post ") {
                            saw_it.posts.lock().unwrap().push(n.parse().unwrap());
                        }
                    }
                }
            });
            clients.push(client);
            seen.push(saw);
        }
    }
    streampod_tests::eventually("every client to join the room", || {
        joined.load(Ordering::Relaxed) == CLIENTS
    })
    .await;
    let on_drained = CLIENTS.div_ceil(3);
    assert_eq!(nodes[0].handle().session_count(), on_drained);

    // Posts go on from node 1 throughout.
    let poster = nodes[1].handle().messages();
    let posting = tokio::spawn(async move {
        for n in 0..POSTS {
            poster
                .post_global(ROOM, chat(format!("post {n}")))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // When each of node 0's clients is connected again (after being closed).
    let started = tokio::time::Instant::now();
    let moved_at: Arc<Mutex<Vec<Duration>>> = Arc::default();
    for client in clients.iter().step_by(3) {
        let mut states = client.state_changes();
        let moved_at = moved_at.clone();
        tokio::spawn(async move {
            states
                .wait_for(|state| *state != ConnectionState::Connected)
                .await
                .unwrap();
            states
                .wait_for(|state| *state == ConnectionState::Connected)
                .await
                .unwrap();
            moved_at.lock().unwrap().push(started.elapsed());
        });
    }
    let drained = nodes[0].handle();
    let drain = tokio::spawn(async move { drained.drain(DRAIN).await });
    // `/health` says so at once, and new sockets are refused.
    let health = request(nodes[0].local_addr(), Method::GET, "/health", "", &[]).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body["status"], "draining");
    let refused = Client::<Protocol>::builder(urls[0].clone())
        .max_attempts(Some(1))
        .connect()
        .await;
    assert!(
        refused.is_err(),
        "a new socket on a draining node is refused"
    );
    drain.await.unwrap();
    assert!(started.elapsed() < DRAIN + Duration::from_secs(1));

    streampod_tests::eventually("node 0's clients to move", || {
        moved_at.lock().unwrap().len() == on_drained
    })
    .await;
    assert_eq!(nodes[0].handle().session_count(), 0);
    let moved = moved_at.lock().unwrap().clone();
    let last = moved.iter().max().copied().unwrap();
    // The window, plus the reconnects' own time: in this debug build the one test
    // process (5,000 clients, three servers, Redis traffic) keeps both cores busy, and a
    // reconnect with its recovery lags its wave (measured: the last at 2.3 s of 2 s).
    assert!(
        last < DRAIN + Duration::from_secs(2),
        "every client back within the window (and the reconnects' time): the last after {last:?}"
    );
    // Reconnects per second: the drain's share (clients / window), plus half again.
    let bound = (on_drained as f64 / DRAIN.as_secs_f64() * 1.5).ceil() as usize;
    let mut per_second = [0_usize; 8];
    for at in &moved {
        per_second[(at.as_secs() as usize).min(7)] += 1;
    }
    assert!(
        per_second.iter().all(|&count| count <= bound),
        "reconnects per second {per_second:?}, bound {bound}"
    );
    // Spread, not at once: three seconds saw reconnects.
    assert!(
        per_second.iter().filter(|&&count| count > 0).count() >= 3,
        "{per_second:?}"
    );

    posting.await.unwrap();
    let expected: Vec<u64> = (0..POSTS).collect();
    streampod_tests::eventually("every client to have every post", || {
        seen.iter()
            .all(|saw| saw.posts.lock().unwrap().len() >= expected.len())
    })
    .await;
    for (i, saw) in seen.iter().enumerate() {
        assert_eq!(
            *saw.posts.lock().unwrap(),
            expected,
            "client {i}: every post once, in order"
        );
    }
    for client in &clients {
        client.close().await;
    }
    for node in nodes {
        node.shutdown().await;
    }
}

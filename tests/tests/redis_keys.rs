//! Redis state that shrinks (issue "hostile peers, round two"): a socket joining and
//! leaving a thousand fresh rooms of the example server (history and presence in Redis)
//! leaves no key behind; a dead node's memberships are swept in bounded batches; a
//! provisional epoch from before Redis lost its data is never taken as continued; global
//! posts waiting for a hung Redis are bounded in bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use example_server::chat::ChatEndpoint;
use example_server::Protocol;
use serde_json::json;
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::messages::HistoryConfig;
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::redis_server::RedisServer;
use streampod_tests::wait_for_cluster;

const PREFIX: &str = "keys-test";

async fn node(redis: &RedisServer) -> Server<Protocol> {
    let chat = ChatEndpoint::with_room_history(HistoryConfig::new(100, Duration::from_secs(60)));
    let server = example_server::server_with_chat(chat)
        .cluster(ClusterConfig::redis(redis.url()).prefix(PREFIX))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for_cluster(&server, |state| *state == ClusterState::Connected).await;
    server
}

/// Every key under the test's prefix, sorted.
fn keys(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis.query(redis::cmd("KEYS").arg(format!("{PREFIX}:*")));
    keys.sort();
    keys
}

/// Waits (up to 10 s) until `done` holds of the keys; the keys then.
async fn keys_until(redis: &RedisServer, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = keys(redis);
        if done(&now) || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn joining_and_leaving_a_thousand_fresh_rooms_leaves_no_key_behind() {
    let redis = RedisServer::start();
    let server = node(&redis).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client.chat_subscription("warm-up", true).await;
    client.chat_subscription("warm-up", false).await;
    client.until_pong().await;
    let before = keys_until(&redis, |keys| {
        !keys.iter().any(|key| key.contains(":memberships:"))
    })
    .await;
    // The warm-up's join read the room's history: that makes the one generation key.
    assert!(
        before
            .iter()
            .any(|key| key.ends_with(":history-generation")),
        "{before:?}"
    );
    for n in 0..1_000 {
        let room = format!("fresh-{n}");
        client.chat_subscription(&room, true).await;
        client.chat_subscription(&room, false).await;
        if n % 100 == 99 {
            client.until_pong().await;
        }
    }
    // Presence is written in the background, in order: once a last room's member is
    // in Redis, every join and leave before it has been written too.
    client.chat_subscription("last", true).await;
    client.until_pong().await;
    let during = keys_until(&redis, |keys| {
        keys.iter()
            .any(|key| key.ends_with(":presence:chat-room-last"))
    })
    .await;
    assert!(
        during.iter().any(|key| key.contains(":memberships:")),
        "{during:?}"
    );
    client.chat_subscription("last", false).await;
    client.until_pong().await;
    let after = keys_until(&redis, |keys| keys == before.as_slice()).await;
    assert_eq!(
        after, before,
        "the keys a thousand joined and left rooms leave behind"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_dead_nodes_memberships_are_swept_in_batches() {
    let redis = RedisServer::start();
    // A node that died long ago with 1,800 memberships over 600 rooms (more than one
    // sweep call takes), as its presence writes left them.
    let dead = "deadbeef";
    let mut write = redis::pipe();
    let _ = write
        .cmd("ZADD")
        .arg(format!("{PREFIX}:nodes"))
        .arg(1)
        .arg(dead);
    for member in 0..3 {
        for room in 0..600 {
            let id = format!("{dead}-{member}");
            let channel = format!("chat:room:r{room}");
            write
                .cmd("SADD")
                .arg(format!("{PREFIX}:memberships:{dead}"))
                .arg(format!("{id} {channel}"));
            write
                .cmd("HSET")
                .arg(format!("{PREFIX}:presence:{channel}"))
                .arg(&id)
                .arg(json!({"session": id, "userId": null, "info": null}).to_string());
        }
    }
    redis.run(write.ignore());
    let server = node(&redis).await;
    let left = keys_until(&redis, |keys| {
        !keys
            .iter()
            .any(|key| key.contains(":presence:") || key.contains(dead))
    })
    .await;
    assert!(
        !left
            .iter()
            .any(|key| key.contains(":presence:") || key.contains(dead)),
        "left after the sweep: {} keys, e.g. {:?}",
        left.len(),
        left.first()
    );
    let sweeping: usize = redis.query(redis::cmd("SCARD").arg(format!("{PREFIX}:sweeping")));
    assert_eq!(sweeping, 0);
    server.shutdown().await;
}

/// Joins `room` (after asking to recover `since`, if given) and answers the `joined`
/// frame's args.
async fn join(
    client: &mut TestClient,
    room: &str,
    since: Option<&serde_json::Value>,
) -> serde_json::Value {
    let channel = example_server::chat::room_channel(room);
    if let Some(position) = since {
        client
            .send_text(
                &json!({"command": "recover", "args": {"channels": {channel: position}}})
                    .to_string(),
            )
            .await;
    }
    client.chat_subscription(room, true).await;
    loop {
        let frame = client.next_json().await;
        if frame["command"] == "joined" {
            return frame["args"].clone();
        }
    }
}

/// Posts to `room` through Redis, numbered in its history.
async fn post(server: &Server<Protocol>, room: &str) {
    let message = example_server::models::ChatMessage {
        id: None,
        sender_name: "server".into(),
        content: "hello".into(),
        timestamp: streampod::protocol::types::DateTime::from(std::time::SystemTime::now()),
        channel_id: room.into(),
        exclude_sender: false,
        sender_id: None,
    };
    server
        .handle()
        .messages()
        .post_global(&example_server::chat::room_channel(room), message)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_provisional_epoch_is_continued_by_the_first_post_unless_redis_lost_its_data() {
    let redis = RedisServer::start();
    let server = node(&redis).await;
    let addr = server.local_addr();

    // Joined while the room had no history: a provisional epoch, and no key for it.
    let mut early = TestClient::connect(addr, "").await;
    let joined = join(&mut early, "calm", None).await;
    let provisional = joined["position"].clone();
    assert!(
        provisional["epoch"].as_str().unwrap().starts_with('~'),
        "{joined}"
    );
    assert!(!keys(&redis).iter().any(|key| key.contains("history-meta")));
    drop(early);
    post(&server, "calm").await;
    let mut back = TestClient::connect(addr, "").await;
    let joined = join(&mut back, "calm", Some(&provisional)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["replayed"], 1, "{joined}");

    // The same, but Redis loses everything in between: the post that follows may
    // have come after others that were lost with it, so it does not continue.
    let mut early = TestClient::connect(addr, "").await;
    let provisional = join(&mut early, "quiet", None).await["position"].clone();
    drop(early);
    redis.query::<()>(&redis::cmd("FLUSHALL"));
    post(&server, "quiet").await;
    let mut back = TestClient::connect(addr, "").await;
    let joined = join(&mut back, "quiet", Some(&provisional)).await;
    assert_eq!(joined["recovering"], true, "{joined}");
    assert_eq!(joined["recovered"], false, "{joined}");
    server.shutdown().await;
}

#[tokio::test]
async fn global_posts_waiting_for_a_hung_redis_are_bounded_in_bytes() {
    use streampod::cluster::ClusterError;
    use streampod::messages::{PostError, Reach};

    let redis = RedisServer::start();
    let config = ClusterConfig::redis(redis.url())
        .prefix(PREFIX)
        .publish_timeout(Duration::from_secs(5))
        .publish_queue_bytes(1 << 20);
    let server = example_server::server()
        .cluster(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for_cluster(&server, |state| *state == ClusterState::Connected).await;
    redis.pause();
    let messages = server.handle().messages();
    let post = || {
        let message = example_server::models::ChatMessage {
            id: None,
            sender_name: "server".into(),
            content: "z".repeat(300_000),
            timestamp: streampod::protocol::types::DateTime::from(std::time::SystemTime::now()),
            channel_id: "big".into(),
            exclude_sender: false,
            sender_id: None,
        };
        messages.post_message("big", message, Reach::Global)
    };
    // Three posts of 300 KB wait (900 KB); the fourth would pass 1 MiB.
    for _ in 0..3 {
        post().unwrap();
    }
    match post() {
        Err(PostError::Cluster(ClusterError::Backlog(what))) => {
            assert!(what.contains("1048576 bytes"), "{what}");
        }
        other => panic!("expected a byte backlog, got {other:?}"),
    }
    redis.resume();
    // Once Redis answers, the bytes are given back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while post().is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_room_s_history_in_redis_is_bounded_in_bytes_as_well_as_posts() {
    let redis = RedisServer::start();
    let history = HistoryConfig::new(100, Duration::from_secs(60)).with_max_bytes(10_000);
    let server = example_server::server_with_chat(ChatEndpoint::with_room_history(history))
        .cluster(ClusterConfig::redis(redis.url()).prefix(PREFIX))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for_cluster(&server, |state| *state == ClusterState::Connected).await;
    // Twenty posts of about 2 KB to a history of a hundred posts and 10 KB.
    for _ in 0..20 {
        let message = example_server::models::ChatMessage {
            id: None,
            sender_name: "server".into(),
            content: "w".repeat(2_000),
            timestamp: streampod::protocol::types::DateTime::from(std::time::SystemTime::now()),
            channel_id: "wide".into(),
            exclude_sender: false,
            sender_id: None,
        };
        server
            .handle()
            .messages()
            .post_global(&example_server::chat::room_channel("wide"), message)
            .await
            .unwrap();
    }
    let stream = format!("{PREFIX}:history:chat-room-wide");
    let kept: usize = redis.query(redis::cmd("XLEN").arg(&stream));
    let bytes: usize = redis.query(
        redis::cmd("HGET")
            .arg(format!("{PREFIX}:history-meta:chat-room-wide"))
            .arg("bytes"),
    );
    assert!((1..=5).contains(&kept), "{kept} posts kept");
    assert!(bytes <= 10_000, "{bytes} bytes kept");
    // The newest are the ones kept: offsets 16 to 20 (at most).
    let (first, _): (String, Vec<String>) = {
        let entries: Vec<(String, Vec<String>)> = redis.query(
            redis::cmd("XRANGE")
                .arg(&stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1),
        );
        entries.into_iter().next().unwrap()
    };
    let first: u64 = first.strip_suffix("-0").unwrap().parse().unwrap();
    assert!(first >= 16, "the oldest kept is {first}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_room_whose_last_leave_this_node_never_heard_is_let_go() {
    let redis = RedisServer::start();
    let chat = ChatEndpoint::default();
    let counted = chat.counted_rooms();
    let server = example_server::server_with_chat(chat)
        .cluster(ClusterConfig::redis(redis.url()).prefix(PREFIX))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for_cluster(&server, |state| *state == ClusterState::Connected).await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client.chat_subscription("lonely", true).await;
    client.until_pong().await;
    streampod_tests::eventually("the room is counted", || counted() == 1).await;
    // Its counter has counted and waits for the next change.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The last member leaves while Redis is gone, and Redis comes back empty: the leave
    // is never announced, so no presence change wakes the room's counter.
    let port = redis.port();
    redis.kill();
    wait_for_cluster(&server, |state| *state != ClusterState::Connected).await;
    client.chat_subscription("lonely", false).await;
    client.until_pong().await;
    let _redis = RedisServer::start_on(port);
    wait_for_cluster(&server, |state| *state == ClusterState::Connected).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while counted() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the counter of a room with no members here was kept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await;
}

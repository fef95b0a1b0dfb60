//! The Redis Cluster backplane (`ClusterConfig::redis_cluster`): three streampod nodes
//! over a real three-master Redis Cluster on loopback. Rooms spread over the shards
//! (sharded pub/sub) whatever hash tags their names carry, every member gets every post
//! once and in each publisher's order,
//! and a killed master makes global posts fail honestly until it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use example_server::chat::room_channel;
use example_server::models::ChatMessage;
use example_server::Protocol;
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::messages::PostError;
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::redis_server::RedisCluster;

async fn node(cluster: &RedisCluster) -> Server<Protocol> {
    // One seed is enough; the other masters are discovered.
    let config = ClusterConfig::redis_cluster([cluster.urls()[0].clone()])
        .prefix("sharded")
        .liveness(Duration::from_millis(200), Duration::from_millis(800))
        .connect_timeout(Duration::from_millis(800));
    let server = example_server::server()
        .cluster(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for(&server, |s| *s == ClusterState::Connected).await;
    server
}

async fn wait_for(server: &Server<Protocol>, wanted: impl Fn(&ClusterState) -> bool) {
    let mut changes = server.handle().messages().cluster_state_changes().unwrap();
    let reached =
        tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|s| wanted(s))).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "cluster state stuck at {}",
        server.handle().messages().cluster_state().unwrap()
    );
}

async fn member(server: &Server<Protocol>, rooms: &[String]) -> TestClient {
    let mut client = TestClient::connect(server.local_addr(), "").await;
    for room in rooms {
        client.chat_subscription(room, true).await;
    }
    client.until_pong().await;
    client
}

fn chat(room: &str, content: String) -> ChatMessage {
    ChatMessage {
        sender_name: "publisher".into(),
        content,
        timestamp: streampod::protocol::types::DateTime::from(std::time::SystemTime::now()),
        channel_id: room.into(),
        sender_id: None,
        id: None,
        exclude_sender: false,
    }
}

/// Chat contents (as `room/content`) arriving within `quiet` of each other.
async fn drain(client: &mut TestClient, quiet: Duration) -> Vec<String> {
    let mut received = Vec::new();
    while let Some(frame) = client.try_next_json(quiet).await {
        if frame["object"]["className"] == "ChatMessage" {
            let data = &frame["object"]["data"];
            received.push(format!(
                "{}/{}",
                data["channelId"].as_str().unwrap(),
                data["content"].as_str().unwrap()
            ));
        }
    }
    received
}

#[tokio::test]
async fn rooms_spread_over_shards_and_every_member_gets_every_post_once_in_order() {
    let mut cluster = RedisCluster::start();
    let nodes = [
        node(&cluster).await,
        node(&cluster).await,
        node(&cluster).await,
    ];
    // Every room name carries the same Redis Cluster hash tag: were it not escaped, the
    // client would put all of them on one shard.
    let rooms: Vec<String> = (0..12).map(|n| format!("{{steer}}-{n}")).collect();
    let mut members = Vec::new();
    for node in &nodes {
        members.push(member(node, &rooms).await);
    }
    // Every node subscribes on the shard owning each room (and the broadcast channel).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut spread = cluster.shard_channels();
    while spread.iter().sum::<usize>() < rooms.len() + 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        spread = cluster.shard_channels();
    }
    assert_eq!(spread.iter().sum::<usize>(), rooms.len() + 1, "{spread:?}");
    assert!(
        spread.iter().filter(|&&n| n > 0).count() == 3,
        "channels on every shard: {spread:?}"
    );
    // And every node has subscribed to every one of them: a channel exists once the
    // first node subscribes, and a post before the last one would miss its members.
    let wanted = nodes.len() * (rooms.len() + 1);
    while cluster.shard_subscriptions() < wanted && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cluster.shard_subscriptions(),
        wanted,
        "every node subscribed"
    );

    // Each node posts 10 messages to every room.
    for (n, node) in nodes.iter().enumerate() {
        let messages = node.handle().messages();
        for i in 0..10 {
            for room in &rooms {
                messages
                    .post_global(&room_channel(room), chat(room, format!("n{n}-{i:02}")))
                    .await
                    .unwrap();
            }
        }
    }
    for client in &mut members {
        let received = drain(client, Duration::from_millis(500)).await;
        assert_eq!(received.len(), 3 * 10 * rooms.len(), "each post once");
        let mut sorted = received.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), received.len(), "no duplicate");
        // Per room and publisher, in the order posted.
        for room in &rooms {
            for n in 0..3 {
                let prefix = format!("{room}/n{n}-");
                let seen: Vec<&String> =
                    received.iter().filter(|r| r.starts_with(&prefix)).collect();
                let mut ordered = seen.clone();
                ordered.sort();
                assert_eq!(seen, ordered, "order of {prefix}");
            }
        }
    }

    // A master dies (no replicas here): the nodes notice, global posts fail as not
    // published, and everything resumes once it is back.
    cluster.kill(1);
    for node in &nodes {
        wait_for(node, |s| matches!(s, ClusterState::Disconnected { .. })).await;
    }
    let failed = nodes[0]
        .handle()
        .messages()
        .post_global(&room_channel(&rooms[0]), chat(&rooms[0], "lost".into()))
        .await
        .unwrap_err();
    match failed {
        PostError::Cluster(error) => assert!(!error.may_have_been_delivered(), "{error}"),
        other => panic!("unexpected {other}"),
    }
    cluster.restart(1);
    for node in &nodes {
        wait_for(node, |s| *s == ClusterState::Connected).await;
    }
    let messages = nodes[2].handle().messages();
    let mut arrived = false;
    for attempt in 0..50 {
        messages
            .post_global(
                &room_channel(&rooms[5]),
                chat(&rooms[5], format!("back-{attempt}")),
            )
            .await
            .unwrap();
        if drain(&mut members[0], Duration::from_millis(100))
            .await
            .iter()
            .any(|r| r.contains("/back-"))
        {
            arrived = true;
            break;
        }
    }
    assert!(
        arrived,
        "delivery did not resume after the master came back"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

//! Three example servers joined through a private Redis: global chat reaches every
//! member on every node exactly once and in one order; nodes subscribe only to the rooms
//! they have members in; Redis going away fails global posts fast without hurting local
//! chat, and coming back resumes global delivery without restarting anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use example_server::chat::room_channel;
use example_server::models::ChatMessage;
use example_server::Protocol;
use http::Method;
use serde_json::{json, Value};
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::messages::{Delivery, PostError, Reach};
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::http::request;
use streampod_tests::redis_server::RedisServer;

const PREFIX: &str = "cluster-test";

async fn node(redis_url: &str) -> Server<Protocol> {
    let config = ClusterConfig::redis(redis_url).prefix(PREFIX);
    let server = example_server::server()
        .cluster(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for_state(&server, "connected", connected, Duration::from_secs(5)).await;
    server
}

async fn three_nodes(redis_url: &str) -> [Server<Protocol>; 3] {
    [
        node(redis_url).await,
        node(redis_url).await,
        node(redis_url).await,
    ]
}

/// Waits until `server`'s cluster state satisfies `wanted` (named `what`).
async fn wait_for_state(
    server: &Server<Protocol>,
    what: &str,
    wanted: impl Fn(&ClusterState) -> bool,
    within: Duration,
) {
    let mut changes = server.handle().messages().cluster_state_changes().unwrap();
    let reached = tokio::time::timeout(within, changes.wait_for(|state| wanted(state))).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "cluster state did not become {what} within {within:?}: {}",
        server.handle().messages().cluster_state().unwrap()
    );
}

fn connected(state: &ClusterState) -> bool {
    *state == ClusterState::Connected
}

async fn chat_client(server: &Server<Protocol>) -> TestClient {
    TestClient::connect(server.local_addr(), "").await
}

async fn join(client: &mut TestClient, room: &str) {
    client.chat_subscription(room, true).await;
    sync(client).await;
}

async fn leave(client: &mut TestClient, room: &str) {
    client.chat_subscription(room, false).await;
    sync(client).await;
}

/// A ping round trip: what the client sent before has been handled.
async fn sync(client: &mut TestClient) {
    client.send_text(r#"{"command":"ping"}"#).await;
    loop {
        let frame = client.next_json().await;
        if frame == json!({"command": "pong"}) {
            return;
        }
        assert_ne!(
            frame["object"]["className"], "ChatMessage",
            "unexpected {frame}"
        );
    }
}

async fn say(client: &mut TestClient, room: &str, sender: &str, content: &str) {
    client
        .send_model(
            "chat",
            "ChatMessage",
            json!({"senderName": sender, "content": content, "channelId": room}),
        )
        .await;
}

/// The next chat message's "nickname:content" (the server marks the nickname, e.g.
/// "ann (guest 3)"; the mark is left out here), skipping member counts and pongs;
/// `None` when nothing arrives within `wait`.
async fn next_chat(client: &mut TestClient, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame: Value = tokio::time::timeout_at(deadline, client.next_json())
            .await
            .ok()?;
        if frame["object"]["className"] == "ChatMessage" {
            let data = &frame["object"]["data"];
            let name = data["senderName"].as_str().unwrap();
            let nickname = name.split_once(" (").map_or(name, |(nickname, _)| nickname);
            return Some(format!("{nickname}:{}", data["content"].as_str().unwrap()));
        }
    }
}

/// Reads `count` chat messages, then checks nothing more arrives (no duplicates).
async fn read_exactly(client: &mut TestClient, count: usize) -> Vec<String> {
    let mut seen = Vec::with_capacity(count);
    for _ in 0..count {
        let next = next_chat(client, Duration::from_secs(10)).await;
        seen.push(
            next.unwrap_or_else(|| panic!("only {} of {count} arrived: {seen:?}", seen.len())),
        );
    }
    assert_eq!(
        next_chat(client, Duration::from_millis(200)).await,
        None,
        "a message arrived twice"
    );
    seen
}

/// Clients on every node in `room`, `per_node` each.
async fn members(nodes: &[Server<Protocol>], room: &str, per_node: usize) -> Vec<TestClient> {
    let mut clients = Vec::new();
    for node in nodes {
        for _ in 0..per_node {
            let mut client = chat_client(node).await;
            join(&mut client, room).await;
            clients.push(client);
        }
    }
    clients
}

/// Waits until Redis reports `expected` subscribers on `room`'s Redis channel.
async fn wait_numsub(redis: &RedisServer, room: &str, expected: usize) {
    let channel = format!("{PREFIX}:channel:{}", room_channel(room));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = redis.numsub(&channel);
        if count == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel}: {count} subscribers, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_global_post_from_any_node_reaches_every_member_once() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis.url()).await;
    let mut clients = members(&nodes, "lobby", 2).await;
    wait_numsub(&redis, "lobby", 3).await;

    // Clients 0, 2 and 4 sit on nodes 0, 1 and 2: one post from each node.
    for (i, sender) in [0, 2, 4].into_iter().enumerate() {
        say(&mut clients[sender], "lobby", &format!("node{i}"), "hello").await;
    }
    for client in &mut clients {
        let mut seen = read_exactly(client, 3).await;
        seen.sort();
        assert_eq!(seen, ["node0:hello", "node1:hello", "node2:hello"]);
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn publishers_on_two_nodes_produce_one_order_everywhere() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis.url()).await;
    let mut clients = members(&nodes, "race", 2).await;
    wait_numsub(&redis, "race", 3).await;
    let mut first = chat_client(&nodes[0]).await;
    let mut second = chat_client(&nodes[1]).await;
    join(&mut first, "race").await;
    join(&mut second, "race").await;

    // Both publishers write as fast as they can, interleaving on the way to Redis.
    const EACH: usize = 200;
    let write = |mut client: TestClient, name: &'static str| async move {
        for i in 0..EACH {
            say(&mut client, "race", name, &i.to_string()).await;
        }
        client
    };
    let (first, second) = tokio::join!(write(first, "a"), write(second, "b"));
    let mut orders = Vec::new();
    for client in clients.iter_mut().chain([first, second].iter_mut()) {
        orders.push(read_exactly(client, 2 * EACH).await);
    }
    let reference = &orders[0];
    for (i, order) in orders.iter().enumerate() {
        assert_eq!(order, reference, "subscriber {i} saw another order");
    }
    // Per-publisher FIFO holds inside the shared order.
    for name in ["a", "b"] {
        let mine: Vec<&String> = reference.iter().filter(|m| m.starts_with(name)).collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{name}:{i}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
    // Interleaved, not one publisher's block after the other's: otherwise the test
    // proves nothing about ordering across nodes.
    let switches = reference
        .windows(2)
        .filter(|pair| pair[0].as_bytes()[0] != pair[1].as_bytes()[0])
        .count();
    assert!(
        switches > 1,
        "publishers did not interleave: {switches} switches"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_without_members_gets_none_of_a_room_s_traffic() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis.url()).await;
    let mut clients = members(&nodes[..2], "quiet", 1).await;
    wait_numsub(&redis, "quiet", 2).await;
    let idle = nodes[2].handle().messages();
    let posts_before = idle.stats().posts;

    for i in 0..20 {
        say(&mut clients[0], "quiet", "x", &i.to_string()).await;
    }
    assert_eq!(read_exactly(&mut clients[1], 20).await.len(), 20);
    assert_eq!(
        idle.stats().posts,
        posts_before,
        "the idle node delivered room traffic"
    );
    // A post confirmed by Redis names how many nodes listen.
    let receivers = nodes[0]
        .handle()
        .messages()
        .post_global(&room_channel("quiet"), chat("counted"))
        .await
        .unwrap();
    assert_eq!(receivers, Some(2));
    // Read it on node 1, so the leave below does not race it.
    assert_eq!(read_exactly(&mut clients[1], 1).await, ["server:counted"]);

    // The last member on node 1 leaves: node 1 unsubscribes.
    leave(&mut clients[1], "quiet").await;
    wait_numsub(&redis, "quiet", 1).await;
    // A member on node 2 joins: node 2 subscribes, and gets the room's traffic.
    let mut late = chat_client(&nodes[2]).await;
    join(&mut late, "quiet").await;
    wait_numsub(&redis, "quiet", 2).await;
    say(&mut clients[0], "quiet", "x", "late").await;
    assert_eq!(read_exactly(&mut late, 1).await, ["x:late"]);
    for node in nodes {
        node.shutdown().await;
    }
}

fn chat(content: &str) -> ChatMessage {
    ChatMessage {
        sender_name: "server".into(),
        content: content.into(),
        timestamp: std::time::SystemTime::now().into(),
        channel_id: "quiet".into(),
        exclude_sender: false,
        sender_id: None,
        id: None,
    }
}

#[tokio::test]
async fn redis_outage_fails_global_posts_fast_and_delivery_resumes() {
    let redis = RedisServer::start();
    let port = redis.port();
    let url = redis.url();
    let nodes = three_nodes(&url).await;
    let mut clients = members(&nodes, "outage", 2).await;
    wait_numsub(&redis, "outage", 3).await;
    let health = |node: &Server<Protocol>| {
        let addr = node.local_addr();
        async move { request(addr, Method::GET, "/health", "", &[]).await.body }
    };
    assert_eq!(health(&nodes[0]).await["cluster"], "connected");

    redis.kill();
    let killed = Instant::now();
    let messages = nodes[0].handle().messages();
    let error = loop {
        match messages.post_message(&room_channel("outage"), chat("during"), Reach::Global) {
            Err(error) => break error,
            Ok(delivery) => {
                assert_eq!(
                    delivery,
                    Delivery::Published,
                    "a Global post counts nothing here"
                );
                assert!(
                    killed.elapsed() < Duration::from_secs(1),
                    "global posts still accepted 1 s after Redis died"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert!(matches!(error, PostError::Cluster(_)), "{error}");
    let body = health(&nodes[0]).await;
    assert_eq!(
        body["status"], "ok",
        "a node without Redis still serves its users"
    );
    assert_ne!(body["cluster"], "connected", "{body}");
    assert!(error.to_string().contains("unreachable"), "{error}");
    let confirmed = tokio::time::timeout(
        Duration::from_secs(1),
        messages.post_global(&room_channel("outage"), chat("during")),
    )
    .await
    .expect("post_global returns within 1 s");
    assert!(confirmed.is_err());

    // Local chat on one node still works: clients 0 and 1 share node 0.
    say(&mut clients[0], "outage", "local", "still here").await;
    for client in &mut clients[..2] {
        assert_eq!(read_exactly(client, 1).await, ["local:still here"]);
    }
    assert_eq!(
        next_chat(&mut clients[2], Duration::from_millis(200)).await,
        None,
        "nothing crosses nodes without Redis"
    );

    // Redis comes back on the same port: every node reconnects and resubscribes.
    let redis = RedisServer::start_on(port);
    let started = Instant::now();
    for node in &nodes {
        let remaining = Duration::from_secs(5).saturating_sub(started.elapsed());
        wait_for_state(node, "connected", connected, remaining).await;
    }
    wait_numsub(&redis, "outage", 3).await;
    let resumed = started.elapsed();
    assert!(
        resumed < Duration::from_secs(5),
        "resumed after {resumed:?}"
    );
    say(&mut clients[4], "outage", "node2", "back").await;
    for client in &mut clients {
        assert_eq!(read_exactly(client, 1).await, ["node2:back"]);
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// The newest room update `client` hears for `room` within `wait` of quiet.
async fn last_room_update(client: &mut TestClient, room: &str, wait: Duration) -> Option<Value> {
    let mut last = None;
    while let Some(frame) = client.try_next_json(wait).await {
        if frame["object"]["className"] == "RoomUpdate"
            && frame["object"]["data"]["channelId"] == room
        {
            last = Some(frame["object"]["data"].clone());
        }
    }
    last
}

/// The newest member count `client` hears for `room` within `wait` of quiet.
async fn last_member_count(client: &mut TestClient, room: &str, wait: Duration) -> Option<i64> {
    let update = last_room_update(client, room, wait).await?;
    update["members"].as_i64()
}

#[tokio::test]
async fn member_counts_count_every_node_s_members() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&redis.url()).await;
    // Two members on each of the first two nodes, one on the third.
    let mut clients = members(&nodes[..2], "counted", 2).await;
    let mut last = chat_client(&nodes[2]).await;
    // Not `join`: its ping round trip would skip the count this join brings.
    last.chat_subscription("counted", true).await;
    // Every node's members hear every node's members: the count, and the names they
    // joined with.
    for client in clients.iter_mut().chain([&mut last]) {
        let update = last_room_update(client, "counted", Duration::from_millis(700))
            .await
            .expect("a room update");
        assert_eq!(update["members"], 5, "{update}");
        let names = update["names"].as_array().unwrap();
        assert_eq!(names.len(), 5, "{update}");
        assert!(names
            .iter()
            .all(|name| name.as_str().unwrap().starts_with("anonymous (guest ")));
    }
    // One leaves on the first node: the others hear 4, wherever they are.
    leave(&mut clients[0], "counted").await;
    for client in clients.iter_mut().skip(1).chain([&mut last]) {
        assert_eq!(
            last_member_count(client, "counted", Duration::from_millis(700)).await,
            Some(4)
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

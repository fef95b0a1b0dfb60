//! The NATS backplane (`ServerBuilder::nats`): streampod nodes over a real `nats-server`
//! on loopback. Every member gets every post once and in the publisher's order, a
//! confirmed post says NATS took it (and that NATS does not count receivers), and under
//! faults — the server killed and restarted, or frozen with SIGSTOP — posts fail as not
//! published while it is out, nothing reported unpublished is delivered, and delivery
//! resumes when it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use example_server::chat::room_channel;
use example_server::models::ChatMessage;
use example_server::Protocol;
use streampod::cluster::{ClusterState, NatsConfig};
use streampod::messages::PostError;
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::nats_server::NatsServer;

const ROOM: &str = "lobby";

fn config(nats: &NatsServer) -> NatsConfig {
    NatsConfig::new(nats.url())
        .prefix("nats-test")
        .ping_interval(Duration::from_millis(200))
        .publish_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(300))
}

async fn node(nats: &NatsServer) -> Server<Protocol> {
    let server = example_server::server()
        .nats(config(nats))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for(&server, "connected", |s| *s == ClusterState::Connected).await;
    server
}

async fn wait_for(server: &Server<Protocol>, what: &str, wanted: impl Fn(&ClusterState) -> bool) {
    let mut changes = server.handle().messages().cluster_state_changes().unwrap();
    let reached =
        tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|s| wanted(s))).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "not {what}: {}",
        server.handle().messages().cluster_state().unwrap()
    );
}

async fn member(server: &Server<Protocol>) -> TestClient {
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client.chat_subscription(ROOM, true).await;
    client.until_pong().await;
    client
}

fn chat(content: String) -> ChatMessage {
    ChatMessage {
        sender_name: "publisher".into(),
        content,
        timestamp: streampod::protocol::types::DateTime::from(std::time::SystemTime::now()),
        channel_id: ROOM.into(),
        sender_id: None,
        id: None,
        exclude_sender: false,
    }
}

/// Chat contents arriving within `quiet` of each other.
async fn drain(client: &mut TestClient, quiet: Duration) -> Vec<String> {
    let mut received = Vec::new();
    while let Some(frame) = client.try_next_json(quiet).await {
        if frame["object"]["className"] == "ChatMessage" {
            received.push(
                frame["object"]["data"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    received
}

/// Posts probes from `server` until every one of `members` heard one (their nodes'
/// subscriptions reached NATS), then drains what is left of them.
async fn until_subscribed(server: &Server<Protocol>, members: &mut [TestClient]) {
    let messages = server.handle().messages();
    let deadline = Instant::now() + Duration::from_secs(10);
    for client in members.iter_mut() {
        loop {
            assert!(
                Instant::now() < deadline,
                "a member's node never subscribed"
            );
            let _ = messages
                .post_global(&room_channel(ROOM), chat("probe".into()))
                .await;
            if !drain(client, Duration::from_millis(100)).await.is_empty() {
                break;
            }
        }
    }
    for client in members.iter_mut() {
        drain(client, Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn three_nodes_over_nats_deliver_every_post_once_and_in_order() {
    let nats = NatsServer::start();
    let nodes = [node(&nats).await, node(&nats).await, node(&nats).await];
    let mut members = Vec::new();
    for node in &nodes {
        members.push(member(node).await);
        members.push(member(node).await);
    }
    until_subscribed(&nodes[0], &mut members).await;

    let messages = nodes[1].handle().messages();
    for n in 0..300 {
        let reached = messages
            .post_global(&room_channel(ROOM), chat(format!("{n:03}")))
            .await
            .unwrap();
        assert_eq!(reached, None, "NATS does not count receivers");
    }
    let expected: Vec<String> = (0..300).map(|n| format!("{n:03}")).collect();
    for client in &mut members {
        assert_eq!(
            drain(client, Duration::from_millis(500)).await,
            expected,
            "every post once, in order"
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// Posts `count` messages labelled `label`, one at a time; which were reported not
/// published (certainly not delivered) and which succeeded or may have.
async fn post_all(
    server: &Server<Protocol>,
    label: &str,
    count: usize,
) -> (Vec<String>, Vec<String>) {
    let messages = server.handle().messages();
    let (mut not_published, mut maybe) = (Vec::new(), Vec::new());
    for n in 0..count {
        let content = format!("{label}-{n:03}");
        match messages
            .post_global(&room_channel(ROOM), chat(content.clone()))
            .await
        {
            Err(PostError::Cluster(error)) if !error.may_have_been_delivered() => {
                not_published.push(content);
            }
            Ok(_) | Err(PostError::Cluster(_)) => maybe.push(content),
            Err(other) => panic!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (not_published, maybe)
}

#[tokio::test]
async fn a_killed_nats_fails_posts_as_not_published_and_delivery_resumes_when_it_is_back() {
    let mut nats = NatsServer::start();
    let (poster, receiver) = (node(&nats).await, node(&nats).await);
    let mut members = [member(&receiver).await];
    until_subscribed(&poster, &mut members).await;

    nats.kill();
    wait_for(&poster, "disconnected", |s| {
        matches!(s, ClusterState::Disconnected { .. })
    })
    .await;
    let (not_published, maybe) = post_all(&poster, "down", 20).await;
    assert_eq!(
        (not_published.len(), maybe.len()),
        (20, 0),
        "nothing could go out"
    );

    nats.restart();
    wait_for(&poster, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    wait_for(&receiver, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    // The client resubscribes by itself; posts reach the member again.
    until_subscribed(&poster, &mut members).await;
    let (not_published, _) = post_all(&poster, "back", 20).await;
    assert!(not_published.is_empty(), "{not_published:?}");
    let received = drain(&mut members[0], Duration::from_millis(500)).await;
    let expected: Vec<String> = (0..20).map(|n| format!("back-{n:03}")).collect();
    assert_eq!(received, expected);
    poster.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn a_frozen_nats_is_noticed_and_no_post_reported_unpublished_is_delivered() {
    let nats = NatsServer::start();
    let (poster, receiver) = (node(&nats).await, node(&nats).await);
    let mut members = [member(&receiver).await];
    until_subscribed(&poster, &mut members).await;

    nats.pause();
    let frozen = Instant::now();
    // Posts go on while it is frozen: the first ones time out (they may have gone
    // out), then the node notices (two unanswered PINGs) and they fail at once.
    let watcher = {
        let messages = poster.handle().messages();
        tokio::spawn(async move {
            let mut changes = messages.cluster_state_changes().unwrap();
            let _ = changes
                .wait_for(|s| matches!(s, ClusterState::Disconnected { .. }))
                .await;
            frozen.elapsed()
        })
    };
    let (not_published, maybe) = post_all(&poster, "frozen", 120).await;
    let noticed = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the freeze noticed")
        .unwrap();
    assert!(
        noticed < Duration::from_secs(4),
        "noticed after {noticed:?}"
    );
    assert!(
        !not_published.is_empty(),
        "once noticed, posts fail at once"
    );

    nats.resume();
    wait_for(&poster, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    wait_for(&receiver, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    let received = drain(&mut members[0], Duration::from_secs(2)).await;
    for content in &received {
        assert!(
            !not_published.contains(content),
            "{content} was reported not published, yet delivered"
        );
        assert!(
            maybe.contains(content) || content == "probe",
            "{content} unexpected"
        );
    }
    eprintln!(
        "frozen NATS noticed after {noticed:?}; {} posts not published, {} maybe, {} of those delivered",
        not_published.len(),
        maybe.len(),
        received.len()
    );
    poster.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn a_post_larger_than_nats_takes_fails_as_not_published_and_the_connection_stays() {
    let nats = NatsServer::start();
    let server = example_server::server()
        .config(streampod::ServerConfig::default().max_frame_size(4 << 20))
        .nats(config(&nats))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for(&server, "connected", |s| *s == ClusterState::Connected).await;
    let mut members = [member(&server).await];
    until_subscribed(&server, &mut members).await;
    let messages = server.handle().messages();
    let error = messages
        .post_global(&room_channel(ROOM), chat("x".repeat(2 << 20)))
        .await
        .expect_err("NATS takes 1 MiB by default");
    let PostError::Cluster(error) = error else {
        panic!("{error}")
    };
    assert!(!error.may_have_been_delivered(), "{error}");
    assert!(error.to_string().contains("max_payload"), "{error}");
    // The connection is still good: the next post goes out.
    messages
        .post_global(&room_channel(ROOM), chat("small".into()))
        .await
        .unwrap();
    assert_eq!(
        drain(&mut members[0], Duration::from_millis(300)).await,
        ["small"]
    );
    server.shutdown().await;
}

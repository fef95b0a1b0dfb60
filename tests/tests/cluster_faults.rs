//! A cluster under Redis faults tells the truth: a hung Redis (SIGSTOP) is detected by
//! the liveness PINGs, posts reported as certainly not published are never delivered,
//! posts that may have gone out say so, nothing reaches clients later than
//! `max_global_age`, rooms keep working on each node meanwhile, and method calls answer
//! 503 with `Retry-After` while the cluster is down. Each test starts its own Redis on a
//! free loopback port and uses short intervals to stay quick.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use example_server::chat::room_channel;
use example_server::models::ChatMessage;
use example_server::Protocol;
use http::{Method, StatusCode};
use serde_json::json;
use streampod::auth::{self, AuthInfo};
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::messages::PostError;
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::http::request;
use streampod_tests::redis_server::RedisServer;

const LIVENESS_INTERVAL: Duration = Duration::from_millis(200);
const LIVENESS_TIMEOUT: Duration = Duration::from_millis(600);
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(300);
const MAX_AGE: Duration = Duration::from_millis(1500);

fn config(redis: &RedisServer) -> ClusterConfig {
    ClusterConfig::redis(redis.url())
        .prefix("faults")
        .liveness(LIVENESS_INTERVAL, LIVENESS_TIMEOUT)
        .publish_timeout(PUBLISH_TIMEOUT)
        .connect_timeout(Duration::from_millis(300))
        .max_global_age(MAX_AGE)
}

async fn node(redis: &RedisServer) -> Server<Protocol> {
    node_with(config(redis)).await
}

async fn node_with(config: ClusterConfig) -> Server<Protocol> {
    let server = example_server::server()
        .cluster(config)
        .authentication(auth::from_fn(|key: String| async move {
            (key == "ann").then(|| AuthInfo::new("1"))
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    wait_for(&server, "connected", |s| *s == ClusterState::Connected).await;
    server
}

async fn wait_for(server: &Server<Protocol>, what: &str, wanted: impl Fn(&ClusterState) -> bool) {
    let mut changes = server.handle().messages().cluster_state_changes().unwrap();
    let within = Duration::from_secs(5);
    let reached = tokio::time::timeout(within, changes.wait_for(|s| wanted(s))).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "cluster state did not become {what} within {within:?}"
    );
}

async fn member(server: &Server<Protocol>, room: &str) -> TestClient {
    member_at(server.local_addr(), room).await
}

async fn member_at(addr: std::net::SocketAddr, room: &str) -> TestClient {
    let mut client = TestClient::connect(addr, "").await;
    client.chat_subscription(room, true).await;
    client.until_pong().await;
    client
}

/// A node on a runtime (and thread) of its own, so that it can be killed: dropping the
/// runtime ends its tasks and closes its sockets at once, with no shutdown.
struct KillableNode {
    addr: std::net::SocketAddr,
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl KillableNode {
    fn start(config: ClusterConfig) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let server = runtime.block_on(node_with(config));
            addr_tx.send(server.local_addr()).unwrap();
            let _ = killed.recv();
            drop(server);
            runtime.shutdown_background();
        });
        let addr = addr_rx.recv().expect("the node started");
        Self { addr, kill, thread }
    }

    fn kill(self) {
        let _ = self.kill.send(());
        self.thread.join().unwrap();
    }
}

fn chat(content: String) -> ChatMessage {
    ChatMessage {
        sender_name: "publisher".into(),
        content,
        timestamp: streampod::protocol::types::DateTime::from(std::time::SystemTime::now()),
        channel_id: "hang".into(),
        sender_id: None,
        exclude_sender: false,
    }
}

/// Every chat content a client receives within `quiet` of the last one, with when.
async fn drain(client: &mut TestClient, quiet: Duration) -> Vec<(String, Instant)> {
    let mut received = Vec::new();
    while let Some(frame) = client.try_next_json(quiet).await {
        if frame["object"]["className"] == "ChatMessage" {
            let content = frame["object"]["data"]["content"].as_str().unwrap();
            received.push((content.to_owned(), Instant::now()));
        }
    }
    received
}

#[tokio::test]
async fn a_hung_redis_is_detected_and_no_post_reported_unpublished_is_delivered() {
    let redis = RedisServer::start();
    let (poster, receiver) = (node(&redis).await, node(&redis).await);
    let mut remote = member(&receiver, "hang").await;
    let mut local_a = member(&poster, "hang").await;
    let mut local_b = member(&poster, "hang").await;
    let channel = room_channel("hang");
    let messages = poster.handle().messages();
    // Subscriptions settle: a post reaches the other node.
    let mut warm = 0;
    loop {
        messages
            .post_global(&channel, chat(format!("warm-{warm}")))
            .await
            .unwrap();
        if tokio::time::timeout(Duration::from_millis(200), remote.next_json())
            .await
            .is_ok()
        {
            break;
        }
        warm += 1;
    }
    drain(&mut remote, Duration::from_millis(100)).await;

    // Post every 20 ms through a 3 s hang, recording each outcome and when it was made.
    redis.pause();
    let paused = Instant::now();
    let mut sent: HashMap<String, (Instant, Result<usize, PostError>)> = HashMap::new();
    let mut detected = None;
    let mut n = 0;
    while paused.elapsed() < Duration::from_secs(3) {
        let content = format!("p{n:04}");
        let posted = Instant::now();
        let outcome = messages.post_global(&channel, chat(content.clone())).await;
        sent.insert(content, (posted, outcome));
        if detected.is_none() && !matches!(messages.cluster_state(), Some(ClusterState::Connected))
        {
            detected = Some(paused.elapsed());
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let detected = detected.expect("the hang was never detected");
    assert!(
        detected <= LIVENESS_INTERVAL + LIVENESS_TIMEOUT + Duration::from_millis(500),
        "detected after {detected:?}"
    );
    let health = request(poster.local_addr(), Method::GET, "/health", "", &[]).await;
    assert_ne!(health.body["cluster"], "connected", "{:?}", health.body);

    // Meanwhile the room works within the node (the example falls back to Local).
    local_a
        .send_model(
            "chat",
            "ChatMessage",
            json!({"senderName": "a", "content": "local during hang", "channelId": "hang"}),
        )
        .await;
    let seen = drain(&mut local_b, Duration::from_millis(300)).await;
    assert!(
        seen.iter().any(|(c, _)| c == "local during hang"),
        "{seen:?}"
    );

    redis.resume();
    wait_for(&poster, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    wait_for(&receiver, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    let received = drain(&mut remote, Duration::from_millis(1500)).await;

    let mut uncertain = 0;
    let mut certain = 0;
    for (_, outcome) in sent.values() {
        match outcome {
            Ok(_) => {}
            Err(PostError::Cluster(error)) if error.may_have_been_delivered() => uncertain += 1,
            Err(PostError::Cluster(_)) => certain += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(
        uncertain > 0,
        "a post written during the hang must say it may have gone out"
    );
    assert!(
        certain > 0,
        "posts after detection fail as certainly not published"
    );
    let mut last = None;
    let mut seen = std::collections::HashSet::new();
    for (content, at) in &received {
        let Some((posted, outcome)) = sent.get(content) else {
            continue;
        };
        assert!(seen.insert(content.clone()), "{content} delivered twice");
        if let Err(PostError::Cluster(error)) = outcome {
            assert!(
                error.may_have_been_delivered(),
                "{content} was reported not published ({error}) and was delivered"
            );
        }
        let late = at.duration_since(*posted);
        assert!(
            late <= MAX_AGE + Duration::from_millis(500),
            "{content} arrived {late:?} after it was posted"
        );
        assert!(last < Some(content.clone()), "out of order at {content}");
        last = Some(content.clone());
    }
    poster.shutdown().await;
    receiver.shutdown().await;
}

/// A posting node and a receiving node with one room member, a post shown to cross.
struct Pair {
    poster: Server<Protocol>,
    receiver: Server<Protocol>,
    remote: TestClient,
    channel: String,
}

async fn pair(config: ClusterConfig) -> Pair {
    let poster = node_with(config.clone()).await;
    let receiver = node_with(config).await;
    let mut remote = member(&receiver, "hang").await;
    let channel = room_channel("hang");
    poster
        .handle()
        .messages()
        .post_global(&channel, chat("before".into()))
        .await
        .unwrap();
    let before = drain(&mut remote, Duration::from_millis(300)).await;
    assert_eq!(before.len(), 1, "{before:?}");
    Pair {
        poster,
        receiver,
        remote,
        channel,
    }
}

#[tokio::test]
async fn messages_older_than_max_global_age_are_dropped_not_burst() {
    // A stall shorter than the liveness deadline: sockets stay up, Redis answers late.
    let redis = RedisServer::start();
    let stall_tolerant = || {
        config(&redis)
            .liveness(Duration::from_millis(500), Duration::from_secs(3))
            .publish_timeout(Duration::from_secs(3))
            .max_global_age(Duration::from_millis(200))
    };
    let Pair {
        poster,
        receiver,
        mut remote,
        channel,
    } = pair(stall_tolerant()).await;
    let messages = poster.handle().messages();

    redis.pause();
    for n in 0..10 {
        // Fire and forget: queued and written while Redis sleeps.
        let _ = messages.post_message(
            &channel,
            chat(format!("stalled-{n}")),
            streampod::messages::Reach::Global,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.resume();
    let late = drain(&mut remote, Duration::from_millis(500)).await;
    assert!(late.is_empty(), "stale messages reached a client: {late:?}");
    assert_eq!(
        receiver.handle().messages().stats().stale_global,
        10,
        "each stalled message is dropped and counted on arrival"
    );
    // Fresh posts flow again.
    messages
        .post_global(&channel, chat("after".into()))
        .await
        .unwrap();
    let after = drain(&mut remote, Duration::from_millis(300)).await;
    assert_eq!(
        after.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        ["after"]
    );
    poster.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn a_closed_pubsub_connection_is_replaced_without_failing_posts() {
    let redis = RedisServer::start();
    let Pair {
        poster,
        receiver,
        mut remote,
        channel,
    } = pair(config(&redis)).await;
    let messages = poster.handle().messages();

    let mut changes = messages.cluster_state_changes().unwrap();
    changes.borrow_and_update();
    assert_eq!(
        redis.kill_pubsub_clients(),
        2,
        "both nodes' subscribers closed"
    );
    // Publishing goes on through the healthy connection: not one post fails.
    for n in 0..20 {
        let outcome = messages
            .post_global(&channel, chat(format!("during-{n}")))
            .await;
        assert!(outcome.is_ok(), "post {n} failed: {outcome:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(messages.cluster_state(), Some(ClusterState::Connected));
    assert!(
        !changes.has_changed().unwrap(),
        "the node never left Connected: its publish connection was fine"
    );
    // The receiver subscribed again: what is posted now arrives.
    let mut arrived = false;
    for n in 0..50 {
        messages
            .post_global(&channel, chat(format!("after-{n}")))
            .await
            .unwrap();
        let got = drain(&mut remote, Duration::from_millis(100)).await;
        if got.iter().any(|(c, _)| c.starts_with("after-")) {
            arrived = true;
            break;
        }
    }
    assert!(arrived, "the receiver never resubscribed");
    poster.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_over_redis_s_output_buffer_limit_costs_no_post_but_that_message() {
    let redis = RedisServer::start();
    let Pair {
        poster,
        receiver,
        mut remote,
        channel,
    } = pair(config(&redis)).await;
    let messages = poster.handle().messages();
    let mut changes = messages.cluster_state_changes().unwrap();
    changes.borrow_and_update();

    // A message bigger than the pub/sub hard limit: Redis closes every subscriber it
    // was queued for, as it does to a subscriber that falls too far behind.
    let subscribers = redis.pubsub_client_ids();
    assert_eq!(subscribers.len(), 2);
    redis.config_set("client-output-buffer-limit", "pubsub 4kb 4kb 0");
    let big = "x".repeat(16 * 1024);
    messages.post_global(&channel, chat(big)).await.unwrap();
    redis.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60");
    for n in 0..20 {
        let outcome = messages
            .post_global(&channel, chat(format!("next-{n}")))
            .await;
        assert!(outcome.is_ok(), "post {n} failed: {outcome:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !changes.has_changed().unwrap(),
        "the publishing node never left Connected"
    );
    let replaced = redis.pubsub_client_ids();
    // Only the receiving node listens on the room: its subscriber was closed and
    // replaced; the poster's (broadcast channel only) was untouched.
    let kept = replaced
        .iter()
        .filter(|id| subscribers.contains(id))
        .count();
    assert_eq!(
        (replaced.len(), kept),
        (2, 1),
        "one subscriber replaced ({subscribers:?}, now {replaced:?})"
    );
    // The subscribers came back: new posts arrive again, the big one did not.
    let mut arrived = Vec::new();
    for n in 0..50 {
        messages
            .post_global(&channel, chat(format!("after-{n}")))
            .await
            .unwrap();
        arrived.extend(drain(&mut remote, Duration::from_millis(100)).await);
        if arrived.iter().any(|(c, _)| c.starts_with("after-")) {
            break;
        }
    }
    assert!(
        arrived.iter().any(|(c, _)| c.starts_with("after-")),
        "{arrived:?}"
    );
    assert!(
        arrived.iter().all(|(c, _)| c.len() < 100),
        "the oversized message was delivered"
    );
    poster.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn debug_sleep_is_a_hang_too_and_the_node_recovers() {
    let redis = RedisServer::start();
    let Pair {
        poster,
        receiver,
        mut remote,
        channel,
    } = pair(config(&redis)).await;
    let messages = poster.handle().messages();

    let sleeping = redis.debug_sleep(2.0);
    let started = Instant::now();
    let mut outcomes = Vec::new();
    while started.elapsed() < Duration::from_millis(1800) {
        let content = format!("s{:03}", outcomes.len());
        outcomes.push((
            content.clone(),
            messages.post_global(&channel, chat(content)).await,
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        outcomes
            .iter()
            .any(|(_, o)| matches!(o, Err(PostError::Cluster(e)) if !e.may_have_been_delivered())),
        "the sleep was detected: later posts fail as not published"
    );
    sleeping.join().unwrap();
    wait_for(&poster, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    wait_for(&receiver, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    let received = drain(&mut remote, Duration::from_millis(1000)).await;
    for (content, _) in &received {
        if let Some((_, Err(PostError::Cluster(error)))) =
            outcomes.iter().find(|(c, _)| c == content)
        {
            assert!(
                error.may_have_been_delivered(),
                "{content}: reported {error}, yet delivered"
            );
        }
    }
    // Delivery resumes.
    let mut resumed = false;
    for n in 0..50 {
        if messages
            .post_global(&channel, chat(format!("after-{n}")))
            .await
            .is_ok()
            && drain(&mut remote, Duration::from_millis(100))
                .await
                .iter()
                .any(|(c, _)| c.starts_with("after-"))
        {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "delivery did not resume after DEBUG SLEEP");
    poster.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn method_calls_answer_503_with_retry_after_while_the_cluster_is_down() {
    let redis = RedisServer::start();
    let server = node(&redis).await;
    redis.kill();
    wait_for(&server, "disconnected", |s| {
        matches!(s, ClusterState::Disconnected { .. })
    })
    .await;
    let answer = request(
        server.local_addr(),
        Method::POST,
        "/notification/sendNotification",
        r#"{"targetUserId":1,"message":"hi"}"#,
        &[("authorization", "Bearer ann")],
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        answer.body
    );
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(answer.body["error"]["code"], "cluster_unavailable");
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("unreachable"), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_killed_node_leaves_the_others_untouched_and_a_restarted_one_joins() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_b = member(&b, "hang").await;
    let channel = room_channel("hang");
    let c = KillableNode::start(config(&redis));
    let mut on_c = member_at(c.addr, "hang").await;
    a.handle()
        .messages()
        .post_global(&channel, chat("three".into()))
        .await
        .unwrap();
    assert_eq!(drain(&mut on_b, Duration::from_millis(300)).await.len(), 1);
    assert_eq!(drain(&mut on_c, Duration::from_millis(300)).await.len(), 1);

    // Node c dies (no shutdown: its sockets just close); a and b go on as before.
    c.kill();
    assert!(
        on_c.try_next_json(Duration::from_secs(2)).await.is_none(),
        "c is gone"
    );
    let messages = a.handle().messages();
    for n in 0..5 {
        messages
            .post_global(&channel, chat(format!("two-{n}")))
            .await
            .unwrap();
    }
    let got: Vec<String> = drain(&mut on_b, Duration::from_millis(300))
        .await
        .into_iter()
        .map(|(content, _)| content)
        .collect();
    assert_eq!(got, ["two-0", "two-1", "two-2", "two-3", "two-4"]);

    // A node started again joins and receives; nothing of the gap is replayed to it.
    let c = KillableNode::start(config(&redis));
    let mut back = member_at(c.addr, "hang").await;
    let mut arrived = Vec::new();
    for n in 0..50 {
        messages
            .post_global(&channel, chat(format!("again-{n}")))
            .await
            .unwrap();
        arrived = drain(&mut back, Duration::from_millis(100)).await;
        if !arrived.is_empty() {
            break;
        }
    }
    assert!(
        arrived
            .iter()
            .all(|(content, _)| content.starts_with("again-")),
        "{arrived:?}"
    );
    assert!(!arrived.is_empty(), "the restarted node never received");
    c.kill();
    for node in [a, b] {
        node.shutdown().await;
    }
}

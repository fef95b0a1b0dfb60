//! A cluster under Redis faults tells the truth. For each fault — Redis killed and
//! restarted, frozen (SIGSTOP), `DEBUG SLEEP`, its pub/sub clients killed, a subscriber
//! over the output-buffer limit, a node killed and restarted — a [`Ledger`] of every post
//! and what the poster was told is checked against what a healthy subscriber got: no
//! duplicate, the publisher's order, nothing delivered that was reported not published,
//! nothing later than `max_global_age`; where Redis is out, rooms keep working on each
//! node and the cluster is back within [`RECOVERY`]. Each test starts its own Redis on a
//! free loopback port and uses short intervals to stay quick. The faults every backplane
//! has (killed and restarted, frozen, a node killed) run over one Redis, a three-master Redis
//! Cluster and a NATS server (`on_redis::…`, `on_redis_cluster::…`, `on_nats::…`); the
//! rest use one Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use example_server::chat::room_channel;
use example_server::models::ChatMessage;
use example_server::Protocol;
use http::{Method, StatusCode};
use serde_json::json;
use streampod::auth::{self, AuthInfo};
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::messages::{MessageCentral, PostError};
use streampod::Server;
use streampod_tests::backplanes::{Join, TestBackplane};
use streampod_tests::client::TestClient;
use streampod_tests::crashable::CrashableServer;
use streampod_tests::http::{get_text, metric_value, request};
use streampod_tests::redis_server::RedisServer;

const LIVENESS_INTERVAL: Duration = Duration::from_millis(200);
const LIVENESS_TIMEOUT: Duration = Duration::from_millis(600);
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(300);
const MAX_AGE: Duration = Duration::from_millis(1500);
/// How soon after a fault ends every node is `Connected` again.
const RECOVERY: Duration = Duration::from_secs(5);

streampod_tests::on_every_backplane!(
    a_hung_backplane_is_detected_and_no_post_reported_unpublished_is_delivered,
    a_killed_redis_fails_posts_as_unpublished_and_delivery_resumes_when_it_is_back,
    method_calls_answer_503_with_retry_after_while_the_cluster_is_down,
    a_killed_node_leaves_the_others_untouched_and_a_restarted_one_joins,
);

fn config(redis: &RedisServer) -> ClusterConfig {
    tuned(ClusterConfig::redis(redis.url()))
}

/// `config` with this file's deadlines.
fn tuned(config: ClusterConfig) -> ClusterConfig {
    config
        .prefix("faults")
        .liveness(LIVENESS_INTERVAL, LIVENESS_TIMEOUT)
        .publish_timeout(PUBLISH_TIMEOUT)
        .connect_timeout(Duration::from_millis(300))
        .max_global_age(MAX_AGE)
}

/// How a node joins `backplane`, with this file's deadlines (NATS: a `PING` per
/// liveness interval, two unanswered ones are a hang).
fn joining(backplane: &TestBackplane) -> Join {
    match backplane.join() {
        Join::Redis(config) => Join::Redis(tuned(config)),
        Join::Nats(config) => Join::Nats(
            config
                .prefix("faults")
                .ping_interval(LIVENESS_INTERVAL)
                .publish_timeout(PUBLISH_TIMEOUT)
                .connect_timeout(Duration::from_millis(300))
                .max_global_age(MAX_AGE),
        ),
    }
}

async fn node_with(join: impl Into<Join>) -> Server<Protocol> {
    let server = join
        .into()
        .apply(example_server::server())
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
    let within = RECOVERY;
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

fn chat(content: String) -> ChatMessage {
    ChatMessage {
        sender_name: "publisher".into(),
        content,
        timestamp: streampod::protocol::types::DateTime::from(std::time::SystemTime::now()),
        channel_id: "hang".into(),
        sender_id: None,
        id: None,
        exclude_sender: false,
    }
}

/// Every global post a test makes, in order, with when and what the poster was told.
#[derive(Default)]
struct Ledger {
    posts: Vec<(
        String,
        Instant,
        Result<streampod::cluster::Reached, PostError>,
    )>,
}

impl Ledger {
    /// Posts the next numbered message (`L00007-label`: sorting is posting order).
    async fn post(&mut self, messages: &MessageCentral<Protocol>, channel: &str, label: &str) {
        let content = format!("L{:05}-{label}", self.posts.len());
        let posted = Instant::now();
        let outcome = messages.post_global(channel, chat(content.clone())).await;
        self.posts.push((content, posted, outcome));
    }

    /// Posts every 20 ms for `period`; returns when the poster first saw its node not
    /// `Connected`, if it did.
    async fn post_for(
        &mut self,
        messages: &MessageCentral<Protocol>,
        channel: &str,
        label: &str,
        period: Duration,
    ) -> Option<Duration> {
        let started = Instant::now();
        let mut detected = None;
        while started.elapsed() < period {
            self.post(messages, channel, label).await;
            if detected.is_none()
                && !matches!(messages.cluster_state(), Some(ClusterState::Connected))
            {
                detected = Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        detected
    }

    /// Posts `label` until one reaches `remote` (after a recovery); everything `remote`
    /// received by then.
    async fn post_until_received(
        &mut self,
        messages: &MessageCentral<Protocol>,
        channel: &str,
        remote: &Listening,
        label: &str,
    ) -> Vec<(String, Instant)> {
        for _ in 0..50 {
            self.post(messages, channel, label).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if remote.has(label) {
                return remote.settled(Duration::from_millis(200)).await;
            }
        }
        panic!("no '{label}' post reached the subscriber: delivery did not resume");
    }

    /// Posts told "may have gone out" and "certainly not published".
    fn failures(&self) -> (usize, usize) {
        let mut maybe = 0;
        let mut not_published = 0;
        for (_, _, outcome) in &self.posts {
            match outcome {
                Ok(_) => {}
                Err(PostError::Cluster(error)) if error.may_have_been_delivered() => maybe += 1,
                Err(PostError::Cluster(_)) => not_published += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        (maybe, not_published)
    }

    /// Whether every post was confirmed.
    fn all_confirmed(&self) -> bool {
        self.posts.iter().all(|(_, _, outcome)| outcome.is_ok())
    }

    /// What a healthy subscriber got is true to what the poster was told: each post at
    /// most once, in posting order, none reported not published, none later than
    /// `max_age` (plus scheduling slack).
    fn check(&self, received: &[(String, Instant)], max_age: Duration) {
        let mut last = None;
        for (content, at) in received {
            let Some(index) = self.posts.iter().position(|(c, _, _)| c == content) else {
                continue;
            };
            assert!(last < Some(index), "{content} twice or out of order");
            last = Some(index);
            let (_, posted, outcome) = &self.posts[index];
            if let Err(PostError::Cluster(error)) = outcome {
                assert!(
                    error.may_have_been_delivered(),
                    "{content} was reported not published ({error}) and was delivered"
                );
            }
            let late = at.duration_since(*posted);
            assert!(
                late <= max_age + Duration::from_millis(500),
                "{content} arrived {late:?} after it was posted"
            );
        }
    }
}

/// A subscriber read all the time in a task of its own, so each message's arrival is
/// stamped when the server delivered it, not when the test got around to reading.
struct Listening {
    log: std::sync::Arc<std::sync::Mutex<Vec<(String, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Listening {
    fn start(mut client: TestClient) -> Self {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = log.clone();
        let task = tokio::spawn(async move {
            while let Some(frame) = client.try_next_json(Duration::from_secs(60)).await {
                if frame["object"]["className"] == "ChatMessage" {
                    let content = frame["object"]["data"]["content"].as_str().unwrap();
                    writer
                        .lock()
                        .unwrap()
                        .push((content.to_owned(), Instant::now()));
                }
            }
        });
        Self { log, task }
    }

    /// Everything received so far, once nothing new came for `quiet`.
    async fn settled(&self, quiet: Duration) -> Vec<(String, Instant)> {
        let mut seen = self.log.lock().unwrap().len();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.log.lock().unwrap().len();
            if now == seen {
                return self.log.lock().unwrap().clone();
            }
            seen = now;
        }
    }

    /// Whether a message whose content ends with `suffix` has come.
    fn has(&self, suffix: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|(c, _)| c.ends_with(suffix))
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Rooms work within `server` (the example falls back to Local without the cluster):
/// one member's post reaches another member on the same node.
async fn assert_local_delivery(server: &Server<Protocol>) {
    let mut a = member(server, "local").await;
    let mut b = member(server, "local").await;
    a.send_model(
        "chat",
        "ChatMessage",
        json!({"senderName": "a", "content": "local", "channelId": "local"}),
    )
    .await;
    let seen = drain(&mut b, Duration::from_millis(500)).await;
    assert!(seen.iter().any(|(c, _)| c == "local"), "{seen:?}");
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

async fn a_hung_backplane_is_detected_and_no_post_reported_unpublished_is_delivered(
    redis: TestBackplane,
) {
    let Pair {
        poster,
        receiver,
        remote,
        channel,
        messages,
        ..
    } = pair(joining(&redis)).await;

    // Post every 20 ms through a 3 s freeze.
    redis.pause();
    let mut ledger = Ledger::default();
    let detected = ledger
        .post_for(&messages, &channel, "frozen", Duration::from_millis(1500))
        .await
        .expect("the hang was never detected");
    assert!(
        detected <= LIVENESS_INTERVAL + LIVENESS_TIMEOUT + Duration::from_millis(500),
        "detected after {detected:?}"
    );
    let health = request(poster.local_addr(), Method::GET, "/health", "", &[]).await;
    assert_ne!(health.body["cluster"], "connected", "{:?}", health.body);
    assert_local_delivery(&poster).await;
    ledger
        .post_for(&messages, &channel, "frozen", Duration::from_millis(1000))
        .await;

    redis.resume();
    wait_for(&poster, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    wait_for(&receiver, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    // A resubscription may reach the backplane just after "connected".
    let received = ledger
        .post_until_received(&messages, &channel, &remote, "after")
        .await;
    let (maybe, not_published) = ledger.failures();
    assert!(
        maybe > 0,
        "a post written during the hang must say it may have gone out"
    );
    assert!(
        not_published > 0,
        "posts after detection fail as certainly not published"
    );
    // Written, then unanswered: counted as failed global posts.
    let (_, scrape) = get_text(poster.local_addr(), "/metrics").await;
    assert!(metric_value(&scrape, "streampod_cluster_posts_failed_total") >= maybe as f64);
    ledger.check(&received, MAX_AGE);
    assert!(
        received.iter().any(|(c, _)| c.ends_with("-after")),
        "delivery resumed"
    );
    poster.shutdown().await;
    receiver.shutdown().await;
}

async fn a_killed_redis_fails_posts_as_unpublished_and_delivery_resumes_when_it_is_back(
    mut redis: TestBackplane,
) {
    let Pair {
        poster,
        receiver,
        remote,
        channel,
        messages,
        ..
    } = pair(joining(&redis)).await;
    let mut ledger = Ledger::default();
    redis.kill();
    wait_for(&poster, "disconnected", |s| {
        matches!(s, ClusterState::Disconnected { .. })
    })
    .await;
    ledger
        .post_for(&messages, &channel, "down", Duration::from_millis(500))
        .await;
    let (maybe, not_published) = ledger.failures();
    assert_eq!(
        (maybe, not_published),
        (0, ledger.posts.len()),
        "nothing could be written"
    );
    assert_local_delivery(&poster).await;

    redis.start_empty();
    wait_for(&poster, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    wait_for(&receiver, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    let received = ledger
        .post_until_received(&messages, &channel, &remote, "back")
        .await;
    ledger.check(&received, MAX_AGE);
    poster.shutdown().await;
    receiver.shutdown().await;
}

/// A posting node and a receiving node with one room member (read in its own task), a
/// post shown to cross, and a view of the poster's cluster state from now on.
struct Pair {
    poster: Server<Protocol>,
    receiver: Server<Protocol>,
    remote: Listening,
    channel: String,
    messages: MessageCentral<Protocol>,
    changes: tokio::sync::watch::Receiver<ClusterState>,
}

async fn pair(join: impl Into<Join>) -> Pair {
    let join = join.into();
    let poster = node_with(join.clone()).await;
    let receiver = node_with(join).await;
    let mut remote = member(&receiver, "hang").await;
    let channel = room_channel("hang");
    let messages = poster.handle().messages();
    messages
        .post_global(&channel, chat("before".into()))
        .await
        .unwrap();
    let before = drain(&mut remote, Duration::from_millis(300)).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let mut changes = messages.cluster_state_changes().unwrap();
    changes.borrow_and_update();
    Pair {
        poster,
        receiver,
        remote: Listening::start(remote),
        channel,
        messages,
        changes,
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
        remote,
        channel,
        messages,
        ..
    } = pair(stall_tolerant()).await;

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
    let late = remote.settled(Duration::from_millis(500)).await;
    assert!(late.is_empty(), "stale messages reached a client: {late:?}");
    assert_eq!(
        receiver.handle().messages().stats().stale_global,
        10,
        "each stalled message is dropped and counted on arrival"
    );
    let (_, scrape) = get_text(receiver.local_addr(), "/metrics").await;
    assert_eq!(
        metric_value(&scrape, "streampod_cluster_stale_dropped_total"),
        10.0
    );
    // Fresh posts flow again.
    messages
        .post_global(&channel, chat("after".into()))
        .await
        .unwrap();
    let after = remote.settled(Duration::from_millis(300)).await;
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
        remote,
        channel,
        messages,
        changes,
    } = pair(config(&redis)).await;

    assert_eq!(
        redis.kill_pubsub_clients(),
        2,
        "both nodes' subscribers closed"
    );
    // Publishing goes on through the healthy connection: not one post fails.
    let mut ledger = Ledger::default();
    ledger
        .post_for(&messages, &channel, "during", Duration::from_millis(300))
        .await;
    assert!(ledger.all_confirmed(), "a post failed");
    assert_eq!(messages.cluster_state(), Some(ClusterState::Connected));
    assert!(
        !changes.has_changed().unwrap(),
        "the node never left Connected: its publish connection was fine"
    );
    // The receiver subscribed again: what is posted now arrives.
    let received = ledger
        .post_until_received(&messages, &channel, &remote, "after")
        .await;
    ledger.check(&received, MAX_AGE);
    poster.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_over_redis_s_output_buffer_limit_costs_no_post_but_that_message() {
    let redis = RedisServer::start();
    let Pair {
        poster,
        receiver,
        remote,
        channel,
        messages,
        changes,
    } = pair(config(&redis)).await;

    // A message bigger than the pub/sub hard limit: Redis closes every subscriber it
    // was queued for, as it does to a subscriber that falls too far behind.
    let subscribers = redis.pubsub_client_ids();
    assert_eq!(subscribers.len(), 2);
    redis.config_set("client-output-buffer-limit", "pubsub 4kb 4kb 0");
    let big = "x".repeat(16 * 1024);
    messages.post_global(&channel, chat(big)).await.unwrap();
    redis.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60");
    let mut ledger = Ledger::default();
    ledger
        .post_for(&messages, &channel, "next", Duration::from_millis(300))
        .await;
    assert!(ledger.all_confirmed(), "a post failed");
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
    let received = ledger
        .post_until_received(&messages, &channel, &remote, "after")
        .await;
    ledger.check(&received, MAX_AGE);
    assert!(
        received.iter().all(|(c, _)| c.len() < 100),
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
        remote,
        channel,
        messages,
        ..
    } = pair(config(&redis)).await;

    let sleeping = redis.debug_sleep(2.5);
    let mut ledger = Ledger::default();
    ledger
        .post_for(&messages, &channel, "asleep", Duration::from_millis(1200))
        .await
        .expect("the sleep was detected");
    assert!(ledger.failures().1 > 0, "later posts fail as not published");
    assert_local_delivery(&poster).await;
    sleeping.join().unwrap();
    wait_for(&poster, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    wait_for(&receiver, "connected again", |s| {
        *s == ClusterState::Connected
    })
    .await;
    let received = ledger
        .post_until_received(&messages, &channel, &remote, "after")
        .await;
    ledger.check(&received, MAX_AGE);
    poster.shutdown().await;
    receiver.shutdown().await;
}

async fn method_calls_answer_503_with_retry_after_while_the_cluster_is_down(
    mut redis: TestBackplane,
) {
    let server = node_with(joining(&redis)).await;
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

async fn a_killed_node_leaves_the_others_untouched_and_a_restarted_one_joins(redis: TestBackplane) {
    let (a, b) = (
        node_with(joining(&redis)).await,
        node_with(joining(&redis)).await,
    );
    let mut on_b = member(&b, "hang").await;
    let channel = room_channel("hang");
    let c = {
        let join = joining(&redis);
        CrashableServer::start(move || node_with(join)).await
    };
    let mut on_c = member_at(c.addr(), "hang").await;
    a.handle()
        .messages()
        .post_global(&channel, chat("three".into()))
        .await
        .unwrap();
    assert_eq!(drain(&mut on_b, Duration::from_millis(300)).await.len(), 1);
    assert_eq!(drain(&mut on_c, Duration::from_millis(300)).await.len(), 1);

    // Node c dies (no shutdown: its sockets just close); a and b go on as before.
    c.crash();
    assert!(
        on_c.try_next_json(Duration::from_secs(2)).await.is_none(),
        "c is gone"
    );
    let messages = a.handle().messages();
    let mut ledger = Ledger::default();
    for _ in 0..5 {
        ledger.post(&messages, &channel, "two").await;
    }
    assert!(ledger.all_confirmed());
    let got = drain(&mut on_b, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 5, "{got:?}");
    ledger.check(&got, MAX_AGE);

    // A node started again joins and receives; nothing of the gap is replayed to it.
    let c = {
        let join = joining(&redis);
        CrashableServer::start(move || node_with(join)).await
    };
    let back = Listening::start(member_at(c.addr(), "hang").await);
    let arrived = ledger
        .post_until_received(&messages, &channel, &back, "again")
        .await;
    assert!(
        arrived
            .iter()
            .all(|(content, _)| content.ends_with("-again")),
        "{arrived:?}"
    );
    ledger.check(&arrived, MAX_AGE);
    ledger.check(&drain(&mut on_b, Duration::from_millis(200)).await, MAX_AGE);
    c.crash();
    for node in [a, b] {
        node.shutdown().await;
    }
}

//! The per-user post budget (`ServerConfig::user_rate_limit`) over real sockets: one
//! user's sessions share one budget (messages and HTTP calls), another user has their
//! own, a refused message leaves the socket open; on two servers sharing a private
//! Redis, what a user spent on one is taken from their budget on the other.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use streampod::auth::{self, AuthInfo};
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::{endpoint, RateLimit, Server, ServerConfig, Session};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::Protocol;
use streampod_tests::http::request;
use streampod_tests::redis_server::RedisServer;
use streampod_tests::rooms::{command, Rooms};

/// One HTTP method.
#[derive(Debug)]
pub struct Calls;

#[endpoint]
impl Calls {
    /// The caller's user id.
    pub async fn me(&self, session: &Session<Protocol>) -> String {
        session.authenticated_user_id().unwrap_or("-").to_owned()
    }
}

/// A burst of six a user, one a second after.
const BUDGET: RateLimit = RateLimit::new(1, 6);

async fn node(redis: Option<&RedisServer>) -> Server<Protocol> {
    let mut builder = Server::builder()
        .endpoint("rooms", Rooms::default())
        .methods("calls", Calls)
        .authentication(auth::from_fn(|key: String| async move {
            key.strip_prefix("user-").map(AuthInfo::new)
        }))
        .config(ServerConfig::default().user_rate_limit(Some(BUDGET)));
    if let Some(redis) = redis {
        builder = builder.cluster(ClusterConfig::redis(redis.url()).prefix("budget-test"));
    }
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    if redis.is_some() {
        streampod_tests::wait_for_cluster(&server, |state| *state == ClusterState::Connected).await;
    }
    server
}

/// A session of `user` in room `room` (its join spends one post).
async fn joined(addr: SocketAddr, user: &str, room: &str) -> TestClient {
    let mut client = TestClient::connect(addr, &format!("?auth=user-{user}")).await;
    command(&mut client, "join", room).await;
    client
}

/// Posts `text` to `room`: whether it was taken (it comes back, the session being in
/// the room) or refused as over the user's budget.
async fn post(client: &mut TestClient, room: &str, text: &str) -> bool {
    client
        .send_model(
            "rooms",
            "ChatMessage",
            json!({"senderName": "t", "content": text, "channelId": room}),
        )
        .await;
    let frame = client.next_json().await;
    if frame.get("error").is_some() {
        assert_eq!(frame["error"]["code"], "rate_limited", "{frame}");
        assert!(
            frame["error"]["message"]
                .as_str()
                .unwrap()
                .contains("across their sessions"),
            "{frame}"
        );
        return false;
    }
    assert_eq!(frame["object"]["data"]["content"], text, "{frame}");
    true
}

async fn call(addr: SocketAddr, user: &str) -> StatusCode {
    let bearer = format!("Bearer user-{user}");
    request(
        addr,
        http::Method::POST,
        "/calls/me",
        "{}",
        &[("authorization", &bearer)],
    )
    .await
    .status
}

#[tokio::test]
async fn a_users_sessions_share_one_budget_and_other_users_keep_theirs() {
    let server = node(None).await;
    let addr = server.local_addr();
    // Two joins spend two of user 1's six; four posts are left, whichever device sends.
    let mut phone = joined(addr, "1", "r").await;
    let mut laptop = joined(addr, "1", "r").await;
    let mut taken = 0;
    for n in 0..8 {
        let device = if n % 2 == 0 { &mut phone } else { &mut laptop };
        if post(device, "r", &format!("m{n}")).await {
            taken += 1;
            // The other device, in the room too, gets it as well.
            let other = if n % 2 == 0 { &mut laptop } else { &mut phone };
            other.next_json().await;
        }
    }
    assert_eq!(taken, 4, "six a burst for both devices together");
    // The socket stays open; HTTP calls draw on the same budget.
    phone.ping().await;
    phone.until_pong().await;
    assert_eq!(call(addr, "1").await, StatusCode::TOO_MANY_REQUESTS);
    // User 2 has a budget of their own; anonymous sessions have none.
    let mut other = joined(addr, "2", "s").await;
    assert!(post(&mut other, "s", "mine").await);
    assert_eq!(call(addr, "2").await, StatusCode::OK);
    // A second later, one more.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(post(&mut laptop, "r", "later").await);
    server.shutdown().await;
}

#[tokio::test]
async fn what_a_user_spent_on_one_server_counts_on_the_other() {
    let redis = RedisServer::start();
    let (a, b) = (node(Some(&redis)).await, node(Some(&redis)).await);
    let mut on_a = joined(a.local_addr(), "1", "ra").await;
    let mut taken = 0;
    for n in 0..6 {
        taken += usize::from(post(&mut on_a, "ra", &format!("a{n}")).await);
    }
    assert_eq!(taken, 5, "the join took one");
    // Once server a told server b (every 100 ms), b has nothing left for user 1 either.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        call(b.local_addr(), "1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(call(b.local_addr(), "2").await, StatusCode::OK);
    a.shutdown().await;
    b.shutdown().await;
}

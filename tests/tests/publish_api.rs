//! The publish API on one server, over real HTTP and WebSocket connections: off until
//! it has a key; a post reaches a joined session and answers its delivery report; a
//! user's sessions get a broadcast; history pages forward from a position (and says when
//! a position is of another epoch); an idempotent retry delivers nothing twice; both key
//! headers work; calls are counted in the method-call metrics. The cluster side (two
//! release servers, Redis) is `tests/python/publish_api_test.py`.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use streampod::auth::{self, AuthInfo};
use streampod::messages::{ChannelConfig, HistoryConfig};
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::Protocol;
use streampod_tests::http::{get_text, request, Answer};
use streampod_tests::rooms::{command, content, Rooms};

const KEY: &str = "the-api-key";

async fn start(with_api: bool) -> Server<Protocol> {
    let mut builder = Server::builder()
        .endpoint("rooms", Rooms::default())
        .authentication(auth::from_fn(|key: String| async move {
            (key == "ann").then(|| AuthInfo::new("1"))
        }));
    if with_api {
        builder = builder.publish_api(KEY);
    }
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    server.handle().messages().configure_namespace(
        "kept-",
        ChannelConfig::default().with_history(HistoryConfig::new(100, Duration::from_secs(60))),
    );
    server
}

async fn api(addr: SocketAddr, operation: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let bearer = format!("Bearer {KEY}");
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    request(
        addr,
        Method::POST,
        &format!("/api/{operation}"),
        &body.to_string(),
        &all,
    )
    .await
}

fn chat(channel: &str, text: &str) -> Value {
    json!({"className": "ChatMessage", "data": {"senderName": "api", "content": text, "channelId": channel}})
}

#[tokio::test]
async fn the_api_is_off_until_the_server_has_a_key() {
    let server = start(false).await;
    let answer = api(server.local_addr(), "publish", &json!({}), &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{:?}", answer.body);
    let (status, _) = get_text(server.local_addr(), "/api/openapi.json").await;
    assert!(status.contains("404"), "{status}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_post_reaches_a_joined_session_and_a_broadcast_a_users_sessions() {
    let server = start(true).await;
    let addr = server.local_addr();
    let mut member = TestClient::connect(addr, "?auth=ann").await;
    command(&mut member, "join", "room-1").await;

    let answer = api(
        addr,
        "publish",
        &json!({"channel": "room-1", "message": chat("room-1", "hello")}),
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(
        answer.body,
        json!({"reach": "local", "delivered": 1, "dropped": 0, "disconnected": 0})
    );
    assert_eq!(content(&member.next_json().await), "hello");

    // X-API-Key works as well as the bearer header.
    let body = json!({"endpoint": "rooms", "user": "1", "message": chat("room-1", "to ann")});
    let answer = request(
        addr,
        Method::POST,
        "/api/broadcast",
        &body.to_string(),
        &[("x-api-key", KEY)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["delivered"], 1);
    let frame = member.next_json().await;
    assert_eq!(
        (content(&frame), &frame["endpoint"]),
        ("to ann", &json!("rooms"))
    );
    let body = json!({"endpoint": "rooms", "user": "2", "message": chat("room-1", "to nobody")});
    assert_eq!(
        api(addr, "broadcast", &body, &[]).await.body["delivered"],
        0
    );
    assert!(member.is_quiet(Duration::from_millis(200)).await);

    // Counted as method calls of "api".
    let (_, metrics) = get_text(addr, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line.contains("endpoint=\"api\"") && line.contains("method=\"publish\"")),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn history_pages_forward_and_says_when_a_position_is_of_another_epoch() {
    let server = start(true).await;
    let addr = server.local_addr();
    for n in 1..=5 {
        let body = json!({"channel": "kept-1", "message": chat("kept-1", &n.to_string())});
        assert_eq!(
            api(addr, "publish", &body, &[]).await.status,
            StatusCode::OK
        );
    }
    let offsets = |page: &Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect()
    };
    let first = api(
        addr,
        "history",
        &json!({"channel": "kept-1", "limit": 2}),
        &[],
    )
    .await
    .body;
    assert_eq!(offsets(&first), [1, 2]);
    assert_eq!(
        (first["newest"].as_u64(), first["complete"].as_bool()),
        (Some(5), Some(true))
    );
    assert_eq!(first["messages"][1]["message"]["data"]["content"], "2");
    let epoch = first["epoch"].as_str().unwrap();
    let rest = api(
        addr,
        "history",
        &json!({"channel": "kept-1", "since": {"epoch": epoch, "offset": 2}}),
        &[],
    )
    .await
    .body;
    assert_eq!(offsets(&rest), [3, 4, 5]);
    assert_eq!(rest["complete"], true);
    let elsewhere = api(
        addr,
        "history",
        &json!({"channel": "kept-1", "since": {"epoch": "gone", "offset": 3}}),
        &[],
    )
    .await
    .body;
    assert_eq!(
        offsets(&elsewhere),
        [1, 2, 3, 4, 5],
        "another epoch reads from the start"
    );
    assert_eq!(elsewhere["complete"], false);
    server.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_retry_gets_the_first_answer_and_posts_nothing() {
    let server = start(true).await;
    let addr = server.local_addr();
    let mut member = TestClient::connect(addr, "").await;
    command(&mut member, "join", "room-2").await;
    let body = json!({"channel": "room-2", "message": chat("room-2", "once")});
    let key = [("idempotency-key", "order-17")];
    let first = api(addr, "publish", &body, &key).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(content(&member.next_json().await), "once");
    let retry = api(addr, "publish", &body, &key).await;
    assert_eq!((retry.status, &retry.body), (StatusCode::OK, &first.body));
    assert_eq!(retry.headers.get("idempotent-replayed").unwrap(), "true");
    assert!(
        member.is_quiet(Duration::from_millis(300)).await,
        "delivered once"
    );
    // A refused request leaves the key free: the corrected retry does the work.
    let bad = json!({"channel": "room-2", "message": {"className": "Nope", "data": {}}});
    let key = [("idempotency-key", "order-18")];
    assert_eq!(
        api(addr, "publish", &bad, &key).await.status,
        StatusCode::BAD_REQUEST
    );
    let fixed = json!({"channel": "room-2", "message": chat("room-2", "fixed")});
    assert_eq!(
        api(addr, "publish", &fixed, &key).await.status,
        StatusCode::OK
    );
    assert_eq!(content(&member.next_json().await), "fixed");
    let long = "k".repeat(256);
    let answer = api(addr, "publish", &body, &[("idempotency-key", &long)]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);
    server.shutdown().await;
}

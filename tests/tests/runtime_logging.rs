//! Logs carry a span per connection (id, peer, user) and per endpoint call, so a failed
//! handler can be traced to its session. This file installs a global subscriber, so it
//! holds this one test only.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use streampod::auth::{self, AuthInfo};
use streampod::Server;
use streampod_tests::captured_log::Captured;
use streampod_tests::client::TestClient;
use streampod_tests::recorder::Recorder;
use streampod_tests::{chat_json, eventually};

#[tokio::test]
async fn handler_failures_are_logged_inside_the_session_span() {
    let captured = Captured::install("streampod=debug,example_server=info");

    let server = Server::builder()
        .endpoint("chat", Recorder::default())
        .authentication(auth::from_fn(|key: String| async move {
            (key == "k").then(|| AuthInfo::new("77"))
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut client = TestClient::connect(server.local_addr(), "?auth=k").await;
    client
        .send_model("chat", "ChatMessage", chat_json("fail"))
        .await;
    client.expect_error("internal").await;

    eventually("the failure is logged", || {
        captured.text().contains("handle_stream_message failed")
    })
    .await;
    let log = captured.text();
    let line = log
        .lines()
        .find(|l| l.contains("handle_stream_message failed"))
        .unwrap();
    assert!(line.contains("session{id=1 peer=127.0.0.1:"), "{line}");
    assert!(line.contains("user=77"), "{line}");
    assert!(
        line.contains("handle_stream_message{endpoint=chat class=ChatMessage}"),
        "{line}"
    );
    assert!(line.contains("the handler failed on purpose"), "{line}");
    assert!(
        !log.contains("?auth=k") && !log.contains("key=k"),
        "auth keys never reach the log"
    );
    server.shutdown().await;

    // An opening slow enough to worry a Serverpod Dart client (it closes a socket whose
    // first ping gets no answer within 5 s) is logged, and the ping still answered.
    let slow = Server::builder()
        .endpoint("chat", Recorder::default())
        .authentication(auth::from_fn(|_key: String| async move {
            tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
            Some(AuthInfo::new("8"))
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut client = TestClient::connect_legacy(slow.local_addr(), "?auth=slow").await;
    client.send_text(r#"{"command":"ping","args":{}}"#).await;
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"command": "pong"})
    );
    eventually("the slow opening is logged", || {
        captured.text().contains("closes a socket whose first ping")
    })
    .await;
    // A client without streampod.v1 gets no error frame for a bad one: the log says so.
    client
        .send_model("nope", "ChatMessage", chat_json("to nowhere"))
        .await;
    eventually("the unanswered rejection is logged", || {
        captured
            .text()
            .contains("rejected a frame of a client without the streampod.v1 subprotocol")
    })
    .await;
    slow.shutdown().await;

    // A cluster whose Redis is gone: the loss is logged once, and thirty room posts that
    // fall back to local delivery make one line between them, not thirty.
    let redis = streampod_tests::redis_server::RedisServer::start();
    let node = example_server::server()
        .cluster(streampod::cluster::ClusterConfig::redis(redis.url()).prefix("logging"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut changes = node.handle().messages().cluster_state_changes().unwrap();
    changes
        .wait_for(|s| *s == streampod::cluster::ClusterState::Connected)
        .await
        .unwrap();
    redis.kill();
    changes
        .wait_for(|s| matches!(s, streampod::cluster::ClusterState::Disconnected { .. }))
        .await
        .unwrap();
    let mut member = TestClient::connect(node.local_addr(), "").await;
    member.chat_subscription("lobby", true).await;
    for n in 0..30 {
        member
            .send_model(
                "chat",
                "ChatMessage",
                serde_json::json!({"senderName": "a", "content": format!("m{n}"), "channelId": "lobby"}),
            )
            .await;
    }
    member.until_pong().await;
    let log = captured.text();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("reached this server's members only"), 1, "{log}");
    assert_eq!(count("Redis unreachable"), 1, "{log}");
    assert!(log.contains("posts=1"), "the line counts the posts");
    node.shutdown().await;
}

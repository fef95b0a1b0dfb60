//! `GET /metrics` over a real socket: scraped during a test, the figures move with what
//! the server did (connections, streams, posts, deliveries, method calls, refusals,
//! rate limiting); the route can be moved or switched off.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use streampod::auth::{self, AuthInfo};
use streampod::{RateLimit, ServerConfig};
use streampod_tests::client::TestClient;
use streampod_tests::http::{get_text, metric_value};

#[tokio::test]
async fn scrapes_follow_what_the_server_did() {
    let server = example_server::server()
        .authentication(auth::from_fn(|key: String| async move {
            key.strip_prefix("token-").map(AuthInfo::new)
        }))
        .config(ServerConfig::default().inbound_rate_limit(Some(RateLimit::new(1, 3))))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let (status, before) = get_text(addr, "/metrics").await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(metric_value(&before, "streampod_sessions"), 0.0);
    assert_eq!(metric_value(&before, "streampod_posts_total"), 0.0);

    let mut client = TestClient::connect(addr, "?auth=token-5").await;
    client
        .send_model(
            "chat",
            "ChannelSubscription",
            json!({"channelId": "m", "subscribe": true}),
        )
        .await;
    client
        .send_model(
            "chat",
            "ChatMessage",
            json!({"senderName": "a", "content": "x", "channelId": "m"}),
        )
        .await;
    // Over the limit of 3 frames at once: refused.
    client.send_text(r#"{"command":"ping"}"#).await;
    client.send_text(r#"{"command":"ping"}"#).await;
    loop {
        let frame = client.next_json().await;
        if frame["error"]["code"] == "rate_limited" {
            break;
        }
    }
    let call = streampod_tests::http::request(
        addr,
        http::Method::POST,
        "/notification/sendNotification",
        r#"{"targetUserId": 5, "message": "hi"}"#,
        &[("authorization", "Bearer token-5")],
    )
    .await;
    assert_eq!(call.status, 200);
    let missing = streampod_tests::http::post(addr, "/nowhere/at-all", "{}").await;
    assert_eq!(missing.status, 404);

    let (_, after) = get_text(addr, "/metrics").await;
    assert_eq!(metric_value(&after, "streampod_sessions"), 1.0);
    assert_eq!(
        metric_value(&after, "streampod_streams_open{endpoint=\"chat\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&after, "streampod_streams_open{endpoint=\"notification\"}"),
        1.0
    );
    assert!(metric_value(&after, "streampod_connections_accepted_total") >= 5.0);
    assert!(
        metric_value(&after, "streampod_posts_total") >= 2.0,
        "the chat message and the notification"
    );
    assert!(metric_value(&after, "streampod_deliveries_total") >= 2.0);
    assert!(metric_value(&after, "streampod_frames_encoded_total") >= 2.0);
    assert_eq!(
        metric_value(&after, "streampod_inbound_rate_limited_frames_total"),
        1.0
    );
    assert_eq!(
        metric_value(&after, "streampod_channels"),
        3.0,
        "the room, user-5 and global"
    );
    assert_eq!(
        metric_value(
            &after,
            "streampod_method_calls_total{endpoint=\"notification\",method=\"sendNotification\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &after,
            "streampod_method_calls_total{endpoint=\"unknown\",method=\"unknown\",status=\"404\"}"
        ),
        1.0,
        "unknown names never become labels"
    );
    assert!(metric_value(&after, "streampod_writer_batch_frames_count") >= 1.0);
    assert_eq!(
        metric_value(
            &after,
            "streampod_frames_dropped_total{policy=\"drop_oldest\"}"
        ),
        0.0
    );
    assert!(after.ends_with("# EOF\n"));
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let server = example_server::server()
        .config(ServerConfig::default().max_connections_per_ip(Some(1)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let _held = TestClient::connect(addr, "").await;
    // The scrape itself is refused while the socket above holds the one place.
    let (status, _) = get_text(addr, "/metrics").await;
    assert!(status.contains(" 503 "), "{status}");
    drop(_held);
    streampod_tests::eventually("the place is free", || server.handle().session_count() == 0).await;
    let (_, scrape) = get_text(addr, "/metrics").await;
    assert_eq!(
        metric_value(
            &scrape,
            "streampod_connections_refused_total{reason=\"per_address\"}"
        ),
        1.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_route_moves_or_goes() {
    let moved = example_server::server()
        .config(ServerConfig::default().metrics_path(Some("/internal/metrics".into())))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    assert!(get_text(moved.local_addr(), "/internal/metrics")
        .await
        .0
        .contains(" 200 "));
    assert!(get_text(moved.local_addr(), "/metrics")
        .await
        .0
        .contains(" 404 "));
    let off = example_server::server()
        .config(ServerConfig::default().metrics_path(None))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    assert!(get_text(off.local_addr(), "/metrics")
        .await
        .0
        .contains(" 404 "));
}

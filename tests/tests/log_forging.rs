//! A peer cannot write lines of its choosing into the server's log, nor fill it with a
//! megabyte a line: what it chose (a frame's type, an endpoint's name, a method's name)
//! is logged escaped and cut. This file installs a global subscriber, so it holds this
//! one test only.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use streampod::Server;
use streampod_tests::captured_log::Captured;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::Protocol;
use streampod_tests::recorder::Recorder;
use tokio_tungstenite::tungstenite::Message;

/// Opens a `/v1/websocket` socket, sends `frame`, and waits until the server closed it.
async fn send_bad_frame(addr: std::net::SocketAddr, frame: String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/websocket"))
        .await
        .unwrap();
    ws.send(Message::text(frame)).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        while let Some(Ok(message)) = ws.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server closes a socket that sent a bad frame"
    );
}

#[tokio::test]
async fn what_a_peer_chose_is_logged_escaped_and_cut() {
    let captured = Captured::install("streampod=debug");

    let server: Server<Protocol> = Server::builder()
        .endpoint("chat", Recorder::default())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();

    // A streaming-method frame whose type carries a line of its own, then one whose type
    // is 200 KB long (its log line is left out by the rate limit on bad-input lines).
    send_bad_frame(
        addr,
        json!({"type": "x\nINFO forged by the peer", "data": {}}).to_string(),
    )
    .await;
    send_bad_frame(
        addr,
        json!({"type": "y".repeat(200_000), "data": {}}).to_string(),
    )
    .await;
    // An endpoint message to an endpoint whose name carries a line.
    let mut client = TestClient::connect(addr, "").await;
    client
        .send_model(
            "chat\nWARN forged endpoint",
            "ChatMessage",
            streampod_tests::chat_json("hi"),
        )
        .await;
    client.expect_error("unknown_endpoint").await;
    // And one whose name is 200 KB long.
    client
        .send_model(
            &"z".repeat(200_000),
            "ChatMessage",
            streampod_tests::chat_json("hi"),
        )
        .await;
    client.expect_error("unknown_endpoint").await;
    server.shutdown().await;

    let log = captured.text();
    assert!(
        log.contains("closing on a bad request") && log.contains("rejected frame"),
        "the bad frames were logged:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.starts_with("INFO forged") && !line.starts_with("WARN forged"),
            "a peer wrote a line of the log: {line:?}"
        );
        assert!(line.len() < 2_000, "a line of {} bytes", line.len());
    }
    assert!(log.contains(r"x\u{a}INFO forged by the peer"), "{log}");
    assert!(
        log.contains("…(+"),
        "a long name is cut, saying how much: {log}"
    );
}

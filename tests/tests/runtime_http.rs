//! The HTTP side of the server: health, unknown routes and malformed upgrades get JSON
//! answers with the right status.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use streampod::Server;
use streampod_tests::fixtures::Protocol;
use streampod_tests::recorder::Recorder;

/// Sends one request over a fresh connection; returns status, headers and JSON body.
async fn request(
    addr: SocketAddr,
    builder: http::request::Builder,
) -> (StatusCode, http::HeaderMap, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request: Request<Empty<Bytes>> = builder
        .header("host", addr.to_string())
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (parts.status, parts.headers, body)
}

async fn start() -> Server<Protocol> {
    Server::builder()
        .endpoint("chat", Recorder::default())
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test]
async fn health_answers_ok() {
    let server = start().await;
    let (status, headers, body) = request(server.local_addr(), Request::get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        json!({"status": "ok", "sessions": 0, "connections": 1}),
        "this request's own connection is open"
    );
    let (status, _, body) = request(server.local_addr(), Request::post("/health")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_404_with_a_json_body() {
    let server = start().await;
    let (status, _, body) = request(server.local_addr(), Request::get("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": {"code": "not_found", "message": "no endpoint named 'nope'"}})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_upgrades_are_refused_with_reasons() {
    let server = start().await;
    let addr = server.local_addr();

    let (status, _, body) = request(addr, Request::get("/websocket")).await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(body["error"]["code"], "upgrade_required");

    let (status, _, body) = request(
        addr,
        Request::builder().method(Method::POST).uri("/websocket"),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let upgrade = || {
        Request::get("/websocket")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
    };
    let (status, headers, body) =
        request(addr, upgrade().header("sec-websocket-version", "8")).await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(headers["sec-websocket-version"], "13");
    assert_eq!(body["error"]["code"], "unsupported_version");

    let (status, _, body) = request(addr, upgrade().header("sec-websocket-version", "13")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "Sec-WebSocket-Key must be the base64 of 16 bytes"
    );
    server.shutdown().await;
}

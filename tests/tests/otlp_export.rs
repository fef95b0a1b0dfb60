//! The example's OTLP/HTTP trace pipeline (`--otlp-endpoint`) against a real HTTP
//! listener standing in for the collector: a chat session's spans — the session and
//! each frame handled — reach it as protobuf in a `POST /v1/traces`, tagged with the
//! service name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use example_server::telemetry::Traces;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use streampod_tests::client::TestClient;
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;

/// What the collector was sent: method, path, content type and body.
type Export = (String, String, String, Bytes);

/// A collector on a free loopback port: answers every request `200` with an empty
/// protobuf body, and hands what it got to the test.
async fn collector() -> (String, mpsc::UnboundedReceiver<Export>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (sent, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let sent = sent.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let sent = sent.clone();
                        async move {
                            let method = request.method().to_string();
                            let path = request.uri().path().to_owned();
                            let content_type = request
                                .headers()
                                .get("content-type")
                                .and_then(|value| value.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let _ = sent.send((method, path, content_type, body));
                            let response = Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn a_chat_sessions_spans_reach_the_collector_over_otlp_http() {
    let (url, mut exports) = collector().await;
    let traces = Traces::otlp(&url, "otlp-test-service").unwrap();
    let subscriber = tracing_subscriber::registry().with(traces.layer());
    let _default = tracing::subscriber::set_default(subscriber);

    let server = example_server::server().bind("127.0.0.1:0").await.unwrap();
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client.chat_subscription("lobby", true).await;
    client.until_pong().await;
    client.close().await;
    server.shutdown().await;

    // The batch goes out from the SDK's own thread; flushing waits for the answer.
    tokio::task::spawn_blocking(move || traces.flush())
        .await
        .unwrap();
    let mut bodies = Vec::new();
    while let Ok(Some((method, path, content_type, body))) =
        tokio::time::timeout(Duration::from_secs(2), exports.recv()).await
    {
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/v1/traces"));
        assert_eq!(content_type, "application/x-protobuf");
        bodies.push(body);
    }
    let all: Vec<u8> = bodies.concat();
    assert!(!all.is_empty(), "nothing exported");
    for expected in ["otlp-test-service", "session", "handle_stream_message"] {
        assert!(
            contains(&all, expected),
            "no {expected:?} in what the collector got"
        );
    }
}

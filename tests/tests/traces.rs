//! Traces across nodes (feature `otel`), exported with the OpenTelemetry SDK's in-memory
//! exporter through `tracing-opentelemetry`: a global post made on node A inside a
//! request's span is delivered on node B in a span of the same trace (the `traceparent`
//! travels in the backplane envelope), the client-side trace of a `streampod.v1` frame,
//! of an HTTP call (`traceparent` header) and of a streaming-method call (`traceparent`
//! in its open command) goes on in the server's span.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::Method;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::http::request;
use streampod_tests::redis_server::RedisServer;
use streampod_tests::rooms::{command, RoomFeeds, Rooms};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const ROOM: &str = "traced";

async fn node(redis: &RedisServer) -> Server<Protocol> {
    let server = Server::builder()
        .endpoint("rooms", Rooms::default())
        .methods("feeds", RoomFeeds)
        .cluster(ClusterConfig::redis(redis.url()).prefix("traces-test"))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut changes = server.handle().messages().cluster_state_changes().unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        changes.wait_for(|state| *state == ClusterState::Connected),
    )
    .await
    .expect("connected to Redis within 10 s")
    .unwrap();
    server
}

/// Every span exported so far.
fn spans(provider: &SdkTracerProvider, exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_post_from_the_poster_s_node_to_the_subscriber_s() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("streampod-test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_b = TestClient::connect(b.local_addr(), "").await;
    command(&mut on_b, "join", ROOM).await;
    // Node B's subscription to the room is in Redis.
    let channel = format!("traces-test:channel:{ROOM}");
    streampod_tests::eventually("node B to subscribe", || redis.numsub(&channel) == 1).await;

    // An app's request on node A posts to the room.
    let request_span = tracing::info_span!("request");
    let central = a.handle().messages();
    async move {
        let message = ChatMessage {
            sender_name: "a".into(),
            content: "traced post".into(),
            timestamp: None,
            channel_id: ROOM.into(),
            priority: Priority::Normal,
        };
        central.post_global(ROOM, message).await.unwrap();
    }
    .instrument(request_span)
    .await;
    let frame = on_b.next_json().await;
    assert_eq!(frame["object"]["data"]["content"], "traced post");

    let mut exported = Vec::new();
    for _ in 0..50 {
        exported = spans(&provider, &exporter);
        if !named(&exported, "deliver").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let root = named(&exported, "request")[0];
    let post = named(&exported, "post");
    let deliver = named(&exported, "deliver");
    assert_eq!(post.len(), 1, "{exported:#?}");
    assert_eq!(deliver.len(), 1, "only node B listens: {exported:#?}");
    let trace = root.span_context.trace_id();
    assert_eq!(post[0].span_context.trace_id(), trace);
    assert_eq!(post[0].parent_span_id, root.span_context.span_id());
    // Node B's span continues node A's post.
    assert_eq!(deliver[0].span_context.trace_id(), trace);
    assert_eq!(deliver[0].parent_span_id, post[0].span_context.span_id());
    assert!(deliver[0].parent_span_is_remote);

    // A client's trace goes on in the server: a frame's `traceparent`...
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    on_b.send_text(
        &json!({"endpoint": "rooms", "traceparent": format!("00-{client_trace}-00f067aa0ba902b7-01"),
            "object": {"className": "ChatMessage", "data": {
                "senderName": "b", "content": "tag:traced", "channelId": ROOM}}})
        .to_string(),
    )
    .await;
    let ack = on_b.next_json().await;
    assert_eq!(ack["object"]["data"]["content"], "ack:tag");
    // ...and an HTTP call's `traceparent` header.
    let call_trace = "0af7651916cd43dd8448eb211c80319c";
    request(
        b.local_addr(),
        Method::POST,
        "/rooms/nothing",
        "{}",
        &[(
            "traceparent",
            &format!("00-{call_trace}-b7ad6b7169203331-01"),
        )],
    )
    .await;
    let exported = spans(&provider, &exporter);
    let handled = named(&exported, "handle_stream_message");
    assert!(
        handled
            .iter()
            .any(|span| span.span_context.trace_id().to_string() == client_trace),
        "{handled:#?}"
    );
    let calls = named(&exported, "method_call");
    assert!(
        calls.iter().any(
            |span| span.span_context.trace_id().to_string() == call_trace
                && span.parent_span_id.to_string() == "b7ad6b7169203331"
        ),
        "{calls:#?}"
    );

    // Streampod's own Rust clients send the caller's trace: a message sent and a
    // method called inside a span are handled in spans of the same trace.
    let sender =
        streampod::client::Client::<Protocol>::connect(format!("http://{}", b.local_addr()))
            .await
            .unwrap();
    let methods =
        streampod::client::MethodClient::new(&format!("http://{}", b.local_addr())).unwrap();
    let client_span = tracing::info_span!("client_work");
    async {
        sender
            .send(
                "rooms",
                ChatMessage {
                    sender_name: "rust".into(),
                    content: "tag:from-rust".into(),
                    timestamp: None,
                    channel_id: ROOM.into(),
                    priority: Priority::Normal,
                },
            )
            .unwrap();
        // Any answer will do: the call's span is what counts.
        let _ = methods
            .call::<String, streampod::client::NoException>("rooms", "nothing", json!({}))
            .await;
        let _stream = methods
            .call_stream::<ChatMessage, streampod::client::NoException>(
                "feeds",
                "room",
                json!({"room": ROOM}),
                &[],
            )
            .await
            .unwrap();
    }
    .instrument(client_span)
    .await;
    let mut exported = Vec::new();
    for _ in 0..50 {
        exported = spans(&provider, &exporter);
        let client_work = named(&exported, "client_work");
        let traced = |name: &str| {
            client_work.first().is_some_and(|root| {
                named(&exported, name)
                    .iter()
                    .any(|span| span.span_context.trace_id() == root.span_context.trace_id())
            })
        };
        if traced("handle_stream_message") && traced("method_call") && traced("call") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let root = named(&exported, "client_work")[0];
    for name in ["handle_stream_message", "method_call", "call"] {
        let continued = named(&exported, name)
            .into_iter()
            .find(|span| span.span_context.trace_id() == root.span_context.trace_id())
            .unwrap_or_else(|| panic!("no {name} in the Rust client's trace: {exported:#?}"));
        assert_eq!(
            continued.parent_span_id,
            root.span_context.span_id(),
            "{name}"
        );
        assert!(continued.parent_span_is_remote, "{name}");
    }
    sender.close().await;
    a.shutdown().await;
    b.shutdown().await;
}

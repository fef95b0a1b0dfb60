//! The typed Rust client against a real server: typed messages both ways, batches
//! unpacked, error frames, method calls with typed results and exceptions, and
//! reconnection after a server restart with subscriptions restored by the hook.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// `Lookup` is a fixture whose method names say what each exercises.
#![allow(missing_docs, missing_debug_implementations)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use streampod::auth::{self, AuthInfo, Scope};
use streampod::client::{
    Backoff, CallError, Client, ClientError, CloseInfo, ConnectionState, Incoming, MethodClient,
    NoException,
};
use streampod::messages::Reach;
use streampod::protocol::ErrorCode;
use streampod::{endpoint, Endpoint, EndpointError, Server, Session, StreamingSession};
use streampod_tests::eventually;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol, RoomNotFound};
use streampod_tests::rooms::Rooms;

pub struct Lookup;

#[endpoint]
impl Lookup {
    pub async fn room(&self, room_id: String) -> Result<ChatMessage, RoomNotFound> {
        if room_id == "lobby" {
            Ok(chat("lobby", "welcome"))
        } else {
            Err(RoomNotFound {
                room_id,
                message: Some("no such room".into()),
            })
        }
    }
}

fn chat(channel: &str, content: &str) -> ChatMessage {
    ChatMessage {
        sender_name: "t".into(),
        content: content.into(),
        timestamp: None,
        channel_id: channel.into(),
        priority: Priority::Normal,
    }
}

async fn start_on(addr: &str) -> Server<Protocol> {
    Server::builder()
        .endpoint("rooms", Rooms::default())
        .methods("lookup", Lookup)
        .bind(addr)
        .await
        .unwrap()
}

async fn next_message(client: &Client<Protocol>) -> (String, ChatMessage) {
    match tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .unwrap()
    {
        Some(Incoming::Message {
            endpoint,
            message: Protocol::ChatMessage(chat),
        }) => (endpoint, chat),
        other => panic!("expected a chat message, got {other:?}"),
    }
}

#[tokio::test]
async fn typed_messages_batches_errors_and_calls() {
    let server = start_on("127.0.0.1:0").await;
    let base = format!("http://{}", server.local_addr());
    let client = Client::<Protocol>::connect(&base).await.unwrap();
    assert_eq!(client.state(), ConnectionState::Connected);

    client.send("rooms", chat("news", "join")).unwrap();
    let (endpoint, ack) = next_message(&client).await;
    assert_eq!(
        (endpoint.as_str(), ack.content.as_str()),
        ("rooms", "ack:join")
    );

    // A batch frame arrives as individual messages, in order.
    let batched = server
        .handle()
        .messages()
        .batched("news", Duration::from_secs(10), 3);
    for i in 0..3 {
        batched.post(chat("news", &format!("b{i}"))).unwrap();
    }
    for i in 0..3 {
        assert_eq!(next_message(&client).await.1.content, format!("b{i}"));
    }

    client.send("no-such-endpoint", chat("news", "x")).unwrap();
    match client.recv().await.unwrap() {
        Incoming::Error { code, message } => {
            assert_eq!(code, ErrorCode::UnknownEndpoint);
            assert!(message.contains("no-such-endpoint"), "{message}");
        }
        other => panic!("expected an error frame, got {other:?}"),
    }

    let welcome: ChatMessage = client
        .call::<ChatMessage, RoomNotFound>("lookup", "room", json!({"roomId": "lobby"}))
        .await
        .unwrap();
    assert_eq!(welcome.content, "welcome");
    match client
        .call::<ChatMessage, RoomNotFound>("lookup", "room", json!({"roomId": "attic"}))
        .await
    {
        Err(CallError::Exception(exception)) => assert_eq!(exception.room_id, "attic"),
        other => panic!("expected the typed exception, got {other:?}"),
    }
    match client
        .call::<ChatMessage, RoomNotFound>("lookup", "rooms", json!({}))
        .await
    {
        Err(CallError::Status { status, body }) => {
            assert_eq!(status, 404);
            assert!(body.contains("did you mean 'room'"), "{body}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    client.close().await;
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert!(matches!(
        client.send("rooms", chat("news", "late")),
        Err(ClientError::NotConnected)
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_a_restart_and_restores_subscriptions() {
    let server = start_on("127.0.0.1:0").await;
    let addr: SocketAddr = server.local_addr();
    let backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    let client = Client::<Protocol>::builder(format!("ws://{addr}"))
        .backoff(backoff)
        .on_connect(|client| async move {
            // Re-join after every connect; the server forgets subscriptions on close.
            client.send("rooms", chat("news", "join")).unwrap();
        })
        .connect()
        .await
        .unwrap();
    assert_eq!(next_message(&client).await.1.content, "ack:join");
    let mut states = client.state_changes();

    server.shutdown().await;
    eventually("the client notices", || {
        client.state() != ConnectionState::Connected
    })
    .await;
    assert!(
        matches!(
            client.send("rooms", chat("news", "lost?")),
            Err(ClientError::NotConnected)
        ),
        "no silent loss"
    );
    // The app learns how the server closed.
    let closed = tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .unwrap();
    let expected = CloseInfo {
        code: 1001,
        reason: "server shutting down".into(),
    };
    assert_eq!(closed, Some(Incoming::Closed(expected.clone())));
    assert_eq!(client.last_close(), Some(expected));

    // Every delay it waits is within the backoff's cap for that attempt.
    let mut seen = Vec::new();
    let restarted = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        start_on(&addr.to_string()).await
    });
    loop {
        tokio::time::timeout(Duration::from_secs(10), states.changed())
            .await
            .unwrap()
            .unwrap();
        let state = states.borrow_and_update().clone();
        if let ConnectionState::Reconnecting { attempt, delay } = state {
            assert!(
                delay <= backoff.cap(attempt),
                "attempt {attempt} waited {delay:?}"
            );
            seen.push(delay);
        }
        if state == ConnectionState::Connected {
            break;
        }
    }
    assert!(
        seen.len() >= 2,
        "it retried while the server was down: {seen:?}"
    );
    let server = restarted.await.unwrap();

    // The hook re-joined: posts to the channel reach the client again.
    assert_eq!(next_message(&client).await.1.content, "ack:join");
    let report = server
        .handle()
        .messages()
        .post_message("news", chat("news", "after restart"), Reach::Local)
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 1);
    assert_eq!(next_message(&client).await.1.content, "after restart");
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn gives_up_after_the_allowed_attempts() {
    // Nothing listens on this port once the listener is dropped.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let result = Client::<Protocol>::builder(format!("http://{addr}"))
        .backoff(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ))
        .max_attempts(Some(3))
        .connect()
        .await;
    assert!(
        matches!(
            result,
            Err(ClientError::Connect {
                attempts: 3,
                last: Some(_)
            })
        ),
        "{result:?}"
    );
    assert!(matches!(
        Client::<Protocol>::connect("ftp://example").await,
        Err(ClientError::InvalidUrl(_))
    ));
}

/// Closes every stream it opens with `code`, counting them.
struct Gate {
    code: u16,
    opened: Arc<AtomicUsize>,
}

impl Endpoint<Protocol> for Gate {
    async fn stream_opened(
        &self,
        session: &StreamingSession<Protocol>,
    ) -> Result<(), EndpointError> {
        self.opened.fetch_add(1, Ordering::Relaxed);
        session.handle().close(self.code, "not allowed");
        Ok(())
    }
}

/// How many connections a client makes in `window` to a server that closes each one
/// with `code` right after it opens, and what the client was told.
async fn connections_in(code: u16, window: Duration) -> (usize, Option<CloseInfo>) {
    let opened = Arc::new(AtomicUsize::new(0));
    let server = Server::<Protocol>::builder()
        .endpoint(
            "gate",
            Gate {
                code,
                opened: opened.clone(),
            },
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = Client::<Protocol>::builder(format!("http://{}", server.local_addr()))
        .backoff(Backoff::new(
            Duration::from_millis(50),
            Duration::from_secs(2),
        ))
        .connect()
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .unwrap();
    let told = match first {
        Some(Incoming::Closed(info)) => Some(info),
        _ => None,
    };
    tokio::time::sleep(window).await;
    client.close().await;
    server.shutdown().await;
    (opened.load(Ordering::Relaxed), told)
}

#[tokio::test]
async fn a_refusing_server_is_not_hammered() {
    // Before: every close reset the backoff, ~20 connections per second against this
    // server (110 in 6 s in the report). Now each refused or short-lived connection
    // counts as a failed attempt and the delays grow (caps 100, 200, 400, 800 ms, …).
    for code in [1008, 1000] {
        let (connections, told) = connections_in(code, Duration::from_millis(1500)).await;
        assert!(
            connections <= 10,
            "{connections} connections in 1.5 s after close {code}"
        );
        assert_eq!(
            told,
            Some(CloseInfo {
                code,
                reason: "not allowed".into()
            })
        );
    }
    assert!(CloseInfo {
        code: 1008,
        reason: String::new()
    }
    .is_rejection());
    assert!(!CloseInfo {
        code: 1001,
        reason: String::new()
    }
    .is_rejection());
}

#[tokio::test]
async fn the_first_connect_gives_up_in_time() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = std::time::Instant::now();
    let result = Client::<Protocol>::builder(format!("http://{addr}"))
        .backoff(Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ))
        .connect_timeout(Some(Duration::from_millis(400)))
        .connect()
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    match result {
        Err(ClientError::ConnectTimeout { after, last }) => {
            assert_eq!(after, Duration::from_millis(400));
            let last = last.expect("why the last attempt failed");
            assert!(
                last.to_string().to_lowercase().contains("refused"),
                "{last}"
            );
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    for url in ["127.0.0.1:1", "http://", "http://a b"] {
        assert!(
            matches!(
                Client::<Protocol>::connect(url).await,
                Err(ClientError::InvalidUrl(_))
            ),
            "{url}"
        );
    }
}

pub struct Guarded;

#[endpoint(require_login)]
impl Guarded {
    pub async fn whoami(&self, session: &Session<Protocol>) -> String {
        session.authenticated_user_id().unwrap_or("-").to_owned()
    }

    #[method(scopes("admin"))]
    pub async fn admin_only(&self) -> i64 {
        42
    }
}

#[tokio::test]
async fn method_calls_need_no_socket_and_auth_failures_are_typed() {
    let server = Server::<Protocol>::builder()
        .methods("lookup", Lookup)
        .methods("guarded", Guarded)
        .authentication(auth::from_fn(|key: String| async move {
            match key.as_str() {
                "ann" => Some(AuthInfo::new("1")),
                "root" => Some(AuthInfo::new("2").with_scopes([Scope::from_static("admin")])),
                _ => None,
            }
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let anonymous = streampod::client::MethodClient::new(&base).unwrap();
    let welcome: ChatMessage = anonymous
        .call::<_, RoomNotFound>("lookup", "room", json!({"roomId": "lobby"}))
        .await
        .unwrap();
    assert_eq!(welcome.content, "welcome");
    match anonymous
        .call::<String, NoException>("guarded", "whoami", json!({}))
        .await
    {
        Err(CallError::Unauthenticated { message }) => {
            assert!(message.contains("signed-in"), "{message}");
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let ann = Client::<Protocol>::builder(&base)
        .auth_key("ann")
        .method_client()
        .unwrap();
    let me: String = ann
        .call::<_, NoException>("guarded", "whoami", json!({}))
        .await
        .unwrap();
    assert_eq!(me, "1");
    match ann
        .call::<i64, NoException>("guarded", "adminOnly", json!({}))
        .await
    {
        Err(CallError::Forbidden { message }) => assert!(message.contains("admin"), "{message}"),
        other => panic!("expected 403, got {other:?}"),
    }
    // Typed arguments: any value that serializes to an object of named arguments.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct RoomArgs {
        room_id: &'static str,
    }
    let root = Client::<Protocol>::builder(&base)
        .auth_key("root")
        .method_client()
        .unwrap();
    let answer: i64 = root
        .call::<_, NoException>("guarded", "adminOnly", json!({}))
        .await
        .unwrap();
    assert_eq!(answer, 42);
    let welcome: ChatMessage = root
        .call::<_, RoomNotFound>("lookup", "room", RoomArgs { room_id: "lobby" })
        .await
        .unwrap();
    assert_eq!(welcome.channel_id, "lobby");
    assert_eq!(server.handle().session_count(), 0, "no socket was opened");
    server.shutdown().await;
}

#[tokio::test]
async fn a_serverpod_server_without_the_subprotocol_is_still_reached() {
    // A server that answers the upgrade without any subprotocol, as Serverpod does, and
    // sends one endpoint frame to each socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frame = r#"{"endpoint":"rooms","object":{"className":"ChatMessage","data":{"senderName":"s","content":"from serverpod","channelId":"x","priority":"normal"}}}"#;
    tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let _ = socket
                    .send(tokio_tungstenite::tungstenite::Message::text(frame))
                    .await;
                while let Some(Ok(_)) = socket.next().await {}
            });
        }
    });
    let client = Client::<Protocol>::builder(format!("http://{addr}"))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .connect_timeout(Some(Duration::from_secs(5)))
        .connect()
        .await
        .unwrap();
    assert_eq!(next_message(&client).await.1.content, "from serverpod");
    client.close().await;
}

/// A server that reads one request and answers it with `head`, then, when `flood`, an
/// endless body (counting what it managed to write), else nothing more for a minute.
async fn hostile_http(head: &'static str, flood: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 4096];
        let _ = socket.read(&mut request).await;
        socket.write_all(head.as_bytes()).await.unwrap();
        if !flood {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let chunk = vec![b'1'; 64 << 10];
        while socket.write_all(&chunk).await.is_ok() {
            count.fetch_add(chunk.len(), Ordering::Relaxed);
        }
    });
    (addr, written)
}

#[tokio::test]
async fn a_method_call_reads_a_bounded_answer_in_bounded_time() {
    // A gigabyte announced and sent: the call fails at the limit, having read about it.
    let (addr, written) = hostile_http(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n",
        true,
    )
    .await;
    let calls = MethodClient::new(&format!("http://{addr}"))
        .unwrap()
        .max_answer_bytes(1 << 20);
    let result = calls
        .call::<String, NoException>("greeter", "hello", json!({}))
        .await;
    assert!(
        matches!(result, Err(CallError::AnswerTooLarge { limit }) if limit == 1 << 20),
        "{result:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = written.load(Ordering::Relaxed);
    assert!(
        sent < 64 << 20,
        "the client stopped reading: {sent} bytes sent"
    );

    // An answer that starts and never ends: the call gives up at its timeout.
    let (addr, _) = hostile_http(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n\"abc",
        false,
    )
    .await;
    // (Configured through the socket client's builder, as an app using both would.)
    let calls = streampod::client::Client::<Protocol>::builder(format!("http://{addr}"))
        .method_calls(|calls| calls.call_timeout(Duration::from_millis(300)))
        .method_client()
        .unwrap();
    let started = std::time::Instant::now();
    let result = calls
        .call::<String, NoException>("greeter", "hello", json!({}))
        .await;
    assert!(matches!(result, Err(CallError::TimedOut(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

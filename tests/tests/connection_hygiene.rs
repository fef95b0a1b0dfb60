//! Hostile and broken connections over raw TCP: timeouts for headers, bodies, idle
//! keep-alive and silent WebSockets; the connection caps with eviction of waiting
//! connections and a clean 503; a strict WebSocket handshake. Timeouts are configured
//! short so the suite stays fast.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use streampod::{endpoint, Server, ServerConfig};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::Protocol;
use streampod_tests::rooms::Rooms;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(600);

async fn start(config: ServerConfig) -> Server<Protocol> {
    Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// Answers as large as asked for (public: its method is its API).
#[allow(missing_debug_implementations)]
pub struct Bulk;

#[endpoint]
impl Bulk {
    /// `bytes` bytes of text.
    pub async fn text(&self, bytes: i64) -> String {
        "x".repeat(usize::try_from(bytes).unwrap_or(0))
    }
}

/// An answer far larger than what the kernel's socket buffers hold on loopback.
const LARGE_ANSWER: usize = 32 << 20;

/// Opens a connection that asks for [`LARGE_ANSWER`] bytes and reads nothing yet.
async fn ask_for_a_large_answer(addr: SocketAddr) -> TcpStream {
    let body = format!(r#"{{"bytes":{LARGE_ANSWER}}}"#);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /bulk/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Connections open, as `/health` counts them (the asking one included).
async fn open_connections(addr: SocketAddr) -> u64 {
    let health = streampod_tests::http::request(addr, Method::GET, "/health", "", &[]).await;
    health.body["connections"].as_u64().unwrap()
}

fn short_timeouts() -> ServerConfig {
    ServerConfig::default()
        .http_header_timeout(SHORT)
        .http_body_timeout(SHORT)
        .first_frame_timeout(SHORT)
}

/// Reads until the server closes the connection (or 10 s pass); what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// How long the server takes to close a connection `feed` keeps busy.
async fn closed_after(addr: SocketAddr, feed: &[u8], drip: Option<&[u8]>) -> (Duration, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(feed).await.unwrap();
    if let Some(drip) = drip {
        // One byte every 100 ms, for longer than the timeout.
        for byte in drip.iter().cycle().take(30) {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let received = read_until_closed(&mut stream).await;
    (started.elapsed(), received)
}

#[tokio::test]
async fn silent_dripping_and_idle_connections_are_closed() {
    let server = start(short_timeouts()).await;
    let addr = server.local_addr();
    let limit = SHORT + Duration::from_millis(900);

    let (silent, _) = closed_after(addr, b"", None).await;
    assert!(silent < limit, "a silent connection lived {silent:?}");

    let (dripping, _) =
        closed_after(addr, b"GET /health HTTP/1.1\r\n", Some(b"X-Drip: 1\r\n")).await;
    assert!(dripping < limit, "a dripping request lived {dripping:?}");

    let (idle, answer) = closed_after(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", None).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(idle < limit, "an idle keep-alive connection lived {idle:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn bodies_that_never_finish_get_408() {
    let server = example_server::server()
        .config(short_timeouts())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let chunked = b"POST /notification/sendNotification HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n";
    let short = b"POST /notification/sendNotification HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":1";
    for request in [&chunked[..], &short[..]] {
        let (took, answer) = closed_after(addr, request, None).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
        assert!(took < SHORT * 3, "answered after {took:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_that_never_sends_a_frame_is_closed() {
    let server = start(short_timeouts()).await;
    let client = TestClient::connect(server.local_addr(), "").await;
    let started = Instant::now();
    let mut socket = client.into_inner();
    tokio::time::sleep(SHORT + Duration::from_millis(300)).await;
    let close = futures_util::StreamExt::next(&mut socket).await;
    let Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) = close else {
        panic!("expected a close frame, got {close:?}");
    };
    assert_eq!(u16::from(frame.code), 1008);
    assert!(frame.reason.contains("no frame"), "{}", frame.reason);
    assert!(started.elapsed() < SHORT * 3);

    // A client that speaks stays.
    let mut talking = TestClient::connect(server.local_addr(), "").await;
    talking.round_trip().await;
    tokio::time::sleep(SHORT * 2).await;
    talking.round_trip().await;
    server.shutdown().await;
}

#[tokio::test]
async fn answers_nobody_reads_are_dropped_after_the_write_timeout() {
    let server = Server::<Protocol>::builder()
        .methods("bulk", Bulk)
        .config(ServerConfig::default().http_write_timeout(SHORT))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..10 {
        callers.push(ask_for_a_large_answer(addr).await);
    }
    // The ten answers (320 MB) are dropped once they waited the write timeout with
    // nothing read (without it they are held as long as the callers keep still).
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_connections(addr).await > 1 {
        assert!(Instant::now() < deadline, "the stalled answers were kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= SHORT, "dropped before the timeout");
    for mut caller in callers {
        let mut received = Vec::new();
        let _ = caller.read_to_end(&mut received).await;
        assert!(received.starts_with(b"HTTP/1.1 200"));
        assert!(
            received.len() < LARGE_ANSWER,
            "a dropped answer arrived whole"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_still_receiving_its_answer_is_not_evicted_as_idle() {
    let server = Server::<Protocol>::builder()
        .methods("bulk", Bulk)
        .config(ServerConfig::default().max_connections(2))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut caller = ask_for_a_large_answer(addr).await;
    // Its answer is being written (more than the socket buffers take).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Two newcomers at a cap of two: the waiting newcomer makes room, not the caller.
    let mut first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    read_until_closed(&mut first).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = vec![0_u8; 1 << 16];
        while let Ok(read @ 1..) = caller.read(&mut chunk).await {
            received.extend_from_slice(&chunk[..read]);
            if received.ends_with(b"xx\"") {
                break;
            }
        }
    })
    .await;
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert!(
        received.len() > LARGE_ANSWER,
        "the answer was cut after {} bytes",
        received.len()
    );
    // Written whole, the caller waits for its next request: evictable again.
    let _third = TcpStream::connect(addr).await.unwrap();
    let _fourth = TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), caller.read_to_end(&mut rest))
        .await
        .expect("the idle caller is evicted")
        .unwrap();
    server.shutdown().await;
}

/// A WebSocket client that joins `room` and gets its own message back.
async fn chats(addr: SocketAddr, room: &str) -> TestClient {
    let mut client = TestClient::connect(addr, "").await;
    let data = |content: &str| json!({"senderName": "s", "content": content, "channelId": room});
    client
        .send_model("rooms", "ChatMessage", data("join"))
        .await;
    assert_eq!(
        client.next_json().await["object"]["data"]["content"],
        "ack:join"
    );
    client
        .send_model("rooms", "ChatMessage", data("hello"))
        .await;
    assert_eq!(
        client.next_json().await["object"]["data"]["content"],
        "hello"
    );
    client
}

#[tokio::test]
async fn at_the_cap_waiting_connections_make_room_and_busy_ones_get_503() {
    let server = start(ServerConfig::default().max_connections(10)).await;
    let addr = server.local_addr();
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Thirty idle sockets did not lock the real client out.
    let mut clients = vec![chats(addr, "a").await];
    while clients.len() < 10 {
        clients.push(chats(addr, "b").await);
    }
    assert_eq!(server.handle().session_count(), 10);
    // Every place is busy now: a newcomer is refused cleanly, with a reason.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // The evicted idle sockets were closed, not left hanging.
    for mut socket in idle {
        read_until_closed(&mut socket).await;
    }
    drop(clients.pop());
    streampod_tests::eventually("a place frees up", || server.handle().session_count() == 9).await;
    chats(addr, "c").await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_per_address_cap_refuses_beyond_it() {
    let server = start(ServerConfig::default().max_connections_per_ip(Some(2))).await;
    let addr = server.local_addr();
    let _first = chats(addr, "a").await;
    let _second = chats(addr, "a").await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("from this address"), "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_handshake_is_strict() {
    let server = start(ServerConfig::default()).await;
    let addr = server.local_addr();
    let upgrade = |version: &str, key: &str| {
        format!(
            "GET /websocket {version}\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    for (request, expected) in [
        (
            upgrade("HTTP/1.0", "dGhlIHNhbXBsZSBub25jZQ=="),
            "needs HTTP/1.1",
        ),
        (upgrade("HTTP/1.1", "a"), "base64 of 16 bytes"),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0; 4096];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(
            answer.starts_with("HTTP/1.") && answer.contains(" 400 "),
            "{answer}"
        );
        assert!(answer.contains(expected), "{answer}");
    }
    server.shutdown().await;
}

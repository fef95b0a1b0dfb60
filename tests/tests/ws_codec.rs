//! The socket's two directions over real TCP: the server parses the client's frames
//! itself (no buffer while idle) and writes its own (each broadcast framed once, where
//! it is encoded), the reader's answers to pings and close frames going through the
//! writer. Checked on the wire, byte by byte: a ping's pong, frames of every header size
//! arriving whole and in order, exactly one close frame echoing the client's, nothing
//! after it, and every protocol violation closed with its RFC 6455 code and a reason.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use streampod::{RateLimit, Server, ServerConfig};
use streampod_tests::fixtures::Protocol;
use streampod_tests::rooms::Rooms;
use streampod_tests::ws_frames::{client_frame, frame_at};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> Server<Protocol> {
    start_with(ServerConfig::default()).await
}

async fn start_with(config: ServerConfig) -> Server<Protocol> {
    Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn text(payload: &str) -> Vec<u8> {
    client_frame(0x1, payload.as_bytes())
}

fn rooms(content: &str) -> String {
    json!({"endpoint": "rooms", "object": {"className": "ChatMessage", "data": {
        "senderName": "s", "content": content, "channelId": "wire"}}})
    .to_string()
}

/// Upgrades a raw TCP connection; the bytes read past the response.
async fn upgrade(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed during the upgrade");
        received.extend_from_slice(&buffer[..read]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(received.starts_with(b"HTTP/1.1 101"), "{received:?}");
            return (stream, received.split_off(end + 4));
        }
    }
}

/// Server frames in `bytes`: (opcode, payload), every one of them whole.
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[0] & 0xf0, 0x80, "final, no extension bits");
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (opcode, payload, next) = frame_at(bytes).expect("no cut frame at the end");
        frames.push((opcode, bytes[payload].to_vec()));
        bytes = &bytes[next..];
    }
    frames
}

/// The payload of the one close frame in `frames`, which must be the last frame.
fn only_close(frames: &[(u8, Vec<u8>)]) -> &[u8] {
    let closes: Vec<_> = frames.iter().filter(|(opcode, _)| *opcode == 0x8).collect();
    assert_eq!(closes.len(), 1, "exactly one close frame: {frames:?}");
    assert_eq!(
        frames.last().map(|f| f.0),
        Some(0x8),
        "nothing after the close"
    );
    &closes[0].1
}

/// Everything the server sends until it closes the connection (or 10 s pass).
async fn read_to_end(stream: &mut TcpStream, mut received: Vec<u8>) -> Vec<u8> {
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection after the close handshake");
    received
}

#[tokio::test]
async fn pings_frames_of_every_size_and_the_close_handshake_on_the_wire() {
    let server = start().await;
    let (mut stream, early) = upgrade(server.local_addr()).await;
    // 125 and 126 bytes straddle the 2- and 4-byte headers; 70,000 needs 10 bytes.
    let sizes = [10, 125, 126, 70_000];
    let mut outgoing = text(&rooms("join"));
    outgoing.extend(client_frame(0x9, b"probe"));
    for size in sizes {
        outgoing.extend(text(&rooms(&"x".repeat(size))));
    }
    stream.write_all(&outgoing).await.unwrap();
    // Wait for the last post to come back before closing, so the close follows it.
    let mut received = early;
    let mut buffer = vec![0; 1 << 16];
    while memchr_count(&received, b"\"content\":\"x") < sizes.len() {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("the posts come back")
            .unwrap();
        assert!(read > 0, "closed early");
        received.extend_from_slice(&buffer[..read]);
    }
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    stream.write_all(&client_frame(0x8, &close)).await.unwrap();
    let frames = server_frames(&read_to_end(&mut stream, received).await);

    assert!(
        frames.contains(&(0xA, b"probe".to_vec())),
        "the ping got its pong"
    );
    let posts: Vec<usize> = frames
        .iter()
        .filter(|(opcode, _)| *opcode == 0x1)
        .filter_map(|(_, payload)| {
            let frame: serde_json::Value = serde_json::from_slice(payload).unwrap();
            let content = frame["object"]["data"]["content"].as_str()?.to_owned();
            content.starts_with('x').then_some(content.len())
        })
        .collect();
    assert_eq!(posts, sizes, "every post back whole, in order");
    assert_eq!(only_close(&frames), close, "the client's close is echoed");
    server.shutdown().await;
}

#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_read_after_it() {
    // The server reads the request head itself; whatever followed it in the same
    // segment is the start of the WebSocket and must not be lost.
    let server = start().await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut outgoing =
        b"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_vec();
    outgoing.extend(client_frame(0x9, b"early"));
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"done");
    outgoing.extend(client_frame(0x8, &close));
    stream.write_all(&outgoing).await.unwrap();
    let received = read_to_end(&mut stream, Vec::new()).await;
    assert!(received.starts_with(b"HTTP/1.1 101"), "{received:?}");
    let end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let frames = server_frames(&received[end..]);
    assert_eq!(
        frames[0],
        (0xA, b"early".to_vec()),
        "the early ping got its pong"
    );
    assert_eq!(only_close(&frames), close, "the early close is echoed");
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_close_is_one_close_frame_after_the_queued_frames() {
    let server = start().await;
    let (mut stream, early) = upgrade(server.local_addr()).await;
    let mut outgoing = text(&rooms("join"));
    outgoing.extend(text(&rooms("hello")));
    // Invalid UTF-8 in a text frame: the server closes with 1007, gracefully, so what
    // it queued before goes out first.
    outgoing.extend(client_frame(0x1, b"\xff\xfe"));
    stream.write_all(&outgoing).await.unwrap();
    let frames = server_frames(&read_to_end(&mut stream, early).await);
    let contents: Vec<String> = frames
        .iter()
        .filter(|(opcode, _)| *opcode == 0x1)
        .map(|(_, payload)| {
            let frame: serde_json::Value = serde_json::from_slice(payload).unwrap();
            frame["object"]["data"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(contents, ["ack:join", "hello"], "{frames:?}");
    assert_eq!(
        only_close(&frames)[..2],
        1007u16.to_be_bytes(),
        "{frames:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn every_protocol_violation_closes_with_its_code_and_a_reason() {
    let server = start_with(ServerConfig::default().max_frame_size(1024)).await;
    let unmasked = [0x81, 0x02, b'h', b'i'].to_vec();
    // A header declaring 1 MiB; the payload never comes, so only the header can tell.
    let mut declared = client_frame(0x1, b"");
    declared[1] = 0x80 | 127;
    declared.splice(2..2, (1u64 << 20).to_be_bytes());
    let cases: [(&str, Vec<u8>, u16, &str); 8] = [
        ("unmasked", unmasked, 1002, "not masked"),
        (
            "reserved bits",
            client_frame(0x41, b"x"),
            1002,
            "reserved bits",
        ),
        (
            "unknown opcode",
            client_frame(0x3, b"x"),
            1002,
            "unknown opcode",
        ),
        (
            "fragmented ping",
            {
                let mut f = client_frame(0x9, b"");
                f[0] &= 0x7f;
                f
            },
            1002,
            "fragmented",
        ),
        (
            "stray continuation",
            client_frame(0x0, b"x"),
            1002,
            "continuation",
        ),
        (
            "bad close code",
            client_frame(0x8, &1005u16.to_be_bytes()),
            1002,
            "code not allowed",
        ),
        ("bad UTF-8", client_frame(0x1, b"\xc3\x28"), 1007, "UTF-8"),
        (
            "declared too large",
            declared,
            1009,
            "exceeds the limit of 1024 bytes",
        ),
    ];
    for (case, bytes, code, reason) in cases {
        let (mut stream, early) = upgrade(server.local_addr()).await;
        stream.write_all(&bytes).await.unwrap();
        let frames = server_frames(&read_to_end(&mut stream, early).await);
        let Some((0x8, close)) = frames.last() else {
            panic!("{case}: no close frame last: {frames:?}");
        };
        assert_eq!(close[..2], code.to_be_bytes(), "{case}");
        let text = String::from_utf8_lossy(&close[2..]);
        assert!(text.contains(reason), "{case}: {text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_ping_flood_meets_the_inbound_rate_limit() {
    let server =
        start_with(ServerConfig::default().inbound_rate_limit(Some(RateLimit::new(10, 20)))).await;
    let (mut stream, early) = upgrade(server.local_addr()).await;
    let pings: Vec<u8> = (0..200).flat_map(|_| client_frame(0x9, b"p")).collect();
    stream.write_all(&pings).await.unwrap();
    let frames = server_frames(&read_to_end(&mut stream, early).await);
    let pongs = frames.iter().filter(|(opcode, _)| *opcode == 0xA).count();
    assert!(
        (20..200).contains(&pongs),
        "the burst is answered, the flood not: {pongs}"
    );
    let Some((0x8, close)) = frames.last() else {
        panic!("no close frame last: {frames:?}");
    };
    assert_eq!(close[..2], 1008u16.to_be_bytes());
    assert!(String::from_utf8_lossy(&close[2..]).contains("rate limit"));
    server.shutdown().await;
}

fn memchr_count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// The conformance target (`tests/autobahn.sh` runs the Autobahn suite against it) under
/// a tungstenite client: text and binary messages (one of 70,000 bytes) come back as
/// sent; a ping gets its pong; a close gets the same code.
#[tokio::test]
async fn the_echo_target_echoes_what_the_codec_reads() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
    use tokio_tungstenite::tungstenite::Message;

    let (client, server) = tokio::io::duplex(1 << 16);
    let echo = tokio::spawn(streampod::__private::ws_echo(
        server,
        1 << 20,
        Default::default(),
    ));
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    let long = "x".repeat(70_000);
    for message in [
        Message::text("héllo"),
        Message::binary(vec![0_u8, 1, 2, 255]),
        Message::text(long.clone()),
        Message::Ping(b"are you there".to_vec().into()),
    ] {
        ws.send(message.clone()).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        match message {
            Message::Ping(payload) => assert_eq!(back, Message::Pong(payload)),
            message => assert_eq!(back, message),
        }
    }
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let Some(Ok(Message::Close(Some(close)))) = ws.next().await else {
        panic!("a close frame back");
    };
    assert_eq!(close.code, CloseCode::Away);
    echo.await.unwrap().unwrap();
}

//! `permessage-deflate` over real TCP, with a client written here from the RFC (raw
//! frames, flate2): the offer is answered with no context takeover either way; a
//! broadcast goes compressed, byte for byte the same, to every socket that negotiated
//! it and plain to the others; short messages go plain; a compressed message from the
//! client is read; a deflate bomb closes with 1009 and garbage with 1007; with
//! compression off the offer is declined and a compressed frame is a protocol error.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use streampod::{Server, ServerConfig};
use streampod_tests::fixtures::Protocol;
use streampod_tests::rooms::Rooms;
use streampod_tests::ws_frames::{client_frame, compressed_client_frame, frame_at, inflate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What Chromium offers.
const OFFER: &str = "permessage-deflate; client_max_window_bits";

async fn start(config: ServerConfig) -> Server<Protocol> {
    Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

fn rooms(content: &str) -> String {
    json!({"endpoint": "rooms", "object": {"className": "ChatMessage", "data": {
        "senderName": "s", "content": content, "channelId": "deflate"}}})
    .to_string()
}

/// A server frame as received: RSV1, opcode, payload (inflated if compressed) and its
/// bytes on the wire.
#[derive(Debug)]
struct Received {
    compressed: bool,
    opcode: u8,
    payload: Vec<u8>,
    wire: Vec<u8>,
}

/// A raw client socket.
struct Socket {
    stream: TcpStream,
    pending: Vec<u8>,
    /// The response's `Sec-WebSocket-Extensions`, if any.
    extensions: Option<String>,
}

impl Socket {
    /// Upgrades a connection to `/websocket`, offering `extensions` if given.
    async fn open(addr: SocketAddr, extensions: Option<&str>) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let offer = extensions
            .map(|value| format!("Sec-WebSocket-Extensions: {value}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        let mut buffer = [0; 4096];
        loop {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed during the upgrade");
            received.extend_from_slice(&buffer[..read]);
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).into_owned();
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                let extensions = head.lines().find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("sec-websocket-extensions")
                        .then(|| value.trim().to_owned())
                });
                return Self {
                    stream,
                    pending: received.split_off(end + 4),
                    extensions,
                };
            }
        }
    }

    async fn send(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.unwrap();
    }

    /// The next server frame, within 10 s.
    async fn next(&mut self) -> Received {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((opcode, payload, next)) = frame_at(&self.pending) {
                let wire: Vec<u8> = self.pending.drain(..next).collect();
                assert_eq!(wire[0] & 0x30, 0, "RSV2 and RSV3 are never set");
                let compressed = wire[0] & 0x40 != 0;
                let body = &wire[payload];
                let payload = if compressed {
                    inflate(body)
                } else {
                    body.to_vec()
                };
                return Received {
                    compressed,
                    opcode,
                    payload,
                    wire,
                };
            }
            let mut buffer = [0; 8192];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buffer))
                .await
                .expect("a frame within 10 s")
                .unwrap();
            assert!(read > 0, "the connection ended");
            self.pending.extend_from_slice(&buffer[..read]);
        }
    }

    /// The next text frame whose text contains `needle`, skipping others.
    async fn text_with(&mut self, needle: &str) -> Received {
        loop {
            let frame = self.next().await;
            if frame.opcode == 1 && String::from_utf8_lossy(&frame.payload).contains(needle) {
                return frame;
            }
        }
    }

    /// The close frame's code and reason, skipping other frames.
    async fn close_code(&mut self) -> (u16, String) {
        loop {
            let frame = self.next().await;
            if frame.opcode == 8 {
                let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                return (
                    code,
                    String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
                );
            }
        }
    }

    async fn join(&mut self) {
        self.send(&client_frame(1, rooms("join").as_bytes())).await;
        self.text_with("ack:join").await;
    }
}

/// The `content` of a chat frame.
fn content(frame: &Received) -> String {
    let value: Value = serde_json::from_slice(&frame.payload).unwrap();
    value["object"]["data"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_broadcast_is_compressed_once_for_every_socket_that_negotiated_it() {
    let server = start(ServerConfig::default()).await;
    let addr = server.local_addr();
    let mut ann = Socket::open(addr, Some(OFFER)).await;
    let mut bob = Socket::open(addr, Some("permessage-deflate")).await;
    let mut plain = Socket::open(addr, None).await;
    assert_eq!(
        ann.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    assert_eq!(bob.extensions, ann.extensions);
    assert_eq!(plain.extensions, None);
    for socket in [&mut ann, &mut bob, &mut plain] {
        socket.join().await;
    }

    // Ann posts a dashboard-sized update, compressed herself.
    let update: String = (0..60)
        .map(|n| {
            format!(
                r#"{{"widget":"w{n}","status":"ok","value":{}}},"#,
                n * 37 % 101
            )
        })
        .collect();
    assert!(update.len() > 2000);
    ann.send(&compressed_client_frame(1, rooms(&update).as_bytes()))
        .await;
    let to_ann = ann.text_with("widget").await;
    let to_bob = bob.text_with("widget").await;
    let to_plain = plain.text_with("widget").await;
    for frame in [&to_ann, &to_bob, &to_plain] {
        assert_eq!(content(frame), update);
    }
    assert!(to_ann.compressed && to_bob.compressed && !to_plain.compressed);
    // One compression: the same bytes on both sockets, a fraction of the plain frame.
    assert_eq!(to_ann.wire, to_bob.wire);
    assert!(
        to_ann.wire.len() * 3 < to_plain.wire.len(),
        "{} against {} bytes",
        to_ann.wire.len(),
        to_plain.wire.len()
    );

    // A short message is not worth compressing (under 512 bytes by default).
    bob.send(&client_frame(1, rooms("short and sweet").as_bytes()))
        .await;
    let short = ann.text_with("short and sweet").await;
    assert!(!short.compressed);
    assert_eq!(content(&short), "short and sweet");
}

#[tokio::test]
async fn a_deflate_bomb_closes_with_1009_and_garbage_with_1007() {
    let server = start(ServerConfig::default().max_frame_size(64 << 10)).await;
    let addr = server.local_addr();
    let mut bomber = Socket::open(addr, Some(OFFER)).await;
    let bomb = compressed_client_frame(1, &vec![b' '; 16 << 20]);
    assert!(
        bomb.len() < 64 << 10,
        "the bomb itself is within the frame limit"
    );
    bomber.send(&bomb).await;
    let (code, reason) = bomber.close_code().await;
    assert_eq!(code, 1009, "{reason}");
    assert!(
        reason.contains("inflates past the limit of 65536 bytes"),
        "{reason}"
    );

    let mut garbage = Socket::open(addr, Some(OFFER)).await;
    let mut frame = client_frame(1, &[0xff; 32]);
    frame[0] |= 0x40;
    garbage.send(&frame).await;
    let (code, reason) = garbage.close_code().await;
    assert_eq!(code, 1007, "{reason}");

    // The server is fine: a new socket still chats compressed.
    let mut after = Socket::open(addr, Some(OFFER)).await;
    after.join().await;
}

#[tokio::test]
async fn with_compression_off_the_offer_is_declined_and_rsv1_is_a_protocol_error() {
    let server = start(ServerConfig::default().websocket_compression(None)).await;
    let mut socket = Socket::open(server.local_addr(), Some(OFFER)).await;
    assert_eq!(socket.extensions, None);
    socket.join().await;
    socket
        .send(&compressed_client_frame(1, rooms("hello").as_bytes()))
        .await;
    let (code, reason) = socket.close_code().await;
    assert_eq!(code, 1002, "{reason}");
}

#[tokio::test]
async fn a_narrow_window_gets_compressed_only_what_fits_it() {
    let server = start(ServerConfig::default().websocket_compression(Some(64))).await;
    let addr = server.local_addr();
    let mut narrow = Socket::open(addr, Some("permessage-deflate; server_max_window_bits=9")).await;
    assert_eq!(
        narrow.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9")
    );
    narrow.join().await;
    let fits = "a".repeat(300);
    let too_long = "b".repeat(2000);
    for text in [&fits, &too_long] {
        narrow.send(&client_frame(1, rooms(text).as_bytes())).await;
    }
    let first = narrow.text_with("aaa").await;
    assert!(first.compressed);
    assert_eq!(content(&first), fits);
    let second = narrow.text_with("bbb").await;
    assert!(
        !second.compressed,
        "longer than the 512-byte window the client asked for"
    );
    assert_eq!(content(&second), too_long);
}

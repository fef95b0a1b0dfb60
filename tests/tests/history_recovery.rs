//! Channel history over real sockets: a subscriber whose TCP connection dies while
//! posts go on recovers every missed message once and in order; posts racing a
//! recovering join are neither lost nor duplicated; a restarted server (new epoch)
//! answers `recovered: false`; a Serverpod client sees no new keys; the Rust client
//! recovers by itself after its connection is cut.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{json, Value};
use streampod::client::{Backoff, Client, Incoming};
use streampod::messages::{ChannelConfig, HistoryConfig, Reach};
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::cut_proxy::CutProxy;
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::Rooms;

const ROOM: &str = "history-room";

async fn server() -> Server<Protocol> {
    let server = Server::builder()
        .endpoint("rooms", Rooms::default())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    server.handle().messages().configure_channel(
        ROOM,
        ChannelConfig::default().with_history(HistoryConfig::new(5_000, Duration::from_secs(60))),
    );
    server
}

fn chat(text: String) -> ChatMessage {
    ChatMessage {
        sender_name: "server".into(),
        content: text,
        timestamp: None,
        channel_id: ROOM.into(),
        priority: Priority::Normal,
    }
}

/// Posts `text` to the history room from the server.
fn post(server: &Server<Protocol>, text: &str) {
    server
        .handle()
        .messages()
        .post_message(ROOM, chat(text.into()), Reach::Local)
        .unwrap();
}

/// Posts the numbers of `range` to the history room from a task, pausing briefly
/// every 50 posts so subscribers read while posts go on.
fn spawn_poster(
    server: &Server<Protocol>,
    range: std::ops::RangeInclusive<u32>,
) -> tokio::task::JoinHandle<()> {
    let central = server.handle().messages();
    tokio::spawn(async move {
        for n in range {
            central
                .post_message(ROOM, chat(n.to_string()), Reach::Local)
                .unwrap();
            if n % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    })
}

/// Sends `recover` (when given a position) and the join; returns the `joined` frame's
/// args. Frames up to the join's acknowledgement are returned too, in order.
async fn join(client: &mut TestClient, since: Option<&Value>) -> (Value, Vec<Value>) {
    if let Some(position) = since {
        client
            .send_text(
                &json!({"command": "recover", "args": {"channels": {ROOM: position}}}).to_string(),
            )
            .await;
    }
    client
        .send_model(
            "rooms",
            "ChatMessage",
            json!({"senderName": "t", "content": "join", "channelId": ROOM}),
        )
        .await;
    let joined = client.next_json().await;
    assert_eq!(joined["command"], "joined", "{joined}");
    let mut frames = Vec::new();
    loop {
        let frame = client.next_json().await;
        if frame["object"]["data"]["content"] == "ack:join" {
            return (joined["args"].clone(), frames);
        }
        frames.push(frame);
    }
}

/// The offset of a message frame from the history channel.
fn offset(frame: &Value) -> u64 {
    assert_eq!(frame["channel"], ROOM, "{frame}");
    frame["offset"].as_u64().expect("an offset")
}

#[tokio::test]
async fn a_subscriber_cut_off_during_1000_posts_recovers_each_once_in_order() {
    let server = server().await;
    let mut first = TestClient::connect(server.local_addr(), "").await;
    let (joined, replayed) = join(&mut first, None).await;
    assert_eq!(joined["recovering"], false);
    assert_eq!(joined["position"]["offset"], 0);
    assert!(replayed.is_empty());

    let poster = spawn_poster(&server, 1..=1000);
    // Read some, then cut the TCP connection without a close handshake.
    let mut seen = Vec::new();
    let mut last = None;
    while seen.len() < 100 {
        let frame = first.next_json().await;
        seen.push(offset(&frame));
        last = Some(json!({"epoch": joined["position"]["epoch"], "offset": frame["offset"]}));
    }
    drop(first.into_inner());
    poster.await.unwrap();

    let mut again = TestClient::connect(server.local_addr(), "").await;
    let (joined, replayed) = join(&mut again, last.as_ref()).await;
    assert_eq!(joined["recovering"], true);
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["position"]["offset"], 1000);
    assert_eq!(joined["replayed"], 900);
    seen.extend(replayed.iter().map(offset));
    assert_eq!(
        seen,
        (1..=1000).collect::<Vec<u64>>(),
        "every message once, in order"
    );

    // Live messages follow with the next offsets.
    post(&server, "live");
    assert_eq!(offset(&again.next_json().await), 1001);
    server.shutdown().await;
}

#[tokio::test]
async fn posts_racing_a_recovering_join_are_neither_lost_nor_duplicated() {
    let server = server().await;
    let central = server.handle().messages();
    central
        .post_message(ROOM, chat("0".into()), Reach::Local)
        .unwrap();
    let mut watcher = TestClient::connect(server.local_addr(), "").await;
    let (joined, _) = join(&mut watcher, None).await;
    let epoch = joined["position"]["epoch"].clone();
    for round in 0..20_u64 {
        let poster_central = central.clone();
        let poster = tokio::spawn(async move {
            for n in 0..200 {
                poster_central
                    .post_message(ROOM, chat(format!("{round}-{n}")), Reach::Local)
                    .unwrap();
                if n % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        // Recover from the position before this round's posts began (or any earlier).
        let since = json!({"epoch": epoch, "offset": round * 200 + 1});
        let mut client = TestClient::connect(server.local_addr(), "").await;
        let (joined, replayed) = join(&mut client, Some(&since)).await;
        assert_eq!(joined["recovered"], true, "round {round}: {joined}");
        poster.await.unwrap();
        let mut offsets: Vec<u64> = replayed.iter().map(offset).collect();
        let end = (round + 1) * 200 + 1;
        while offsets.last().copied().unwrap_or(round * 200 + 1) < end {
            offsets.push(offset(&client.next_json().await));
        }
        let expected: Vec<u64> = (round * 200 + 2..=end).collect();
        assert_eq!(offsets, expected, "round {round}: a gap or a duplicate");
        client.close().await;
        // The watcher stays joined: drain what it got so its queue does not fill.
        while watcher
            .try_next_json(Duration::from_millis(20))
            .await
            .is_some()
        {}
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_position_from_before_a_restart_is_not_recovered() {
    let server = server().await;
    post(&server, "before");
    let mut client = TestClient::connect(server.local_addr(), "").await;
    let (joined, _) = join(&mut client, None).await;
    let before = joined["position"].clone();
    assert_eq!(before["offset"], 1);
    server.shutdown().await;

    // A new server: a new epoch, and nothing of the old history.
    let restarted = self::server().await;
    post(&restarted, "after");
    let mut client = TestClient::connect(restarted.local_addr(), "").await;
    let (joined, replayed) = join(&mut client, Some(&before)).await;
    assert_eq!(joined["recovering"], true);
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_ne!(joined["position"]["epoch"], before["epoch"]);
    assert!(replayed.is_empty(), "nothing replayed across epochs");
    restarted.shutdown().await;
}

#[tokio::test]
async fn a_serverpod_client_on_a_history_channel_sees_no_new_keys() {
    let server = server().await;
    let mut legacy = TestClient::connect_legacy(server.local_addr(), "").await;
    streampod_tests::rooms::command(&mut legacy, "join", ROOM).await;
    post(&server, "hello");
    let frame = legacy.next_json().await;
    assert_eq!(frame["object"]["data"]["content"], "hello");
    let keys: Vec<&String> = frame.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["endpoint", "object"], "{frame}");
    server.shutdown().await;
}

#[tokio::test]
async fn recover_commands_beyond_the_session_limits_get_an_error_frame() {
    let server = server().await;
    let mut client = TestClient::connect(server.local_addr(), "").await;
    let position = json!({"epoch": "e", "offset": 1});
    // More channels than a session may hold (128 by default).
    let channels: serde_json::Map<String, Value> = (0..129)
        .map(|n| (format!("room-{n}"), position.clone()))
        .collect();
    let too_many = json!({"command": "recover", "args": {"channels": channels}});
    client.send_text(&too_many.to_string()).await;
    let error = client.expect_error("invalid_frame").await;
    assert!(
        error["message"].as_str().unwrap().contains("at most 128"),
        "{error}"
    );
    // An epoch no server makes.
    let long = json!({"command": "recover", "args": {"channels": {ROOM: {"epoch": "e".repeat(65), "offset": 1}}}});
    client.send_text(&long.to_string()).await;
    client.expect_error("invalid_frame").await;
    // A name over the channel name limit (255 bytes).
    let named = json!({"command": "recover", "args": {"channels": {"r".repeat(256): position}}});
    client.send_text(&named.to_string()).await;
    client.expect_error("invalid_frame").await;
    // `joined` is the server's frame.
    let joined = json!({"command": "joined", "args": {"endpoint": "rooms", "channel": ROOM,
        "position": position, "recovering": false, "recovered": false, "replayed": 0}});
    client.send_text(&joined.to_string()).await;
    client.expect_error("invalid_frame").await;
    // The session is still usable.
    let (joined, _) = join(&mut client, None).await;
    assert_eq!(joined["recovering"], false);
    server.shutdown().await;
}

#[tokio::test]
async fn the_rust_client_recovers_by_itself_after_its_connection_is_cut() {
    let server = server().await;
    let proxy = CutProxy::start(server.local_addr()).await;
    let client = Client::<Protocol>::builder(format!("http://{}", proxy.addr()))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .on_connect(|client| async move {
            let join = ChatMessage {
                content: "join".into(),
                ..chat(String::new())
            };
            client.send("rooms", join).unwrap();
        })
        .connect()
        .await
        .unwrap();

    // What the app sees: joins, and the contents of the room's messages (acks apart).
    let mut joins = Vec::new();
    let mut contents = Vec::new();
    let mut receive_until = async |count: usize, joins: &mut Vec<(bool, bool)>| {
        while contents.len() < count {
            let incoming = tokio::time::timeout(Duration::from_secs(10), client.recv())
                .await
                .expect("the client hears the room")
                .expect("the client is open");
            match incoming {
                Incoming::Joined {
                    recovering,
                    recovered,
                    ..
                } => joins.push((recovering, recovered)),
                Incoming::Message {
                    message: Protocol::ChatMessage(message),
                    ..
                } if !message.content.starts_with("ack:") => contents.push(message.content),
                _ => {}
            }
        }
    };
    // The hook's join reaches the server after `connect` returns: wait for it.
    while joins.is_empty() {
        if let Some(Incoming::Joined {
            recovering,
            recovered,
            ..
        }) = client.recv().await
        {
            joins.push((recovering, recovered));
        }
    }
    assert_eq!(joins, [(false, false)], "the first join starts fresh");
    post(&server, "1");

    let poster = spawn_poster(&server, 2..=1000);
    receive_until(100, &mut joins).await;
    proxy.cut();
    poster.await.unwrap();
    receive_until(1000, &mut joins).await;
    let expected: Vec<String> = (1..=1000).map(|n| n.to_string()).collect();
    assert_eq!(contents, expected, "every message once, in order");
    assert_eq!(joins.len(), 2, "one rejoin: {joins:?}");
    assert_eq!(joins[1], (true, true), "the rejoin recovered");
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_recovery_larger_than_half_the_queue_says_not_recovered_and_keeps_the_reader() {
    let server = Server::builder()
        .endpoint("rooms", Rooms::default())
        .config(streampod::ServerConfig::default().outbound_queue_bytes(64 << 10))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    server.handle().messages().configure_channel(
        ROOM,
        ChannelConfig::default().with_history(HistoryConfig::new(1_000, Duration::from_secs(60))),
    );
    let mut first = TestClient::connect(server.local_addr(), "").await;
    let (joined, _) = join(&mut first, None).await;
    let position = joined["position"].clone();
    drop(first);
    // 50 posts of 2 KB missed: 100 KB to replay, more than the whole 64 KiB queue.
    for _ in 0..50 {
        post(&server, &"y".repeat(2_000));
    }
    let mut back = TestClient::connect(server.local_addr(), "").await;
    let (joined, replayed) = join(&mut back, Some(&position)).await;
    assert_eq!(joined["recovering"], true, "{joined}");
    assert_eq!(joined["recovered"], false, "{joined}");
    assert!(replayed.is_empty());
    // Not cut as a slow consumer for what the server would have composed.
    back.round_trip().await;
    post(&server, "live");
    assert_eq!(back.next_json().await["object"]["data"]["content"], "live");
    // A recovery that fits is replayed as ever.
    let (joined, _) = join(
        &mut TestClient::connect(server.local_addr(), "").await,
        None,
    )
    .await;
    let position = joined["position"].clone();
    for n in 0..5 {
        post(&server, &n.to_string());
    }
    let mut again = TestClient::connect(server.local_addr(), "").await;
    let (joined, replayed) = join(&mut again, Some(&position)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(replayed.len(), 5);
    server.shutdown().await;
}

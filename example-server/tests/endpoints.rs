//! The example's endpoints over the message central: rooms with an all-but-sender
//! option, and per-user and global notifications reaching every device.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use example_server::models::{AnnouncementMessage, NotificationMessage};
use example_server::notification::{user_channel, GLOBAL_CHANNEL};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use streampod::auth::{self, AuthInfo};
use streampod::messages::Reach;
use streampod::protocol::types::DateTime;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, query: &str) -> Socket {
    tokio_tungstenite::connect_async(format!("ws://{addr}/websocket{query}"))
        .await
        .unwrap()
        .0
}

async fn send(socket: &mut Socket, class_name: &str, data: Value) {
    let frame = json!({"endpoint": "chat", "object": {"className": class_name, "data": data}});
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next text frame as JSON, or `None` if nothing arrives within `wait`; room member
/// counts are skipped (see `members`).
async fn next_within(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["object"]["className"] != "RoomUpdate" {
                    return Some(value);
                }
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}

/// The next room update whose data `wanted` accepts.
async fn update_where(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let Some(Ok(Message::Text(text))) =
            tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .unwrap()
        else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        let data = &value["object"]["data"];
        if value["object"]["className"] == "RoomUpdate" && wanted(data) {
            return data.clone();
        }
    }
}

/// The next room member count.
async fn members(socket: &mut Socket) -> i64 {
    update_where(socket, |_| true).await["members"]
        .as_i64()
        .unwrap()
}

async fn next(socket: &mut Socket) -> Value {
    next_within(socket, Duration::from_secs(10))
        .await
        .expect("a frame")
}

/// A ping round trip: everything sent before it has been handled.
async fn join_lobby_as_ann(socket: &mut Socket) {
    send(
        socket,
        "ChannelSubscription",
        json!({"channelId": "lobby", "subscribe": true, "nickname": "ann"}),
    )
    .await;
}

async fn sync(socket: &mut Socket) {
    socket
        .send(Message::text(r#"{"command":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next(socket).await, json!({"command": "pong"}));
}

async fn start() -> streampod::Server<example_server::Protocol> {
    start_with(example_server::chat::ChatEndpoint::default()).await
}

/// The example with `chat` as its chat endpoint; keys `token-<user>` sign in as `<user>`.
async fn start_with(
    chat: example_server::chat::ChatEndpoint,
) -> streampod::Server<example_server::Protocol> {
    example_server::server_with_chat(chat)
        .authentication(auth::from_fn(|key: String| async move {
            key.strip_prefix("token-").map(AuthInfo::new)
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test]
async fn rooms_with_and_without_the_sender() {
    let server = start().await;
    let addr = server.local_addr();
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut socket = connect(addr, "").await;
        send(
            &mut socket,
            "ChannelSubscription",
            json!({"channelId": "lobby", "subscribe": true}),
        )
        .await;
        sync(&mut socket).await;
        members.push(socket);
    }
    let mut outsider = connect(addr, "").await;

    send(
        &mut members[0],
        "ChatMessage",
        json!({"senderName": "a", "content": "to all", "channelId": "lobby"}),
    )
    .await;
    for member in &mut members {
        let frame = next(member).await;
        assert_eq!(frame["object"]["data"]["content"], "to all");
        let stamped: DateTime = frame["object"]["data"]["timestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (DateTime::from(std::time::SystemTime::now()) - stamped)
                .num_seconds()
                .abs()
                < 60
        );
    }
    send(&mut members[0], "ChatMessage", json!({"senderName": "a", "content": "not me", "channelId": "lobby", "excludeSender": true})).await;
    for member in &mut members[1..] {
        assert_eq!(next(member).await["object"]["data"]["content"], "not me");
    }
    assert_eq!(
        next_within(&mut members[0], Duration::from_millis(300)).await,
        None,
        "the sender is left out"
    );
    assert_eq!(
        next_within(&mut outsider, Duration::from_millis(300)).await,
        None,
        "non-members get nothing"
    );

    send(
        &mut members[2],
        "ChannelSubscription",
        json!({"channelId": "lobby", "subscribe": false}),
    )
    .await;
    sync(&mut members[2]).await;
    assert_eq!(
        server.handle().messages().listener_count("chat-room-lobby"),
        2
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rooms_announce_their_member_counts() {
    let server = start().await;
    let addr = server.local_addr();
    let mut first = connect(addr, "").await;
    send(
        &mut first,
        "ChannelSubscription",
        json!({"channelId": "den", "subscribe": true}),
    )
    .await;
    assert_eq!(members(&mut first).await, 1);
    let mut second = connect(addr, "").await;
    send(
        &mut second,
        "ChannelSubscription",
        json!({"channelId": "den", "subscribe": true}),
    )
    .await;
    assert_eq!(members(&mut first).await, 2);
    assert_eq!(members(&mut second).await, 2);
    // Leaving by closing the socket counts too.
    drop(second);
    assert_eq!(members(&mut first).await, 1);
    server.shutdown().await;
}

/// The next room update whose count is `count`.
async fn update_of(socket: &mut Socket, count: i64) -> Value {
    update_where(socket, |data| data["members"] == count).await
}

#[tokio::test]
async fn member_lists_reach_the_rooms_members_and_signed_in_users_only_capped() {
    let server = start().await;
    let addr = server.local_addr();
    let mut crowd = Vec::new();
    let join = |n: usize| async move {
        let mut socket = connect(addr, if n == 0 { "?auth=token-1" } else { "" }).await;
        send(
            &mut socket,
            "ChannelSubscription",
            json!({"channelId": "crowd", "subscribe": true, "nickname": format!("n{n:03}")}),
        )
        .await;
        sync(&mut socket).await;
        socket
    };
    for n in 0..100 {
        crowd.push(join(n).await);
    }
    // While the room has at most 100 members, its members hear every name, sorted.
    let update = update_of(&mut crowd[99], 100).await;
    let names: Vec<&str> = update["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 100, "{update}");
    assert!(names.is_sorted());
    assert!(names.iter().all(|name| name.starts_with('n')), "{names:?}");
    // Beyond, the count alone: a hundred names to every member on every change costs.
    for n in 100..105 {
        crowd.push(join(n).await);
    }
    let update = update_of(&mut crowd[104], 105).await;
    assert_eq!(update["names"], json!([]), "{update}");

    // Over HTTP, an anonymous caller gets 401 and no names; a signed-in one the same
    // capped list and the count.
    use example_server::models::MethodCalls;
    use streampod::client::{CallError, Client};
    let base = format!("http://{addr}");
    let anonymous = Client::<example_server::Protocol>::builder(base.as_str())
        .method_client()
        .unwrap();
    // The typed call generated from web/methods.json (build.rs).
    match anonymous.chat().members("crowd").await {
        Err(CallError::Unauthenticated { .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    let signed_in = Client::<example_server::Protocol>::builder(base.as_str())
        .auth_key("token-1")
        .method_client()
        .unwrap();
    let listed = signed_in.chat().members("crowd").await.unwrap();
    assert_eq!(listed.count, 105);
    assert_eq!(listed.members.len(), 100);
    assert!(listed.members[0].contains("(user 1)"), "{listed:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn notifications_reach_every_device_of_a_user_and_announcements_everyone() {
    let server = start().await;
    let addr = server.local_addr();
    let mut phone = connect(addr, "?auth=token-42").await;
    let mut laptop = connect(addr, "?auth=token-42").await;
    let mut other = connect(addr, "?auth=token-7").await;
    let mut anonymous = connect(addr, "").await;
    for socket in [&mut phone, &mut laptop, &mut other, &mut anonymous] {
        sync(socket).await;
    }
    let messages = server.handle().messages();
    assert_eq!(messages.listener_count(&user_channel("42")), 2);
    assert_eq!(
        messages.listener_count(GLOBAL_CHANNEL),
        3,
        "anonymous sessions do not open the notification endpoint"
    );

    let note = NotificationMessage {
        text: "your order shipped".into(),
        timestamp: DateTime::from(std::time::SystemTime::now()),
    };
    let report = messages
        .post_message(&user_channel("42"), note, Reach::Local)
        .unwrap()
        .local()
        .expect("a local post");
    assert_eq!(report.delivered, 2);
    for device in [&mut phone, &mut laptop] {
        let frame = next(device).await;
        assert_eq!(frame["endpoint"], "notification");
        assert_eq!(frame["object"]["className"], "NotificationMessage");
        assert_eq!(frame["object"]["data"]["text"], "your order shipped");
    }
    assert_eq!(
        next_within(&mut other, Duration::from_millis(300)).await,
        None
    );

    let announcement = AnnouncementMessage {
        text: "maintenance at noon".into(),
        timestamp: DateTime::from(std::time::SystemTime::now()),
    };
    assert_eq!(
        messages
            .post_message(GLOBAL_CHANNEL, announcement, Reach::Local)
            .unwrap()
            .delivered(),
        Some(3)
    );
    for socket in [&mut phone, &mut laptop, &mut other] {
        assert_eq!(
            next(socket).await["object"]["className"],
            "AnnouncementMessage"
        );
    }
    assert_eq!(
        next_within(&mut anonymous, Duration::from_millis(300)).await,
        None
    );
    server.shutdown().await;
}

#[tokio::test]
async fn typed_calls_send_numbers_leave_out_absent_arguments_and_type_exceptions() {
    use example_server::chat::ChatEndpoint;
    use example_server::chat_store::ChatStore;
    use example_server::models::MethodCalls;
    use streampod::client::{CallError, Client};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("chat.db").display());
    let store = ChatStore::open(&url).await.unwrap();
    let server = start_with(ChatEndpoint::default().with_store(store)).await;
    let addr = server.local_addr();
    let calls = Client::<example_server::Protocol>::builder(format!("http://{addr}"))
        .auth_key("token-7")
        .method_client()
        .unwrap();

    // An int and a String argument.
    let mut phone = connect(addr, "?auth=token-42").await;
    sync(&mut phone).await;
    let devices = calls.notification().send_notification(42, "typed").await;
    assert_eq!(devices.unwrap(), 1);
    assert_eq!(next(&mut phone).await["object"]["data"]["text"], "typed");

    // Absent optional arguments are left out; a given one is sent.
    let mut poster = connect(addr, "").await;
    join_lobby_as_ann(&mut poster).await;
    for content in ["one", "two", "three"] {
        send(
            &mut poster,
            "ChatMessage",
            json!({"senderName": "ann", "content": content, "channelId": "lobby"}),
        )
        .await;
    }
    let mut stored = Vec::new();
    for _ in 0..50 {
        stored = calls
            .chat()
            .history("lobby", None, None)
            .await
            .unwrap()
            .messages;
        if stored.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored.len(), 3, "{stored:?}");
    let page = calls.chat().history("lobby", None, Some(2)).await.unwrap();
    let contents: Vec<&str> = page.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["two", "three"]);
    assert!(page.has_more);

    // The method's exception arrives as its model.
    match calls.chat().history("lobby", None, Some(0)).await {
        Err(CallError::Exception(refused)) => {
            assert_eq!(refused.field.as_deref(), Some("limit"), "{refused:?}");
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    server.shutdown().await;
}

/// Posts a notification to `user`'s channel and an announcement to everyone, locally.
fn notify(server: &streampod::Server<example_server::Protocol>, user: &str, text: &str) {
    let messages = server.handle().messages();
    let now = DateTime::from(std::time::SystemTime::now());
    let note = NotificationMessage {
        text: text.into(),
        timestamp: now,
    };
    messages
        .post_message(&user_channel(user), note, Reach::Local)
        .unwrap();
    let announcement = AnnouncementMessage {
        text: format!("announcement: {text}"),
        timestamp: now,
    };
    messages
        .post_message(GLOBAL_CHANNEL, announcement, Reach::Local)
        .unwrap();
}

async fn auth(socket: &mut Socket, key: Option<&str>) {
    let frame = json!({"command": "auth", "args": {"key": key}});
    socket.send(Message::text(frame.to_string())).await.unwrap();
    sync(socket).await;
}

/// Texts of the notification frames that arrive within 300 ms.
async fn notifications(socket: &mut Socket) -> Vec<String> {
    let mut texts = Vec::new();
    while let Some(frame) = next_within(socket, Duration::from_millis(300)).await {
        texts.push(frame["object"]["data"]["text"].as_str().unwrap().to_owned());
    }
    texts
}

#[tokio::test]
async fn signing_out_drops_what_the_signed_in_stream_joined() {
    let server = start().await;
    let mut socket = connect(server.local_addr(), "?auth=token-1").await;
    sync(&mut socket).await;
    notify(&server, "1", "for 1");
    assert_eq!(
        notifications(&mut socket).await,
        ["for 1", "announcement: for 1"]
    );

    auth(&mut socket, None).await;
    let messages = server.handle().messages();
    assert_eq!(messages.listener_count(&user_channel("1")), 0);
    assert_eq!(messages.listener_count(GLOBAL_CHANNEL), 0);
    notify(&server, "1", "after sign-out");
    assert!(notifications(&mut socket).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn switching_user_moves_the_notifications_to_the_new_user() {
    let server = start().await;
    let mut socket = connect(server.local_addr(), "?auth=token-1").await;
    sync(&mut socket).await;
    auth(&mut socket, Some("token-2")).await;
    notify(&server, "1", "for 1");
    assert_eq!(notifications(&mut socket).await, ["announcement: for 1"]);
    notify(&server, "2", "for 2");
    assert_eq!(
        notifications(&mut socket).await,
        ["for 2", "announcement: for 2"]
    );
    let messages = server.handle().messages();
    assert_eq!(messages.listener_count(&user_channel("1")), 0);
    assert_eq!(messages.listener_count(GLOBAL_CHANNEL), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_admin_that_signs_in_as_someone_else_keeps_nothing_of_the_admin() {
    let server = example_server::server()
        .authentication(auth::from_fn(|key: String| async move {
            match key.as_str() {
                "root-key" => {
                    Some(AuthInfo::new("99").with_scopes([streampod::auth::Scope::new("admin")]))
                }
                "ann-key" => Some(AuthInfo::new("1")),
                _ => None,
            }
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut socket = connect(server.local_addr(), "?auth=root-key").await;
    sync(&mut socket).await;
    auth(&mut socket, Some("ann-key")).await;
    notify(&server, "99", "for root");
    assert_eq!(notifications(&mut socket).await, ["announcement: for root"]);
    notify(&server, "1", "for ann");
    assert_eq!(
        notifications(&mut socket).await,
        ["for ann", "announcement: for ann"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_same_identity_again_keeps_the_streams() {
    let server = start().await;
    let mut socket = connect(server.local_addr(), "?auth=token-1").await;
    send(
        &mut socket,
        "ChannelSubscription",
        json!({"channelId": "lobby", "subscribe": true}),
    )
    .await;
    assert_eq!(members(&mut socket).await, 1);
    auth(&mut socket, Some("token-1")).await;
    let messages = server.handle().messages();
    assert_eq!(messages.listener_count("chat-room-lobby"), 1);
    assert_eq!(messages.listener_count(&user_channel("1")), 1);

    // Another identity: the chat stream closes too, and its rooms with it.
    auth(&mut socket, None).await;
    assert_eq!(messages.listener_count("chat-room-lobby"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_server_vouches_for_the_author() {
    let server = start().await;
    let addr = server.local_addr();
    let mut signed_in = connect(addr, "?auth=token-1").await;
    let mut guest = connect(addr, "").await;
    for socket in [&mut signed_in, &mut guest] {
        send(
            socket,
            "ChannelSubscription",
            json!({"channelId": "hall", "subscribe": true}),
        )
        .await;
        sync(socket).await;
    }
    send(
        &mut signed_in,
        "ChatMessage",
        json!({"senderName": "ann", "content": "a", "channelId": "hall"}),
    )
    .await;
    let data = next(&mut guest).await["object"]["data"].clone();
    assert_eq!(
        (data["senderName"].as_str(), data["senderId"].as_str()),
        (Some("ann (user 1)"), Some("1"))
    );
    next(&mut signed_in).await;

    // A guest cannot pass for the user, nor for another guest.
    send(
        &mut guest,
        "ChatMessage",
        json!({"senderName": "ann (user 1)", "content": "b", "channelId": "hall", "senderId": "1"}),
    )
    .await;
    let data = next(&mut signed_in).await["object"]["data"].clone();
    let name = data["senderName"].as_str().unwrap();
    assert!(
        name.starts_with("ann user 1 (guest ") && name.ends_with(')'),
        "{name}"
    );
    assert!(data["senderId"].is_null(), "{data}");
    server.shutdown().await;
}

/// A socket on the `streampod.v1` subprotocol, as streampod's clients open.
async fn connect_v1(addr: std::net::SocketAddr) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/websocket")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        streampod::protocol::frame::EXTENDED_SUBPROTOCOL
            .parse()
            .unwrap(),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

#[tokio::test]
async fn rooms_with_history_replay_what_a_reconnecting_client_missed() {
    use example_server::chat::ChatEndpoint;
    use streampod::messages::HistoryConfig;

    let history = HistoryConfig::new(100, Duration::from_secs(60));
    let server = example_server::server_with_chat(ChatEndpoint::with_room_history(history))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let subscribe = json!({"channelId": "lobby", "subscribe": true});
    let mut reader = connect_v1(addr).await;
    send(&mut reader, "ChannelSubscription", subscribe.clone()).await;
    let joined = next(&mut reader).await;
    assert_eq!(joined["command"], "joined", "{joined}");
    assert_eq!(joined["args"]["channel"], "chat-room-lobby");
    let epoch = joined["args"]["position"]["epoch"].clone();

    let mut writer = connect_v1(addr).await;
    send(&mut writer, "ChannelSubscription", subscribe.clone()).await;
    next(&mut writer).await;
    let say = |text: &str| json!({"senderName": "w", "content": text, "channelId": "lobby"});
    send(&mut writer, "ChatMessage", say("one")).await;
    let first = next(&mut reader).await;
    assert_eq!(first["object"]["data"]["content"], "one");
    // Member counts go to the room too, so they hold offsets of their own.
    let seen = json!({"epoch": epoch, "offset": first["offset"]});
    drop(reader);

    send(&mut writer, "ChatMessage", say("two")).await;
    send(&mut writer, "ChatMessage", say("three")).await;
    // The writer is in the room too: its own three messages back mean all are posted.
    for text in ["one", "two", "three"] {
        assert_eq!(next(&mut writer).await["object"]["data"]["content"], text);
    }

    let mut back = connect_v1(addr).await;
    let recover = json!({"command": "recover", "args": {"channels": {"chat-room-lobby": seen}}});
    back.send(Message::text(recover.to_string())).await.unwrap();
    send(&mut back, "ChannelSubscription", subscribe).await;
    let joined = next(&mut back).await;
    assert_eq!(joined["args"]["recovered"], true, "{joined}");
    assert!(
        joined["args"]["replayed"].as_u64().unwrap() >= 2,
        "{joined}"
    );
    let mut last = seen["offset"].as_u64().unwrap();
    for text in ["two", "three"] {
        let frame = next(&mut back).await;
        assert_eq!(frame["object"]["data"]["content"], text);
        let offset = frame["offset"].as_u64().unwrap();
        assert!(offset > last, "replayed in order: {offset} after {last}");
        last = offset;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn streaming_methods_follow_a_room_and_a_users_notifications() {
    use example_server::models::{InvalidRequest, MethodCalls};
    use streampod::client::{CallError, Client, MethodClient, OpenResult, StreamCallError};

    let server = start().await;
    let addr = server.local_addr();
    let base = format!("http://{addr}");
    let calls = MethodClient::new(&base).unwrap();

    // `chat.messages`: the room's messages, posted by a `/websocket` client. The call
    // has joined the room by the time it is open: nothing posted after is missed.
    let mut room = calls.chat().messages("lobby").await.unwrap();
    let mut poster = connect(addr, "").await;
    join_lobby_as_ann(&mut poster).await;
    sync(&mut poster).await;
    send(
        &mut poster,
        "ChatMessage",
        json!({"senderName": "ann", "content": "hello", "channelId": "lobby"}),
    )
    .await;
    let heard = room.next().await.unwrap().unwrap();
    assert_eq!(heard.content, "hello");
    assert!(heard.sender_name.starts_with("ann (guest"), "{heard:?}");

    // `chat.post` over HTTP reaches the call too, as posted (author, time), and refuses
    // an empty room or too long a message naming the field.
    let posted = calls
        .chat()
        .post("lobby", "bob", "over http")
        .await
        .unwrap();
    assert_eq!(posted.sender_name, "bob (guest http)");
    let heard = room.next().await.unwrap().unwrap();
    assert_eq!(
        (heard.content.as_str(), heard.timestamp),
        ("over http", posted.timestamp)
    );
    for (channel, content, field) in [
        ("", "x".to_owned(), "channelId"),
        (
            "lobby",
            "x".repeat(example_server::chat::MAX_MESSAGE_BYTES + 1),
            "content",
        ),
    ] {
        match calls.chat().post(channel, "bob", &content).await {
            Err(CallError::Exception(InvalidRequest { field: refused, .. })) => {
                assert_eq!(refused.as_deref(), Some(field));
            }
            other => panic!("expected InvalidRequest on {field}, got {other:?}"),
        }
    }

    let mut nowhere = calls.chat().messages("").await.unwrap();
    match nowhere.next().await {
        Some(Err(StreamCallError::Exception(InvalidRequest { field, .. }))) => {
            assert_eq!(field.as_deref(), Some("channelId"));
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }

    // `notification.notifications`: signed in only, this user's notifications.
    match calls.notification().notifications().await {
        Err(StreamCallError::Refused(OpenResult::AuthenticationFailed)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let signed_in = Client::<example_server::Protocol>::builder(base)
        .auth_key("token-42")
        .method_client()
        .unwrap();
    let mut notes = signed_in.notification().notifications().await.unwrap();
    notify(&server, "7", "not for 42");
    notify(&server, "42", "for 42");
    assert_eq!(notes.next().await.unwrap().unwrap().text, "for 42");
    drop(notes);
    let messages = server.handle().messages();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while messages.listener_count(&user_channel("42")) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed call left its listener"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.shutdown().await;
}

//! The example server binary as a user runs it: two clients chat in a room over real
//! sockets, then SIGTERM shuts it down gracefully (close 1001, exit status 0).

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Kills the server if the test fails before it stops it.
/// The server process, and the directory it runs in (its default SQLite chat database
/// goes there).
struct Running {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> (Running, String) {
    start_with(None, Stdio::null(), &[])
}

/// Starts the server, under an open-file limit of `nofile` when given (both soft and
/// hard, through the shell's `ulimit`), with its log going to `stderr`.
fn start_with(nofile: Option<u64>, stderr: Stdio, extra: &[&str]) -> (Running, String) {
    let server = env!("CARGO_BIN_EXE_example-server");
    let mut args = vec![
        "--bind",
        "127.0.0.1:0",
        "--token",
        "ann-secret-1=1",
        "--token",
        "root-secret-9=99:admin+ops",
    ];
    args.extend_from_slice(extra);
    let mut command = match nofile {
        Some(limit) => {
            let mut shell = Command::new("bash");
            shell
                .arg("-c")
                .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                .arg(server)
                .args(&args);
            shell
        }
        None => {
            let mut direct = Command::new(server);
            direct.args(&args);
            direct
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = command
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the address line")
        .to_owned();
    (Running { child, _dir: dir }, addr)
}

async fn connect(addr: &str) -> Socket {
    connect_as(addr, "").await
}

async fn connect_as(addr: &str, query: &str) -> Socket {
    tokio_tungstenite::connect_async(format!("ws://{addr}/websocket{query}"))
        .await
        .unwrap()
        .0
}

/// A plain HTTP/1.1 POST, as curl sends it; returns the status and the JSON body.
async fn post(addr: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap())
}

/// A ping command round trip: everything sent before it has been handled.
async fn round_trip(socket: &mut Socket) {
    socket
        .send(Message::text(r#"{"command":"ping","args":{}}"#))
        .await
        .unwrap();
    assert_eq!(next_json(socket).await, json!({"command": "pong"}));
}

async fn send(socket: &mut Socket, class_name: &str, data: Value) {
    let frame = json!({"endpoint": "chat", "object": {"className": class_name, "data": data}});
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

async fn next(socket: &mut Socket) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Ping(_) | Message::Pong(_) => continue,
            message => return message,
        }
    }
}

/// The next text frame as JSON, skipping room member counts (checked in endpoints.rs).
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let value: Value = match next(socket).await {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected text, got {other:?}"),
        };
        if value["object"]["className"] != "RoomUpdate" {
            return value;
        }
    }
}

#[tokio::test]
async fn two_clients_chat_in_a_room_then_sigterm_shuts_down_gracefully() {
    let (mut server, addr) = start();
    let mut ann = connect(&addr).await;
    let mut bob = connect(&addr).await;
    for socket in [&mut ann, &mut bob] {
        send(
            socket,
            "ChannelSubscription",
            json!({"channelId": "lobby", "subscribe": true}),
        )
        .await;
    }
    // Each joiner first gets the room's stored messages (the default SQLite database,
    // new here: none); ping round trips make sure both subscriptions were handled
    // before posting.
    for socket in [&mut ann, &mut bob] {
        let stored = next_json(socket).await;
        assert_eq!(
            stored["object"]["data"],
            json!({"__className__": "ChatHistory", "channelId": "lobby", "messages": [], "hasMore": false})
        );
        round_trip(socket).await;
    }

    send(
        &mut ann,
        "ChatMessage",
        json!({"senderName": "ann", "content": "hi bob", "channelId": "lobby"}),
    )
    .await;
    for socket in [&mut ann, &mut bob] {
        let frame = next_json(socket).await;
        assert_eq!(frame["endpoint"], "chat");
        assert_eq!(frame["object"]["className"], "ChatMessage");
        let data = &frame["object"]["data"];
        // The server marks who wrote it: an anonymous socket is a numbered guest.
        assert!(
            data["senderName"]
                .as_str()
                .unwrap()
                .starts_with("ann (guest "),
            "{data}"
        );
        assert_eq!(data["content"], "hi bob");
        assert!(data["senderId"].is_null());
        assert!(data["id"].is_i64(), "stored, with its id: {data}");
        assert!(
            data["timestamp"].as_str().unwrap().ends_with('Z'),
            "server timestamp: {data}"
        );
    }

    send(
        &mut bob,
        "ChatMessage",
        json!({"senderName": "bob", "content": "x", "channelId": "elsewhere"}),
    )
    .await;
    let frame = next_json(&mut bob).await;
    assert_eq!(frame["object"]["className"], "InvalidRequest");
    assert_eq!(
        frame["object"]["data"]["message"],
        "join room 'elsewhere' before posting to it"
    );

    // The example README's chat.history call: the message is in the default SQLite database.
    let (status, stored) = post(
        &addr,
        "/chat/history",
        "ann-secret-1",
        r#"{"channelId":"lobby","limit":20}"#,
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["messages"][0]["content"], "hi bob");
    assert_eq!(stored["hasMore"], false);

    // The server guide's curl call: a method call reaches every device of the user.
    let mut phone = connect_as(&addr, "?auth=ann-secret-1").await;
    round_trip(&mut phone).await;
    let (status, body) = post(
        &addr,
        "/notification/sendNotification",
        "ann-secret-1",
        r#"{"targetUserId":1,"message":"hello"}"#,
    )
    .await;
    assert_eq!((status, body), (200, json!(1)));
    let frame = next_json(&mut phone).await;
    assert_eq!(frame["endpoint"], "notification");
    assert_eq!(frame["object"]["className"], "NotificationMessage");
    assert_eq!(frame["object"]["data"]["text"], "hello");
    let (status, body) = post(
        &addr,
        "/notification/broadcastAnnouncement",
        "ann-secret-1",
        r#"{"message":"hi all"}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = post(
        &addr,
        "/notification/broadcastAnnouncement",
        "root-secret-9",
        r#"{"message":"hi all"}"#,
    )
    .await;
    assert_eq!((status, body), (200, json!(1)));
    assert_eq!(
        next_json(&mut phone).await["object"]["className"],
        "AnnouncementMessage"
    );
    let (status, body) = post(
        &addr,
        "/notification/notifyUser",
        "ann-secret-1",
        r#"{"userId":2,"notification":{"userId":1,"title":"t","body":"b"}}"#,
    )
    .await;
    assert_eq!(
        (status, body["className"].as_str()),
        (400, Some("InvalidRequest"))
    );

    // SIGTERM to the process this test started.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for socket in [&mut ann, &mut bob, &mut phone] {
        match next(socket).await {
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 1001);
                assert_eq!(frame.reason, "server shutting down");
            }
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test]
async fn idle_connections_at_the_open_file_limit_do_not_lock_clients_out() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let log = tempfile::NamedTempFile::new().unwrap();
    let (server, addr) = start_with(Some(1024), Stdio::from(log.reopen().unwrap()), &[]);
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut ann = connect(&addr).await;
    send(
        &mut ann,
        "ChannelSubscription",
        json!({"channelId": "lobby", "subscribe": true}),
    )
    .await;
    send(
        &mut ann,
        "ChatMessage",
        json!({"senderName": "ann", "content": "still here", "channelId": "lobby"}),
    )
    .await;
    assert_eq!(
        next_json(&mut ann).await["object"]["className"],
        "ChatHistory"
    );
    assert_eq!(
        next_json(&mut ann).await["object"]["data"]["content"],
        "still here"
    );
    drop(server);
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        log.matches("accept failed").count() <= 1,
        "accept errors were logged:\n{log}"
    );
}

#[tokio::test]
async fn keys_never_reach_the_log_even_at_trace_and_leaving_peers_are_no_errors() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let (server, addr) = start_with(
        None,
        Stdio::from(log.reopen().unwrap()),
        &["--log", "trace"],
    );
    // Signed in three ways: the auth command, the URL, the header.
    let mut by_command = connect(&addr).await;
    by_command
        .send(Message::text(
            r#"{"command":"auth","args":{"key":"root-secret-9"}}"#,
        ))
        .await
        .unwrap();
    round_trip(&mut by_command).await;
    let mut by_url = connect_as(&addr, "?auth=ann-secret-1").await;
    round_trip(&mut by_url).await;
    let (status, _) = post(
        &addr,
        "/notification/sendNotification",
        "ann-secret-1",
        r#"{"targetUserId":1,"message":"hello"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        next_json(&mut by_url).await["object"]["className"],
        "NotificationMessage"
    );
    // A client that just goes away, without a closing handshake.
    drop(by_url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server);
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        log.contains("socket opened"),
        "nothing logged at debug? {log}"
    );
    for secret in ["ann-secret-1", "root-secret-9", "cm9vdC1zZWNyZXQtOQ"] {
        assert!(!log.contains(secret), "'{secret}' is in the log");
    }
    assert!(!log.contains('\u{1b}'), "colour codes in a log file");
    assert!(
        !log.contains("closing on bad input"),
        "a peer leaving is not bad input"
    );
    assert!(log.contains("peer went away"));
}

/// `--print-method-schema` prints the JSON the page's client is generated from (the
/// committed `web/methods.json`, which `web_client.rs` keeps current) and serves nothing.
#[test]
fn the_binary_prints_its_method_schema() {
    let output = Command::new(env!("CARGO_BIN_EXE_example-server"))
        .arg("--print-method-schema")
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/web/methods.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(printed, committed);
}

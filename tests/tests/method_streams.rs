//! Serverpod's streaming methods on `/v1/websocket`, over real sockets, with a client
//! written here from the protocol (JSON built by hand, not streampod's frame types):
//! each open result, values both ways, exceptions, closes both ways, cancellation by
//! close and by socket drop, many calls on one socket and many sockets at once.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// `Live` is a fixture whose method names say what each exercises.
#![allow(missing_docs, missing_debug_implementations)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use streampod::auth::{self, AuthInfo, Scope};
use streampod::messages::{ChannelFeed, Reach};
use streampod::{endpoint, MethodError, MethodStream, Server, ServerConfig, Session};
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol, RoomNotFound};
use streampod_tests::http::post;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Counts drops of the futures and streams of `forever`.
#[derive(Default)]
pub struct Live {
    dropped: Arc<AtomicUsize>,
}

/// Adds one to a counter when dropped: the method's state went away.
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[endpoint]
impl Live {
    /// `from` to `to`, then the end.
    pub async fn count(&self, from: i64, to: i64) -> impl Stream<Item = i64> {
        stream::iter(from..=to)
    }

    /// Each message back, its content upper-cased.
    pub async fn shout(
        &self,
        messages: MethodStream<ChatMessage>,
    ) -> impl Stream<Item = ChatMessage> {
        messages.map(|mut message| {
            message.content = message.content.to_uppercase();
            message
        })
    }

    /// The sum of the numbers sent, once the client closes its stream.
    pub async fn sum(&self, numbers: MethodStream<i64>) -> i64 {
        numbers.fold(0, |sum, n| async move { sum + n }).await
    }

    /// One value, then an exception.
    pub async fn fail_after_one(&self) -> impl Stream<Item = Result<i64, RoomNotFound>> {
        stream::iter([
            Ok(1),
            Err(RoomNotFound {
                room_id: "r1".into(),
                message: None,
            }),
        ])
    }

    /// Refuses an unknown room before streaming.
    pub async fn open_room(
        &self,
        room_id: String,
    ) -> Result<impl Stream<Item = String>, RoomNotFound> {
        if room_id != "lobby" {
            return Err(RoomNotFound {
                room_id,
                message: Some("no such room".into()),
            });
        }
        Ok(stream::iter(["welcome".to_owned()]))
    }

    /// A tick every 10 ms, never ending; its guard counts when it is dropped.
    pub async fn forever(&self) -> impl Stream<Item = i64> {
        let guard = DropGuard(self.dropped.clone());
        stream::unfold((0, guard), |(n, guard)| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((n, (n + 1, guard)))
        })
    }

    /// As fast as the socket takes them.
    pub async fn flood(&self) -> impl Stream<Item = String> {
        stream::iter(0..).map(|n: u64| format!("value {n} {}", "x".repeat(200)))
    }

    /// 64 KiB values as fast as the socket takes them.
    pub async fn heavy(&self) -> impl Stream<Item = String> {
        stream::repeat("h".repeat(64 << 10))
    }

    /// Never reads its input, and keeps it open while the call runs.
    pub async fn deaf(&self, numbers: MethodStream<i64>) -> impl Stream<Item = i64> {
        stream::once(async move {
            let _kept = numbers;
            std::future::pending::<i64>().await
        })
    }

    #[method(require_login)]
    pub async fn whoami(&self, session: &Session<Protocol>) -> impl Stream<Item = String> {
        stream::iter(session.authenticated_user_id().map(str::to_owned))
    }

    #[method(scopes("admin"))]
    pub async fn admin_feed(&self) -> impl Stream<Item = i64> {
        stream::iter([7])
    }

    /// A plain method: called over HTTP, not opened as a stream.
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// The chat messages posted to `room`: a feed the socket sends from.
    pub async fn room(
        &self,
        session: &Session<Protocol>,
        room: String,
    ) -> Result<ChannelFeed<ChatMessage>, MethodError> {
        Ok(session.messages().channel_stream::<ChatMessage>(&room)?)
    }

    /// As `room`, after posting `first` to the room itself (once subscribed, before
    /// the call opened).
    pub async fn room_after(
        &self,
        session: &Session<Protocol>,
        room: String,
        first: String,
    ) -> Result<ChannelFeed<ChatMessage>, MethodError> {
        let feed = session.messages().channel_stream::<ChatMessage>(&room)?;
        session
            .messages()
            .post_message(&room, chat(&room, &first), Reach::Local)
            .map_err(MethodError::internal)?;
        Ok(feed)
    }

    /// The contents of the chat messages posted to `room`: a feed read as a stream.
    pub async fn room_contents(
        &self,
        session: &Session<Protocol>,
        room: String,
    ) -> Result<impl Stream<Item = String>, MethodError> {
        let feed = session.messages().channel_stream::<ChatMessage>(&room)?;
        Ok(feed.map(|message| message.content))
    }
}

/// A chat message in `room`.
fn chat(room: &str, content: &str) -> ChatMessage {
    ChatMessage {
        sender_name: "test".into(),
        content: content.into(),
        timestamp: None,
        channel_id: room.into(),
        priority: Priority::Normal,
    }
}

const ADMIN: Scope = Scope::from_static("admin");

async fn start_with(live: Live, config: ServerConfig) -> Server<Protocol> {
    Server::builder()
        .methods("live", live)
        .authentication(auth::from_fn(|key: String| async move {
            match key.as_str() {
                "ann" => Some(AuthInfo::new("1")),
                "root" => Some(AuthInfo::new("2").with_scopes([ADMIN])),
                // A key that lapses a second after it is checked.
                "brief" => Some(
                    AuthInfo::new("3")
                        .expiring_at(std::time::SystemTime::now() + Duration::from_secs(1)),
                ),
                _ => None,
            }
        }))
        .config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

async fn start() -> Server<Protocol> {
    start_with(Live::default(), ServerConfig::default()).await
}

/// The connection id of call `n`.
fn cid(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A streaming-method client written from the protocol description.
struct Raw {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

const WAIT: Duration = Duration::from_secs(10);

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/websocket"))
            .await
            .unwrap();
        Self { ws }
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next text frame as JSON; `None` once the socket closed.
    async fn try_next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")?;
            match message {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn next(&mut self) -> Value {
        self.try_next().await.expect("the socket is open")
    }

    /// Skips frames until the server closes the socket (within `wait`, else `Err`);
    /// its close code and reason, if it sent a close frame.
    async fn close_frame(
        &mut self,
        wait: Duration,
    ) -> Result<Option<(u16, String)>, tokio::time::error::Elapsed> {
        tokio::time::timeout(wait, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(frame))) => {
                        return frame.map(|f| (u16::from(f.code), f.reason.to_string()))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    async fn open(&mut self, n: usize, method: &str, args: Value, inputs: &[&str]) {
        self.send(json!({"type": "omsc", "data": {
            "en": "live", "m": method, "cid": cid(n),
            "args": args.to_string(), "is": inputs,
        }}))
        .await;
    }

    async fn open_with_key(&mut self, n: usize, method: &str, key: &str) {
        self.send(json!({"type": "omsc", "data": {
            "en": "live", "m": method, "cid": cid(n), "args": "{}", "is": [], "auth": key,
        }}))
        .await;
    }

    /// Opens call `n` and checks it was opened.
    async fn open_ok(&mut self, n: usize, method: &str, args: Value, inputs: &[&str]) {
        self.open(n, method, args, inputs).await;
        let answer = self.next().await;
        assert_eq!(answer["type"], "omsr", "{answer}");
        assert_eq!(answer["data"]["res"], "success", "{answer}");
        assert_eq!(answer["data"]["cid"], cid(n));
    }

    /// The result of the open of call `n`, skipping other calls' frames.
    async fn next_open_result(&mut self, n: usize) -> String {
        loop {
            let frame = self.next().await;
            if frame["type"] == "omsr" && frame["data"]["cid"] == cid(n) {
                return frame["data"]["res"].as_str().unwrap().to_owned();
            }
        }
    }

    async fn input(&mut self, n: usize, method: &str, parameter: &str, class: &str, data: Value) {
        self.send(json!({"type": "msm", "data": {
            "en": "live", "m": method, "cid": cid(n), "p": parameter,
            "o": {"className": class, "data": data},
        }}))
        .await;
    }

    async fn close_call(&mut self, n: usize, method: &str, parameter: Option<&str>) {
        let mut data = json!({"en": "live", "m": method, "cid": cid(n), "cr": "done"});
        if let Some(parameter) = parameter {
            data["p"] = json!(parameter);
        }
        self.send(json!({"type": "cmsc", "data": data})).await;
    }
}

/// The `o.data` of an answer-stream message, checking its shape.
fn value_of(frame: &Value, n: usize) -> Value {
    assert_eq!(frame["type"], "msm", "{frame}");
    assert_eq!(frame["data"]["cid"], cid(n), "{frame}");
    assert!(frame["data"].get("p").is_none(), "{frame}");
    frame["data"]["o"]["data"].clone()
}

fn is_close(frame: &Value, n: usize, parameter: Option<&str>, reason: &str) -> bool {
    frame["type"] == "cmsc"
        && frame["data"]["cid"] == cid(n)
        && frame["data"].get("p").and_then(Value::as_str) == parameter
        && frame["data"]["cr"] == reason
}

#[tokio::test]
async fn the_rust_client_closes_a_call_its_app_does_not_read_and_the_others_go_on() {
    use streampod::client::{json as args, MethodClient, NoException, StreamCallError};

    let live = Live::default();
    let dropped = live.dropped.clone();
    let server = start_with(live, ServerConfig::default()).await;
    let calls = MethodClient::new(&format!("http://{}", server.local_addr()))
        .unwrap()
        .max_stream_queue_bytes(1024);
    let mut unread = calls
        .call_stream::<i64, NoException>("live", "forever", args!({}), &[])
        .await
        .unwrap();
    let mut read = calls
        .call_stream::<i64, NoException>("live", "forever", args!({}), &[])
        .await
        .unwrap();
    // A value every 10 ms: the unread call passes 1 KiB (about 15 values) long before
    // the read one has given 60.
    for expected in 0..60 {
        assert_eq!(read.next().await.unwrap().unwrap(), expected);
    }
    streampod_tests::eventually("the unread call was cancelled on the server", || {
        dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut values = 0;
    let ended = loop {
        match unread.next().await {
            Some(Ok(_)) => values += 1,
            Some(Err(error)) => break error,
            None => panic!("ended without saying why"),
        }
    };
    assert!(
        matches!(ended, StreamCallError::Overflow { limit: 1024 }),
        "{ended:?}"
    );
    assert!((1..=16).contains(&values), "{values} values were held");
    assert!(unread.next().await.is_none());
    // The read call goes on.
    assert_eq!(read.next().await.unwrap().unwrap(), 60);
    server.shutdown().await;
}

#[tokio::test]
async fn an_opened_call_streams_its_values_then_closes_done() {
    let server = start().await;
    let mut client = Raw::connect(server.local_addr()).await;
    client
        .open_ok(1, "count", json!({"from": 1, "to": 3}), &[])
        .await;
    for expected in 1..=3 {
        let frame = client.next().await;
        assert_eq!(value_of(&frame, 1), json!(expected));
        assert_eq!(frame["data"]["o"]["className"], "int");
        assert_eq!(frame["data"]["en"], "live");
        assert_eq!(frame["data"]["m"], "count");
    }
    let close = client.next().await;
    assert!(is_close(&close, 1, None, "done"), "{close}");

    // The ping command is answered, and the socket stays open for more calls.
    client.send(json!({"type": "ping", "data": {}})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
    client
        .open_ok(2, "count", json!({"from": 5, "to": 5}), &[])
        .await;
    assert_eq!(value_of(&client.next().await, 2), json!(5));
    assert!(is_close(&client.next().await, 2, None, "done"));
}

#[tokio::test]
async fn a_client_of_the_2_1_pre_releases_is_answered_in_long_keys() {
    let server = start().await;
    let mut client = Raw::connect(server.local_addr()).await;
    client
        .send(json!({"type": "open_method_stream_command", "data": {
            "endpoint": "live", "method": "count", "connectionId": cid(1),
            "args": "{\"from\":1,\"to\":1}", "inputStreams": [],
        }}))
        .await;
    let answer = client.next().await;
    assert_eq!(answer["type"], "open_method_stream_response", "{answer}");
    assert_eq!(answer["data"]["responseType"], "success");
    let message = client.next().await;
    assert_eq!(message["type"], "method_message", "{message}");
    assert_eq!(message["data"]["object"]["data"], 1);
    assert_eq!(message["data"]["connectionId"], cid(1));
    let close = client.next().await;
    assert_eq!(close["type"], "close_method_stream_command", "{close}");
    assert_eq!(close["data"]["reason"], "done");
}

#[tokio::test]
async fn every_refusal_has_its_open_result() {
    let server = start().await;
    let addr = server.local_addr();
    let mut client = Raw::connect(addr).await;
    let mut n = 0;
    let mut expect = |result: &'static str| {
        n += 1;
        (n, result)
    };
    let cases: Vec<((usize, &str), Value)> = vec![
        (
            expect("endpointNotFound"),
            json!({"en": "nope", "m": "count", "args": "{}", "is": []}),
        ),
        (
            expect("endpointNotFound"),
            json!({"en": "live", "m": "nope", "args": "{}", "is": []}),
        ),
        // A plain method is not opened as a stream (Serverpod says not found too).
        (
            expect("endpointNotFound"),
            json!({"en": "live", "m": "add", "args": "{\"a\":1,\"b\":2}", "is": []}),
        ),
        (
            expect("authenticationFailed"),
            json!({"en": "live", "m": "whoami", "args": "{}", "is": []}),
        ),
        (
            expect("authenticationFailed"),
            json!({"en": "live", "m": "whoami", "args": "{}", "is": [], "auth": "Bearer wrong"}),
        ),
        (
            expect("authorizationDeclined"),
            json!({"en": "live", "m": "adminFeed", "args": "{}", "is": [], "auth": "Bearer ann"}),
        ),
        (
            expect("invalidArguments"),
            json!({"en": "live", "m": "count", "args": "{\"from\":1}", "is": []}),
        ),
        (
            expect("invalidArguments"),
            json!({"en": "live", "m": "count", "args": "{\"from\":\"one\",\"to\":2}", "is": []}),
        ),
        (
            expect("invalidArguments"),
            json!({"en": "live", "m": "count", "args": "not json", "is": []}),
        ),
        (
            expect("invalidArguments"),
            json!({"en": "live", "m": "sum", "args": "{}", "is": []}),
        ),
        (
            expect("invalidArguments"),
            json!({"en": "live", "m": "sum", "args": "{}", "is": ["numbers", "extra"]}),
        ),
    ];
    for ((n, result), mut data) in cases {
        data["cid"] = json!(cid(n));
        client.send(json!({"type": "omsc", "data": data})).await;
        let answer = client.next().await;
        assert_eq!(answer["type"], "omsr", "{answer}");
        assert_eq!(answer["data"]["cid"], cid(n));
        assert_eq!(answer["data"]["res"], result, "case {n}: {answer}");
    }
    // The refusals left the socket usable; the right keys open the calls.
    client.open_with_key(100, "whoami", "Bearer ann").await;
    assert_eq!(client.next().await["data"]["res"], "success");
    assert_eq!(value_of(&client.next().await, 100), json!("1"));
    assert!(is_close(&client.next().await, 100, None, "done"));
    client.open_with_key(101, "adminFeed", "root").await;
    assert_eq!(client.next().await["data"]["res"], "success");
    assert_eq!(value_of(&client.next().await, 101), json!(7));

    // Over HTTP, a streaming method says where it is served.
    let answer = post(addr, "/live/count", r#"{"from":1,"to":2}"#).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/websocket"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn inputs_and_outputs_of_two_calls_interleave_on_one_socket() {
    let server = start().await;
    let mut client = Raw::connect(server.local_addr()).await;
    client.open_ok(1, "shout", json!({}), &["messages"]).await;
    client.open_ok(2, "shout", json!({}), &["messages"]).await;
    let chat = |text: &str| json!({"senderName": "a", "content": text, "channelId": "c"});
    for round in 0..5 {
        for n in [1, 2] {
            let text = format!("call {n} round {round}");
            client
                .input(n, "shout", "messages", "ChatMessage", chat(&text))
                .await;
            let frame = client.next().await;
            let value = value_of(&frame, n);
            assert_eq!(frame["data"]["o"]["className"], "ChatMessage");
            assert_eq!(value["content"], text.to_uppercase());
        }
    }
    // Closing call 1's input ends call 1 only; call 2 goes on.
    client.close_call(1, "shout", Some("messages")).await;
    assert!(is_close(&client.next().await, 1, None, "done"));
    client
        .input(2, "shout", "messages", "ChatMessage", chat("still here"))
        .await;
    assert_eq!(value_of(&client.next().await, 2)["content"], "STILL HERE");

    // A method answering one value: the sum once its input closes.
    client.open_ok(3, "sum", json!({}), &["numbers"]).await;
    for number in [1, 2, 39] {
        client
            .input(3, "sum", "numbers", "int", json!(number))
            .await;
    }
    client.close_call(3, "sum", Some("numbers")).await;
    assert_eq!(value_of(&client.next().await, 3), json!(42));
    assert!(is_close(&client.next().await, 3, None, "done"));

    // A value for an input that is not open is answered with an error close.
    client.input(9, "sum", "numbers", "int", json!(1)).await;
    assert!(is_close(&client.next().await, 9, Some("numbers"), "error"));
}

#[tokio::test]
async fn exceptions_reach_the_client_and_close_the_call_with_error() {
    let server = start().await;
    let mut client = Raw::connect(server.local_addr()).await;
    client.open_ok(1, "failAfterOne", json!({}), &[]).await;
    assert_eq!(value_of(&client.next().await, 1), json!(1));
    let exception = client.next().await;
    assert_eq!(exception["type"], "msse", "{exception}");
    assert_eq!(exception["data"]["ex"]["className"], "RoomNotFound");
    assert_eq!(exception["data"]["ex"]["data"]["roomId"], "r1");
    assert!(is_close(&client.next().await, 1, None, "error"));

    // Refused before streaming: opened, then the exception and the close.
    client
        .open_ok(2, "openRoom", json!({"roomId": "attic"}), &[])
        .await;
    let exception = client.next().await;
    assert_eq!(exception["type"], "msse", "{exception}");
    assert_eq!(exception["data"]["ex"]["data"]["message"], "no such room");
    assert!(is_close(&client.next().await, 2, None, "error"));
    client
        .open_ok(3, "openRoom", json!({"roomId": "lobby"}), &[])
        .await;
    assert_eq!(value_of(&client.next().await, 3), json!("welcome"));
    assert!(is_close(&client.next().await, 3, None, "done"));
}

#[tokio::test]
async fn closing_one_call_cancels_it_and_the_other_goes_on() {
    let live = Live::default();
    let dropped = live.dropped.clone();
    let server = start_with(live, ServerConfig::default()).await;
    let mut client = Raw::connect(server.local_addr()).await;
    client.open_ok(1, "forever", json!({}), &[]).await;
    client.open_ok(2, "forever", json!({}), &[]).await;
    client.close_call(1, "forever", None).await;
    let mut after_close = Vec::new();
    let mut closed = false;
    while after_close.len() < 10 {
        let frame = client.next().await;
        if is_close(&frame, 1, None, "done") {
            closed = true;
            continue;
        }
        if closed {
            after_close.push(frame["data"]["cid"].clone());
        }
    }
    assert!(closed);
    assert!(
        after_close.iter().all(|id| *id == json!(cid(2))),
        "{after_close:?}"
    );
    streampod_tests::eventually("call 1's stream was dropped", || {
        dropped.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn a_dropped_socket_cancels_its_calls() {
    let live = Live::default();
    let dropped = live.dropped.clone();
    let server = start_with(live, ServerConfig::default()).await;
    let mut client = Raw::connect(server.local_addr()).await;
    for n in 1..=3 {
        client.open_ok(n, "forever", json!({}), &[]).await;
    }
    // No close frame: the TCP connection just goes.
    drop(client);
    streampod_tests::eventually("the three calls' streams were dropped", || {
        dropped.load(Ordering::SeqCst) == 3
    })
    .await;
}

#[tokio::test]
async fn a_fast_call_does_not_crowd_out_another_on_the_same_socket() {
    let server = start().await;
    let mut client = Raw::connect(server.local_addr()).await;
    // Both open at once, so the flood has not filled the TCP buffers yet when the
    // count starts.
    client.open(1, "flood", json!({}), &[]).await;
    client
        .open(2, "count", json!({"from": 1, "to": 50}), &[])
        .await;
    // The flood holds at most its queue's worth of frames ahead of the count.
    let mut counted = Vec::new();
    let mut read = 0;
    while counted.len() < 50 {
        let frame = client.next().await;
        read += 1;
        if frame["data"]["cid"] == json!(cid(2)) && frame["type"] == "msm" {
            counted.push(frame["data"]["o"]["data"].as_i64().unwrap());
        }
        assert!(read < 50 * 40, "the count was starved");
    }
    assert_eq!(counted, (1..=50).collect::<Vec<_>>());
    client.close_call(1, "flood", None).await;
}

#[tokio::test]
async fn an_input_sent_faster_than_read_is_closed_with_error() {
    let server = start_with(
        Live::default(),
        ServerConfig::default().method_stream_queue(4),
    )
    .await;
    let mut client = Raw::connect(server.local_addr()).await;
    client.open_ok(1, "deaf", json!({}), &["numbers"]).await;
    for n in 0..10 {
        client.input(1, "deaf", "numbers", "int", json!(n)).await;
    }
    let frame = client.next().await;
    assert!(is_close(&frame, 1, Some("numbers"), "error"), "{frame}");
}

#[tokio::test]
async fn input_values_waiting_for_their_method_are_bounded_in_bytes_per_socket() {
    // Room for 32 values per input, but only 256 KiB of them on the socket.
    let server = start_with(
        Live::default(),
        ServerConfig::default().outbound_queue_bytes(256 << 10),
    )
    .await;
    let mut client = Raw::connect(server.local_addr()).await;
    client.open_ok(1, "deaf", json!({}), &["numbers"]).await;
    let big = "x".repeat(100_000);
    for _ in 0..3 {
        client
            .input(1, "deaf", "numbers", "String", json!(big))
            .await;
    }
    let frame = client.next().await;
    assert!(is_close(&frame, 1, Some("numbers"), "error"), "{frame}");
}

#[tokio::test]
async fn a_bad_frame_is_answered_with_brm_and_the_socket_closes() {
    let server = start().await;
    for (bad, why) in [
        ("not json", "not a streaming-method frame"),
        (r#"{"type":"teleport","data":{}}"#, "unknown message type"),
    ] {
        let mut client = Raw::connect(server.local_addr()).await;
        client.send_text(bad).await;
        let answer = client.next().await;
        assert_eq!(answer["type"], "brm", "{answer}");
        assert_eq!(answer["data"]["req"], bad);
        assert_eq!(client.try_next().await, None, "{why}: the socket closes");
    }
    // A message on the answer stream (no `p`) is the server's to send.
    let mut client = Raw::connect(server.local_addr()).await;
    client.open_ok(1, "forever", json!({}), &[]).await;
    client
        .send(json!({"type": "msm", "data": {"en": "live", "m": "forever", "cid": cid(1), "o": {"className": "int", "data": 1}}}))
        .await;
    loop {
        match client.try_next().await {
            Some(frame) if frame["type"] == "brm" => break,
            Some(_) => {}
            None => panic!("closed without brm"),
        }
    }
}

#[tokio::test]
async fn a_thousand_calls_on_a_hundred_sockets() {
    let server = start().await;
    let addr = server.local_addr();
    let clients = (0..100).map(|_| async move {
        let mut client = Raw::connect(addr).await;
        for n in 0..10 {
            client
                .open(n, "count", json!({"from": 0, "to": 19}), &[])
                .await;
        }
        let mut next = [0_i64; 10];
        let mut done = 0;
        while done < 10 {
            let frame = client.next().await;
            let id = frame["data"]["cid"].as_str().unwrap().to_owned();
            let n: usize = id.rsplit('-').next().unwrap().parse().unwrap();
            match frame["type"].as_str().unwrap() {
                "omsr" => assert_eq!(frame["data"]["res"], "success"),
                "msm" => {
                    assert_eq!(frame["data"]["o"]["data"], json!(next[n]), "in order");
                    next[n] += 1;
                }
                "cmsc" => {
                    assert_eq!(frame["data"]["cr"], "done");
                    assert_eq!(next[n], 20);
                    done += 1;
                }
                other => panic!("unexpected {other}: {frame}"),
            }
        }
    });
    futures_util::future::join_all(clients).await;
}

#[tokio::test]
async fn the_rust_client_calls_streaming_methods_with_typed_values_inputs_and_exceptions() {
    use streampod::client::{json as args, MethodClient, NoException, OpenResult, StreamCallError};

    let live = Live::default();
    let dropped = live.dropped.clone();
    let server = start_with(live, ServerConfig::default()).await;
    let base = format!("http://{}", server.local_addr());
    let calls = MethodClient::new(&base).unwrap();

    let counted: Vec<i64> = calls
        .call_stream::<i64, NoException>("live", "count", args!({"from": 1, "to": 4}), &[])
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(counted, [1, 2, 3, 4]);

    // Inputs: two calls on the one socket, fed through sinks.
    let mut shout = calls
        .call_stream::<ChatMessage, NoException>("live", "shout", args!({}), &["messages"])
        .await
        .unwrap();
    let mut sum = calls
        .call_stream::<i64, NoException>("live", "sum", args!({}), &["numbers"])
        .await
        .unwrap();
    let messages = shout.input::<ChatMessage>("messages");
    let numbers = sum.input::<i64>("numbers");
    for n in 1..=3 {
        numbers.send::<NoException>(&n).unwrap();
        messages
            .send::<NoException>(&ChatMessage {
                sender_name: "ann".into(),
                content: format!("hi {n}"),
                timestamp: None,
                channel_id: "c".into(),
                priority: Default::default(),
            })
            .unwrap();
        let back = shout.next().await.unwrap().unwrap();
        assert_eq!(back.content, format!("HI {n}"));
    }
    numbers.close();
    assert_eq!(sum.next().await.unwrap().unwrap(), 6);
    assert!(sum.next().await.is_none());
    messages.close();
    assert!(shout.next().await.is_none());

    // The typed exception, then the end.
    let mut failing = calls
        .call_stream::<i64, RoomNotFound>("live", "failAfterOne", args!({}), &[])
        .await
        .unwrap();
    assert_eq!(failing.next().await.unwrap().unwrap(), 1);
    match failing.next().await.unwrap() {
        Err(StreamCallError::Exception(RoomNotFound { room_id, .. })) => assert_eq!(room_id, "r1"),
        other => panic!("expected the exception, got {other:?}"),
    }
    assert!(failing.next().await.is_none());

    // Refusals carry the server's open result; a key opens the call.
    match calls
        .call_stream::<String, NoException>("live", "whoami", args!({}), &[])
        .await
    {
        Err(StreamCallError::Refused(OpenResult::AuthenticationFailed)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let signed_in = streampod::client::Client::<Protocol>::builder(base.clone())
        .auth_key("ann")
        .method_client()
        .unwrap();
    let mut whoami = signed_in
        .call_stream::<String, NoException>("live", "whoami", args!({}), &[])
        .await
        .unwrap();
    assert_eq!(whoami.next().await.unwrap().unwrap(), "1");

    // Dropping a call cancels the method.
    let mut forever = calls
        .call_stream::<i64, NoException>("live", "forever", args!({}), &[])
        .await
        .unwrap();
    assert_eq!(forever.next().await.unwrap().unwrap(), 0);
    drop(forever);
    streampod_tests::eventually(
        "the dropped call's stream was dropped on the server",
        || dropped.load(Ordering::SeqCst) == 1,
    )
    .await;

    // A lost socket ends the running call with ConnectionLost; the next call reopens.
    let mut forever = calls
        .call_stream::<i64, NoException>("live", "forever", args!({}), &[])
        .await
        .unwrap();
    assert!(forever.next().await.unwrap().is_ok());
    server.shutdown().await;
    let mut ended = false;
    while let Some(item) = forever.next().await {
        if let Err(error) = item {
            assert!(
                matches!(error, StreamCallError::ConnectionLost),
                "{error:?}"
            );
            ended = true;
        }
    }
    assert!(ended);
}

#[tokio::test]
async fn the_streaming_socket_lives_under_the_path_prefix() {
    let server = Server::builder()
        .methods("live", Live::default())
        .path_prefix("/rt")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/rt/v1/websocket"))
        .await
        .unwrap();
    let mut client = Raw { ws };
    client
        .open_ok(1, "count", json!({"from": 1, "to": 1}), &[])
        .await;
    assert_eq!(value_of(&client.next().await, 1), json!(1));
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/websocket"))
            .await
            .is_err(),
        "outside the prefix there is no socket"
    );
}

#[tokio::test]
async fn the_memory_guard_sheds_a_streaming_socket_that_stopped_reading() {
    let server = start_with(
        Live::default(),
        ServerConfig::default()
            .method_stream_queue(100_000)
            .outbound_queue_bytes(1 << 30)
            .outbound_queue_frames(1 << 20)
            .max_total_queued_bytes(2 << 20),
    )
    .await;
    let mut client = Raw::connect(server.local_addr()).await;
    client.open_ok(1, "heavy", json!({}), &[]).await;
    // The client reads nothing for a while: the socket's queue passes the server's limit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let closed = client
        .close_frame(Duration::from_secs(30))
        .await
        .expect("the socket was closed, not left to grow");
    assert_eq!(closed, Some((1008, "server memory limit".to_owned())));
    // Others are served still.
    let mut other = Raw::connect(server.local_addr()).await;
    other
        .open_ok(1, "count", json!({"from": 1, "to": 1}), &[])
        .await;
}

#[tokio::test]
async fn the_memory_guard_counts_input_waiting_for_a_method_too() {
    let server = start_with(
        Live::default(),
        ServerConfig::default()
            .outbound_queue_bytes(4 << 20)
            .max_total_queued_bytes(1 << 20),
    )
    .await;
    let mut client = Raw::connect(server.local_addr()).await;
    client.open_ok(1, "deaf", json!({}), &["numbers"]).await;
    // Values the method never reads: 1.5 MB held for it, over the server's 1 MiB.
    let big = "x".repeat(100_000);
    for _ in 0..15 {
        client
            .input(1, "deaf", "numbers", "String", json!(big))
            .await;
    }
    let closed = client
        .close_frame(Duration::from_secs(10))
        .await
        .expect("the socket was closed, not left to hold it");
    assert_eq!(closed, Some((1008, "server memory limit".to_owned())));
}

#[tokio::test]
async fn metrics_count_opens_by_result_and_calls_open() {
    use streampod_tests::http::{get_text, metric_value};

    let server = start().await;
    let addr = server.local_addr();
    let mut client = Raw::connect(addr).await;
    client.open_ok(1, "forever", json!({}), &[]).await;
    client.open_ok(2, "forever", json!({}), &[]).await;
    client.open(3, "nope", json!({}), &[]).await;
    assert_eq!(client.next_open_result(3).await, "endpointNotFound");
    client.open(4, "whoami", json!({}), &[]).await;
    assert_eq!(client.next_open_result(4).await, "authenticationFailed");
    // A call served from the central through a feed is counted as any other.
    client
        .open_ok(5, "room", json!({"room": "counted"}), &[])
        .await;
    let open = r#"streampod_method_streams_open{endpoint="live",method="forever"}"#;
    let fed = r#"streampod_method_streams_open{endpoint="live",method="room"}"#;
    let (_, scrape) = get_text(addr, "/metrics").await;
    assert_eq!(metric_value(&scrape, open), 2.0);
    assert_eq!(metric_value(&scrape, fed), 1.0);
    for (labels, count) in [
        (r#"endpoint="live",method="forever",result="success""#, 2.0),
        (
            r#"endpoint="live",method="unknown",result="endpointNotFound""#,
            1.0,
        ),
        (
            r#"endpoint="live",method="whoami",result="authenticationFailed""#,
            1.0,
        ),
    ] {
        let series = format!("streampod_method_stream_opens_total{{{labels}}}");
        assert_eq!(metric_value(&scrape, &series), count, "{series}");
    }
    client.close_call(1, "forever", None).await;
    drop(client);
    // The calls end (one closed, the others with their socket): the gauges come back to 0.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, scrape) = get_text(addr, "/metrics").await;
        if metric_value(&scrape, open) == 0.0 && metric_value(&scrape, fed) == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls still counted open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `count` chat messages to `room` through the server's central, numbered from 0.
fn post_chats(server: &Server<Protocol>, room: &str, count: usize) {
    for n in 0..count {
        server
            .handle()
            .messages()
            .post_message(room, chat(room, &n.to_string()), Reach::Local)
            .unwrap();
    }
}

#[tokio::test]
async fn a_feed_sends_each_post_encoded_once_to_every_call_and_only_its_type() {
    let server = start().await;
    let addr = server.local_addr();
    let messages = server.handle().messages();
    // Ten sockets with two calls each on "lobby", and one call on "attic".
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut client = Raw::connect(addr).await;
        client
            .open_ok(1, "room", json!({"room": "lobby"}), &[])
            .await;
        client
            .open_ok(2, "room", json!({"room": "lobby"}), &[])
            .await;
        clients.push(client);
    }
    let mut attic = Raw::connect(addr).await;
    attic
        .open_ok(1, "room", json!({"room": "attic"}), &[])
        .await;
    assert_eq!(messages.listener_count("lobby"), 20);
    let encoded = messages.stats().frames_encoded;
    for n in 0..50 {
        // Another model on the same channel: no call takes it, nothing is encoded.
        let other = RoomNotFound {
            room_id: "lobby".into(),
            message: None,
        };
        messages.post_message("lobby", other, Reach::Local).unwrap();
        messages
            .post_message("lobby", chat("lobby", &n.to_string()), Reach::Local)
            .unwrap();
    }
    for client in &mut clients {
        let mut next = [0; 3];
        while next[1] < 50 || next[2] < 50 {
            let frame = client.next().await;
            let id = frame["data"]["cid"].as_str().unwrap().to_owned();
            let n: usize = id.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(frame["data"]["o"]["className"], "ChatMessage", "{frame}");
            assert_eq!(
                value_of(&frame, n)["content"],
                next[n].to_string(),
                "in order"
            );
            next[n] += 1;
        }
    }
    assert_eq!(
        messages.stats().frames_encoded - encoded,
        50,
        "one encode per chat message for all twenty calls"
    );
    // Nothing posted to the attic, nothing sent there; a post there reaches it alone.
    post_chats(&server, "attic", 1);
    assert_eq!(value_of(&attic.next().await, 1)["content"], "0");
    // A closed call, and a dropped socket, take their listeners with them.
    clients[0].close_call(1, "room", None).await;
    assert!(is_close(&clients[0].next().await, 1, None, "done"));
    clients.truncate(5);
    streampod_tests::eventually("the listeners of closed calls went", || {
        messages.listener_count("lobby") == 9
    })
    .await;
}

#[tokio::test]
async fn a_value_posted_while_the_method_runs_comes_after_the_open_result() {
    let server = start().await;
    let mut client = Raw::connect(server.local_addr()).await;
    client
        .open_ok(
            1,
            "roomAfter",
            json!({"room": "lobby", "first": "hello"}),
            &[],
        )
        .await;
    assert_eq!(value_of(&client.next().await, 1)["content"], "hello");
    post_chats(&server, "lobby", 3);
    for n in 0..3 {
        assert_eq!(value_of(&client.next().await, 1)["content"], n.to_string());
    }
}

#[tokio::test]
async fn a_feed_read_as_a_stream_gives_its_values_to_the_method() {
    let server = start().await;
    let mut client = Raw::connect(server.local_addr()).await;
    client
        .open_ok(1, "roomContents", json!({"room": "lobby"}), &[])
        .await;
    post_chats(&server, "lobby", 3);
    for n in 0..3 {
        let frame = client.next().await;
        assert_eq!(frame["data"]["o"]["className"], "String", "{frame}");
        assert_eq!(value_of(&frame, 1), json!(n.to_string()));
    }
}

#[tokio::test]
async fn a_socket_that_stops_reading_its_feed_is_closed_as_a_slow_consumer_alone() {
    let mut config = ServerConfig::default();
    config.outbound_queue_frames = 64;
    let server = start_with(Live::default(), config).await;
    let addr = server.local_addr();
    let mut reader = Raw::connect(addr).await;
    reader
        .open_ok(1, "room", json!({"room": "lobby"}), &[])
        .await;
    let mut stalled = Raw::connect(addr).await;
    stalled
        .open_ok(1, "room", json!({"room": "lobby"}), &[])
        .await;
    // The reader keeps up; the stalled socket reads nothing until the server gave up on
    // it (its kernel buffers fill first, then its 64-frame queue).
    let posting = async {
        for n in 0..2_000 {
            let content = format!("{n} {}", "x".repeat(4_000));
            server
                .handle()
                .messages()
                .post_message("lobby", chat("lobby", &content), Reach::Local)
                .unwrap();
            if n % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let reading = async {
        for n in 0..2_000 {
            let frame = reader.next().await;
            let content = value_of(&frame, 1)["content"].as_str().unwrap().to_owned();
            assert!(content.starts_with(&format!("{n} ")), "in order, none lost");
        }
    };
    tokio::join!(posting, reading);
    let closed = stalled.close_frame(WAIT).await.expect("closed in time");
    assert_eq!(closed, Some((1008, "slow consumer".to_owned())));
}

/// Channels named `kept-…` keep their last `size` posts for a minute.
fn keep_history(server: &Server<Protocol>, size: usize) {
    use streampod::messages::{ChannelConfig, HistoryConfig};

    let history = HistoryConfig::new(size, Duration::from_secs(60));
    server
        .handle()
        .messages()
        .configure_namespace("kept-", ChannelConfig::default().with_history(history));
}

/// Opens call `n` of `room` on `room` with `pos` (streampod's position extension).
async fn open_positioned(client: &mut Raw, n: usize, room: &str, pos: Value) {
    client
        .send(json!({"type": "omsc", "data": {
            "en": "live", "m": "room", "cid": cid(n),
            "args": json!({"room": room}).to_string(), "is": [], "pos": pos,
        }}))
        .await;
    let answer = client.next().await;
    assert_eq!(answer["data"]["res"], "success", "{answer}");
}

#[tokio::test]
async fn a_call_that_asks_for_positions_resumes_from_its_last_one_on_a_new_socket() {
    let server = start().await;
    keep_history(&server, 100);
    let mut client = Raw::connect(server.local_addr()).await;
    open_positioned(&mut client, 1, "kept-1", json!(true)).await;
    let position = client.next().await;
    assert_eq!(position["type"], "msp", "{position}");
    assert_eq!(position["data"]["rec"], true);
    assert_eq!(position["data"]["pos"]["offset"], 0);
    let epoch = position["data"]["pos"]["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    post_chats(&server, "kept-1", 5);
    for n in 0..5 {
        let frame = client.next().await;
        assert_eq!(value_of(&frame, 1)["content"], n.to_string());
        assert_eq!(frame["data"]["at"], n + 1, "{frame}");
    }
    // The socket goes; three more posts are missed; a new socket resumes after 5.
    drop(client);
    post_chats(&server, "kept-1", 3);
    let mut again = Raw::connect(server.local_addr()).await;
    open_positioned(
        &mut again,
        2,
        "kept-1",
        json!({"epoch": epoch, "offset": 5}),
    )
    .await;
    let position = again.next().await;
    assert_eq!(position["data"]["rec"], true, "{position}");
    assert_eq!(position["data"]["pos"]["offset"], 8);
    for offset in 6..=8 {
        let frame = again.next().await;
        assert_eq!(
            frame["data"]["at"], offset,
            "the missed ones, in order: {frame}"
        );
    }
    post_chats(&server, "kept-1", 1);
    assert_eq!(again.next().await["data"]["at"], 9, "then new ones");
    // From another epoch (or too far back): not recovered, and it goes on.
    let mut lost = Raw::connect(server.local_addr()).await;
    open_positioned(
        &mut lost,
        3,
        "kept-1",
        json!({"epoch": "other", "offset": 1}),
    )
    .await;
    let position = lost.next().await;
    assert_eq!(position["data"]["rec"], false, "{position}");
    post_chats(&server, "kept-1", 1);
    assert_eq!(lost.next().await["data"]["at"], 10);
    // A Serverpod client (no `pos`) sees none of it on the same channel.
    let mut plain = Raw::connect(server.local_addr()).await;
    plain
        .open_ok(4, "room", json!({"room": "kept-1"}), &[])
        .await;
    post_chats(&server, "kept-1", 1);
    let frame = plain.next().await;
    assert_eq!(frame["type"], "msm", "{frame}");
    assert!(frame["data"].get("at").is_none(), "{frame}");
}

#[tokio::test]
async fn a_thousand_calls_resume_without_loss_or_repeat_after_their_sockets_are_cut() {
    use streampod::client::{json as args, MethodClient, NoException, StreamCallError};
    use streampod_tests::cut_proxy::CutProxy;

    const ROOMS: usize = 10;
    const POSTS: usize = 100;
    let server = start().await;
    let messages = server.handle().messages();
    keep_history(&server, 1_000);
    let proxy = CutProxy::start(server.local_addr()).await;
    // A hundred sockets (one client each), ten calls on each: one per room.
    let mut calls = Vec::new();
    for _ in 0..100 {
        let client = MethodClient::new(&format!("http://{}", proxy.addr())).unwrap();
        for room in 0..ROOMS {
            let call = client
                .call_stream::<ChatMessage, NoException>(
                    "live",
                    "room",
                    args!({"room": format!("kept-{room}")}),
                    &[],
                )
                .await
                .unwrap();
            calls.push(call);
        }
    }
    assert_eq!(messages.listener_count("kept-0"), 100);
    let readers = calls.into_iter().map(|mut call| {
        tokio::spawn(async move {
            let mut next = 0;
            let mut notices = 0;
            while next < POSTS {
                match tokio::time::timeout(WAIT, call.next())
                    .await
                    .expect("a value in time")
                {
                    Some(Ok(message)) => {
                        assert_eq!(
                            message.content,
                            next.to_string(),
                            "every value once, in order"
                        );
                        next += 1;
                    }
                    Some(Err(StreamCallError::NotRecovered)) => notices += 1,
                    other => panic!("the call ended: {other:?}"),
                }
            }
            (call.resumes(), notices)
        })
    });
    let readers: Vec<_> = readers.collect();
    // Half the posts, the cut (both sides of every socket dropped), the other half.
    for n in 0..POSTS {
        if n == POSTS / 2 {
            proxy.cut();
        }
        for room in 0..ROOMS {
            let room = format!("kept-{room}");
            messages
                .post_message(&room, chat(&room, &n.to_string()), Reach::Local)
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut resumed = 0;
    for reader in readers {
        let (resumes, notices) = reader.await.unwrap();
        assert_eq!(notices, 0, "everything was recovered");
        resumed += usize::from(resumes > 0);
    }
    assert_eq!(resumed, 1_000, "every call went on on a new socket");
}

#[tokio::test]
async fn a_call_that_cannot_recover_says_so_once_and_goes_on() {
    use streampod::client::{json as args, MethodClient, NoException, StreamCallError};
    use streampod_tests::cut_proxy::CutProxy;

    let server = start().await;
    keep_history(&server, 5);
    let proxy = CutProxy::start(server.local_addr()).await;
    let client = MethodClient::new(&format!("http://{}", proxy.addr())).unwrap();
    let mut call = client
        .call_stream::<ChatMessage, NoException>("live", "room", args!({"room": "kept-1"}), &[])
        .await
        .unwrap();
    post_chats(&server, "kept-1", 1);
    assert_eq!(call.next().await.unwrap().unwrap().content, "0");
    // Cut while twenty are posted: more than the five the history keeps. (The client
    // may notice the cut before or during them.)
    proxy.cut();
    post_chats(&server, "kept-1", 20);
    let notice = tokio::time::timeout(WAIT, call.next())
        .await
        .expect("in time");
    assert!(
        matches!(notice, Some(Err(StreamCallError::NotRecovered))),
        "{notice:?}"
    );
    assert_eq!(call.resumes(), 1);
    post_chats(&server, "kept-1", 1);
    let next = tokio::time::timeout(WAIT, call.next())
        .await
        .expect("in time");
    assert_eq!(
        next.unwrap().unwrap().content,
        "0",
        "it goes on with what comes next"
    );
}

#[tokio::test]
async fn serverpod_clients_get_serverpod_frames_key_for_key() {
    let fixtures: Value =
        serde_json::from_str(include_str!("../fixtures/serverpod-method-frames.json")).unwrap();
    let server = start().await;
    keep_history(&server, 100);
    for conversation in fixtures["conversations"].as_array().unwrap() {
        let name = &conversation["name"];
        let mut client = Raw::connect(server.local_addr()).await;
        for step in conversation["steps"].as_array().unwrap() {
            if let Some(frame) = step.get("send") {
                client.send(frame.clone()).await;
            } else if let Some(expected) = step.get("expect") {
                assert_eq!(&client.next().await, expected, "{name}");
            } else if let Some(content) = step["post"].as_str() {
                let room = "kept-fixture";
                server
                    .handle()
                    .messages()
                    .post_message(room, chat(room, content), Reach::Local)
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn a_call_listening_to_a_room_with_presence_is_a_member_while_it_lasts() {
    use streampod::messages::ChannelConfig;

    let server = start().await;
    let messages = server.handle().messages();
    messages.configure_namespace("here-", ChannelConfig::default().with_presence());
    let mut client = Raw::connect(server.local_addr()).await;
    client
        .send(json!({"type": "omsc", "data": {
            "en": "live", "m": "room", "cid": cid(1),
            "args": json!({"room": "here-1"}).to_string(), "is": [], "auth": "ann",
        }}))
        .await;
    assert_eq!(client.next().await["data"]["res"], "success");
    assert_eq!(messages.presence_count("here-1").await.unwrap(), 1);
    let members = messages.presence("here-1", 10).await.unwrap();
    assert_eq!(members[0].user_id.as_deref(), Some("1"), "the call's user");
    // The same client again without a key: a second member (each call is one), a guest.
    client
        .open_ok(2, "room", json!({"room": "here-1"}), &[])
        .await;
    assert_eq!(messages.presence_count("here-1").await.unwrap(), 2);
    let members = messages.presence("here-1", 10).await.unwrap();
    assert_ne!(members[0].session, members[1].session);
    assert!(members.iter().any(|member| member.user_id.is_none()));
    client.close_call(1, "room", None).await;
    assert!(is_close(&client.next().await, 1, None, "done"));
    drop(client);
    streampod_tests::eventually("both calls left", || messages.listener_count("here-1") == 0).await;
    assert_eq!(messages.presence_count("here-1").await.unwrap(), 0);
}

#[tokio::test]
async fn a_call_lasts_no_longer_than_the_key_it_was_opened_with() {
    let server = start().await;
    let mut client = Raw::connect(server.local_addr()).await;
    // A method's own stream, a call served from a feed, and a call with a lasting key.
    client.open_with_key(1, "forever", "brief").await;
    assert_eq!(client.next_open_result(1).await, "success");
    client
        .send(json!({"type": "omsc", "data": {
            "en": "live", "m": "room", "cid": cid(2),
            "args": json!({"room": "lapsing"}).to_string(), "is": [], "auth": "brief",
        }}))
        .await;
    assert_eq!(client.next_open_result(2).await, "success");
    client.open_with_key(3, "forever", "ann").await;
    assert_eq!(client.next_open_result(3).await, "success");
    let started = tokio::time::Instant::now();
    let mut closed = Vec::new();
    while closed.len() < 2 {
        let frame = client.next().await;
        if frame["type"] == "cmsc" {
            assert_eq!(frame["data"]["cr"], "error", "{frame}");
            closed.push(frame["data"]["cid"].as_str().unwrap().to_owned());
        }
    }
    closed.sort();
    assert_eq!(closed, [cid(1), cid(2)], "the two calls of the lapsing key");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The third goes on.
    loop {
        let frame = client.next().await;
        if frame["type"] == "msm" {
            assert_eq!(frame["data"]["cid"], cid(3));
            break;
        }
        assert_ne!(frame["type"], "cmsc", "{frame}");
    }
}

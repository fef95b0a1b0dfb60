//! Revoking identities (`ServerHandle::revoke_user`, `revoke_key`) over real sockets
//! with real JSON Web Tokens: the revoked identity's endpoint sessions are signed out
//! (`auth_revoked`) and its streaming-method calls close, others go on, revoked keys
//! are refused with the reason on every path; on three servers sharing a private
//! Redis, a revocation made on one reaches the sessions of the others within a second.
//! Also: why a key was refused (expired, bad signature, another audience) reaches the
//! client; a streaming-method socket's calls take a fresh key in band (`msa`) and go on
//! past the old one's expiry.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use streampod::auth::Jwt;
use streampod::cluster::{ClusterConfig, ClusterState};
use streampod::messages::ChannelFeed;
use streampod::{endpoint, MethodError, Server, Session};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Protocol};
use streampod_tests::http::request;
use streampod_tests::recorder::{whoami, Recorder};
use streampod_tests::redis_server::RedisServer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &[u8] = b"a shared secret of at least thirty-two bytes";

/// Signed-in-only methods: a room as a feed, the caller's id as an own stream.
#[derive(Debug)]
pub struct Feeds;

#[endpoint]
impl Feeds {
    /// The room's messages.
    #[method(require_login)]
    pub async fn room(
        &self,
        session: &Session<Protocol>,
    ) -> Result<ChannelFeed<ChatMessage>, MethodError> {
        Ok(session
            .messages()
            .channel_stream::<ChatMessage>("revocation-room")?)
    }

    /// The caller's user id, then nothing until the call ends.
    #[method(require_login)]
    pub async fn me(
        &self,
        session: &Session<Protocol>,
    ) -> impl futures_util::Stream<Item = String> {
        let user = session.authenticated_user_id().unwrap_or("-").to_owned();
        futures_util::stream::once(async move { user }).chain(futures_util::stream::pending())
    }

    /// The caller's user id, over HTTP.
    #[method(require_login)]
    pub async fn whoami(&self, session: &Session<Protocol>) -> String {
        session.authenticated_user_id().unwrap_or("-").to_owned()
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A token of `user`, issued `issued` seconds from now, valid ten minutes.
fn token(user: &str, issued: i64) -> String {
    token_until(user, issued, 600)
}

/// A token of `user`, issued `issued` seconds from now, expiring `expires` from now.
fn token_until(user: &str, issued: i64, expires: i64) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": user, "iat": now() + issued, "exp": now() + expires, "aud": "chat"}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

async fn node(recorder: &Recorder, cluster: Option<&RedisServer>) -> Server<Protocol> {
    let mut builder = Server::builder()
        .endpoint("members", recorder.clone())
        .methods("feeds", Feeds)
        .authentication(Jwt::hs256(SECRET).audience("chat"));
    if let Some(redis) = cluster {
        builder = builder.cluster(ClusterConfig::redis(redis.url()).prefix("revocation-test"));
    }
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    if cluster.is_some() {
        streampod_tests::wait_for_cluster(&server, |state| *state == ClusterState::Connected).await;
    }
    server
}

fn members() -> Recorder {
    Recorder {
        login: true,
        ..Recorder::default()
    }
}

/// An endpoint session signed in with `token`, its stream open; its session id.
async fn signed_in(addr: SocketAddr, token: &str) -> (TestClient, u64) {
    let mut client = TestClient::connect(addr, &format!("?auth={token}")).await;
    let (_, id) = whoami(&mut client, "members").await;
    (client, id)
}

/// A streaming-method socket, written from the protocol.
struct Calls {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn cid(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

impl Calls {
    async fn connect(addr: SocketAddr) -> Self {
        let url = format!("ws://{addr}/v1/websocket");
        Self {
            ws: tokio_tungstenite::connect_async(url).await.unwrap().0,
        }
    }

    /// Opens call `n` of `method` with `key`; checks it opened.
    async fn open(&mut self, n: usize, method: &str, key: &str) {
        let frame = json!({"type": "omsc", "data": {
            "en": "feeds", "m": method, "cid": cid(n), "args": "{}", "is": [], "auth": key,
        }});
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        let answer = self.until(|frame| frame["type"] == "omsr").await;
        assert_eq!(answer["data"]["res"], "success", "{answer}");
    }

    /// Sends a fresh key (`msa`) and returns the server's answer.
    async fn refresh(&mut self, key: &str) -> Value {
        let frame = json!({"type": "msa", "data": {"auth": key}});
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        self.until(|frame| frame["type"] == "msa").await["data"].clone()
    }

    /// The next frame for which `wanted` holds, skipping others.
    async fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let Some(Ok(Message::Text(text))) = self.ws.next().await else {
                    panic!("the socket closed");
                };
                let frame: Value = serde_json::from_str(&text).unwrap();
                if wanted(&frame) {
                    return frame;
                }
            }
        })
        .await
        .expect("the frame in time")
    }

    /// The ids of the next `count` calls closed, each with `error`.
    async fn closed(&mut self, count: usize) -> Vec<String> {
        let mut closed = Vec::new();
        while closed.len() < count {
            let frame = self.until(|frame| frame["type"] == "cmsc").await;
            assert_eq!(frame["data"]["cr"], "error", "{frame}");
            closed.push(frame["data"]["cid"].as_str().unwrap().to_owned());
        }
        closed.sort();
        closed
    }
}

/// `POST /feeds/whoami` with `token`: the status and body.
async fn call(addr: SocketAddr, token: &str) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    let answer = request(
        addr,
        Method::POST,
        "/feeds/whoami",
        "{}",
        &[("authorization", &bearer)],
    )
    .await;
    (answer.status, answer.body)
}

fn sign_in(token: &str) -> String {
    format!(r#"{{"command":"auth","args":{{"key":"{token}"}}}}"#)
}

#[tokio::test]
async fn a_revoked_user_is_signed_out_everywhere_here_and_their_old_tokens_are_refused() {
    let recorder = members();
    let server = node(&recorder, None).await;
    let addr = server.local_addr();
    let old = token("42", -10);
    let (mut revoked, revoked_id) = signed_in(addr, &old).await;
    let (mut bystander, bystander_id) = signed_in(addr, &token("7", -10)).await;
    let mut calls = Calls::connect(addr).await;
    calls.open(1, "room", &old).await;
    calls.open(2, "me", &old).await;
    calls.open(3, "me", &token("7", -10)).await;

    let started = tokio::time::Instant::now();
    assert_eq!(server.handle().revoke_user("42").await.unwrap(), Some(1));
    let notice = revoked.expect_error("auth_revoked").await;
    assert!(
        notice["message"].as_str().unwrap().contains("signed out"),
        "{notice}"
    );
    assert_eq!(
        calls.closed(2).await,
        [cid(1), cid(2)],
        "the calls of user 42"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        recorder.closed_count(revoked_id),
        1,
        "what user 42 opened closed"
    );
    assert_eq!(recorder.closed_count(bystander_id), 0);
    assert!(bystander.is_quiet(Duration::from_millis(300)).await);
    assert_eq!(whoami(&mut bystander, "members").await.0, "7");
    // Call 3 (user 7) goes on: a new call on the same socket is answered after it.
    calls.open(4, "me", &token("7", -10)).await;

    // The old token is refused from then on, with the reason, on every path.
    revoked.send_text(&sign_in(&old)).await;
    let refusal = revoked.expect_error("auth_revoked").await;
    assert!(
        refusal["message"].as_str().unwrap().contains("revoked"),
        "{refusal}"
    );
    let (status, body) = call(addr, &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["reason"], "revoked", "{body}");
    let frame = json!({"type": "omsc", "data": {
        "en": "feeds", "m": "me", "cid": cid(5), "args": "{}", "is": [], "auth": old,
    }});
    calls
        .ws
        .send(Message::text(frame.to_string()))
        .await
        .unwrap();
    let answer = calls.until(|frame| frame["type"] == "omsr").await;
    assert_eq!(answer["data"]["res"], "authenticationFailed", "{answer}");
    // A token issued after the revocation signs the user in again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    revoked.send_text(&sign_in(&token("42", 1))).await;
    assert_eq!(whoami(&mut revoked, "members").await.0, "42");
    server.shutdown().await;
}

#[tokio::test]
async fn a_revoked_key_ends_what_it_signed_in_and_is_refused_while_the_users_other_keys_go_on() {
    let recorder = members();
    let server = node(&recorder, None).await;
    let addr = server.local_addr();
    let (phone, laptop) = (token("42", -20), token("42", -10));
    let (mut on_phone, phone_id) = signed_in(addr, &phone).await;
    let (mut on_laptop, laptop_id) = signed_in(addr, &laptop).await;
    let mut calls = Calls::connect(addr).await;
    calls.open(1, "room", &phone).await;
    calls.open(2, "me", &laptop).await;

    // As a client sends it (Serverpod's clients wrap keys): the same key.
    server
        .handle()
        .revoke_key(&format!("Bearer {phone}"))
        .await
        .unwrap();
    on_phone.expect_error("auth_revoked").await;
    assert_eq!(calls.closed(1).await, [cid(1)]);
    assert_eq!(recorder.closed_count(phone_id), 1);
    assert_eq!(recorder.closed_count(laptop_id), 0);
    assert!(on_laptop.is_quiet(Duration::from_millis(300)).await);
    assert_eq!(whoami(&mut on_laptop, "members").await.0, "42");
    let (status, body) = call(addr, &phone).await;
    assert_eq!(
        (status, &body["error"]["reason"]),
        (StatusCode::UNAUTHORIZED, &json!("revoked"))
    );
    let mut again = TestClient::connect(addr, &format!("?auth={phone}")).await;
    again.expect_error("auth_revoked").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_key_says_why_on_the_socket_and_over_http() {
    let recorder = members();
    let server = node(&recorder, None).await;
    let addr = server.local_addr();
    let sign = |claims: Value, secret: &[u8]| {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let expired = sign(
        json!({"sub": "42", "exp": now() - 600, "aud": "chat"}),
        SECRET,
    );
    let forged = sign(
        json!({"sub": "42", "exp": now() + 600, "aud": "chat"}),
        b"another secret of at least thirty-two bytes!",
    );
    let elsewhere = sign(
        json!({"sub": "42", "exp": now() + 600, "aud": "billing"}),
        SECRET,
    );
    for (key, reason, code) in [
        (&expired, "expired", "auth_expired"),
        (&forged, "bad_signature", "unauthenticated"),
        (&elsewhere, "wrong_audience", "unauthenticated"),
        (&"not a token".to_owned(), "malformed", "unauthenticated"),
    ] {
        let (status, body) = call(addr, key).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        assert_eq!(body["error"]["reason"], reason, "{body}");
        let mut client = TestClient::connect(addr, "").await;
        client.send_text(&sign_in(key)).await;
        let error = client.expect_error(code).await;
        assert!(
            error["message"].as_str().unwrap().contains(reason),
            "{error}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_revocation_on_one_node_reaches_the_sessions_of_the_others_within_a_second() {
    let redis = RedisServer::start();
    let recorders = [members(), members(), members()];
    let mut nodes = Vec::new();
    for recorder in &recorders {
        nodes.push(node(recorder, Some(&redis)).await);
    }
    let old = token("42", -10);
    let key_only = token("9", -10);
    let mut sessions = Vec::new();
    let mut sockets = Vec::new();
    for server in &nodes[1..] {
        let addr = server.local_addr();
        sessions.push(signed_in(addr, &old).await);
        sessions.push(signed_in(addr, &key_only).await);
        let mut calls = Calls::connect(addr).await;
        calls.open(1, "room", &old).await;
        calls.open(2, "me", &old).await;
        calls.open(3, "me", &key_only).await;
        sockets.push(calls);
    }

    let started = tokio::time::Instant::now();
    let reached = nodes[0].handle().revoke_user("42").await.unwrap();
    assert_eq!(
        reached,
        Some(3),
        "every node subscribes to the cluster's broadcasts"
    );
    for (client, _) in sessions.iter_mut().step_by(2) {
        client.expect_error("auth_revoked").await;
    }
    for calls in &mut sockets {
        assert_eq!(calls.closed(2).await, [cid(1), cid(2)]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A key revoked on node 0 ends its sessions on nodes 1 and 2 and is refused there.
    let started = tokio::time::Instant::now();
    nodes[0].handle().revoke_key(&key_only).await.unwrap();
    for (client, _) in sessions.iter_mut().skip(1).step_by(2) {
        client.expect_error("auth_revoked").await;
    }
    for calls in &mut sockets {
        assert_eq!(calls.closed(1).await, [cid(3)]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (status, body) = call(nodes[2].local_addr(), &key_only).await;
    assert_eq!(body["error"]["reason"], "revoked", "{status} {body}");
    for server in nodes {
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_streaming_socket_takes_a_fresh_key_in_band_and_its_calls_outlive_the_old_one() {
    let recorder = members();
    let server = node(&recorder, None).await;
    let addr = server.local_addr();
    let mut calls = Calls::connect(addr).await;
    let lapsing = token_until("42", -10, 2);
    calls.open(1, "room", &lapsing).await;
    calls.open(2, "me", &lapsing).await;
    calls.open(3, "me", &token_until("7", -10, 2)).await;

    // A refused key changes nothing, and says why.
    let refused = calls.refresh(&token_until("42", -700, -600)).await;
    assert_eq!(
        refused,
        json!({"res": "authenticationFailed", "calls": 0, "why": "expired"})
    );
    // A fresh key of user 42: both of 42's calls take it, user 7's does not.
    let fresh = calls.refresh(&token("42", 0)).await;
    assert_eq!(fresh, json!({"res": "success", "calls": 2}));
    // Past the old expiry only user 7's call closes.
    assert_eq!(calls.closed(1).await, [cid(3)]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Both of 42's calls are still open: closing one gets its `done`, not an earlier close.
    let close =
        json!({"type": "cmsc", "data": {"en": "feeds", "m": "room", "cid": cid(1), "cr": "done"}});
    calls
        .ws
        .send(Message::text(close.to_string()))
        .await
        .unwrap();
    let frame = calls.until(|frame| frame["type"] == "cmsc").await;
    assert_eq!(
        (&frame["data"]["cid"], &frame["data"]["cr"]),
        (&json!(cid(1)), &json!("done")),
        "{frame}"
    );
    // Later opens without a key of their own use the socket's fresh key.
    let frame = json!({"type": "omsc", "data": {"en": "feeds", "m": "me", "cid": cid(4), "args": "{}", "is": []}});
    calls
        .ws
        .send(Message::text(frame.to_string()))
        .await
        .unwrap();
    let answer = calls.until(|frame| frame["type"] == "omsr").await;
    assert_eq!(answer["data"]["res"], "success", "{answer}");
    let value = calls
        .until(|frame| frame["type"] == "msm" && frame["data"]["cid"] == cid(4))
        .await;
    assert_eq!(value["data"]["o"]["data"], "42");
    server.shutdown().await;
}

#[tokio::test]
async fn the_rust_client_refreshes_a_lapsing_token_at_the_notice_and_keeps_its_session_and_calls() {
    use streampod::client::{Client, Incoming, NoException};
    use streampod_tests::fixtures::Priority;

    let recorder = members();
    let server = node(&recorder, None).await;
    let base = format!("http://{}", server.local_addr());
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The fresh token is handed over once the call below is open, so it reaches the
    // streaming socket in band (a token refreshed before would only sign later opens in).
    let (calls_open, open) = tokio::sync::watch::channel(false);
    let client = Client::<Protocol>::builder(&base)
        .auth_key(token_until("42", -10, 3))
        .on_auth_expiring({
            let asked = asked.clone();
            move || {
                let (asked, mut open) = (asked.clone(), open.clone());
                async move {
                    asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = open.wait_for(|open| *open).await;
                    Some(token("42", 0))
                }
            }
        })
        .connect()
        .await
        .unwrap();
    let mut room = client
        .call_stream::<ChatMessage, NoException>("feeds", "room", json!({}), &[])
        .await
        .unwrap();
    calls_open.send_replace(true);
    tokio::time::sleep(Duration::from_millis(4_500)).await;

    assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    let chat = |content: &str| ChatMessage {
        sender_name: "t".into(),
        content: content.into(),
        timestamp: None,
        channel_id: "revocation-room".into(),
        priority: Priority::Normal,
    };
    // The session is still signed in: the login-only endpoint answers.
    client.send("members", chat("whoami")).unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Incoming::Message {
                message: Protocol::ChatMessage(answer),
                ..
            } => {
                assert!(answer.content.starts_with("42 "), "{answer:?}");
                break;
            }
            Incoming::Error { code, message } => {
                assert_eq!(code.as_str(), "auth_expiring", "{message}");
            }
            _ => {}
        }
    }
    // The streaming call too: a post after the old token's expiry reaches it.
    server
        .handle()
        .messages()
        .post_message(
            "revocation-room",
            chat("still here"),
            streampod::messages::Reach::Local,
        )
        .unwrap();
    let value = tokio::time::timeout(Duration::from_secs(10), room.next())
        .await
        .unwrap();
    assert_eq!(value.unwrap().unwrap().content, "still here");
    assert_eq!(
        recorder.events().len(),
        1,
        "one stream_opened, never closed"
    );
    client.close().await;
    server.shutdown().await;
}

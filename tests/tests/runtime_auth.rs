//! Authentication: keys from `?auth=`, the Authorization header and the `auth` command;
//! login-only and scoped endpoints; signing in and out on an open socket.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use streampod::auth::{self, AuthInfo, Scope};
use streampod::Server;
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::Protocol;
use streampod_tests::recorder::{whoami, Recorder};
use streampod_tests::{chat_json, eventually};

const ADMIN: Scope = Scope::from_static("admin");

struct Setup {
    server: Server<Protocol>,
    open: Recorder,
    members: Recorder,
    admin: Recorder,
}

/// Keys: "ann-key" → user 1; "root-key" → user 2 with the admin scope.
async fn start() -> Setup {
    let open = Recorder::default();
    let members = Recorder {
        login: true,
        ..Recorder::default()
    };
    let admin = Recorder {
        scopes: vec![ADMIN],
        ..Recorder::default()
    };
    let server = Server::builder()
        .endpoint("open", open.clone())
        .endpoint("members", members.clone())
        .endpoint("admin", admin.clone())
        .authentication(auth::from_fn(|key: String| async move {
            match key.as_str() {
                "ann-key" => Some(AuthInfo::new("1")),
                "root-key" => Some(AuthInfo::new("2").with_scopes([ADMIN])),
                _ => None,
            }
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    Setup {
        server,
        open,
        members,
        admin,
    }
}

#[tokio::test]
async fn key_from_query_header_or_command() {
    let setup = start().await;
    let addr = setup.server.local_addr();

    let mut by_query = TestClient::connect(addr, "?auth=ann-key").await;
    assert_eq!(whoami(&mut by_query, "members").await.0, "1");

    let mut by_bearer =
        TestClient::connect_with(addr, "", &[("authorization", "Bearer ann-key")]).await;
    assert_eq!(whoami(&mut by_bearer, "members").await.0, "1");

    // Serverpod's Basic form: base64 of the key.
    let mut by_basic =
        TestClient::connect_with(addr, "", &[("authorization", "Basic cm9vdC1rZXk=")]).await;
    assert_eq!(whoami(&mut by_basic, "admin").await.0, "2");

    // Both given: the header wins (URLs end up in logs; clients that can set a header should).
    let mut both = TestClient::connect_with(
        addr,
        "?auth=root-key",
        &[("authorization", "Bearer ann-key")],
    )
    .await;
    assert_eq!(whoami(&mut both, "members").await.0, "1");

    let mut by_command = TestClient::connect(addr, "").await;
    assert_eq!(whoami(&mut by_command, "open").await.0, "-");
    by_command
        .send_text(r#"{"command":"auth","args":{"key":"Bearer ann-key"}}"#)
        .await;
    assert_eq!(whoami(&mut by_command, "members").await.0, "1");
    setup.server.shutdown().await;
}

#[tokio::test]
async fn login_endpoints_ignore_unauthenticated_sessions() {
    let setup = start().await;
    let mut client = TestClient::connect(setup.server.local_addr(), "").await;
    let (_, id) = whoami(&mut client, "open").await;
    assert!(setup.open.opened(id));
    assert!(!setup.members.opened(id), "no stream_opened without login");
    assert!(
        !setup.admin.opened(id),
        "no stream_opened without the scope"
    );

    client
        .send_model("members", "ChatMessage", chat_json("hi"))
        .await;
    let error = client.expect_error("unauthenticated").await;
    assert_eq!(error["endpoint"], "members");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("requires a signed-in session"),
        "{error}"
    );

    // Signing in opens the endpoint on the same socket.
    client
        .send_text(r#"{"command":"auth","args":{"key":"ann-key"}}"#)
        .await;
    client
        .send_model("members", "ChatMessage", chat_json("hi"))
        .await;
    assert_eq!(client.next_json().await["object"]["data"]["content"], "hi");
    assert!(setup.members.opened(id));

    // A new identity is a new stream on every endpoint: the open one closed and
    // reopened under the signed-in user.
    assert_eq!(setup.open.closed_count(id), 1);
    assert_eq!(whoami(&mut client, "open").await.0, "1");

    // Signing out closes it again, exactly once.
    client
        .send_text(r#"{"command":"auth","args":{"key":null}}"#)
        .await;
    client
        .send_model("members", "ChatMessage", chat_json("hi"))
        .await;
    client.expect_error("unauthenticated").await;
    assert_eq!(setup.members.closed_count(id), 1);
    assert_eq!(setup.open.closed_count(id), 2);
    client.close().await;
    eventually("open endpoint closed", || setup.open.closed_count(id) == 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        setup.members.closed_count(id),
        1,
        "not closed a second time"
    );
    setup.server.shutdown().await;
}

#[tokio::test]
async fn missing_scope_is_forbidden() {
    let setup = start().await;
    let mut ann = TestClient::connect(setup.server.local_addr(), "?auth=ann-key").await;
    ann.send_model("admin", "ChatMessage", chat_json("hi"))
        .await;
    let error = ann.expect_error("forbidden").await;
    assert_eq!(
        error["message"],
        "endpoint 'admin' requires the scope 'admin'"
    );

    let mut root = TestClient::connect(setup.server.local_addr(), "?auth=root-key").await;
    let (user, id) = whoami(&mut root, "admin").await;
    assert_eq!(user, "2");
    assert!(setup.admin.opened(id));
    setup.server.shutdown().await;
}

#[tokio::test]
async fn a_rejected_key_is_reported_and_leaves_the_session_signed_out() {
    let setup = start().await;
    let mut client = TestClient::connect(setup.server.local_addr(), "?auth=stolen").await;
    let error = client.expect_error("unauthenticated").await;
    assert_eq!(
        error["message"],
        "the auth key was not accepted (not_accepted); the session is signed out"
    );
    assert_eq!(whoami(&mut client, "open").await.0, "-");

    client
        .send_text(r#"{"command":"auth","args":{"key":"ann-key"}}"#)
        .await;
    assert_eq!(whoami(&mut client, "members").await.0, "1");
    client
        .send_text(r#"{"command":"auth","args":{"key":"wrong"}}"#)
        .await;
    client.expect_error("unauthenticated").await;
    client
        .send_model("members", "ChatMessage", chat_json("hi"))
        .await;
    client.expect_error("unauthenticated").await;

    client.send_text(r#"{"command":"auth"}"#).await;
    let error = client.expect_error("invalid_frame").await;
    assert!(
        error["message"].as_str().unwrap().contains("args"),
        "{error}"
    );
    setup.server.shutdown().await;
}

/// Keeps every stream it opens, as a background task would, and joins `joined` in it.
#[derive(Clone, Default)]
struct Keeper {
    streams: std::sync::Arc<std::sync::Mutex<Vec<streampod::StreamingSession<Protocol>>>>,
}

impl streampod::Endpoint<Protocol> for Keeper {
    async fn stream_opened(
        &self,
        session: &streampod::StreamingSession<Protocol>,
    ) -> Result<(), streampod::EndpointError> {
        let messages = session.messages();
        messages.join("joined")?;
        let _listener = messages.add_listener("heard", |_| {})?;
        self.streams.lock().unwrap().push(session.clone());
        Ok(())
    }
}

#[tokio::test]
async fn a_stream_kept_past_an_identity_change_can_no_longer_join_or_send() {
    let keeper = Keeper::default();
    let server = Server::builder()
        .endpoint("keeper", keeper.clone())
        .authentication(auth::from_fn(|key: String| async move {
            (key == "ann-key").then(|| AuthInfo::new("1"))
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let messages = server.handle().messages();
    let mut client = TestClient::connect(server.local_addr(), "").await;
    client.round_trip().await;
    assert_eq!(messages.total_listeners(), 2);

    client
        .send_text(r#"{"command":"auth","args":{"key":"ann-key"}}"#)
        .await;
    client.round_trip().await;
    let (old, new) = {
        let streams = keeper.streams.lock().unwrap();
        assert_eq!(streams.len(), 2, "reopened under the new identity");
        (streams[0].clone(), streams[1].clone())
    };
    assert_eq!(
        messages.total_listeners(),
        2,
        "the old stream's join and callback are gone, the new stream's are there"
    );
    assert!(old.is_stream_closed() && !new.is_stream_closed());
    assert_eq!(
        old.messages().join("elsewhere"),
        Err(streampod::messages::JoinError::Closed)
    );
    assert!(old.messages().add_listener("elsewhere", |_| {}).is_err());
    assert!(matches!(
        old.send_stream_message(streampod_tests::fixtures::ChatMessage {
            sender_name: "old".into(),
            content: "leak".into(),
            channel_id: "x".into(),
            timestamp: None,
            priority: Default::default(),
        }),
        Err(streampod::SendError::Closed)
    ));
    assert_eq!(new.messages().join("elsewhere"), Ok(true));
    assert_eq!(messages.listener_count("elsewhere"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn refused_keys_are_throttled_per_address_on_sockets_and_http_calls() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use http::{Method, StatusCode};
    use streampod::{RateLimit, ServerConfig};
    use streampod_tests::captured_log::Captured;
    use streampod_tests::http::request;

    let log = Captured::install("streampod::auth=warn");
    let checked = Arc::new(AtomicUsize::new(0));
    let counter = checked.clone();
    let server = Server::<Protocol>::builder()
        .endpoint("open", Recorder::default())
        .methods("who", Who)
        .authentication(auth::from_fn(move |key: String| {
            counter.fetch_add(1, Ordering::Relaxed);
            async move { (key == "ann-key").then(|| AuthInfo::new("1")) }
        }))
        .config(ServerConfig::default().failed_auth_rate_limit(Some(RateLimit::new(1, 3))))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let signing_in = |key: &'static str| async move {
        let mut client = TestClient::connect(addr, "").await;
        client
            .send_text(&serde_json::json!({"command": "auth", "args": {"key": key}}).to_string())
            .await;
        client
    };

    // Three wrong keys, each checked and refused.
    for _ in 0..3 {
        let mut client = signing_in("wrong-key-123").await;
        client.expect_error("unauthenticated").await;
    }
    assert_eq!(checked.load(Ordering::Relaxed), 3);
    // The fourth is not even checked; nor is a right key from the same address now.
    let mut client = signing_in("wrong-key-123").await;
    let refused = client.expect_error("rate_limited").await;
    assert!(
        refused.to_string().contains("too many refused auth keys"),
        "{refused}"
    );
    let mut client = signing_in("ann-key").await;
    client.expect_error("rate_limited").await;
    let answer = request(
        addr,
        Method::POST,
        "/who/amI",
        "{}",
        &[("authorization", "Bearer ann-key")],
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        answer.body
    );
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(answer.body["error"]["code"], "rate_limited");
    assert_eq!(
        checked.load(Ordering::Relaxed),
        3,
        "no key was checked meanwhile"
    );
    // One log line for the whole flood, naming the setting.
    let text = log.text();
    assert_eq!(text.matches("too many refused keys").count(), 1, "{text}");
    assert!(text.contains("failed_auth_rate_limit"), "{text}");
    assert!(
        !text.contains("ann-key") && !text.contains("wrong-key"),
        "{text}"
    );

    // A second later a token is back: the right key signs in.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut client = signing_in("ann-key").await;
    client.until_pong().await;
    assert_eq!(checked.load(Ordering::Relaxed), 4);
    server.shutdown().await;
}

/// An HTTP method that tells who called it.
#[derive(Debug)]
pub struct Who;

#[streampod::endpoint]
impl Who {
    /// The caller's user id, if signed in.
    pub async fn am_i(&self, session: &streampod::Session<Protocol>) -> String {
        session
            .authenticated_user_id()
            .unwrap_or("nobody")
            .to_owned()
    }
}

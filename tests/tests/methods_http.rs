//! Endpoint methods over real HTTP: every status, arguments by name, exceptions that
//! clients can decode, calls that reach WebSocket clients, and concurrent calls.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// `Calc` is a fixture whose method names say what each exercises.
#![allow(missing_docs, missing_debug_implementations)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use streampod::auth::{self, AuthInfo, Scope};
use streampod::messages::Reach;
use streampod::{endpoint, EndpointError, MethodError, RateLimit, Server, ServerConfig, Session};
use streampod_tests::client::TestClient;
use streampod_tests::fixtures::{ChatMessage, Protocol, RoomNotFound};
use streampod_tests::http::{post, request};
use streampod_tests::rooms::{command, content, Rooms};

/// The endpoint under test (public: its methods are its API).
pub struct Calc;

#[endpoint]
impl Calc {
    /// No session, plain return.
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    pub async fn greet(
        &self,
        session: &Session<Protocol>,
        name: String,
        times: Option<i64>,
    ) -> Result<String, EndpointError> {
        let who = session.authenticated_user_id().unwrap_or("anonymous");
        Ok(format!(
            "{} from {who}",
            vec![format!("hi {name}"); times.unwrap_or(1).max(0) as usize].join(" ")
        ))
    }

    pub async fn echo_chat(&self, message: ChatMessage) -> ChatMessage {
        message
    }

    pub async fn weighted(&self, values: Vec<f64>, weights: Option<HashMap<String, f64>>) -> f64 {
        let scale = weights.and_then(|w| w.get("all").copied()).unwrap_or(1.0);
        values.iter().sum::<f64>() * scale
    }

    #[method(require_login)]
    pub async fn whoami(&self, session: &Session<Protocol>) -> Result<String, MethodError> {
        session
            .authenticated_user_id()
            .map(str::to_owned)
            .ok_or_else(|| MethodError::unauthenticated("unreachable: login is required"))
    }

    #[method(scopes("admin"))]
    pub async fn admin_only(&self) -> bool {
        true
    }

    pub async fn fail(&self) -> Result<(), EndpointError> {
        Err(EndpointError::msg("secret detail"))
    }

    pub async fn explode(&self) -> i64 {
        panic!("boom with a secret")
    }

    pub async fn find_room(&self, room_id: String) -> Result<String, RoomNotFound> {
        Err(RoomNotFound {
            room_id,
            message: Some("no such room".into()),
        })
    }

    pub async fn announce(
        &self,
        session: &Session<Protocol>,
        channel: String,
        text: String,
    ) -> Result<i64, EndpointError> {
        let message = ChatMessage {
            sender_name: "http".into(),
            content: text,
            timestamp: None,
            channel_id: channel.clone(),
            priority: Default::default(),
        };
        let report = session
            .messages()
            .post_message(&channel, message, Reach::Local)?;
        Ok(report.delivered().map_or(0, |n| n as i64))
    }

    pub async fn sleep(&self, ms: i64) -> i64 {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        ms
    }

    pub async fn nothing(&self) {}
}

const ADMIN: Scope = Scope::from_static("admin");

async fn start() -> Server<Protocol> {
    Server::builder()
        .methods("calc", Calc)
        .endpoint("rooms", Rooms::default())
        .authentication(auth::from_fn(|key: String| async move {
            match key.as_str() {
                "ann" => Some(AuthInfo::new("1")),
                "root" => Some(AuthInfo::new("2").with_scopes([ADMIN])),
                _ => None,
            }
        }))
        .config(ServerConfig::default().max_body_size(1024))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test]
async fn calls_answer_json_with_named_arguments() {
    let server = start().await;
    let addr = server.local_addr();
    let answer = post(addr, "/calc/add", r#"{"a":2,"b":40}"#).await;
    assert_eq!(
        (answer.status, answer.body.clone()),
        (StatusCode::OK, json!(42))
    );
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));

    let answer = post(addr, "/calc/greet", r#"{"name":"ann","times":2}"#).await;
    assert_eq!(answer.body, json!("hi ann hi ann from anonymous"));
    // Optional arguments may be left out or null.
    assert_eq!(
        post(addr, "/calc/greet", r#"{"name":"bo"}"#).await.body,
        json!("hi bo from anonymous")
    );
    assert_eq!(
        post(addr, "/calc/greet", r#"{"name":"bo","times":null}"#)
            .await
            .body,
        json!("hi bo from anonymous")
    );

    let chat = json!({"senderName": "a", "content": "b", "channelId": "c"});
    let answer = post(
        addr,
        "/calc/echoChat",
        &json!({"message": chat}).to_string(),
    )
    .await;
    assert_eq!(answer.body["__className__"], "ChatMessage");
    assert_eq!(answer.body["priority"], "normal");

    let answer = post(
        addr,
        "/calc/weighted",
        r#"{"values":[1.5,2.5],"weights":{"all":2.0}}"#,
    )
    .await;
    assert_eq!(answer.body, json!(8.0));
    assert_eq!(post(addr, "/calc/nothing", "").await.body, json!(null));

    // Serverpod's older form: the method in the body; and query parameters merged in.
    assert_eq!(
        post(addr, "/calc", r#"{"method":"add","a":1,"b":2}"#)
            .await
            .body,
        json!(3)
    );
    assert_eq!(post(addr, "/calc/add?a=5&b=6", "").await.body, json!(11));
    // A query parameter overrides the body's argument of the same name (Serverpod's
    // order), the method name included.
    assert_eq!(
        post(addr, "/calc/add?b=10", r#"{"a":1,"b":2}"#).await.body,
        json!(11)
    );
    assert_eq!(
        post(
            addr,
            "/calc?method=add",
            r#"{"method":"greet","a":1,"b":2}"#
        )
        .await
        .body,
        json!(3)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_key_in_the_query_is_refused_with_where_it_belongs() {
    let server = start().await;
    let answer = post(
        server.local_addr(),
        "/calc/greet?auth=ann",
        r#"{"name":"x"}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Authorization header"), "{message}");
    // The header works.
    let answer = request(
        server.local_addr(),
        Method::POST,
        "/calc/greet",
        r#"{"name":"x"}"#,
        &[("authorization", "Bearer ann")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    server.shutdown().await;
}

#[tokio::test]
async fn module_prefixed_endpoint_names_route_like_serverpods() {
    // Serverpod names a module's endpoints `module.endpoint` (`serverpod_auth.status`).
    let server = Server::builder()
        .methods("serverpod_auth.calc", Calc)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(
        post(addr, "/serverpod_auth.calc/add", r#"{"a":2,"b":2}"#)
            .await
            .body,
        json!(4)
    );
    assert_eq!(
        post(
            addr,
            "/serverpod_auth.calc",
            r#"{"method":"add","a":3,"b":3}"#
        )
        .await
        .body,
        json!(6)
    );
    // The bare name is another endpoint: not found, with the module's name suggested.
    let answer = post(addr, "/calc/add", r#"{"a":1,"b":1}"#).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn every_error_has_its_status_and_a_json_body() {
    let server = start().await;
    let addr = server.local_addr();
    let check =
        |answer: &streampod_tests::http::Answer, status: StatusCode, code: &str, needle: &str| {
            assert_eq!(answer.status, status, "{:?}", answer.body);
            assert_eq!(answer.content_type.as_deref(), Some("application/json"));
            assert_eq!(answer.body["error"]["code"], code, "{:?}", answer.body);
            let message = answer.body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(needle),
                "{message:?} should contain {needle:?}"
            );
        };

    check(
        &post(addr, "/calk/add", "{}").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "no endpoint named 'calk' (did you mean 'calc'?)",
    );
    check(
        &post(addr, "/calc/ad", "{}").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "endpoint 'calc' has no method 'ad' (did you mean 'add'?)",
    );
    check(
        &post(addr, "/calc/notAMethod", "{}").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "no method 'notAMethod'",
    );
    check(
        &post(addr, "/calc/add", r#"{"a":1}"#).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "missing argument 'b' of 'add'",
    );
    check(
        &post(addr, "/calc/add", r#"{"a":1,"b":2,"c":3}"#).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unexpected argument 'c'; 'add' takes a, b",
    );
    check(
        &post(addr, "/calc/add", r#"{"a":"one","b":2}"#).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "argument 'a' of 'add': invalid type: string \"one\"",
    );
    check(
        &post(addr, "/calc/add", r#"{"a":1,"#).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "JSON object of named arguments",
    );
    check(
        &post(addr, "/calc/add", "[1,2]").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "JSON object",
    );
    check(
        &post(addr, "/calc", r#"{"a":1}"#).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "name the method",
    );
    check(
        &request(addr, Method::GET, "/calc/add", "", &[]).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "POST",
    );

    check(
        &post(addr, "/calc/whoami", "{}").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "no Authorization header",
    );
    let wrong = request(
        addr,
        Method::POST,
        "/calc/whoami",
        "{}",
        &[("authorization", "Bearer nope")],
    )
    .await;
    check(
        &wrong,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "not accepted",
    );
    let ann = request(
        addr,
        Method::POST,
        "/calc/whoami",
        "{}",
        &[("authorization", "Bearer ann")],
    )
    .await;
    assert_eq!((ann.status, ann.body), (StatusCode::OK, json!("1")));
    let forbidden = request(
        addr,
        Method::POST,
        "/calc/adminOnly",
        "{}",
        &[("authorization", "Bearer ann")],
    )
    .await;
    check(
        &forbidden,
        StatusCode::FORBIDDEN,
        "forbidden",
        "requires the scope 'admin'",
    );
    let root = request(
        addr,
        Method::POST,
        "/calc/adminOnly",
        "",
        &[("authorization", "Basic cm9vdA==")],
    )
    .await;
    assert_eq!((root.status, root.body), (StatusCode::OK, json!(true)));
    // Keys in the URL are not accepted for method calls: they end up in logs.
    check(
        &post(addr, "/calc/whoami?auth=ann", "{}").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "send the key in the Authorization header",
    );

    for path in ["/calc/fail", "/calc/explode"] {
        let answer = post(addr, path, "{}").await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            answer.body,
            json!({"error": {"code": "internal", "message": "internal server error"}}),
            "no details leak"
        );
    }

    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2000));
    check(
        &post(addr, "/calc/greet", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "exceeds 1024 bytes",
    );

    // The server is still serving.
    assert_eq!(
        post(addr, "/calc/add", r#"{"a":1,"b":1}"#).await.body,
        json!(2)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn exceptions_round_trip_into_their_type() {
    let server = start().await;
    let answer = post(server.local_addr(), "/calc/findRoom", r#"{"roomId":"r9"}"#).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["className"], "RoomNotFound");
    let exception: RoomNotFound = serde_json::from_value(answer.body["data"].clone()).unwrap();
    assert_eq!(
        exception,
        RoomNotFound {
            room_id: "r9".into(),
            message: Some("no such room".into())
        }
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_call_posts_to_websocket_clients() {
    let server = start().await;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let mut client = TestClient::connect(server.local_addr(), "").await;
        command(&mut client, "join", "news").await;
        listeners.push(client);
    }
    let answer = post(
        server.local_addr(),
        "/calc/announce",
        r#"{"channel":"news","text":"from http"}"#,
    )
    .await;
    assert_eq!((answer.status, answer.body), (StatusCode::OK, json!(3)));
    for client in &mut listeners {
        let frame = client.next_json().await;
        assert_eq!(frame["endpoint"], "rooms");
        assert_eq!(content(&frame), "from http");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_concurrently() {
    let server = start().await;
    let addr = server.local_addr();
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { post(addr, "/calc/sleep", r#"{"ms":300}"#).await }))
        .collect();
    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!((answer.status, answer.body), (StatusCode::OK, json!(300)));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(20 * 300 / 2),
        "20 calls of 300 ms took {elapsed:?}: not concurrent"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn calls_past_the_per_address_rate_limit_get_429_with_retry_after() {
    let limited = Server::builder()
        .methods("calc", Calc)
        .config(ServerConfig::default().http_call_rate_limit(Some(RateLimit::new(1, 3))))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = limited.local_addr();
    for _ in 0..3 {
        assert_eq!(
            post(addr, "/calc/add", r#"{"a":1,"b":1}"#).await.status,
            StatusCode::OK
        );
    }
    // Unknown methods count too: guessing names costs the same.
    let refused = post(addr, "/calc/nope", r#"{}"#).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.body["error"]["code"], "rate_limited");
    // A token comes back after a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        post(addr, "/calc/add", r#"{"a":1,"b":1}"#).await.status,
        StatusCode::OK
    );
    limited.shutdown().await;

    // Switched off, a burst of 300 calls all run.
    let unlimited = Server::builder()
        .methods("calc", Calc)
        .config(ServerConfig::default().http_call_rate_limit(None))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    for _ in 0..300 {
        let answer = post(unlimited.local_addr(), "/calc/add", r#"{"a":1,"b":1}"#).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    unlimited.shutdown().await;
}

//! CORS for browser clients on other origins (Flutter web): Serverpod's any-origin answer
//! by default on the convenience server, a list of origins, or none; a mounted service
//! leaves CORS to its host app.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(missing_docs)]

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use streampod::{endpoint, Cors, Server};
use streampod_tests::fixtures::Protocol;
use streampod_tests::http::request;

#[derive(Debug)]
pub struct Calc;

#[endpoint]
impl Calc {
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

async fn start(cors: Option<Cors>) -> Server<Protocol> {
    let builder = Server::<Protocol>::builder().methods("calc", Calc);
    let builder = match cors {
        Some(cors) => builder.cors(cors),
        None => builder,
    };
    builder.bind("127.0.0.1:0").await.unwrap()
}

const PREFLIGHT: [(&str, &str); 3] = [
    ("origin", "https://app.example.com"),
    ("access-control-request-method", "POST"),
    (
        "access-control-request-headers",
        "authorization, content-type",
    ),
];

#[tokio::test]
async fn by_default_any_origin_may_call_like_serverpod() {
    let server = start(None).await;
    let addr = server.local_addr();
    let preflight = request(addr, Method::OPTIONS, "/calc/add", "", &PREFLIGHT).await;
    assert_eq!(preflight.status, StatusCode::OK);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(preflight
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let allowed = preflight.header("access-control-allow-headers").unwrap();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));

    let call = request(
        addr,
        Method::POST,
        "/calc/add",
        r#"{"a":2,"b":3}"#,
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(
        (call.status, call.body.clone()),
        (StatusCode::OK, serde_json::json!(5))
    );
    assert_eq!(call.header("access-control-allow-origin"), Some("*"));
    // Errors carry the header too, so the browser lets the page read them.
    let missing = request(
        addr,
        Method::POST,
        "/calc/nothing",
        "{}",
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    assert!(missing.status.is_client_error());
    // Credentials are never allowed: streampod authenticates with a header.
    assert_eq!(preflight.header("access-control-allow-credentials"), None);
    server.shutdown().await;
}

#[tokio::test]
async fn a_list_of_origins_answers_only_those() {
    let cors = Cors::origins(["https://app.example.com", "http://localhost:8080"]).unwrap();
    let server = start(Some(cors)).await;
    let addr = server.local_addr();
    let listed = request(addr, Method::OPTIONS, "/calc/add", "", &PREFLIGHT).await;
    assert_eq!(
        listed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(listed.header("vary").unwrap().contains("origin"));
    let other = request(
        addr,
        Method::POST,
        "/calc/add",
        r#"{"a":1,"b":1}"#,
        &[("origin", "https://evil.example")],
    )
    .await;
    // The call itself is answered (CORS is the browser's to enforce), without the header.
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.header("access-control-allow-origin"), None);
    server.shutdown().await;
}

#[tokio::test]
async fn disabled_sends_no_cors_headers() {
    let server = start(Some(Cors::disabled())).await;
    let answer = request(
        server.local_addr(),
        Method::OPTIONS,
        "/calc/add",
        "",
        &PREFLIGHT,
    )
    .await;
    assert_eq!(answer.header("access-control-allow-origin"), None);
    server.shutdown().await;
}

#[test]
fn origins_must_be_origins() {
    for bad in [
        "app.example.com",
        "https://app.example.com/",
        "https://a.b/path",
        "",
    ] {
        let err = Cors::origins([bad]).unwrap_err();
        assert!(err.to_string().contains("is not a web origin"), "{err}");
    }
}

#[tokio::test]
async fn a_mounted_service_leaves_cors_to_its_host_unless_asked() {
    use tower_service::Service;
    let preflight = || {
        let mut builder = http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/calc/add");
        for (name, value) in PREFLIGHT {
            builder = builder.header(name, value);
        }
        builder.body(Full::new(Bytes::new())).unwrap()
    };
    let mut mounted = Server::<Protocol>::builder()
        .methods("calc", Calc)
        .into_service()
        .unwrap();
    let answer = mounted.call(preflight()).await.unwrap();
    assert_eq!(answer.headers().get("access-control-allow-origin"), None);
    mounted.handle().shutdown().await;

    let mut with_cors = Server::<Protocol>::builder()
        .methods("calc", Calc)
        .cors(Cors::any_origin())
        .into_service()
        .unwrap();
    let answer = with_cors.call(preflight()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["access-control-allow-origin"], "*");
    with_cors.handle().shutdown().await;
}

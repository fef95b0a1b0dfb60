//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT), through the tower service under
//! hyper's HTTP/2 server and through the convenience server (h2c, prior knowledge): a
//! real HTTP/2 client (hyper's) opens a `streampod.v1` stream with `CONNECT :protocol
//! websocket` and calls an HTTP method on the same connection; the method's post
//! reaches the stream. Over TLS the convenience server offers `h2` by ALPN.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use streampod::messages::Reach;
use streampod::service::RemoteAddr;
use streampod::{endpoint, MethodError, Server, Session, StreampodService};
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};
use streampod_tests::rooms::Rooms;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;

/// Posts to a room over HTTP.
#[derive(Debug)]
pub struct Post;

#[endpoint]
impl Post {
    /// Posts `text` to `room`; how many listeners got it.
    pub async fn to(
        &self,
        session: &Session<Protocol>,
        room: String,
        text: String,
    ) -> Result<i64, MethodError> {
        let message = ChatMessage {
            sender_name: "http2".into(),
            content: text,
            timestamp: None,
            channel_id: room.clone(),
            priority: Priority::Normal,
        };
        let delivery = session
            .messages()
            .post_message(&room, message, Reach::Local)?;
        Ok(i64::try_from(delivery.delivered().unwrap_or(0)).unwrap_or(i64::MAX))
    }
}

/// The service behind hyper's HTTP/2 server (prior knowledge, extended CONNECT on).
async fn serve_http2(service: StreampodService<Protocol>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let service = service.clone();
            tokio::spawn(async move {
                let handler = hyper::service::service_fn(move |mut request| {
                    request.extensions_mut().insert(RemoteAddr(peer));
                    let mut service = service.clone();
                    async move { tower_service::Service::call(&mut service, request).await }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .enable_connect_protocol()
                    .serve_connection(TokioIo::new(tcp), handler)
                    .await;
            });
        }
    });
    addr
}

fn frame(json: &Value) -> Message {
    Message::text(json.to_string())
}

fn builder() -> streampod::ServerBuilder<Protocol> {
    Server::<Protocol>::builder()
        .endpoint("rooms", Rooms::default())
        .methods("post", Post)
}

#[tokio::test]
async fn the_tower_service_under_an_http2_server_serves_a_stream_and_calls_on_one_connection() {
    let service = builder().into_service().unwrap();
    let addr = serve_http2(service.clone()).await;
    stream_and_call_on_one_connection(addr).await;
    service.handle().shutdown().await;
}

#[tokio::test]
async fn the_convenience_server_speaks_http2_with_prior_knowledge() {
    let server = builder().bind("127.0.0.1:0").await.unwrap();
    stream_and_call_on_one_connection(server.local_addr()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_convenience_server_offers_http2_by_alpn_over_tls() {
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let identity = streampod::tls::TlsIdentity::from_pem(
        certified.cert.pem().as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = builder().tls(identity).bind("127.0.0.1:0").await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stream_and_call_over(tls, server.local_addr()).await;
    server.shutdown().await;
}

/// Opens a stream and calls a method on one HTTP/2 connection to `addr`.
async fn stream_and_call_on_one_connection(addr: SocketAddr) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    stream_and_call_over(tcp, addr).await;
}

/// Opens a stream and calls a method on one HTTP/2 connection over `io` (to `addr`).
async fn stream_and_call_over(
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    addr: SocketAddr,
) {
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    // The server's SETTINGS (extended CONNECT allowed) come first.
    sender.ready().await.unwrap();

    let mut connect = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}/websocket"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "streampod.v1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    connect
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = sender.send_request(connect).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["sec-websocket-protocol"], "streampod.v1");
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .unwrap();
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    };
    ws.send(frame(
        &json!({"endpoint": "rooms", "object": {"className": "ChatMessage",
        "data": {"senderName": "h2", "content": "join", "channelId": "h2-room"}}}),
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut ws).await["object"]["data"]["content"], "ack:join");

    // A method call on the same connection, another stream of it.
    let call = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/post/to"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"room":"h2-room","text":"over h2"}"#,
        )))
        .unwrap();
    let answer = sender.send_request(call).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.version(), http::Version::HTTP_2);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"1", "the stream's session got it");
    assert_eq!(next(&mut ws).await["object"]["data"]["content"], "over h2");
}

//! The example mounted under `/rt` in an axum app (`example_server::axum_app`), over real
//! sockets: the app's own route still answers, chat streams and method calls go through
//! the mount, CORS preflights are answered by the app's layer, and the peer address
//! comes from axum's `ConnectInfo`.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use streampod::auth::{self, AuthInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The axum app on a free loopback port, with `token-N` signing in as user N.
async fn start() -> (
    SocketAddr,
    streampod::ServerHandle<example_server::Protocol>,
) {
    let service = example_server::server()
        .authentication(auth::from_fn(|key: String| async move {
            key.strip_prefix("token-").map(AuthInfo::new)
        }))
        .into_service()
        .unwrap();
    let handle = service.handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example_server::axum_app::app(service);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, handle)
}

/// One HTTP/1.1 request on a fresh connection: the status line, headers and body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the response in time")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn post(path: &str, token: &str, body: &Value) -> String {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nOrigin: http://page.example\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn connect(addr: SocketAddr, path: &str) -> Socket {
    tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .unwrap()
        .0
}

async fn send(socket: &mut Socket, endpoint: &str, class_name: &str, data: Value) {
    let frame = json!({"endpoint": endpoint, "object": {"className": class_name, "data": data}});
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next frame of `class_name`, skipping others.
async fn next_of(socket: &mut Socket, class_name: &str) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket open")
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["object"]["className"] == class_name {
                return value;
            }
        }
    }
}

/// A ping round trip: everything sent before it has been handled.
async fn sync(socket: &mut Socket) {
    socket
        .send(Message::text(r#"{"command":"ping"}"#))
        .await
        .unwrap();
    loop {
        if let Some(Ok(Message::Text(text))) = socket.next().await {
            if text.contains("pong") {
                return;
            }
        }
    }
}

#[tokio::test]
async fn the_apps_own_route_still_answers() {
    let (addr, _handle) = start().await;
    let (status, _, body) = http(
        addr,
        "GET /api/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["hello"],
        "from axum"
    );
    // streampod's routes live under the mount only.
    let (status, _, _) = http(
        addr,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, body) = http(
        addr,
        "GET /rt/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "ok"
    );
    let (status, head, body) = http(
        addr,
        "GET /rt/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("src=\"js/main.js\""), "the chat page");
    // Its scripts, relative to the page, come through the mount too.
    for script in [
        "js/main.js",
        "js/generated/protocol.js",
        "js/generated/streampod.js",
    ] {
        let (status, head, body) = http(
            addr,
            &format!("GET /rt/{script} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200, "{script}");
        assert!(head.contains("content-type: text/javascript"), "{head}");
        assert!(
            body.contains("export ") || body.contains("import "),
            "{script}"
        );
    }
}

#[tokio::test]
async fn chat_works_through_the_mount() {
    let (addr, handle) = start().await;
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut socket = connect(addr, "/rt/websocket").await;
        send(
            &mut socket,
            "chat",
            "ChannelSubscription",
            json!({"channelId": "lobby", "subscribe": true}),
        )
        .await;
        sync(&mut socket).await;
        members.push(socket);
    }
    send(
        &mut members[0],
        "chat",
        "ChatMessage",
        json!({"senderName": "a", "content": "through axum", "channelId": "lobby"}),
    )
    .await;
    for member in &mut members {
        let frame = next_of(member, "ChatMessage").await;
        assert_eq!(frame["object"]["data"]["content"], "through axum");
    }
    assert_eq!(handle.session_count(), 2);
    // The peer address came from axum's ConnectInfo, not 0.0.0.0.
    for session in handle.sessions() {
        assert!(session.remote_addr().ip().is_loopback(), "{session:?}");
    }
    // Outside the mount there is no stream.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/websocket"))
            .await
            .is_err()
    );
    // Shutdown closes the streams with 1001 while axum keeps serving its routes.
    handle.shutdown().await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match members[0].next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(u16::from(closed.unwrap().code), 1001);
}

#[tokio::test]
async fn method_calls_and_cors_preflights_go_through_the_mount() {
    let (addr, _handle) = start().await;
    let mut device = connect(addr, "/rt/websocket?auth=token-7").await;
    sync(&mut device).await;

    let (status, head, _) = http(
        addr,
        "OPTIONS /rt/notification/sendNotification HTTP/1.1\r\nHost: x\r\nOrigin: http://page.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        status == 200 || status == 204,
        "preflight: {status}\n{head}"
    );
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("access-control-allow-methods"), "{head}");

    let (status, head, body) = http(
        addr,
        &post(
            "/rt/notification/sendNotification",
            "token-3",
            &json!({"targetUserId": 7, "message": "via axum"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "1", "one device of user 7");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    let note = next_of(&mut device, "NotificationMessage").await;
    assert_eq!(note["object"]["data"]["text"], "via axum");

    // Errors keep streampod's JSON shape through the layers.
    let (status, _, body) = http(
        addr,
        &post(
            "/rt/notification/sendNotification",
            "wrong",
            &json!({"targetUserId": 7, "message": "x"}),
        ),
    )
    .await;
    assert_eq!(status, 401);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn into_router_nests_like_any_axum_router() {
    let service = example_server::server().into_service().unwrap();
    let handle = service.handle();
    let app = axum::Router::new().nest("/live", service.into_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let (status, _, body) = http(
        addr,
        "GET /live/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut socket = connect(addr, "/live/websocket").await;
    sync(&mut socket).await;
    assert_eq!(handle.session_count(), 1);
    // Without ConnectInfo the peer is unknown, and says so.
    let peer = handle.sessions()[0].remote_addr();
    assert!(peer.ip().is_unspecified(), "{peer}");
    handle.shutdown().await;
}

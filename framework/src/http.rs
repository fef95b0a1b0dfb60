//! HTTP routing: `GET /websocket` upgrades, `GET /health`, JSON errors for the rest.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::connection;
use crate::connections::Ticket;
use crate::protocol::ModelSet;
use crate::server::ServerInner;

/// The response body type.
pub(crate) type Body = Full<Bytes>;

/// Serves HTTP/1.1 on one accepted TCP connection.
pub(crate) async fn serve_connection<P: ModelSet>(
    server: Arc<ServerInner<P>>,
    stream: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
) {
    let ticket = Arc::new(ticket);
    let service = {
        let (server, ticket) = (server.clone(), ticket.clone());
        service_fn(move |request| {
            let (server, ticket) = (server.clone(), ticket.clone());
            async move {
                ticket.busy();
                let response = route(&server, request, peer, &ticket).await;
                if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                    ticket.idle();
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.config.http_header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = ticket.evicted().cancelled() => {
            tracing::debug!(target: "streampod::http", %peer, "closed a waiting connection to admit a new one");
            return;
        }
        () = server.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(target: "streampod::http", %peer, %error, "HTTP connection ended with an error");
    }
}

async fn route<P: ModelSet>(
    server: &Arc<ServerInner<P>>,
    request: Request<Incoming>,
    peer: SocketAddr,
    ticket: &Arc<Ticket>,
) -> Response<Body> {
    if request.method() == Method::GET {
        if let Some(file) = server.files.iter().find(|f| f.path == request.uri().path()) {
            let mut response = Response::new(Body::from(Bytes::from_static(file.body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            );
            return response;
        }
    }
    if let Some(path) = &server.config.metrics_path {
        if request.method() == Method::GET && request.uri().path() == path {
            let mut response = Response::new(Body::from(server.metrics.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return response;
        }
    }
    match request.uri().path() {
        "/websocket" => upgrade(server, request, peer, ticket),
        "/health" if request.method() == Method::GET => json(StatusCode::OK, health(server)),
        "/health" => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET /health",
        ),
        _ => crate::call::handle(server, request, peer).await,
    }
}

/// `{"status":"ok","sessions":N,"connections":N}`, plus `"cluster":"<state>"` on a cluster node (the
/// node still serves its own users while Redis is away, so the status stays ok).
fn health<P: ModelSet>(server: &ServerInner<P>) -> Vec<u8> {
    let mut body = serde_json::json!({
        "status": "ok",
        "sessions": server.sessions.len(),
        "connections": server.connections.open(),
    });
    if let Some(state) = server.messages.cluster_state() {
        body["cluster"] = serde_json::Value::from(state.to_string());
    }
    body.to_string().into_bytes()
}

/// Answers a WebSocket handshake and hands the upgraded connection to a session task.
fn upgrade<P: ModelSet>(
    server: &Arc<ServerInner<P>>,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    ticket: &Arc<Ticket>,
) -> Response<Body> {
    if request.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "open the stream with GET /websocket",
        );
    }
    let headers = request.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "GET /websocket needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = error(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported_version",
            "only WebSocket version 13 is supported",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    if request.version() != http::Version::HTTP_11 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a WebSocket upgrade needs HTTP/1.1",
        );
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| is_valid_key(key.as_bytes()))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Sec-WebSocket-Key must be the base64 of 16 bytes",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let auth_key = auth_key(&request);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let session_server = server.clone();
    // The socket's place is held until the WebSocket ends.
    let ticket = ticket.clone();
    let handshake_timeout = server.config.websocket_handshake_timeout;
    server.tasks.spawn(async move {
        // Bound first: a match on the timeout would keep its timer alive (and in this
        // task's memory) for the whole life of the socket.
        let upgraded = tokio::time::timeout(handshake_timeout, on_upgrade).await;
        match upgraded {
            Ok(Ok(upgraded)) => connection::run(session_server, upgraded, peer, auth_key).await,
            Ok(Err(error)) => tracing::debug!(target: "streampod::http", %peer, %error, "WebSocket upgrade failed"),
            Err(_) => tracing::debug!(target: "streampod::http", %peer, "WebSocket upgrade timed out"),
        }
        drop(ticket);
    });
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Whether `key` is a `Sec-WebSocket-Key`: the base64 of 16 bytes (RFC 6455 4.1).
fn is_valid_key(key: &[u8]) -> bool {
    use base64::Engine as _;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// The auth key from the `Authorization` header, or else from `?auth=` (wrapped form;
/// unwrapped later). The header wins: URLs end up in logs and browser history, so
/// clients that can set a header should.
fn auth_key<B>(request: &Request<B>) -> Option<String> {
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    from_header.or_else(|| {
        request.uri().query().and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "auth")
                .map(|(_, value)| value.into_owned())
        })
    })
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON error response: `{"error":{"code":…,"message":…}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    json(status, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_key_from_query_or_header() {
        let request = Request::builder()
            .uri("/websocket?x=1&auth=a%20b%2Bc")
            .body(())
            .unwrap();
        assert_eq!(auth_key(&request).as_deref(), Some("a b+c"));
        let request = Request::builder()
            .uri("/websocket")
            .header("authorization", "Bearer tok")
            .body(())
            .unwrap();
        assert_eq!(auth_key(&request).as_deref(), Some("Bearer tok"));
        let request = Request::builder().uri("/websocket").body(()).unwrap();
        assert_eq!(auth_key(&request), None);
        let request = Request::builder()
            .uri("/websocket?auth=from-url")
            .header("authorization", "Bearer from-header")
            .body(())
            .unwrap();
        assert_eq!(auth_key(&request).as_deref(), Some("Bearer from-header"));
    }

    #[test]
    fn websocket_keys_are_16_bytes_of_base64() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"a"));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZSE="));
    }
}

//! The WebSocket handshake: checks the upgrade request, answers 101 and hands the
//! upgraded connection to a session task.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use futures_util::FutureExt;
use http::{Method, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::response::{error, ResponseBody};
use super::state::ServiceState;
use crate::transport::endpoint_socket;
use crate::transport::method_socket;
use crate::service::admission::Ticket;
use crate::protocol::frame::EXTENDED_SUBPROTOCOL;
use crate::protocol::ModelSet;
use crate::ws::deflate::Deflate;

/// The convenience server's place for this TCP connection, as a request extension: an
/// upgrade keeps it until the WebSocket ends, so the connection cap counts sockets.
#[derive(Debug, Clone)]
pub(crate) struct HeldConnection {
    /// Only held: dropping it frees the connection's place.
    pub(crate) _ticket: Arc<Ticket>,
}

/// Which protocol a WebSocket path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// `/websocket`: endpoint streams (`stream_opened`, `handle_stream_message`).
    Endpoints,
    /// `/v1/websocket`: streaming methods, many calls per socket.
    Methods,
}

impl SocketKind {
    /// The kind served at `path` (below the prefix), if any.
    pub(crate) fn at(path: &str) -> Option<Self> {
        match path {
            "/websocket" => Some(Self::Endpoints),
            "/v1/websocket" => Some(Self::Methods),
            _ => None,
        }
    }
}

/// A WebSocket handshake that passed every check: what the 101 answer and the session
/// need.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The protocol the socket speaks.
    pub(crate) kind: SocketKind,
    /// `Sec-WebSocket-Accept`, derived from the client's key; `None` for a WebSocket
    /// over HTTP/2 (RFC 8441), which is answered `200` without one.
    accept: Option<String>,
    /// Whether the client offered streampod's extended frames (the subprotocol).
    pub(crate) extended: bool,
    /// The auth key from the header or the query, if any.
    pub(crate) auth_key: Option<String>,
    /// `permessage-deflate`, if the client offered it and the server accepts it.
    pub(crate) deflate: Option<Deflate>,
}

impl Accepted {
    /// The 101 answer's head, for a server that writes it to the socket itself.
    pub(crate) fn response_head(&self) -> Vec<u8> {
        let mut head = Vec::with_capacity(160);
        head.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: ");
        head.extend_from_slice(self.accept.as_deref().unwrap_or_default().as_bytes());
        if self.extended {
            head.extend_from_slice(b"\r\nsec-websocket-protocol: ");
            head.extend_from_slice(EXTENDED_SUBPROTOCOL.as_bytes());
        }
        if let Some(deflate) = self.deflate {
            head.extend_from_slice(b"\r\nsec-websocket-extensions: ");
            head.extend_from_slice(deflate.response().as_bytes());
        }
        head.extend_from_slice(b"\r\n\r\n");
        head
    }
}

/// Checks a WebSocket handshake: the answer to give when it cannot be accepted.
pub(crate) fn check<P: ModelSet, B>(
    server: &ServiceState<P>,
    request: &Request<B>,
    kind: SocketKind,
) -> Result<Accepted, Box<Response<ResponseBody>>> {
    let headers = request.headers();
    // HTTP/2 (RFC 8441): a CONNECT whose `:protocol` is `websocket`, on a stream of its own.
    let over_http2 = request.version() == http::Version::HTTP_2
        && request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"));
    if !over_http2 {
        check_http1(request)?;
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
        return Err(Box::new(response));
    }
    let accept = if over_http2 {
        None
    } else {
        let Some(key) = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .filter(|key| is_valid_key(key.as_bytes()))
        else {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Sec-WebSocket-Key must be the base64 of 16 bytes",
            )));
        };
        Some(derive_accept_key(key.as_bytes()))
    };
    if let Some((code, message)) = server.handle.refuses_sockets() {
        return Err(Box::new(error(StatusCode::SERVICE_UNAVAILABLE, code, message)));
    }
    Ok(Accepted {
        kind,
        accept,
        // Streaming-method sockets have one protocol, Serverpod's.
        extended: kind == SocketKind::Endpoints && offers_extended(headers),
        auth_key: auth_key(request),
        deflate: server
            .streams
            .config
            .websocket_compression
            .and_then(|min_size| {
                let offers = headers
                    .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
                    .iter()
                    .filter_map(|value| value.to_str().ok());
                Some(Deflate::negotiate(offers)?.sending_from(min_size))
            }),
    })
}

/// The HTTP/1.1 side of a handshake: `GET` with `Connection: Upgrade` and
/// `Upgrade: websocket`.
fn check_http1<B>(request: &Request<B>) -> Result<(), Box<Response<ResponseBody>>> {
    if request.method() != Method::GET {
        return Err(Box::new(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "open the stream with GET on the websocket path (or CONNECT with :protocol websocket over HTTP/2)",
        )));
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
        return Err(Box::new(error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "the websocket path needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
        )));
    }
    if request.version() != http::Version::HTTP_11 {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a WebSocket upgrade needs HTTP/1.1, or HTTP/2's extended CONNECT (RFC 8441)",
        )));
    }
    Ok(())
}

/// The session of an accepted socket: it serves `io` until the socket closes.
pub(crate) fn session<P: ModelSet>(
    server: &ServiceState<P>,
    accepted: Accepted,
    io: impl crate::transport::context::Io,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    match accepted.kind {
        SocketKind::Endpoints => futures_util::future::Either::Left(endpoint_socket::run(
            server.streams.clone(),
            io,
            peer,
            accepted.auth_key,
            accepted.extended,
            accepted.deflate,
        )),
        SocketKind::Methods => futures_util::future::Either::Right(method_socket::run(
            server.method_sockets.clone(),
            io,
            peer,
            accepted.auth_key,
            accepted.deflate,
        )),
    }
}

/// Answers a WebSocket handshake and hands the upgraded connection to a session task.
pub(crate) fn upgrade<P: ModelSet, B>(
    server: &Arc<ServiceState<P>>,
    mut request: Request<B>,
    peer: SocketAddr,
    kind: SocketKind,
) -> Response<ResponseBody> {
    let accepted = match check(server, &request, kind) {
        Ok(accepted) => accepted,
        Err(refused) => return *refused,
    };
    let accept = accepted.accept.clone();
    let extended = accepted.extended;
    let deflate = accepted.deflate;
    let on_upgrade = hyper::upgrade::on(&mut request);
    let server_state = server.clone();
    // The socket's place is held until the WebSocket ends.
    let ticket = request.extensions_mut().remove::<HeldConnection>();
    let handshake_timeout = server.streams.config.websocket_handshake_timeout;
    let tasks = server.handle.tasks().clone();
    server.handle.tasks().spawn(async move {
        // Bound first: a match on the timeout would keep its timer alive (and in this
        // task's memory) for the whole life of the socket.
        let upgraded = tokio::time::timeout(handshake_timeout, on_upgrade).await;
        match upgraded {
            Ok(Ok(upgraded)) => {
                let session = session(
                    &server_state,
                    accepted,
                    hyper_util::rt::TokioIo::new(upgraded),
                    peer,
                );
                drop(server_state);
                // A task of its own: this one's state (the handshake's timer, what it
                // captured) is freed now instead of kept for the socket's whole life.
                tasks.spawn(session.map(move |()| drop(ticket)));
            }
            Ok(Err(error)) => tracing::debug!(target: "streampod::http", %peer, %error, "WebSocket upgrade failed"),
            Err(_) => tracing::debug!(target: "streampod::http", %peer, "WebSocket upgrade timed out"),
        }
    });
    let mut response = Response::new(ResponseBody::default());
    if accept.is_some() {
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    }
    let headers = response.headers_mut();
    if let Some(accept) = accept {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
    }
    if extended {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(EXTENDED_SUBPROTOCOL),
        );
    }
    if let Some(deflate) = deflate.and_then(|d| HeaderValue::from_str(&d.response()).ok()) {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, deflate);
    }
    response
}

/// Whether the client offers streampod's extended frames among its subprotocols.
fn offers_extended(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offered| offered.trim() == EXTENDED_SUBPROTOCOL)
}

/// Whether `key` is a `Sec-WebSocket-Key`: the base64 of 16 bytes (RFC 6455 4.1).
fn is_valid_key(key: &[u8]) -> bool {
    use base64::Engine as _;
    // 24 characters decode to at most 18 bytes: no allocation.
    let mut decoded = [0_u8; 18];
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode_slice(key, &mut decoded)
            .is_ok_and(|len| len == 16)
}

/// The auth key from the `Authorization` header, or else from `?auth=` (wrapped form;
/// unwrapped later). The header wins: URLs end up in logs and browser history, so
/// clients that can set a header should.
pub(crate) fn auth_key<B>(request: &Request<B>) -> Option<String> {
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

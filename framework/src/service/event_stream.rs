//! The HTTP fallback's two routes (see `transport::event_stream`):
//!
//! - `GET /websocket/events` opens a session — the one a `streampod.v1` WebSocket
//!   gets, signed in with `Authorization` or `?auth=` as an upgrade is — and streams
//!   its frames as Server-Sent Events: first `event: session` naming the session's
//!   token, then one `data:` event per frame, `: ping` comments for keepalive, and
//!   `event: close` (`{"code":…,"reason":…}`) when the session closes;
//! - `POST /websocket/events/<token>` sends the session frames: a JSON array of frames,
//!   each what the client would have sent as one WebSocket text message. `200
//!   {"accepted":n}` once the session has read them all, in order.

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::value::RawValue;

use super::call::{admit, read_body, RequestBody};
use super::response::{self, error, method_error, ResponseBody};
use super::state::ServiceState;
use super::upgrade::auth_key;
use crate::methods::MethodError;
use crate::protocol::ModelSet;
use crate::transport::event_stream::PostError;

/// Where a fallback session opens.
const OPEN_PATH: &str = "/websocket/events";

/// A request to one of the fallback's routes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/websocket/events`: open a session.
    Open,
    /// `/websocket/events/<token>`: frames for the session of this token.
    Post(&'a str),
}

impl<'a> Route<'a> {
    /// The route `path` (below the prefix) names, if any.
    pub(crate) fn at(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix(OPEN_PATH)?;
        match rest {
            "" => Some(Self::Open),
            _ => rest
                .strip_prefix('/')
                .filter(|token| !token.is_empty() && !token.contains('/'))
                .map(Self::Post),
        }
    }
}

/// Answers a request to `route`.
pub(crate) async fn handle<P: ModelSet, B: RequestBody>(
    server: &ServiceState<P>,
    request: Request<B>,
    route: Route<'_>,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    match route {
        Route::Open if request.method() == Method::GET => open(server, &request, peer),
        Route::Open => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "open an event stream with GET",
        ),
        Route::Post(token) if request.method() == Method::POST => {
            let token = token.to_owned();
            match post(server, request, &token, peer).await {
                Ok(accepted) => response::json(
                    StatusCode::OK,
                    serde_json::json!({ "accepted": accepted }).to_string().into_bytes(),
                ),
                Err(refused) => method_error(&refused),
            }
        }
        Route::Post(_) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "send a session frames with POST",
        ),
    }
}

/// Opens a session and answers with its event stream.
fn open<P: ModelSet, B>(
    server: &ServiceState<P>,
    request: &Request<B>,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    if let Some((code, message)) = server.handle.refuses_sockets() {
        return error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    }
    let events = server.event_streams.open(
        &server.streams,
        server.handle.tasks(),
        peer,
        auth_key(request),
    );
    let mut response = Response::new(ResponseBody::streaming(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Reverse proxies that buffer answers (nginx) pass this one through as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Hands the POSTed frames to the session of `token`; how many it took.
async fn post<P: ModelSet, B: RequestBody>(
    server: &ServiceState<P>,
    request: Request<B>,
    token: &str,
    peer: SocketAddr,
) -> Result<usize, MethodError> {
    admit(server, peer)?;
    let config = &server.streams.config;
    let body = read_body(request, config.max_body_size, config.http_body_timeout).await?;
    let frames: Vec<&RawValue> = serde_json::from_slice(&body).map_err(|_| {
        MethodError::bad_request("the body must be a JSON array of frames (JSON objects)")
    })?;
    server
        .event_streams
        .post(token, &frames, config.http_body_timeout)
        .await
        .map_err(|refused| match refused {
            PostError::UnknownSession => {
                MethodError::new(StatusCode::NOT_FOUND, "unknown_session", &refused)
            }
            PostError::Ended { .. } | PostError::Stalled { .. } => {
                MethodError::new(StatusCode::GONE, "session_ended", &refused)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_below_the_prefix() {
        assert_eq!(Route::at("/websocket/events"), Some(Route::Open));
        assert_eq!(Route::at("/websocket/events/abc"), Some(Route::Post("abc")));
        assert_eq!(Route::at("/websocket/events/"), None);
        assert_eq!(Route::at("/websocket/events/a/b"), None);
        assert_eq!(Route::at("/websocket/eventsx"), None);
        assert_eq!(Route::at("/websocket"), None);
    }
}

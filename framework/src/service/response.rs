//! The responses the service writes: JSON bodies, JSON errors, and event streams.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::methods::MethodError;

/// The body of every response [`StreampodService`](super::StreampodService) writes: one
/// buffer of known length, or (an event stream) chunks as they are produced, until the
/// stream ends.
#[derive(Debug, Default)]
pub struct ResponseBody(Kind);

#[derive(Debug)]
enum Kind {
    Full(Full<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Default for Kind {
    fn default() -> Self {
        Self::Full(Full::default())
    }
}

impl ResponseBody {
    /// A body that sends each chunk `chunks` yields, and ends when its sender is dropped.
    pub(crate) fn streaming(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self(Kind::Stream(chunks))
    }
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        Self(Kind::Full(Full::new(bytes)))
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<String> for ResponseBody {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.0 {
            Kind::Full(full) => Pin::new(full).poll_frame(cx),
            Kind::Stream(chunks) => chunks
                .poll_recv(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(full) => full.is_end_stream(),
            Kind::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(full) => full.size_hint(),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

/// A response with `body` as `content_type`.
pub(crate) fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    with_type(status, "application/json", body)
}

/// The answer that carries `error`: its status, its JSON body, and `Retry-After` when
/// it has one.
pub(crate) fn method_error(error: &MethodError) -> Response<ResponseBody> {
    let mut response = json(error.status(), error.body().as_bytes().to_vec());
    if let Some(seconds) = error.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A JSON error response: `{"error":{"code":…,"message":…}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    json(status, body.to_string().into_bytes())
}

//! The responses the service writes: JSON bodies and JSON errors.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The body of every response [`StreampodService`](super::StreampodService) writes: one
/// buffer, known length.
pub type ResponseBody = Full<Bytes>;

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

/// A JSON error response: `{"error":{"code":…,"message":…}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    json(status, body.to_string().into_bytes())
}

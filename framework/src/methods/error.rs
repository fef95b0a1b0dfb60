//! How a method fails: [`MethodError`] (an HTTP status, a JSON body, a logged detail)
//! and the conversions into it.

use std::fmt;

use http::StatusCode;


use crate::auth::Refusal;
use crate::cluster::ClusterError;
use crate::endpoint::definition::EndpointError;
use crate::messages::{JoinError, PostError};
use crate::protocol::SerializableException;


/// A failed method call: an HTTP status and a JSON body.
pub struct MethodError {
    status: StatusCode,
    body: String,
    /// What the log gets for a 500; never sent.
    detail: Option<String>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u32>,
    /// Whether the body is a serializable exception, `{"className":…,"data":…}`.
    exception: bool,
}

impl fmt::Debug for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodError")
            .field("status", &self.status)
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl std::error::Error for MethodError {}

impl MethodError {
    /// An error with `status` and body `{"error":{"code":…,"message":…}}`.
    pub fn new(status: StatusCode, code: &str, message: impl fmt::Display) -> Self {
        let body = serde_json::json!({"error": {"code": code, "message": message.to_string()}});
        Self {
            status,
            body: body.to_string(),
            detail: None,
            retry_after: None,
            exception: false,
        }
    }

    /// 429 `rate_limited`, to try again after `retry_after` seconds.
    pub(crate) fn rate_limited(message: impl fmt::Display, retry_after: u32) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        error.retry_after = Some(retry_after);
        error
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl fmt::Display) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 401 `unauthenticated` for a key that was refused, the body saying why in
    /// `reason` (`expired`, `bad_signature`, `revoked`, …).
    pub(crate) fn refused_key(message: impl fmt::Display, refusal: Refusal) -> Self {
        let body = serde_json::json!({"error": {
            "code": "unauthenticated",
            "message": message.to_string(),
            "reason": refusal.as_str(),
        }});
        Self {
            body: body.to_string(),
            ..Self::unauthenticated("")
        }
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl fmt::Display) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 with a fixed message; `detail` goes to the log only.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self {
            detail: Some(detail.to_string()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal server error",
            )
        }
    }

    /// A generated exception as Serverpod sends it: 400 with `{"className":…,"data":…}`.
    pub fn exception<E: SerializableException>(exception: &E) -> Self {
        match serde_json::to_string(exception) {
            Ok(data) => Self {
                status: StatusCode::BAD_REQUEST,
                body: format!(
                    r#"{{"className":{},"data":{data}}}"#,
                    serde_json::json!(E::CLASS_NAME)
                ),
                detail: None,
                retry_after: None,
                exception: true,
            },
            Err(error) => Self::internal(format_args!("cannot encode {}: {error}", E::CLASS_NAME)),
        }
    }

    /// A cluster publish that failed: 503 `cluster_unavailable` with `Retry-After: 1`
    /// when the post was certainly not published (Redis unreachable, publish queue
    /// full: retrying is safe), 504 `cluster_unconfirmed` without it when the post may
    /// have gone out anyway (retrying may deliver it twice).
    pub fn cluster(error: &ClusterError) -> Self {
        if error.may_have_been_delivered() {
            Self::new(StatusCode::GATEWAY_TIMEOUT, "cluster_unconfirmed", error)
        } else {
            Self {
                retry_after: Some(1),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable", error)
            }
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Seconds the client should wait before retrying (`Retry-After`), when set.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    /// The JSON body.
    pub fn body(&self) -> &str {
        &self.body
    }

    pub(crate) fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// Whether the body is a serializable exception (`{"className":…,"data":…}`), which
    /// a streaming call sends as `msse`.
    pub fn is_exception(&self) -> bool {
        self.exception
    }
}

/// Errors a method may return in `Result<R, E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned as an endpoint method error",
    note = "return `EndpointError` (500), `MethodError` (any status) or an `exception:` model (400)"
)]
pub trait IntoMethodError {
    /// The status and body to answer with.
    fn into_method_error(self) -> MethodError;

    /// The exception class a client sees (for the [method schema](crate::ServerBuilder::method_schema)),
    /// or `None` when the error is no typed exception.
    fn exception_class() -> Option<&'static str> {
        None
    }
}

impl IntoMethodError for MethodError {
    fn into_method_error(self) -> MethodError {
        self
    }
}

/// A cluster failure behind the error answers as [`MethodError::cluster`] says; any
/// other error is a 500.
impl IntoMethodError for EndpointError {
    fn into_method_error(self) -> MethodError {
        let inner = self.into_inner();
        let cluster = match inner.downcast_ref::<PostError>() {
            Some(PostError::Cluster(error)) => Some(error),
            _ => inner.downcast_ref::<ClusterError>(),
        };
        match cluster {
            Some(error) => MethodError::cluster(error),
            None => MethodError::internal(inner),
        }
    }
}

/// A failed post: [`MethodError::cluster`] for cluster failures, 500 otherwise.
impl From<PostError> for MethodError {
    fn from(error: PostError) -> Self {
        match &error {
            PostError::Cluster(cluster) => Self::cluster(cluster),
            _ => Self::internal(error),
        }
    }
}

/// A join, stream or listener refused by the core's limits: 400 `limit_exceeded` (a
/// streaming call's open result `invalidArguments`); 410 `closed` once the caller's
/// socket closed.
impl From<JoinError> for MethodError {
    fn from(error: JoinError) -> Self {
        match error {
            JoinError::Closed => Self::new(StatusCode::GONE, "closed", error),
            _ => Self::new(StatusCode::BAD_REQUEST, "limit_exceeded", error),
        }
    }
}

impl<E: SerializableException> IntoMethodError for E {
    fn into_method_error(self) -> MethodError {
        MethodError::exception(&self)
    }

    fn exception_class() -> Option<&'static str> {
        Some(E::CLASS_NAME)
    }
}

/// Converts a method's error.
#[doc(hidden)]
pub fn into_method_error<E: IntoMethodError>(error: E) -> MethodError {
    error.into_method_error()
}

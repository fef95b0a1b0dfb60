//! What can go wrong in the client: opening and using the connection, and method calls.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// The error a failed transport step keeps as its source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a server closed the connection: the close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The RFC 6455 close code (1000 normal, 1001 going away, 1008 policy, 1009 too big,
    /// 4000–4999 the application's).
    pub code: u16,
    /// The server's reason (may be empty).
    pub reason: String,
}

impl CloseInfo {
    /// Whether the server closed because of what this client did (1003, 1007, 1008,
    /// 1009, or an application code 4000–4999): reconnecting at once would only be
    /// refused again, so the client backs off as after a failure.
    pub fn is_rejection(&self) -> bool {
        matches!(self.code, 1003 | 1007 | 1008 | 1009 | 4000..=4999)
    }
}

impl fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "closed with {}", self.code)
        } else {
            write!(f, "closed with {} \"{}\"", self.code, self.reason)
        }
    }
}

/// Client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http(s)://host[:port]` or `ws(s)://host[:port]`.
    #[error("invalid server URL '{0}': use http(s)://host:port or ws(s)://host:port")]
    InvalidUrl(String),
    /// An `https://` or `wss://` URL, but streampod was built without its `tls` feature.
    #[error("'{0}' needs TLS: enable streampod's `tls` feature")]
    TlsNotEnabled(String),
    /// A certificate given to
    /// [`ClientBuilder::add_root_certificate`](super::ClientBuilder::add_root_certificate)
    /// is not a valid DER certificate.
    #[error("invalid root certificate")]
    InvalidCertificate(#[source] BoxError),
    /// The auth key has characters an HTTP header cannot carry.
    #[error("the auth key cannot be sent in an Authorization header (control characters?)")]
    InvalidAuthKey,
    /// Not connected right now (connecting, reconnecting or closed): the message was not
    /// sent. Retry after [`ConnectionState::Connected`](super::ConnectionState), or send
    /// from the `on_connect` hook.
    #[error("not connected to the server; the message was not sent")]
    NotConnected,
    /// The outgoing queue is full (the connection is not keeping up): the message was
    /// not sent.
    #[error("outgoing queue is full; the message was not sent")]
    Backpressure,
    /// Every allowed attempt to connect failed
    /// ([`ClientBuilder::max_attempts`](super::ClientBuilder::max_attempts)).
    #[error("cannot connect after {attempts} attempt(s)")]
    Connect {
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        #[source]
        last: Option<BoxError>,
    },
    /// The first connection did not open within
    /// [`ClientBuilder::connect_timeout`](super::ClientBuilder::connect_timeout): the
    /// client stopped trying. Check the address, or raise the timeout.
    #[error("no connection within {after:?}")]
    ConnectTimeout {
        /// The timeout.
        after: Duration,
        /// Why the last attempt failed, if one did.
        #[source]
        last: Option<BoxError>,
    },
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::protocol::EncodeError),
}

/// A failed method call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The method returned the typed exception `E`.
    #[error("the method returned an exception")]
    Exception(E),
    /// 401: the method needs a signed-in caller and no valid auth key was sent. Set one
    /// with `auth_key`.
    #[error("not signed in: {message}")]
    Unauthenticated {
        /// The server's explanation.
        message: String,
    },
    /// 403: the caller is signed in but lacks a scope the method requires.
    #[error("not allowed: {message}")]
    Forbidden {
        /// The server's explanation (names the missing scope).
        message: String,
    },
    /// The server answered with another error status; `body` is its JSON.
    #[error("the server answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The response body.
        body: String,
    },
    /// The answer was not the expected type.
    #[error("unexpected answer")]
    Decode(#[source] serde_json::Error),
    /// The arguments could not be encoded as a JSON object.
    #[error("the arguments cannot be sent")]
    Arguments(#[source] BoxError),
    /// The request could not be sent or the answer read.
    #[error("the request failed")]
    Transport(#[source] BoxError),
    /// The answer's body was larger than
    /// [`MethodClient::max_answer_bytes`](super::MethodClient::max_answer_bytes); it
    /// was not read further.
    #[error("the answer exceeds the limit of {limit} bytes")]
    AnswerTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The call took longer than
    /// [`MethodClient::call_timeout`](super::MethodClient::call_timeout).
    #[error("the call took longer than {0:?}")]
    TimedOut(std::time::Duration),
}

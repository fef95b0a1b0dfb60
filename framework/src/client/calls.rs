//! HTTP method calls: `POST /<endpoint>/<method>` with named arguments, the answer
//! decoded as the method's type and a 400 exception as its typed exception. Works with
//! or without a WebSocket open.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Serialize;

use super::error::{CallError, ClientError};
use super::method_streams::{MethodSocket, StreamCall, StreamCallError};
use super::transport::{ExtraRoots, Transport};
use crate::protocol::wire::{FromWire, WireValue};
use crate::protocol::SerializableModel;
use crate::util::backoff::Backoff;

/// Calls a server's endpoint methods over HTTP, without opening a WebSocket. Cheap to
/// clone. Make one with [`MethodClient::new`] or
/// [`ClientBuilder::method_client`](super::ClientBuilder::method_client) (for an auth
/// key or extra root certificates); a [`Client`](super::Client) has one built in.
///
/// ```no_run
/// # streampod::__doc_models!();
/// use streampod::client::{json, MethodClient};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let calls = MethodClient::new("http://127.0.0.1:8080")?;
/// let greeting: String = calls
///     .call::<String, streampod::client::NoException>("greeter", "hello", json!({"name": "ann"}))
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MethodClient {
    transport: Arc<Transport>,
    /// The `/v1/websocket` socket streaming calls share.
    streams: Arc<MethodSocket>,
    /// The largest answer body a call reads.
    max_answer_bytes: usize,
    /// How long a call may take, answer read included.
    call_timeout: Duration,
    /// The most bytes of a streaming call's values that wait unread.
    max_stream_queue_bytes: usize,
    /// The waits before each try to open a streaming call again after its socket was lost.
    resume_backoff: Backoff,
}

/// The largest answer body a method call reads by default: 16 MiB.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 16 << 20;

/// How long a method call may take by default, its answer read included: 30 s.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes of a streaming call's values that wait unread by default: 16 MiB.
pub const DEFAULT_MAX_STREAM_QUEUE_BYTES: usize = 16 << 20;

impl std::fmt::Debug for MethodClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodClient")
            .field("server", &self.transport.http_base())
            .finish_non_exhaustive()
    }
}

impl MethodClient {
    /// A method client for the server at `base` (`http(s)://host:port`), unauthenticated.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidUrl`]; [`ClientError::TlsNotEnabled`] for `https://` without
    /// the `tls` feature.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Transport::new(&[base.to_owned()], None, &ExtraRoots::default())
            .map(|t| Self::over(Arc::new(t)))
    }

    /// Sends a fresh key to the streaming-method socket, if one is open.
    pub(crate) async fn refresh_streams(&self, authorization: &str) {
        self.streams.refresh(authorization).await;
    }

    pub(crate) fn over(transport: Arc<Transport>) -> Self {
        Self {
            transport,
            streams: Arc::default(),
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            max_stream_queue_bytes: DEFAULT_MAX_STREAM_QUEUE_BYTES,
            resume_backoff: Backoff::default(),
        }
    }

    /// Reads answers of at most `bytes` (default [`DEFAULT_MAX_ANSWER_BYTES`]); a larger
    /// one fails the call with [`CallError::AnswerTooLarge`] as soon as it passes the
    /// limit, so a broken or hostile server cannot fill this process's memory.
    #[must_use]
    pub fn max_answer_bytes(mut self, bytes: usize) -> Self {
        self.max_answer_bytes = bytes;
        self
    }

    /// Gives each call at most `timeout` (default [`DEFAULT_CALL_TIMEOUT`]), its answer
    /// read included; a slower one fails with [`CallError::TimedOut`].
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Lets at most `bytes` of each streaming call's values (default
    /// [`DEFAULT_MAX_STREAM_QUEUE_BYTES`]) wait for the app to read them. A server that
    /// sends faster than the app reads does not fill this process's memory: past the
    /// limit the call is closed (the server cancels the method) and ends with
    /// [`StreamCallError::Overflow`]. Other calls on the socket are not held up.
    #[must_use]
    pub fn max_stream_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_stream_queue_bytes = bytes;
        self
    }

    /// Sets the waits before each try to open a streaming call again after its socket
    /// was lost (default [`Backoff::default`]: jittered, from 100 ms up to 10 s). A
    /// call without input streams on a channel that keeps history goes on by itself
    /// from the last value it got (see [`StreamCall`]); after
    /// [`MAX_RESUME_ATTEMPTS`](super::MAX_RESUME_ATTEMPTS) failed tries it ends with
    /// [`StreamCallError::ConnectionLost`].
    #[must_use]
    pub fn resume_backoff(mut self, backoff: Backoff) -> Self {
        self.resume_backoff = backoff;
        self
    }

    /// Opens the streaming method `endpoint.method` (Serverpod 2.1+ streaming methods,
    /// served on `/v1/websocket`) with `args`, and the input streams named `inputs`
    /// (send on them with [`StreamCall::input`]). Calls share one socket, opened by the
    /// first and again after it was lost; the auth key goes in each call's open command.
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// use futures_util::StreamExt;
    /// use streampod::client::{json, MethodClient, NoException};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let calls = MethodClient::new("http://127.0.0.1:8080")?;
    /// let mut room = calls
    ///     .call_stream::<ChatMessage, NoException>("chat", "messages", json!({"channelId": "lobby"}), &[])
    ///     .await?;
    /// while let Some(message) = room.next().await {
    ///     println!("{}", message?.content);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StreamCallError::Refused`] with the server's open result,
    /// [`StreamCallError::Connect`] when the socket cannot be opened,
    /// [`StreamCallError::Timeout`], [`StreamCallError::Arguments`].
    pub async fn call_stream<R: WireValue, E: CallException>(
        &self,
        endpoint: &str,
        method: &str,
        args: impl Serialize,
        inputs: &[&str],
    ) -> Result<StreamCall<R, E>, StreamCallError<E>> {
        self.streams
            .call(
                &self.transport,
                (endpoint, method),
                args,
                inputs,
                (self.max_stream_queue_bytes, self.resume_backoff),
            )
            .await
    }

    /// Calls `endpoint.method` with `args` (any value that serializes to a JSON object
    /// of named arguments, e.g. [`json!`](super::json) or a struct), decoding the answer
    /// as `R` and a 400 exception as `E`.
    ///
    /// # Errors
    ///
    /// [`CallError::Exception`] with the typed exception; [`CallError::Unauthenticated`]
    /// (401) and [`CallError::Forbidden`] (403); [`CallError::Status`] for other error
    /// statuses; [`CallError::Arguments`], [`CallError::Transport`] and
    /// [`CallError::Decode`] for the rest.
    pub async fn call<R: WireValue, E: CallException>(
        &self,
        endpoint: &str,
        method: &str,
        args: impl Serialize,
    ) -> Result<R, CallError<E>> {
        let body = serde_json::to_vec(&args).map_err(|e| CallError::Arguments(Box::new(e)))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "{}/{endpoint}/{method}",
                self.transport.http_base()
            ))
            .header("content-type", "application/json");
        if let Some(value) = self.transport.authorization() {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        // The server's method_call span continues the caller's trace (feature `otel`).
        #[cfg(feature = "otel")]
        if let Some(traceparent) = crate::util::trace_context::current() {
            request = request.header("traceparent", traceparent);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Arguments(Box::new(e)))?;
        let limit = self.max_answer_bytes;
        let exchange = async {
            let response = self
                .transport
                .http
                .request(request)
                .await
                .map_err(|e| CallError::Transport(Box::new(e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|error| {
                    if error.downcast_ref::<LengthLimitError>().is_some() {
                        CallError::AnswerTooLarge { limit }
                    } else {
                        CallError::Transport(error)
                    }
                })?
                .to_bytes();
            answer(status, &body)
        };
        tokio::time::timeout(self.call_timeout, exchange)
            .await
            .unwrap_or(Err(CallError::TimedOut(self.call_timeout)))
    }
}

/// What generated typed calls go through: a [`MethodClient`], or a [`Client`](super::Client)
/// (its built-in one). `streampod-codegen` (`Builder::method_calls`) generates a
/// `MethodCalls` trait implemented for every `AsMethodClient`, so with it in scope
/// `client.chat().history("lobby", None, None).await?` is typed end to end.
pub trait AsMethodClient {
    /// The method client calls go through.
    fn as_method_client(&self) -> &MethodClient;
}

impl AsMethodClient for MethodClient {
    fn as_method_client(&self) -> &MethodClient {
        self
    }
}

/// A method call's named arguments, added one by one in Serverpod's JSON: what generated
/// typed calls pass to [`MethodClient::call`]. A value that cannot be encoded (a map
/// with keys JSON cannot hold) fails the call with [`CallError::Arguments`] when sent.
///
/// ```
/// use streampod::client::NamedArgs;
///
/// let args = NamedArgs::new().arg("channelId", "lobby").arg("limit", Some(20));
/// assert_eq!(serde_json::to_string(&args)?, r#"{"channelId":"lobby","limit":20}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct NamedArgs {
    values: serde_json::Map<String, serde_json::Value>,
    /// The first value that could not be encoded, reported when the arguments are sent.
    failed: Option<String>,
}

impl NamedArgs {
    /// No arguments yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds argument `name`; a `None` is left out (the server reads it as absent).
    #[must_use]
    pub fn arg(mut self, name: &str, value: impl Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::Null) => {}
            Ok(value) => {
                self.values.insert(name.to_owned(), value);
            }
            Err(error) => {
                self.failed
                    .get_or_insert_with(|| format!("argument {name}: {error}"));
            }
        }
        self
    }
}

impl Serialize for NamedArgs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.failed {
            Some(problem) => Err(serde::ser::Error::custom(problem)),
            None => self.values.serialize(serializer),
        }
    }
}

/// What a method call's error type must be: an `exception:` model
/// ([`SerializableException`](crate::protocol::SerializableException)), or [`NoException`].
pub trait CallException: SerializableModel + std::error::Error {}

impl<E: SerializableModel + std::error::Error> CallException for E {}

/// The exception type of a method that declares none: a call then never fails with
/// [`CallError::Exception`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NoException {}

impl std::fmt::Display for NoException {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl std::error::Error for NoException {}

impl SerializableModel for NoException {
    // No class has this name: an exception frame is never decoded as it.
    const CLASS_NAME: &'static str = "streampod.NoException";
}

/// The call's outcome from the response's status and body.
fn answer<R: WireValue, E: CallException>(
    status: StatusCode,
    body: &[u8],
) -> Result<R, CallError<E>> {
    if status == StatusCode::OK {
        return serde_json::from_slice::<FromWire<R>>(body)
            .map(|value| value.0)
            .map_err(CallError::Decode);
    }
    let message = || {
        #[derive(serde::Deserialize)]
        struct Body {
            error: Detail,
        }
        #[derive(serde::Deserialize)]
        struct Detail {
            message: String,
        }
        serde_json::from_slice::<Body>(body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
    };
    match status {
        StatusCode::UNAUTHORIZED => return Err(CallError::Unauthenticated { message: message() }),
        StatusCode::FORBIDDEN => return Err(CallError::Forbidden { message: message() }),
        StatusCode::BAD_REQUEST => {
            #[derive(serde::Deserialize)]
            struct Exception {
                #[serde(rename = "className")]
                class_name: String,
                data: Box<serde_json::value::RawValue>,
            }
            if let Ok(exception) = serde_json::from_slice::<Exception>(body) {
                if exception.class_name == E::CLASS_NAME {
                    return match serde_json::from_str::<E>(exception.data.get()) {
                        Ok(exception) => Err(CallError::Exception(exception)),
                        Err(error) => Err(CallError::Decode(error)),
                    };
                }
            }
        }
        _ => {}
    }
    Err(CallError::Status {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

//! The typed Rust client: one WebSocket to a streampod (or Serverpod) server, typed
//! sends and receives, HTTP method calls, keepalive, and automatic reconnection.
//!
//! ```no_run
//! # streampod::__doc_models!();
//! use streampod::client::{Client, Incoming};
//!
//! # async fn run() -> Result<(), streampod::client::ClientError> {
//! let client = Client::<Protocol>::builder("http://127.0.0.1:8080")
//!     .auth_key("ann-secret-1")
//!     // Runs after every (re)connect: re-send subscriptions here.
//!     .on_connect(|client| async move {
//!         let _ = client.send("chat", ChatMessage { content: "hello again".into() });
//!     })
//!     .connect()
//!     .await?;
//! client.send("chat", ChatMessage { content: "hi".into() })?;
//! while let Some(incoming) = client.recv().await {
//!     if let Incoming::Message { endpoint, message } = incoming {
//!         println!("{endpoint}: {message:?}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub use crate::backoff::Backoff;
use crate::protocol::frame::{self, Frame};
use crate::protocol::wire::{FromWire, WireValue};
use crate::protocol::{ErrorCode, ModelSet, SerializableException};

/// Where the client's connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the first connection.
    Connecting,
    /// Connected; sends go out.
    Connected,
    /// The connection dropped; the next attempt starts after `delay`.
    Reconnecting {
        /// 1 for the first retry after a drop.
        attempt: u32,
        /// The jittered wait before this attempt.
        delay: Duration,
    },
    /// Closed for good: by [`Client::close`], or after the last allowed attempt.
    Disconnected,
}

/// What arrives from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<P> {
    /// A model from an endpoint (batches arrive as one `Message` each, in order).
    Message {
        /// The endpoint that sent it.
        endpoint: String,
        /// The decoded model.
        message: P,
    },
    /// The server rejected a frame of ours.
    Error {
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
}

/// Client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http(s)://host[:port]` or `ws(s)://host[:port]`.
    #[error("invalid server URL '{0}': use http://host:port or ws://host:port")]
    InvalidUrl(String),
    /// Not connected right now (connecting, reconnecting or closed): the message was not
    /// sent. Retry after [`ConnectionState::Connected`], or send from the `on_connect` hook.
    #[error("not connected to the server; the message was not sent")]
    NotConnected,
    /// The outgoing queue is full (the connection is not keeping up).
    #[error("outgoing queue is full; the message was not sent")]
    Backpressure,
    /// The first connection failed and no retries are allowed.
    #[error("cannot connect: {0}")]
    Connect(String),
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
    /// The server answered with another error status; `body` is its JSON.
    #[error("the server answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The response body.
        body: String,
    },
    /// The answer was not the expected type.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The request could not be sent or the answer read.
    #[error("request failed: {0}")]
    Transport(String),
}

type Hook<P> = Arc<dyn Fn(Client<P>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Configures and opens a [`Client`].
#[must_use]
pub struct ClientBuilder<P> {
    base: String,
    auth_key: Option<String>,
    backoff: Backoff,
    max_attempts: Option<u32>,
    keepalive: Duration,
    queue: usize,
    on_connect: Option<Hook<P>>,
}

impl<P> fmt::Debug for ClientBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base", &self.base)
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> ClientBuilder<P> {
    /// Signs the socket and method calls in with `key`, sent as an
    /// `Authorization: Bearer` header on both (never in the URL, which proxies log).
    pub fn auth_key(mut self, key: impl Into<String>) -> Self {
        self.auth_key = Some(key.into());
        self
    }

    /// Reconnect delays. Default [`Backoff::default`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Gives up after this many consecutive failed attempts (`None`, the default: never).
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How often to send a `ping` command on an idle connection. Default 15 s.
    pub fn keepalive(mut self, interval: Duration) -> Self {
        self.keepalive = interval;
        self
    }

    /// Runs `hook` after every successful (re)connect, before anything else is sent: the
    /// place to send subscriptions so they survive reconnects.
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Client<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |client| Box::pin(hook(client))));
        self
    }

    /// Connects, waiting for the first connection (retrying per the backoff).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidUrl`], or [`ClientError::Connect`] when every allowed
    /// attempt failed.
    pub async fn connect(self) -> Result<Client<P>, ClientError> {
        let base = self.base.trim_end_matches('/').to_owned();
        let (http_base, ws_base) = if let Some(rest) = base.strip_prefix("http://") {
            (format!("http://{rest}"), format!("ws://{rest}"))
        } else if let Some(rest) = base.strip_prefix("ws://") {
            (format!("http://{rest}"), format!("ws://{rest}"))
        } else {
            return Err(ClientError::InvalidUrl(self.base));
        };
        let (state_tx, mut state_rx) = watch::channel(ConnectionState::Connecting);
        let (incoming_tx, incoming_rx) = mpsc::channel(self.queue);
        let inner = Arc::new(Inner {
            http_base,
            ws_base,
            auth_key: self.auth_key,
            outgoing: Mutex::new(None),
            incoming: tokio::sync::Mutex::new(incoming_rx),
            state: state_tx,
            closing: tokio_util::sync::CancellationToken::new(),
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(HttpConnector::new()),
        });
        let client = Client { inner };
        let supervisor = Supervisor {
            client: client.clone(),
            incoming: incoming_tx,
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            keepalive: self.keepalive,
            queue: self.queue,
            on_connect: self.on_connect,
        };
        tokio::spawn(supervisor.run());
        loop {
            match &*state_rx.borrow_and_update() {
                ConnectionState::Connected => return Ok(client),
                ConnectionState::Disconnected => {
                    return Err(ClientError::Connect(format!(
                        "no connection to {}",
                        client.inner.ws_base
                    )))
                }
                _ => {}
            }
            if state_rx.changed().await.is_err() {
                return Err(ClientError::Connect("the client stopped".into()));
            }
        }
    }
}

struct Inner<P> {
    http_base: String,
    ws_base: String,
    auth_key: Option<String>,
    /// The current connection's queue; `None` while disconnected.
    outgoing: Mutex<Option<mpsc::Sender<Message>>>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Incoming<P>>>,
    state: watch::Sender<ConnectionState>,
    closing: tokio_util::sync::CancellationToken,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

/// A connection to a server. Cheap to clone; clones share the connection.
pub struct Client<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for Client<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<P> fmt::Debug for Client<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.ws_base)
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> Client<P> {
    /// A builder for a server at `base` (`http://host:port` or `ws://host:port`).
    pub fn builder(base: impl Into<String>) -> ClientBuilder<P> {
        ClientBuilder {
            base: base.into(),
            auth_key: None,
            backoff: Backoff::default(),
            max_attempts: None,
            keepalive: Duration::from_secs(15),
            queue: 1024,
            on_connect: None,
        }
    }

    /// Connects with the defaults.
    ///
    /// # Errors
    ///
    /// See [`ClientBuilder::connect`].
    pub async fn connect(base: impl Into<String>) -> Result<Self, ClientError> {
        Self::builder(base).connect().await
    }

    /// Sends `message` to `endpoint`. Never waits.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotConnected`] while not connected (nothing is queued for later),
    /// [`ClientError::Backpressure`] when the outgoing queue is full.
    pub fn send(&self, endpoint: &str, message: impl Into<P>) -> Result<(), ClientError> {
        let mut buffer = Vec::with_capacity(128);
        frame::encode_message(endpoint, &message.into(), &mut buffer)?;
        let text = crate::frame_text::utf8_frame(buffer);
        self.send_text(text)
    }

    fn send_text(&self, text: Utf8Bytes) -> Result<(), ClientError> {
        let outgoing = self
            .inner
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sender = outgoing.as_ref().ok_or(ClientError::NotConnected)?;
        sender
            .try_send(Message::Text(text))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => ClientError::Backpressure,
                mpsc::error::TrySendError::Closed(_) => ClientError::NotConnected,
            })
    }

    /// The next message or error frame from the server; `None` once the client is
    /// closed for good. Only one task should receive.
    pub async fn recv(&self) -> Option<Incoming<P>> {
        self.inner.incoming.lock().await.recv().await
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// Observes connection state changes.
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// Calls an HTTP method: `POST /<endpoint>/<method>` with `args` (a JSON object of
    /// named arguments), decoding the answer as `R` and a 400 exception as `E`.
    ///
    /// # Errors
    ///
    /// [`CallError::Exception`] with the typed exception, [`CallError::Status`] for other
    /// errors, [`CallError::Transport`]/[`CallError::Decode`] for the rest.
    pub async fn call<R: WireValue, E: SerializableException>(
        &self,
        endpoint: &str,
        method: &str,
        args: serde_json::Value,
    ) -> Result<R, CallError<E>> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/{endpoint}/{method}", self.inner.http_base))
            .header("content-type", "application/json");
        if let Some(key) = &self.inner.auth_key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(args.to_string())))
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let response = self
            .inner
            .http
            .request(request)
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?
            .to_bytes();
        if status == StatusCode::OK {
            return serde_json::from_slice::<FromWire<R>>(&body)
                .map(|value| value.0)
                .map_err(|e| CallError::Decode(e.to_string()));
        }
        if status == StatusCode::BAD_REQUEST {
            #[derive(serde::Deserialize)]
            struct Exception {
                #[serde(rename = "className")]
                class_name: String,
                data: Box<serde_json::value::RawValue>,
            }
            if let Ok(exception) = serde_json::from_slice::<Exception>(&body) {
                if exception.class_name == E::CLASS_NAME {
                    return serde_json::from_str::<E>(exception.data.get())
                        .map(CallError::Exception)
                        .map_err(|e| CallError::Decode(e.to_string()))
                        .and_then(Err);
                }
            }
        }
        Err(CallError::Status {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Closes the connection for good (no reconnect).
    pub async fn close(&self) {
        self.inner.closing.cancel();
        let mut changes = self.state_changes();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            changes.wait_for(|state| *state == ConnectionState::Disconnected),
        )
        .await;
    }
}

/// Keeps a connection up: connect, serve, reconnect with backoff.
struct Supervisor<P> {
    client: Client<P>,
    incoming: mpsc::Sender<Incoming<P>>,
    backoff: Backoff,
    max_attempts: Option<u32>,
    keepalive: Duration,
    queue: usize,
    on_connect: Option<Hook<P>>,
}

impl<P: ModelSet> Supervisor<P> {
    async fn run(self) {
        let inner = self.client.inner.clone();
        let mut failures: u32 = 0;
        loop {
            let connected = tokio::select! {
                () = inner.closing.cancelled() => break,
                connected = self.connect() => connected,
            };
            match connected {
                Ok(socket) => {
                    failures = 0;
                    self.serve(socket).await;
                }
                Err(error) => {
                    failures += 1;
                    tracing::debug!(target: "streampod::client", %error, failures, "connect failed");
                }
            }
            if inner.closing.is_cancelled() || self.max_attempts.is_some_and(|max| failures >= max)
            {
                break;
            }
            let attempt = failures + 1;
            let delay = self.backoff.jittered(attempt);
            inner
                .state
                .send_replace(ConnectionState::Reconnecting { attempt, delay });
            tracing::info!(target: "streampod::client", attempt, ?delay, "reconnecting");
            tokio::select! {
                () = inner.closing.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        *inner
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        inner.state.send_replace(ConnectionState::Disconnected);
    }

    async fn connect(
        &self,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        String,
    > {
        let inner = &self.client.inner;
        let url = format!("{}/websocket", inner.ws_base);
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(key) = &inner.auth_key {
            let value = http::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| "the auth key cannot be sent in a header".to_owned())?;
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(socket)
    }

    async fn serve(
        &self,
        socket: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) {
        let inner = &self.client.inner;
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::channel::<Message>(self.queue);
        *inner
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        inner.state.send_replace(ConnectionState::Connected);
        if let Some(hook) = &self.on_connect {
            hook(self.client.clone()).await;
        }
        let mut keepalive = tokio::time::interval(self.keepalive);
        keepalive.tick().await;
        loop {
            tokio::select! {
                () = inner.closing.cancelled() => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
                outgoing = rx.recv() => match outgoing {
                    Some(message) => {
                        if sink.send(message).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = keepalive.tick() => {
                    if sink.send(Message::text(frame::PING)).await.is_err() {
                        break;
                    }
                }
                received = stream.next() => match received {
                    Some(Ok(Message::Text(text))) => {
                        if !self.deliver(&text).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        *inner
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        tracing::debug!(target: "streampod::client", "connection ended");
    }

    /// Decodes a frame (unpacking batches) and hands it to `recv`; `false` when nobody
    /// receives anymore.
    async fn deliver(&self, text: &str) -> bool {
        let frame = match Frame::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(target: "streampod::client", %error, "unreadable frame from the server");
                return true;
            }
        };
        let incoming: Vec<Incoming<P>> = match frame {
            Frame::Error(error) => vec![Incoming::Error {
                code: error.code,
                message: error.message.into_owned(),
            }],
            other => other
                .into_messages()
                .into_iter()
                .filter_map(|message| match P::decode(&message.class_name, message.data) {
                    Ok(decoded) => Some(Incoming::Message {
                        endpoint: message.endpoint.into_owned(),
                        message: decoded,
                    }),
                    Err(error) => {
                        tracing::warn!(target: "streampod::client", %error, "undecodable message from the server");
                        None
                    }
                })
                .collect(),
        };
        for item in incoming {
            if self.incoming.send(item).await.is_err() {
                return false;
            }
        }
        true
    }
}

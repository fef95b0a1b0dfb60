//! The connection: one WebSocket kept open (reconnecting with backoff), typed sends and
//! receives, keepalive, and the server's close codes surfaced to the app.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::calls::{CallException, MethodClient};
use super::error::{BoxError, CallError, ClientError, CloseInfo};
use super::method_streams::{StreamCall, StreamCallError};
use super::positions::Positions;
use super::transport::{ExtraRoots, Socket, Transport};
use crate::protocol::frame::{self, Frame};
use crate::protocol::wire::WireValue;
use crate::protocol::{ErrorCode, ModelSet};
use crate::util::backoff::Backoff;

/// Where the client's connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the first connection.
    Connecting,
    /// Connected; sends go out.
    Connected,
    /// The connection dropped (or could not open); the next attempt starts after `delay`.
    Reconnecting {
        /// 1 for the first retry after a stable connection dropped; higher while attempts
        /// keep failing or the server keeps refusing the connection.
        attempt: u32,
        /// The jittered wait before this attempt.
        delay: Duration,
    },
    /// Closed for good: by [`Client::close`], after the last allowed attempt, or when
    /// the first connection timed out.
    Disconnected,
}

/// What arrives from the server.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
    /// The server joined this client to a channel that keeps history (`streampod.v1`).
    /// After a reconnect the client recovers by itself: when `recovering` and not
    /// `recovered`, messages were lost (too old, or the server restarted) and the app
    /// should reload what it shows of `channel`.
    Joined {
        /// The endpoint whose stream joined.
        endpoint: String,
        /// The channel.
        channel: String,
        /// Whether the client asked to recover from a position it had.
        recovering: bool,
        /// Whether everything after that position follows (`replayed` messages) before
        /// any live one.
        recovered: bool,
        /// Messages replayed.
        replayed: u64,
    },
    /// The server closed the connection with this code and reason (1001 when it shuts
    /// down, 1008 for a policy it enforces, …). The client reconnects unless it is
    /// closing; after a rejection ([`CloseInfo::is_rejection`]) it backs off first.
    Closed(CloseInfo),
}

type Hook<P> = Arc<dyn Fn(Client<P>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What [`ClientBuilder::on_auth_expiring`] keeps.
type AuthHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<String>> + Send>> + Send + Sync>;

/// Configures and opens a [`Client`].
#[must_use]
pub struct ClientBuilder<P> {
    /// The service's addresses: the one given, then the alternates.
    bases: Vec<String>,
    auth_key: Option<String>,
    backoff: Backoff,
    max_attempts: Option<u32>,
    connect_timeout: Option<Duration>,
    stable_after: Duration,
    keepalive: Duration,
    queue: usize,
    roots: ExtraRoots,
    on_connect: Option<Hook<P>>,
    on_auth_expiring: Option<AuthHook>,
    configure_calls: Option<ConfigureCalls>,
}

/// What [`ClientBuilder::method_calls`] keeps.
type ConfigureCalls = Arc<dyn Fn(MethodClient) -> MethodClient + Send + Sync>;

impl<P> fmt::Debug for ClientBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("bases", &self.bases)
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout", &self.connect_timeout)
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

    /// Another address of the same service (a server of its cluster), taken in turn:
    /// when connecting fails, or the server closes the socket because it is draining
    /// (1012) or going away (1001), the client reconnects to the next address, and
    /// method calls follow it. History channels lose nothing across the move (the
    /// client recovers them from its positions).
    pub fn alternate_url(mut self, base: impl Into<String>) -> Self {
        self.bases.push(base.into());
        self
    }

    /// Reconnect delays. Default [`Backoff::default`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Gives up after this many consecutive failed attempts (`None`, the default: never,
    /// once connected). A connection the server closes as a rejection, or that drops
    /// before [`stable_after`](Self::stable_after), counts as a failed attempt.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How long [`connect`](Self::connect) waits for the first connection before it
    /// gives up with [`ClientError::ConnectTimeout`] (`None`: as long as
    /// [`max_attempts`](Self::max_attempts) allows). Default 30 s.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a connection must stay up for the backoff to start over when it drops;
    /// one that dies sooner counts as a failed attempt. Default 10 s.
    pub fn stable_after(mut self, duration: Duration) -> Self {
        self.stable_after = duration;
        self
    }

    /// How often to send a `ping` command on an idle connection. Default 15 s.
    pub fn keepalive(mut self, interval: Duration) -> Self {
        self.keepalive = interval;
        self
    }

    /// Trusts `der` (a DER certificate, e.g. a development server's self-signed one) on
    /// `https://`/`wss://` besides the public web roots.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.roots.0.push(der.into());
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

    /// Runs `hook` when the server says the key expires within a minute
    /// (`auth_expiring`, a `streampod.v1` server): a fresh key of the same user it
    /// returns is sent at once ([`Client::refresh_auth_key`]), and the session's
    /// streams and the streaming calls of that user go on; `None` lets the key lapse.
    /// The notice still arrives as an [`Incoming::Error`].
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # async fn fresh_token() -> Option<String> { None }
    /// # async fn demo() -> Result<(), streampod::client::ClientError> {
    /// let client = streampod::client::Client::<Protocol>::builder("http://127.0.0.1:8080")
    ///     .auth_key("a short-lived token")
    ///     .on_auth_expiring(|| async { fresh_token().await })
    ///     .connect()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn on_auth_expiring<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<String>> + Send + 'static,
    {
        self.on_auth_expiring = Some(Arc::new(move || Box::pin(hook())));
        self
    }

    /// A client for HTTP method calls only, with this builder's server, auth key and
    /// certificates: no WebSocket is opened.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), before any connection is tried.
    pub fn method_client(&self) -> Result<MethodClient, ClientError> {
        let transport = Transport::new(&self.bases, self.auth_key.as_deref(), &self.roots)?;
        Ok(self.calls_over(Arc::new(transport)))
    }

    /// Configures the method calls of the client this builds ([`Client::call`],
    /// [`Client::call_stream`], [`method_client`](Self::method_client)) with
    /// [`MethodClient`]'s setters:
    /// `builder.method_calls(|calls| calls.call_timeout(Duration::from_secs(5)))`.
    pub fn method_calls(
        mut self,
        configure: impl Fn(MethodClient) -> MethodClient + Send + Sync + 'static,
    ) -> Self {
        self.configure_calls = Some(Arc::new(configure));
        self
    }

    /// A method client over `transport`, configured as asked.
    fn calls_over(&self, transport: Arc<Transport>) -> MethodClient {
        let calls = MethodClient::over(transport);
        match &self.configure_calls {
            Some(configure) => configure(calls),
            None => calls,
        }
    }

    /// Connects, waiting for the first connection (retrying per the backoff, up to the
    /// connect timeout).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidUrl`], [`ClientError::TlsNotEnabled`],
    /// [`ClientError::InvalidAuthKey`] and [`ClientError::InvalidCertificate`] at once;
    /// [`ClientError::Connect`] when every allowed attempt failed;
    /// [`ClientError::ConnectTimeout`] when no connection opened in time.
    pub async fn connect(self) -> Result<Client<P>, ClientError> {
        let transport = Arc::new(Transport::new(
            &self.bases,
            self.auth_key.as_deref(),
            &self.roots,
        )?);
        let (state_tx, mut state_rx) = watch::channel(ConnectionState::Connecting);
        let (incoming_tx, incoming_rx) = mpsc::channel(self.queue);
        let inner = Arc::new(Inner {
            calls: self.calls_over(transport.clone()),
            transport,
            outgoing: Mutex::new(None),
            positions: Mutex::new(Positions::default()),
            incoming: tokio::sync::Mutex::new(incoming_rx),
            state: state_tx,
            closing: tokio_util::sync::CancellationToken::new(),
            last_failure: Mutex::new(None),
            last_close: Mutex::new(None),
        });
        let client = Client { inner };
        let supervisor = Supervisor {
            client: client.clone(),
            incoming: incoming_tx,
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            stable_after: self.stable_after,
            keepalive: self.keepalive,
            queue: self.queue,
            on_connect: self.on_connect,
            on_auth_expiring: self.on_auth_expiring,
        };
        tokio::spawn(supervisor.run());
        let first = async {
            loop {
                if let ConnectionState::Connected | ConnectionState::Disconnected =
                    *state_rx.borrow_and_update()
                {
                    return;
                }
                if state_rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let timed_out = match self.connect_timeout {
            Some(timeout) => tokio::time::timeout(timeout, first).await.is_err(),
            None => {
                first.await;
                false
            }
        };
        if timed_out {
            client.inner.closing.cancel();
            return Err(ClientError::ConnectTimeout {
                after: self.connect_timeout.unwrap_or_default(),
                last: client.inner.take_failure().map(|(_, error)| error),
            });
        }
        if client.state() == ConnectionState::Connected {
            return Ok(client);
        }
        let (attempts, last) = client
            .inner
            .take_failure()
            .map_or((0, None), |(attempts, error)| (attempts, Some(error)));
        Err(ClientError::Connect { attempts, last })
    }
}

impl<P> super::calls::AsMethodClient for Client<P> {
    fn as_method_client(&self) -> &MethodClient {
        &self.inner.calls
    }
}

struct Inner<P> {
    transport: Arc<Transport>,
    calls: MethodClient,
    /// The current connection's queue; `None` while disconnected.
    outgoing: Mutex<Option<mpsc::Sender<Message>>>,
    /// The last position seen on each history channel, sent with `recover` on every
    /// connection.
    positions: Mutex<Positions>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Incoming<P>>>,
    state: watch::Sender<ConnectionState>,
    closing: tokio_util::sync::CancellationToken,
    /// Consecutive failed attempts and why the last one failed.
    last_failure: Mutex<Option<(u32, BoxError)>>,
    /// How the server last closed the connection.
    last_close: Mutex<Option<CloseInfo>>,
}

impl<P> Inner<P> {
    fn positions(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn take_failure(&self) -> Option<(u32, BoxError)> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
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
            .field("server", &self.inner.transport.ws_base())
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> Client<P> {
    /// A builder for a server at `base` (`http(s)://host:port` or `ws(s)://host:port`).
    pub fn builder(base: impl Into<String>) -> ClientBuilder<P> {
        ClientBuilder {
            bases: vec![base.into()],
            auth_key: None,
            backoff: Backoff::default(),
            max_attempts: None,
            connect_timeout: Some(Duration::from_secs(30)),
            stable_after: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            queue: 1024,
            roots: ExtraRoots::default(),
            on_connect: None,
            on_auth_expiring: None,
            configure_calls: None,
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
        // The server's handling continues the caller's trace (feature `otel`).
        #[cfg(feature = "otel")]
        if let Some(traceparent) = crate::util::trace_context::current() {
            frame::append_traceparent(&mut buffer, &traceparent);
        }
        let text = crate::client::text::utf8_frame(buffer);
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

    /// The next message, error frame or close from the server; `None` once the client
    /// is closed for good. Only one task should receive.
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

    /// How the server last closed the connection (code and reason), if it did.
    pub fn last_close(&self) -> Option<CloseInfo> {
        self.inner
            .last_close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Calls an HTTP method; see [`MethodClient::call`]. It does not need the WebSocket.
    ///
    /// # Errors
    ///
    /// See [`MethodClient::call`].
    pub async fn call<R: WireValue, E: CallException>(
        &self,
        endpoint: &str,
        method: &str,
        args: impl Serialize,
    ) -> Result<R, CallError<E>> {
        self.inner.calls.call(endpoint, method, args).await
    }

    /// Opens a streaming method; see [`MethodClient::call_stream`]. It does not use
    /// this client's `/websocket` socket but a `/v1/websocket` one of its own.
    ///
    /// # Errors
    ///
    /// See [`MethodClient::call_stream`].
    pub async fn call_stream<R: WireValue, E: CallException>(
        &self,
        endpoint: &str,
        method: &str,
        args: impl Serialize,
        inputs: &[&str],
    ) -> Result<StreamCall<R, E>, StreamCallError<E>> {
        self.inner
            .calls
            .call_stream(endpoint, method, args, inputs)
            .await
    }

    /// Uses `key`, a fresh key of the same user (a refreshed token), from now on: sent
    /// at once with the `auth` command (the session's streams stay) and to the
    /// streaming-method socket (streampod's `msa`: that user's calls go on with it), and
    /// used by later method calls and reconnects. To sign in as someone else, connect
    /// a new client.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAuthKey`] when `key` cannot be sent in a header.
    pub async fn refresh_auth_key(&self, key: &str) -> Result<(), ClientError> {
        let inner = &self.inner;
        inner.transport.set_auth_key(key)?;
        let command = serde_json::json!({"command": "auth", "args": {"key": key}}).to_string();
        let outgoing = inner
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(outgoing) = outgoing {
            // Full or closed: the next connection signs in with the new key anyway.
            let _ = outgoing.try_send(Message::text(command));
        }
        inner.calls.refresh_streams(&format!("Bearer {key}")).await;
        Ok(())
    }

    /// The method client this client calls through (clone it for another task).
    pub fn method_client(&self) -> MethodClient {
        self.inner.calls.clone()
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
    stable_after: Duration,
    keepalive: Duration,
    queue: usize,
    on_connect: Option<Hook<P>>,
    on_auth_expiring: Option<AuthHook>,
}

impl<P: ModelSet> Supervisor<P> {
    async fn run(self) {
        let inner = self.client.inner.clone();
        let mut failures: u32 = 0;
        loop {
            let connected = tokio::select! {
                () = inner.closing.cancelled() => break,
                connected = inner.transport.open_websocket() => connected,
            };
            match connected {
                Ok(socket) => {
                    let opened = Instant::now();
                    let closed = self.serve(socket).await;
                    let rejected = closed.as_ref().is_some_and(CloseInfo::is_rejection);
                    // Only a connection that stayed up and was not refused starts the
                    // backoff over: a server that closes at once is not hammered.
                    if opened.elapsed() >= self.stable_after && !rejected {
                        failures = 0;
                    } else {
                        failures += 1;
                    }
                    if let Some(close) = closed {
                        tracing::info!(target: "streampod::client", code = close.code, reason = %close.reason, "the server closed the connection");
                        // Draining for a restart, or going away: another server takes over.
                        if matches!(close.code, 1001 | 1012) {
                            inner.transport.rotate();
                        }
                        *inner
                            .last_close
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(close.clone());
                        if self.incoming.send(Incoming::Closed(close)).await.is_err() {
                            break;
                        }
                    }
                }
                Err(error) => {
                    failures += 1;
                    tracing::debug!(target: "streampod::client", %error, failures, "connect failed");
                    inner.transport.rotate();
                    *inner
                        .last_failure
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some((failures, error));
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

    /// Serves one connection until it ends; how the server closed it, if it did.
    async fn serve(&self, socket: Socket) -> Option<CloseInfo> {
        let inner = &self.client.inner;
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::channel::<Message>(self.queue);
        *inner
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx.clone());
        if let Some(recover) = inner.positions().recover_frame() {
            // First in the new connection's queue: before any join the hook sends.
            let _ = tx.try_send(Message::text(recover));
        }
        inner.state.send_replace(ConnectionState::Connected);
        if let Some(hook) = &self.on_connect {
            hook(self.client.clone()).await;
        }
        let mut keepalive = tokio::time::interval(self.keepalive);
        keepalive.tick().await;
        let mut closed = None;
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
                    Some(Ok(Message::Close(frame))) => {
                        closed = frame.map(|frame| CloseInfo {
                            code: u16::from(frame.code),
                            reason: frame.reason.as_str().to_owned(),
                        });
                        break;
                    }
                    Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        *inner
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        tracing::debug!(target: "streampod::client", "connection ended");
        closed
    }

    /// Asks the app for a fresh key ([`ClientBuilder::on_auth_expiring`]) and sends it.
    fn auth_expiring(&self) {
        let Some(hook) = self.on_auth_expiring.clone() else {
            return;
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            let Some(key) = hook().await else {
                return;
            };
            if let Err(error) = client.refresh_auth_key(&key).await {
                tracing::warn!(target: "streampod::client", %error, "the fresh key from on_auth_expiring cannot be sent");
            }
        });
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
            Frame::Error(error) => {
                if error.code == ErrorCode::AuthExpiring {
                    self.auth_expiring();
                }
                vec![Incoming::Error {
                    code: error.code,
                    message: error.message.into_owned(),
                }]
            }
            Frame::Joined(joined) => {
                self.client.inner.positions().joined(&joined);
                vec![Incoming::Joined {
                    endpoint: joined.endpoint,
                    channel: joined.channel,
                    recovering: joined.recovering,
                    recovered: joined.recovered,
                    replayed: joined.replayed,
                }]
            }
            other => other
                .into_messages()
                .into_iter()
                // A message at or before the channel's last position was seen already.
                .filter(|message| {
                    message.at.as_ref().is_none_or(|at| {
                        self.client
                            .inner
                            .positions()
                            .advance(&at.channel, at.offset)
                    })
                })
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

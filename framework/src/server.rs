//! The server: builder, accept loop, handle for background tasks, graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthenticationHandler, DynAuthenticationHandler};
use crate::call::MethodEndpoints;
use crate::cluster::{Cluster, ClusterConfig, ClusterState};
use crate::config::ServerConfig;
use crate::connections::{Connections, Refusal};
use crate::endpoint::{Endpoint, Endpoints};
use crate::http;
use crate::log_limit::RateLimitedLog;
use crate::memory_guard;
use crate::messages::{MessageCentral, SessionLimits};
use crate::methods::Methods;
use crate::metrics::{self, Metrics};
use crate::outbound::TotalHeld;
use crate::protocol::ModelSet;
use crate::registry::SessionRegistry;
use crate::session::{SessionHandle, SessionId};

/// State shared by the accept loop, every connection and every [`ServerHandle`].
pub(crate) struct ServerInner<P: ModelSet> {
    pub(crate) files: Vec<StaticFile>,
    pub(crate) endpoints: Endpoints<P>,
    pub(crate) methods: MethodEndpoints<P>,
    pub(crate) authentication: Option<Arc<dyn DynAuthenticationHandler>>,
    pub(crate) config: ServerConfig,
    pub(crate) sessions: Arc<SessionRegistry>,
    pub(crate) messages: MessageCentral<P>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Bytes queued for all sessions, for the memory guard.
    pub(crate) held_bytes: Arc<TotalHeld>,
    /// Open TCP connections and their caps.
    pub(crate) connections: Arc<Connections>,
    /// The server's Prometheus metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Refused connections still delivering their 503.
    lingering_refusals: AtomicUsize,
    local_addr: SocketAddr,
    next_id: AtomicU64,
}

impl<P: ModelSet> ServerInner<P> {
    pub(crate) fn next_session_id(&self) -> SessionId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Builds a [`Server`]: endpoints by name, authentication, configuration.
///
/// ```no_run
/// # streampod::__doc_models!();
/// use streampod::{Endpoint, Server};
///
/// struct Chat;
/// impl Endpoint<Protocol> for Chat {}
///
/// # async fn run() -> Result<(), std::io::Error> {
/// let server = Server::<Protocol>::builder()
///     .endpoint("chat", Chat)
///     .bind("127.0.0.1:8080")
///     .await?;
/// println!("listening on {}", server.local_addr());
/// server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct ServerBuilder<P: ModelSet> {
    files: Vec<StaticFile>,
    endpoints: Endpoints<P>,
    methods: MethodEndpoints<P>,
    authentication: Option<Arc<dyn DynAuthenticationHandler>>,
    config: ServerConfig,
    cluster: Option<ClusterConfig>,
}

impl<P: ModelSet> std::fmt::Debug for ServerBuilder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field(
                "endpoints",
                &self.endpoints.iter().map(|e| &*e.name).collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> ServerBuilder<P> {
    /// Registers `endpoint` under `name` (the `"endpoint"` of frames addressed to it).
    ///
    /// # Panics
    ///
    /// When `name` is empty, contains `/`, is `websocket` or `health`, or is already
    /// registered: a setup mistake, reported at the caller's line.
    #[track_caller]
    pub fn endpoint(mut self, name: &str, endpoint: impl Endpoint<P>) -> Self {
        check_name(name);
        assert!(
            self.endpoints.insert(name, Arc::new(endpoint)),
            "streampod: a streaming endpoint named '{name}' is already registered"
        );
        self
    }

    /// Makes the `#[endpoint]` methods of `methods` callable as `POST /<name>/<method>`.
    ///
    /// # Panics
    ///
    /// When `name` is empty, contains `/`, is `websocket` or `health`, or already has
    /// methods registered.
    #[track_caller]
    pub fn methods(mut self, name: &str, methods: impl Methods<P>) -> Self {
        check_name(name);
        assert!(
            self.methods.insert(name, Arc::new(methods)),
            "streampod: methods for '{name}' are already registered"
        );
        self
    }

    /// Registers one value both as the streaming endpoint `name` and for its HTTP
    /// methods, sharing its state.
    ///
    /// # Panics
    ///
    /// As [`ServerBuilder::endpoint`] and [`ServerBuilder::methods`].
    #[track_caller]
    pub fn endpoint_with_methods<E: Endpoint<P> + Methods<P>>(
        self,
        name: &str,
        endpoint: E,
    ) -> Self {
        let shared = Arc::new(endpoint);
        self.endpoint(name, shared.clone()).methods(name, shared)
    }

    /// Serves `body` with `content_type` at `GET path` (a page for browsers, a manifest, …).
    ///
    /// # Panics
    ///
    /// When `path` does not start with `/` or is `/websocket` or `/health`.
    #[track_caller]
    pub fn static_file(
        mut self,
        path: &'static str,
        content_type: &'static str,
        body: &'static [u8],
    ) -> Self {
        assert!(
            path.starts_with('/'),
            "streampod: static path '{path}' must start with '/'"
        );
        assert!(
            path != "/websocket" && path != "/health",
            "streampod: '{path}' is a reserved route"
        );
        self.files.retain(|file| file.path != path);
        self.files.push(StaticFile {
            path,
            content_type,
            body,
        });
        self
    }

    /// Checks auth keys with `handler`. Without one, every session is unauthenticated.
    pub fn authentication(mut self, handler: impl AuthenticationHandler) -> Self {
        self.authentication = Some(Arc::new(handler));
        self
    }

    /// Joins a cluster: `Scope::Global` posts and broadcasts then reach every server
    /// connected to the same Redis (see [`crate::cluster`]). The server starts even
    /// while Redis is down and connects when it comes up.
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Replaces the configuration (default [`ServerConfig::default`]).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Binds `addr` and starts serving.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Server<P>> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener)
    }

    /// Starts serving on an already bound listener.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Errors
    ///
    /// When the listener's local address cannot be read, or the cluster's Redis URL
    /// is invalid.
    pub fn serve(self, listener: TcpListener) -> io::Result<Server<P>> {
        let local_addr = listener.local_addr()?;
        let sessions = Arc::new(SessionRegistry::default());
        let messages = MessageCentral::new(
            sessions.clone(),
            self.config.outbound_queue_frames,
            SessionLimits {
                channels: self.config.max_channels_per_session,
                channel_name_len: self.config.max_channel_name_len,
            },
            tokio::runtime::Handle::current(),
        );
        if let Some(cluster) = self.cluster {
            messages.start_cluster(cluster).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid cluster Redis URL: {error}"),
                )
            })?;
        }
        let connections = Arc::new(Connections::new(
            self.config.max_connections,
            self.config.max_connections_per_ip,
        ));
        let metrics = Arc::new(Metrics::new(scrape(
            messages.clone(),
            sessions.clone(),
            connections.clone(),
        )));
        let inner = Arc::new(ServerInner {
            files: self.files,
            endpoints: self.endpoints,
            methods: self.methods,
            authentication: self.authentication,
            config: self.config,
            sessions,
            messages,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            held_bytes: Arc::default(),
            connections,
            metrics,
            lingering_refusals: AtomicUsize::new(0),
            local_addr,
            next_id: AtomicU64::new(1),
        });
        tracing::info!(target: "streampod::server", %local_addr, endpoints = inner.endpoints.len(), "serving");
        tokio::spawn(memory_guard::run(
            inner.sessions.clone(),
            inner.held_bytes.clone(),
            inner.config.max_total_queued_bytes,
            inner.metrics.memory_guard_closes.clone(),
            inner.shutdown.clone(),
        ));
        let accept = tokio::spawn(accept_loop(inner.clone(), listener));
        Ok(Server {
            handle: ServerHandle { inner },
            accept,
        })
    }
}

/// What a metrics scrape reads: levels and the message central's totals.
fn scrape<P: ModelSet>(
    messages: MessageCentral<P>,
    sessions: Arc<SessionRegistry>,
    connections: Arc<Connections>,
) -> metrics::Source {
    Box::new(move || {
        let stats = messages.stats();
        let cluster = messages.cluster();
        metrics::Snapshot {
            connections_open: connections.open(),
            sessions: sessions.len(),
            channels: messages.channel_count(),
            listeners: messages.total_listeners(),
            posts: stats.posts,
            deliveries: stats.deliveries,
            frames_encoded: stats.frames_encoded,
            frames_dropped: [
                (
                    "direct",
                    stats.dropped - stats.dropped_oldest - stats.dropped_latest_value,
                ),
                ("drop_oldest", stats.dropped_oldest),
                ("latest_value", stats.dropped_latest_value),
            ],
            slow_consumer_disconnects: stats.disconnected,
            cluster_connected: cluster.map(|c| c.state() == ClusterState::Connected),
            cluster_round_trip: cluster.and_then(Cluster::last_round_trip),
        }
    })
}

/// A file served at a fixed path.
pub(crate) struct StaticFile {
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

/// Endpoint names become URL path segments next to the server's own routes.
#[track_caller]
fn check_name(name: &str) {
    assert!(
        !name.is_empty(),
        "streampod: an endpoint name cannot be empty"
    );
    assert!(
        !name.contains('/'),
        "streampod: endpoint name '{name}' cannot contain '/'"
    );
    assert!(
        name != "websocket" && name != "health",
        "streampod: '{name}' is a reserved route and cannot name an endpoint"
    );
}

async fn accept_loop<P: ModelSet>(inner: Arc<ServerInner<P>>, listener: TcpListener) {
    let mut failures = AcceptFailures::default();
    let refusals = RateLimitedLog::new(LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            biased;
            () = inner.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                failures.succeeded();
                accepted
            }
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                let pause = failures.failed(&error);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let ticket = match inner.connections.admit(peer.ip()) {
            Ok(ticket) => {
                inner.metrics.connections_accepted.inc();
                ticket
            }
            Err(refusal) => {
                inner
                    .metrics
                    .connections_refused
                    .get_or_create(&vec![("reason", refusal.as_str().to_owned())])
                    .inc();
                refuse(&inner, stream, refusal);
                if let Some(suppressed) = refusals.ready() {
                    tracing::warn!(target: "streampod::server", %peer, reason = refusal.as_str(), suppressed, "refused a connection at the connection limit");
                }
                continue;
            }
        };
        // Frames are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        inner
            .tasks
            .spawn(http::serve_connection(inner.clone(), stream, peer, ticket));
    }
    tracing::info!(target: "streampod::server", "stopped accepting connections");
}

/// Refused connections that may linger at once to deliver their 503 (each holds a
/// file descriptor for up to [`REFUSAL_LINGER`]; `max_connections`' reserve covers them).
const LINGERING_REFUSALS: usize = 32;

/// How long a refused connection is read and discarded after its 503, so that closing
/// it does not reset the connection before the client read the answer.
const REFUSAL_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Answers a refused connection with its 503 and closes it. A fresh socket's send
/// buffer is empty, so the short answer is written at once; then, while few are
/// lingering, the connection is half-closed and drained briefly so the client gets the
/// answer instead of a reset. Beyond that it is simply dropped.
fn refuse<P: ModelSet>(inner: &Arc<ServerInner<P>>, stream: TcpStream, refusal: Refusal) {
    let _ = stream.try_write(&refusal.response());
    let lingering = &inner.lingering_refusals;
    if lingering.fetch_add(1, Ordering::Relaxed) >= LINGERING_REFUSALS {
        lingering.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let inner = inner.clone();
    inner.clone().tasks.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0_u8; 1024];
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
        })
        .await;
        inner.lingering_refusals.fetch_sub(1, Ordering::Relaxed);
    });
}

/// How often a repeated warning a peer can trigger is logged at most.
const LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Failed accepts: an exponential pause, and one log line per interval with a count.
#[derive(Debug)]
struct AcceptFailures {
    pause: std::time::Duration,
    log: RateLimitedLog,
}

impl Default for AcceptFailures {
    fn default() -> Self {
        Self {
            pause: Self::FIRST_PAUSE,
            log: RateLimitedLog::new(LOG_INTERVAL),
        }
    }
}

impl AcceptFailures {
    const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
    const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

    fn succeeded(&mut self) {
        self.pause = Self::FIRST_PAUSE;
    }

    /// Logs (rate-limited) and returns how long to pause before the next accept.
    fn failed(&mut self, error: &io::Error) -> std::time::Duration {
        if let Some(suppressed) = self.log.ready() {
            tracing::warn!(target: "streampod::server", %error, suppressed, "accept failed; pausing (raise the open-file limit or lower max_connections)");
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Self::MAX_PAUSE);
        pause
    }
}

/// A running server. Dropping it leaves the server running in the background; call
/// [`Server::shutdown`] or [`Server::run_until`] to stop it.
#[derive(Debug)]
pub struct Server<P: ModelSet> {
    handle: ServerHandle<P>,
    accept: JoinHandle<()>,
}

impl<P: ModelSet> Server<P> {
    /// A builder with no endpoints and the default configuration.
    pub fn builder() -> ServerBuilder<P> {
        ServerBuilder {
            files: Vec::new(),
            endpoints: Endpoints::default(),
            methods: MethodEndpoints::default(),
            authentication: None,
            config: ServerConfig::default(),
            cluster: None,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// A handle for background tasks: reach sessions, shut down.
    pub fn handle(&self) -> ServerHandle<P> {
        self.handle.clone()
    }

    /// Stops the server gracefully; see [`ServerHandle::shutdown`].
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
        let _ = self.accept.await;
    }

    /// Serves until `signal` completes (e.g. Ctrl-C) or a handle calls shutdown, then
    /// shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        tokio::select! {
            () = signal => tracing::info!(target: "streampod::server", "shutdown requested"),
            () = self.handle.inner.shutdown.cancelled() => {}
        }
        self.shutdown().await;
    }
}

/// A cheap, clonable handle to a running server for background tasks.
pub struct ServerHandle<P: ModelSet> {
    inner: Arc<ServerInner<P>>,
}

impl<P: ModelSet> Clone for ServerHandle<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<P: ModelSet> std::fmt::Debug for ServerHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.inner.local_addr)
            .field("sessions", &self.inner.sessions.len())
            .finish()
    }
}

impl<P: ModelSet> ServerHandle<P> {
    pub(crate) fn from_inner(inner: Arc<ServerInner<P>>) -> Self {
        Self { inner }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The message central: channels, listeners, posts and broadcasts.
    pub fn messages(&self) -> MessageCentral<P> {
        self.inner.messages.clone()
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// The open session with `id`.
    pub fn session(&self, id: SessionId) -> Option<SessionHandle<P>> {
        self.inner.sessions.get(id).map(SessionHandle::new)
    }

    /// Every open session, at the time of the call.
    pub fn sessions(&self) -> Vec<SessionHandle<P>> {
        self.inner
            .sessions
            .snapshot()
            .into_iter()
            .map(SessionHandle::new)
            .collect()
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Stops accepting connections, closes every session with 1001 "server shutting
    /// down" after flushing what was queued (running `stream_closed`), and waits up to
    /// [`ServerConfig::shutdown_timeout`] for them to finish.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let sessions = self.inner.sessions.snapshot();
        tracing::info!(target: "streampod::server", sessions = sessions.len(), "shutting down");
        for session in sessions {
            session.close(CloseCode::Away, "server shutting down");
        }
        self.inner.tasks.close();
        if tokio::time::timeout(self.inner.config.shutdown_timeout, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                target: "streampod::server",
                remaining = self.inner.sessions.len(),
                "shutdown timeout reached with sessions still closing"
            );
        }
        // Sessions are gone: leave the cluster (unsubscribes with the connection).
        self.inner.messages.leave_cluster();
    }
}

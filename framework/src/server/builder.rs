//! The server's composition: [`ServerBuilder`] assembles endpoints, methods,
//! authentication, configuration and cluster into a [`StreampodService`], and binds the
//! convenience [`Server`] over it.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio_util::sync::CancellationToken;

use crate::rate_limit::PerAddress;
use crate::service::PublishApi;
use crate::auth::{AuthenticationHandler, Authenticator, DynAuthenticationHandler, Revocations};
use crate::cluster::{Backends, Backplane, ClusterState, Inbox, Sink, DEFAULT_MAX_GLOBAL_AGE};
#[cfg(feature = "redis")]
use crate::cluster::{ClusterConfig, RedisBackplane};
#[cfg(feature = "nats")]
use crate::cluster::{NatsBackplane, NatsConfig};
use crate::config::ServerConfig;
use crate::service::cors::Cors;
use crate::transport::context::SocketContext;
use crate::service::admission::Connections;
use crate::endpoint::definition::{Endpoint, Endpoints};
use crate::endpoint::server_handle::ServerHandle;
use crate::session::memory_guard;
use crate::messages::central::MessageCentral;
use crate::transport::method_socket::MethodSocketContext;
use crate::methods::registry::MethodEndpoints;
use crate::methods::Methods;
use crate::metrics::{self, Metrics};
use crate::session::owned::SessionLimits;
use crate::protocol::ModelSet;
use crate::session::registry::SessionRegistry;
use crate::server::serve::Server;
use crate::service::{ServiceState, StaticFile, StreampodService};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The address could not be bound (already in use, no permission, unknown host) or
    /// the listener's address read. Pick another address or free this one.
    #[error("cannot listen: {0}")]
    Listen(#[source] io::Error),
    /// The cluster's Redis URL cannot be used; fix the URL given to
    /// [`ClusterConfig::redis`].
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Cluster(crate::cluster::InvalidRedisUrl),
    /// The NATS URL cannot be used; fix the URL given to [`NatsConfig::new`].
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Nats(crate::cluster::InvalidNatsUrl),
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
/// # async fn run() -> Result<(), streampod::StartError> {
/// let server = Server::<Protocol>::builder()
///     .endpoint("chat", Chat)
///     .bind("127.0.0.1:8080")
///     .await?;
/// println!("listening on {}", server.local_addr());
/// server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(())
/// # }
/// ```
///
/// [`into_service`](Self::into_service) makes a tower service instead, to mount in an
/// existing axum or hyper app.
#[must_use]
pub struct ServerBuilder<P: ModelSet> {
    files: Vec<StaticFile>,
    endpoints: Endpoints<P>,
    methods: MethodEndpoints<P>,
    authentication: Option<Arc<dyn DynAuthenticationHandler>>,
    config: ServerConfig,
    /// Starts the cluster backplane, when the server joins one.
    backplane: Option<StartBackplane>,
    path_prefix: Option<Arc<str>>,
    /// `None`: Serverpod's any-origin answer under `bind`, none when mounted.
    cors: Option<Cors>,
    /// The publish API, when it has a key.
    publish_api: Option<PublishApi>,
    #[cfg(feature = "tls")]
    tls: Option<crate::server::tls::TlsIdentity>,
    /// Run once the server is built, after each endpoint's `on_start`.
    on_start: Vec<StartHook<P>>,
}

/// Starts a cluster backplane for a server's central ([`ServerBuilder::cluster`],
/// [`ServerBuilder::backplane`]).
type StartBackplane = Box<dyn FnOnce(Sink) -> Result<Backplane, StartError> + Send>;

/// A startup hook ([`ServerBuilder::on_start`]).
type StartHook<P> = Box<dyn FnOnce(&ServerHandle<P>) + Send>;

impl<P: ModelSet> std::fmt::Debug for ServerBuilder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("ServerBuilder");
        debug
            .field(
                "endpoints",
                &self.endpoints.iter().map(|e| &*e.name).collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .field("path_prefix", &self.path_prefix)
            .field("cors", &self.cors);
        debug.field("backplane", &self.backplane.is_some());
        debug.finish_non_exhaustive()
    }
}

impl<P: ModelSet> ServerBuilder<P> {
    pub(crate) fn new() -> Self {
        Self {
            files: Vec::new(),
            endpoints: Endpoints::default(),
            methods: MethodEndpoints::default(),
            authentication: None,
            config: ServerConfig::default(),
            backplane: None,
            path_prefix: None,
            cors: None,
            publish_api: None,
            #[cfg(feature = "tls")]
            tls: None,
            on_start: Vec::new(),
        }
    }

    /// Runs `hook` once, when the server is built and before it serves anything (after
    /// every endpoint's [`Endpoint::on_start`]): configure channels, add presence hooks,
    /// start background tasks that post with the handle. For apps whose endpoints are
    /// method tables only; an [`Endpoint`] can do the same in its own `on_start`.
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// use std::time::Duration;
    /// use streampod::messages::{ChannelConfig, Reach};
    ///
    /// # async fn run() -> Result<(), streampod::StartError> {
    /// let server = streampod::Server::<Protocol>::builder()
    ///     .on_start(|server| {
    ///         let messages = server.messages();
    ///         messages.configure_namespace("room-", ChannelConfig::default().with_presence());
    ///         tokio::spawn(async move {
    ///             loop {
    ///                 tokio::time::sleep(Duration::from_secs(60)).await;
    ///                 let tick = ChatMessage { content: "a minute passed".into() };
    ///                 let _ = messages.post_message("clock", tick, Reach::Local);
    ///             }
    ///         });
    ///     })
    ///     .bind("127.0.0.1:8080")
    ///     .await?;
    /// # let _ = server;
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_start(mut self, hook: impl FnOnce(&ServerHandle<P>) + Send + 'static) -> Self {
        self.on_start.push(Box::new(hook));
        self
    }

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

    /// What the registered HTTP methods take and answer, for client generators: write it
    /// as JSON and hand it to `streampod-codegen` (`typescript … --methods FILE`) to give
    /// the TypeScript client a typed function per method. The Rust signatures stay the
    /// one source of truth.
    ///
    /// ```
    /// # streampod::__doc_models!();
    /// use streampod::{endpoint, Server};
    ///
    /// struct Greeter;
    ///
    /// #[endpoint]
    /// impl Greeter {
    ///     /// Greets `name`.
    ///     pub async fn hello(&self, name: String, times: Option<i64>) -> String {
    ///         format!("hello {name} {times:?}")
    ///     }
    /// }
    ///
    /// let schema = Server::<Protocol>::builder().methods("greeter", Greeter).method_schema();
    /// let hello = &schema.endpoints[0].methods[0];
    /// assert_eq!((hello.name.as_str(), hello.returns.as_str()), ("hello", "String"));
    /// assert_eq!(hello.args[1].ty, "int?");
    /// assert_eq!(hello.docs, "Greets `name`.");
    /// ```
    pub fn method_schema(&self) -> crate::protocol::schema::MethodSchema {
        self.methods.schema()
    }

    /// Writes [`ServerBuilder::method_schema`] as pretty JSON to `path` when the file
    /// does not already hold it, and says whether it wrote. `streampod-codegen` reads
    /// the file (`Builder::methods_file`) to generate typed calls for the Rust and
    /// TypeScript clients; call this from a test so a changed method fails the test once
    /// and updates the file:
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # fn server() -> streampod::ServerBuilder<Protocol> { streampod::Server::builder() }
    /// #[test]
    /// fn method_schema_is_current() {
    ///     let path = concat!(env!("CARGO_MANIFEST_DIR"), "/methods.json");
    ///     let wrote = server().write_method_schema(path).expect("methods.json is writable");
    ///     assert!(!wrote, "methods.json was stale and is now rewritten: build again");
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// The I/O error when the file cannot be written.
    pub fn write_method_schema(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<bool> {
        let mut json = serde_json::to_string_pretty(&self.method_schema())
            .map_err(std::io::Error::other)?;
        json.push('\n');
        let path = path.as_ref();
        if std::fs::read(path).is_ok_and(|existing| existing == json.as_bytes()) {
            return Ok(false);
        }
        std::fs::write(path, json)?;
        Ok(true)
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

    /// Joins a cluster: `Reach::Global` posts and broadcasts then reach every server
    /// connected to the same Redis (see [`crate::cluster`]). The server starts even
    /// while Redis is down and connects when it comes up.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.backplane = Some(Box::new(move |sink| {
            let redis = Arc::new(RedisBackplane::start(config, sink).map_err(StartError::Cluster)?);
            let (node, max_global_age) = (redis.node(), redis.max_global_age());
            let backends = Backends::new(redis.clone())
                .with_history(redis.clone())
                .with_presence(redis);
            Ok(Backplane::new(node, backends, max_global_age))
        }));
        self
    }

    /// Joins a cluster through NATS: `Reach::Global` posts and broadcasts travel over
    /// core NATS subjects to every server connected to the same NATS (see
    /// [`NatsConfig`]); channels with history keep it in JetStream, presence lives in
    /// JetStream key-value buckets. The server starts even while NATS is down and
    /// connects when it comes up. Replaces an earlier [`cluster`](Self::cluster).
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// use streampod::cluster::NatsConfig;
    ///
    /// # async fn run() -> Result<(), streampod::StartError> {
    /// let server = streampod::Server::<Protocol>::builder()
    ///     .nats(NatsConfig::new("nats://127.0.0.1:4222").prefix("chat"))
    ///     .bind("127.0.0.1:8080")
    ///     .await?;
    /// # let _ = server;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    pub fn nats(mut self, config: NatsConfig) -> Self {
        self.backplane = Some(Box::new(move |sink| {
            let nats = Arc::new(NatsBackplane::start(config, sink).map_err(StartError::Nats)?);
            let (node, max_global_age) = (nats.node(), nats.max_global_age());
            let backends = Backends::new(nats.clone())
                .with_history(nats.clone())
                .with_presence(nats);
            Ok(Backplane::new(node, backends, max_global_age))
        }));
        self
    }

    /// Joins a cluster through a backend of your own: `start` gets this server's
    /// [`Inbox`] (where the backend hands what it receives) and returns its
    /// [`Backends`]: a [`PubSub`](crate::cluster::PubSub), and the [`History`](crate::cluster::History) and
    /// [`Presence`](crate::cluster::Presence) it keeps, if any. `Reach::Global` posts
    /// and broadcasts then travel through it. Replaces an earlier
    /// [`cluster`](Self::cluster).
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// use std::future::Future;
    /// use streampod::cluster::{Backends, ClusterError, ClusterState, Inbox, PubSub, Reached, Topic};
    /// use tokio::sync::watch;
    ///
    /// /// A "cluster" of one: what is published comes straight back.
    /// struct Loopback {
    ///     inbox: Inbox,
    ///     state: watch::Sender<ClusterState>,
    /// }
    ///
    /// impl PubSub for Loopback {
    ///     fn subscribe(&self, _: Topic<'_>) {}
    ///     fn unsubscribe(&self, _: Topic<'_>) {}
    ///     fn publish(
    ///         &self,
    ///         topic: Topic<'_>,
    ///         payload: Vec<u8>,
    ///     ) -> Result<impl Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    ///     {
    ///         self.inbox.deliver(topic, &payload);
    ///         Ok(async { Ok(Some(1)) })
    ///     }
    ///     fn state(&self) -> watch::Receiver<ClusterState> {
    ///         self.state.subscribe()
    ///     }
    /// }
    ///
    /// # async fn run() -> Result<(), streampod::StartError> {
    /// let server = streampod::Server::<Protocol>::builder()
    ///     .backplane(|inbox| {
    ///         let state = watch::channel(ClusterState::Connected).0;
    ///         Backends::new(Loopback { inbox, state })
    ///     })
    ///     .bind("127.0.0.1:8080")
    ///     .await?;
    /// # let _ = server;
    /// # Ok(())
    /// # }
    /// ```
    pub fn backplane(mut self, start: impl FnOnce(Inbox) -> Backends + Send + 'static) -> Self {
        self.backplane = Some(Box::new(move |sink| {
            let backends = start(Inbox::new(sink));
            let node = crate::util::random::random_u64();
            Ok(Backplane::new(node, backends, DEFAULT_MAX_GLOBAL_AGE))
        }));
        self
    }

    /// Replaces the configuration (default [`ServerConfig::default`]).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves every route under `prefix` (e.g. `"/rt"`: clients open `/rt/websocket`
    /// and call `POST /rt/<endpoint>/<method>`); requests outside it get 404. Default
    /// none: Serverpod clients expect `/websocket` and `/<endpoint>` at the root. Under
    /// axum's `nest_service`, which strips the prefix itself, leave it unset.
    ///
    /// # Panics
    ///
    /// When `prefix` does not start with `/` or ends with one.
    #[track_caller]
    pub fn path_prefix(mut self, prefix: &str) -> Self {
        assert!(
            prefix.starts_with('/') && !prefix.ends_with('/'),
            "streampod: path prefix '{prefix}' must start with '/' and not end with one"
        );
        self.path_prefix = Some(Arc::from(prefix));
        self
    }

    /// Opens the publish API for other backends (Django, Rails, Node, Go, …) to
    /// requests carrying `api_key` (`Authorization: Bearer <key>` or `X-API-Key`):
    /// `POST /api/publish`, `/api/broadcast`, `/api/history`, `/api/presence`, with an
    /// OpenAPI description at `GET /api/openapi.json`. Off until called; the key is
    /// kept as a digest only. Guide: "The publish API" in `framework/docs/server.md`.
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # fn demo() {
    /// let key = std::env::var("STREAMPOD_API_KEY").expect("an API key");
    /// let builder = streampod::Server::<Protocol>::builder().publish_api(&key);
    /// # let _ = builder;
    /// # }
    /// ```
    pub fn publish_api(mut self, api_key: &str) -> Self {
        self.publish_api = Some(PublishApi::new(api_key));
        self
    }

    /// Which web origins browsers may call from (see [`Cors`]). Default: any origin
    /// under [`bind`](Self::bind)/[`serve`](Self::serve), as Serverpod answers; none
    /// added to a mounted [`into_service`](Self::into_service), whose host app has its
    /// own CORS layer, unless set here.
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Serves TLS (HTTPS and `wss://`) with `identity` on [`bind`](Self::bind) and
    /// [`serve`](Self::serve). Mounted as a service, the host server does TLS instead.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, identity: crate::server::tls::TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Binds `addr` and starts serving with the convenience server (HTTP/1.1, every
    /// connection limit and timeout of [`ServerConfig`]).
    ///
    /// # Errors
    ///
    /// [`StartError::Listen`] when the address cannot be bound;
    /// `StartError::Cluster` (feature `redis`) when the cluster's Redis URL is invalid.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<Server<P>, StartError> {
        let listener = crate::server::serve::listen(addr, self.config.listen_backlog)
            .await
            .map_err(StartError::Listen)?;
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
    /// [`StartError::Listen`] when the listener's local address cannot be read;
    /// `StartError::Cluster` (feature `redis`) when the cluster's Redis URL is invalid.
    pub fn serve(self, listener: TcpListener) -> Result<Server<P>, StartError> {
        let connections = Arc::new(Connections::new(
            self.config.max_connections,
            self.config.max_connections_per_ip,
        ));
        #[cfg(feature = "tls")]
        let tls = self.tls.as_ref().map(crate::server::tls::TlsIdentity::acceptor);
        #[cfg(not(feature = "tls"))]
        let tls = None;
        let mut builder = self;
        builder.cors.get_or_insert_with(Cors::default);
        let service = builder.build(Some(connections.clone()))?;
        Server::start(service, listener, connections, tls).map_err(StartError::Listen)
    }

    /// The tower service for mounting in an existing app (axum, hyper, tower-http
    /// layers, TLS, HTTP/2 for method calls). The host server owns the connections:
    /// [`ServerConfig`]'s connection caps and HTTP timeouts apply only to
    /// [`bind`](Self::bind); everything about sessions and messages applies here too.
    /// Stop it with [`ServerHandle::shutdown`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Errors
    ///
    /// `StartError::Cluster` (feature `redis`) when the cluster's Redis URL is invalid.
    pub fn into_service(self) -> Result<StreampodService<P>, StartError> {
        self.build(None)
    }

    fn build(
        self,
        connections: Option<Arc<Connections>>,
    ) -> Result<StreampodService<P>, StartError> {
        let sessions = Arc::new(SessionRegistry::default());
        let revocations = Arc::new(Revocations::new(
            self.config.revocation_retention,
            self.config.max_revocations,
        ));
        let messages = MessageCentral::new(
            sessions.clone(),
            self.config.outbound_queue_frames,
            SessionLimits {
                channels: self.config.max_channels_per_session,
                channel_name_len: self.config.max_channel_name_len,
                frame_bytes: self.config.outbound_queue_bytes,
            },
            tokio::runtime::Handle::current(),
            revocations.clone(),
        );
        messages.set_idempotency_window(self.config.idempotency_window);
        if let Some(start) = self.backplane {
            messages.attach_backplane(start)?;
        }
        if let Some(limit) = self.config.user_rate_limit {
            messages.set_user_rate_limit(limit);
        }
        let metrics = Arc::new(Metrics::new(scrape(
            messages.clone(),
            sessions.clone(),
            connections.clone(),
        )));
        let shutdown = CancellationToken::new();
        let config_call_limit = self.config.http_call_rate_limit;
        let config = Arc::new(self.config);
        let method_socket_registry: Arc<SessionRegistry> = Arc::default();
        let handle = ServerHandle::new(
            messages.clone(),
            sessions.clone(),
            method_socket_registry.clone(),
            shutdown.clone(),
            config.shutdown_timeout,
        );
        for registered in self.endpoints.iter() {
            registered.endpoint.on_start(&handle);
        }
        for hook in self.on_start {
            hook(&handle);
        }
        let streams = Arc::new(SocketContext {
            endpoints: self.endpoints,
            authentication: Authenticator::new(
                self.authentication,
                config.failed_auth_rate_limit,
                revocations.clone(),
            ),
            config,
            sessions,
            method_sockets: method_socket_registry,
            messages,
            metrics,
            held_bytes: Arc::default(),
            shutdown,
            next_id: AtomicU64::new(1),
        });
        // A revocation wakes the sessions it names, and every streaming-method socket
        // (each call has its own identity): their readers look at their identities.
        let (endpoint_sessions, method_sockets) = (
            Arc::downgrade(&streams.sessions),
            Arc::downgrade(&streams.method_sockets),
        );
        revocations.on_revoke(move |revoked| {
            if let Some(sessions) = endpoint_sessions.upgrade() {
                sessions.recheck_revoked(revoked);
            }
            if let Some(sockets) = method_sockets.upgrade() {
                sockets.recheck_all();
            }
        });
        tokio::spawn(memory_guard::run(
            [streams.sessions.clone(), streams.method_sockets.clone()],
            streams.held_bytes.clone(),
            streams.config.max_total_queued_bytes,
            streams.metrics.memory_guard_closes.clone(),
            streams.shutdown.clone(),
        ));
        let methods = Arc::new(self.methods);
        let method_sockets = Arc::new(MethodSocketContext {
            streams: streams.clone(),
            methods: methods.clone(),
            handle: handle.clone(),
            shapes: Default::default(),
        });
        Ok(StreampodService::new(ServiceState {
            streams,
            methods,
            method_sockets,
            files: self.files,
            path_prefix: self.path_prefix,
            handle,
            connections,
            cors: self.cors.as_ref().and_then(Cors::layer),
            call_limiter: config_call_limit.map(PerAddress::new),
            publish_api: self.publish_api,
            event_streams: Arc::default(),
        }))
    }
}

impl<P: ModelSet> Server<P> {
    /// A builder with no endpoints and the default configuration.
    pub fn builder() -> ServerBuilder<P> {
        ServerBuilder::new()
    }
}

/// What a metrics scrape reads: levels and the message central's totals.
fn scrape<P: ModelSet>(
    messages: MessageCentral<P>,
    sessions: Arc<SessionRegistry>,
    connections: Option<Arc<Connections>>,
) -> metrics::Source {
    Box::new(move || {
        let stats = messages.stats();
        let cluster = messages.cluster();
        metrics::Snapshot {
            connections_open: connections.as_ref().map_or(0, |c| c.open()),
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
            cluster_round_trip: cluster.and_then(Backplane::last_round_trip),
            cluster_posts_failed: cluster.map(Backplane::failed_posts),
            cluster_stale_dropped: cluster.map(|_| stats.stale_global),
        }
    })
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

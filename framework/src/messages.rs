//! The message central: named channels with listeners, and posting to them.
//!
//! A listener is a session that joined the channel (it receives each message as a frame
//! from the endpoint it joined through), a callback, or a [`ChannelStream`]. A post
//! encodes the message once per endpoint name and shares the frame with every session's
//! queue; it never waits for a consumer.
//!
//! ```no_run
//! # streampod::__doc_models!();
//! use streampod::messages::Scope;
//! # fn demo(server: streampod::ServerHandle<Protocol>) {
//! let messages = server.messages();
//! let report = messages
//!     .post_message("room-1", ChatMessage { content: "hi".into() }, Scope::Local)
//!     .expect("encodable");
//! println!("{} delivered, {} dropped", report.delivered, report.dropped);
//! # }
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use crate::broadcast::{Batched, Broadcast, Throttle, Throttled};
use crate::cluster::{Cluster, ClusterConfig, ClusterError, ClusterState, Envelope, Received};
use crate::config::SlowConsumerPolicy;
use crate::outbound::{ChannelKey, Push};
use crate::owned::{ListenerId, Owned, OwnedListeners};
use crate::protocol::{frame, EncodeError, ModelSet};
use crate::registry::SessionRegistry;
use crate::session::{SessionShared, StreamingSession};

/// Where a post goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Listeners on this server (the default, unlike Serverpod's old global default).
    #[default]
    Local,
    /// Listeners on every server of the cluster, delivered through Redis (the posting
    /// server's own listeners included, so everyone sees one order per channel). The
    /// post returns before delivery, with an empty report; it fails at once while Redis
    /// is unreachable. Without a cluster configured
    /// ([`ServerBuilder::cluster`](crate::ServerBuilder::cluster)) this is the same as
    /// `Local`.
    Global,
}

/// What a local post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    /// Listeners the message was queued for or handed to.
    pub delivered: usize,
    /// Frames dropped by `DropOldest`/`LatestValue` policies (older ones, or this one).
    pub dropped: usize,
    /// Sessions disconnected as slow consumers by this post.
    pub disconnected: usize,
}

impl DeliveryReport {
    pub(crate) fn count(&mut self, push: Push) {
        match push {
            Push::Queued => self.delivered += 1,
            Push::QueuedDropping(dropped) => {
                self.delivered += 1;
                self.dropped += dropped;
            }
            Push::Dropped(dropped) => self.dropped += dropped,
            Push::Overflow => self.disconnected += 1,
            Push::Closed => {}
        }
    }
}

/// Why a post failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A `Global` post could not be handed to the cluster.
    #[error("global post failed: {0}")]
    Cluster(#[from] ClusterError),
    /// A `Global` broadcast had a filter: the closure cannot run on other servers.
    #[error(
        "a Global broadcast cannot carry a filter (the closure cannot run on other \
         servers); post to a channel the right sessions joined, or filter locally"
    )]
    GlobalFilter,
}

/// Per-channel settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// What a subscriber whose queue is full gets. Default `Disconnect`.
    pub slow_consumer: SlowConsumerPolicy,
}

impl ChannelConfig {
    /// A config with `policy`.
    pub fn slow_consumer(policy: SlowConsumerPolicy) -> Self {
        Self {
            slow_consumer: policy,
        }
    }
}

/// Cumulative counters of the message central.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MessageStats {
    /// Posts and broadcasts made.
    pub posts: u64,
    /// Frames encoded for them (one per post and endpoint name, not per recipient).
    pub frames_encoded: u64,
    /// Messages queued for or handed to a listener, over all local posts.
    pub deliveries: u64,
    /// Frames dropped by the `DropOldest` and `LatestValue` policies, all channels.
    pub dropped: u64,
    /// Of those, dropped on channels whose policy is `DropOldest`.
    pub dropped_oldest: u64,
    /// Of those, replaced on channels whose policy is `LatestValue`.
    pub dropped_latest_value: u64,
    /// Sessions disconnected as slow consumers by posts.
    pub disconnected: u64,
}

/// Why a session could not join a channel or add a listener.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The session is closing or closed, or the endpoint stream it joins through has
    /// closed (for instance after the session's identity changed).
    #[error("the session (or this endpoint's stream) is closed")]
    Closed,
    /// The session already holds the most channels it may
    /// ([`ServerConfig::max_channels_per_session`](crate::ServerConfig::max_channels_per_session)).
    #[error("the session already holds {limit} channels, the most it may; leave one first")]
    TooManyChannels {
        /// The limit.
        limit: usize,
    },
    /// The channel name is longer than
    /// [`ServerConfig::max_channel_name_len`](crate::ServerConfig::max_channel_name_len).
    #[error("a channel name of {len} bytes exceeds the limit of {limit} bytes")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// What one session may hold in the central.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub(crate) channels: usize,
    pub(crate) channel_name_len: usize,
}

impl SessionLimits {
    fn check(&self, owned: &OwnedListeners, channel: &str) -> Result<(), JoinError> {
        if channel.len() > self.channel_name_len {
            return Err(JoinError::NameTooLong {
                len: channel.len(),
                limit: self.channel_name_len,
            });
        }
        if owned.len() >= self.channels {
            return Err(JoinError::TooManyChannels {
                limit: self.channels,
            });
        }
        Ok(())
    }
}

/// Listeners removed between two yields to the runtime, so a session holding many
/// channels never stalls other tasks while it closes.
const REMOVALS_PER_YIELD: usize = 64;

enum Listener<P> {
    Session {
        id: ListenerId,
        session: Arc<SessionShared>,
        endpoint: Arc<str>,
    },
    Callback {
        id: ListenerId,
        callback: Arc<dyn Fn(&P) + Send + Sync>,
    },
    Stream {
        id: ListenerId,
        queue: Arc<StreamQueue<P>>,
    },
}

impl<P> Listener<P> {
    fn id(&self) -> ListenerId {
        match self {
            Listener::Session { id, .. }
            | Listener::Callback { id, .. }
            | Listener::Stream { id, .. } => *id,
        }
    }
}

struct Channel<P> {
    key: ChannelKey,
    policy: AtomicU8,
    /// Copy-on-write: a post clones the `Arc` and iterates unlocked; a change copies the
    /// list only while such a snapshot is alive (`Arc::make_mut`), so mass joins stay O(1).
    listeners: Mutex<Arc<Vec<Listener<P>>>>,
}

impl<P> Channel<P> {
    fn snapshot(&self) -> Arc<Vec<Listener<P>>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn policy(&self) -> SlowConsumerPolicy {
        match self.policy.load(Ordering::Relaxed) {
            1 => SlowConsumerPolicy::DropOldest,
            2 => SlowConsumerPolicy::LatestValue,
            _ => SlowConsumerPolicy::Disconnect,
        }
    }

    fn set_policy(&self, policy: SlowConsumerPolicy) {
        let code = match policy {
            SlowConsumerPolicy::Disconnect => 0,
            SlowConsumerPolicy::DropOldest => 1,
            SlowConsumerPolicy::LatestValue => 2,
        };
        self.policy.store(code, Ordering::Relaxed);
    }
}

const SHARDS: usize = 16;

type Shard<P> = Mutex<HashMap<Arc<str>, Arc<Channel<P>>>>;

pub(crate) struct Central<P> {
    shards: [Shard<P>; SHARDS],
    configs: RwLock<HashMap<String, ChannelConfig>>,
    pub(crate) sessions: Arc<SessionRegistry>,
    stream_capacity: usize,
    limits: SessionLimits,
    next_key: AtomicU64,
    next_listener: AtomicU64,
    posts: AtomicU64,
    frames_encoded: AtomicU64,
    /// Totals of every local post's [`DeliveryReport`], added once per post.
    delivered: AtomicU64,
    /// Dropped frames by the policy that dropped them: index 0 direct sends and
    /// broadcasts, 1 `DropOldest` channels, 2 `LatestValue` channels.
    dropped: [AtomicU64; 3],
    disconnected: AtomicU64,
    listeners: AtomicUsize,
    /// Redis backplane for `Global` posts, when configured.
    cluster: OnceLock<Cluster>,
    /// Where throttled and batched posts schedule their timers.
    pub(crate) runtime: tokio::runtime::Handle,
}

/// The message central of a server: cheap to clone, usable from any task.
pub struct MessageCentral<P> {
    pub(crate) inner: Arc<Central<P>>,
}

impl<P> Clone for MessageCentral<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<P> fmt::Debug for MessageCentral<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageCentral")
            .field("listeners", &self.inner.listeners.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The frames of one post, encoded lazily once per endpoint name.
pub(crate) struct Frames<'a, E> {
    encode: E,
    encoded: Vec<(Arc<str>, Utf8Bytes)>,
    counter: &'a AtomicU64,
}

impl<'a, E: Fn(&str, &mut Vec<u8>) -> Result<(), EncodeError>> Frames<'a, E> {
    pub(crate) fn new(encode: E, counter: &'a AtomicU64) -> Self {
        Self {
            encode,
            encoded: Vec::new(),
            counter,
        }
    }

    pub(crate) fn get(&mut self, endpoint: &Arc<str>) -> Result<Utf8Bytes, EncodeError> {
        if let Some((_, frame)) = self.encoded.iter().find(|(name, _)| name == endpoint) {
            return Ok(frame.clone());
        }
        let mut buffer = Vec::with_capacity(128);
        (self.encode)(endpoint, &mut buffer)?;
        let frame = utf8_frame(buffer);
        self.counter.fetch_add(1, Ordering::Relaxed);
        self.encoded.push((endpoint.clone(), frame.clone()));
        Ok(frame)
    }
}

/// A frame from encoder output (always UTF-8: serde_json writes nothing else).
pub(crate) fn utf8_frame(buffer: Vec<u8>) -> Utf8Bytes {
    Utf8Bytes::from(
        String::from_utf8(buffer)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

impl<P> MessageCentral<P> {
    fn shard(&self, channel: &str) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Channel<P>>>> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        channel.hash(&mut hasher);
        self.inner.shards[(hasher.finish() as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn channel(&self, channel: &str) -> Option<Arc<Channel<P>>> {
        self.shard(channel).get(channel).cloned()
    }

    /// Removes a listener; `false` when it was not there. An emptied channel is dropped.
    pub(crate) fn remove(&self, channel: &str, id: ListenerId) -> bool {
        let mut shard = self.shard(channel);
        let Some(entry) = shard.get(channel).cloned() else {
            return false;
        };
        let mut listeners = entry
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(index) = listeners.iter().position(|l| l.id() == id) else {
            return false;
        };
        let next = Arc::make_mut(&mut listeners);
        if let Listener::Stream { queue, .. } = next.remove(index) {
            queue.close();
        }
        let now_empty = next.is_empty();
        drop(listeners);
        self.inner.listeners.fetch_sub(1, Ordering::Relaxed);
        if now_empty {
            shard.remove(channel);
            if let Some(cluster) = self.inner.cluster.get() {
                cluster.unsubscribe(channel);
            }
        }
        true
    }
}

impl<P: ModelSet> MessageCentral<P> {
    pub(crate) fn new(
        sessions: Arc<SessionRegistry>,
        stream_capacity: usize,
        limits: SessionLimits,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            inner: Arc::new(Central {
                shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
                configs: RwLock::new(HashMap::new()),
                sessions,
                stream_capacity,
                limits,
                next_key: AtomicU64::new(1),
                next_listener: AtomicU64::new(1),
                posts: AtomicU64::new(0),
                frames_encoded: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                dropped: std::array::from_fn(|_| AtomicU64::new(0)),
                disconnected: AtomicU64::new(0),
                listeners: AtomicUsize::new(0),
                cluster: OnceLock::new(),
                runtime,
            }),
        }
    }

    /// Sets a channel's options; they apply to current and future listeners and stay
    /// after the channel's last listener leaves.
    pub fn configure_channel(&self, channel: &str, config: ChannelConfig) {
        self.inner
            .configs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel.to_owned(), config);
        if let Some(existing) = self.channel(channel) {
            existing.set_policy(config.slow_consumer);
        }
    }

    fn add(&self, channel: &str, make: impl FnOnce(ListenerId) -> Listener<P>) -> ListenerId {
        let id = self.inner.next_listener.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.shard(channel);
        let entry = shard.entry(Arc::from(channel)).or_insert_with(|| {
            let config = self
                .inner
                .configs
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(channel)
                .copied()
                .unwrap_or_default();
            let created = Channel {
                key: self.inner.next_key.fetch_add(1, Ordering::Relaxed),
                policy: AtomicU8::new(0),
                listeners: Mutex::new(Arc::new(Vec::new())),
            };
            created.set_policy(config.slow_consumer);
            if let Some(cluster) = self.inner.cluster.get() {
                cluster.subscribe(channel);
            }
            Arc::new(created)
        });
        let mut listeners = entry
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Copies the list only while a post still iterates the old one.
        Arc::make_mut(&mut listeners).push(make(id));
        self.inner.listeners.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// Calls `listener` with every message posted to `channel` (on the posting task;
    /// keep it short and spawn for slow work). It stays until
    /// [`ListenerHandle::remove`]; listeners added through
    /// [`SessionMessages::add_listener`] go when their session closes.
    pub fn add_listener(
        &self,
        channel: &str,
        listener: impl Fn(&P) + Send + Sync + 'static,
    ) -> ListenerHandle<P> {
        let callback: Arc<dyn Fn(&P) + Send + Sync> = Arc::new(listener);
        let id = self.add(channel, |id| Listener::Callback { id, callback });
        ListenerHandle {
            central: self.clone(),
            channel: Arc::from(channel),
            id,
            owner: None,
        }
    }

    /// A stream of the messages posted to `channel` from now on (Serverpod's
    /// `createStream`). It holds at most the server's outbound queue size; the
    /// channel's slow-consumer policy applies when it is full (`Disconnect` ends it).
    pub fn create_stream(&self, channel: &str) -> ChannelStream<P> {
        let queue = Arc::new(StreamQueue::new(self.inner.stream_capacity));
        let id = self.add(channel, |id| Listener::Stream {
            id,
            queue: queue.clone(),
        });
        ChannelStream {
            queue,
            guard: ListenerHandle {
                central: self.clone(),
                channel: Arc::from(channel),
                id,
                owner: None,
            },
            pending: None,
        }
    }

    /// Adds `session` as a listener of `channel`, receiving frames from `endpoint`;
    /// `Ok(false)` when it already listens there.
    pub(crate) fn join(
        &self,
        stream: &StreamingSession<P>,
        channel: &str,
    ) -> Result<bool, JoinError> {
        let (session, endpoint) = (&stream.handle().shared, stream.endpoint_name());
        let mut owned = owned_listeners(session);
        // Checked under the lock the stream's closing takes: nothing joins after it.
        let owned = owned
            .as_mut()
            .filter(|_| stream.is_stream_open())
            .ok_or(JoinError::Closed)?;
        if owned.has_joined(channel) {
            return Ok(false);
        }
        self.inner.limits.check(owned, channel)?;
        let id = self.add(channel, |id| Listener::Session {
            id,
            session: session.clone(),
            endpoint: endpoint.clone(),
        });
        owned.add_join(Owned {
            channel: Arc::from(channel),
            id,
            endpoint: endpoint.clone(),
        });
        Ok(true)
    }

    /// Removes `session` from `channel`; `false` when it was not there.
    pub(crate) fn leave(&self, session: &SessionShared, channel: &str) -> bool {
        let left = owned_listeners(session)
            .as_mut()
            .and_then(|owned| owned.take_join(channel));
        left.is_some_and(|left| self.remove(&left.channel, left.id))
    }

    /// Adds a callback owned by `session` through `endpoint`: removed when that
    /// endpoint's stream closes.
    pub(crate) fn add_session_callback(
        &self,
        stream: &StreamingSession<P>,
        channel: &str,
        listener: impl Fn(&P) + Send + Sync + 'static,
    ) -> Result<ListenerHandle<P>, JoinError> {
        let (session, endpoint) = (&stream.handle().shared, stream.endpoint_name());
        let mut owned = owned_listeners(session);
        let owned = owned
            .as_mut()
            .filter(|_| stream.is_stream_open())
            .ok_or(JoinError::Closed)?;
        self.inner.limits.check(owned, channel)?;
        let mut handle = self.add_listener(channel, listener);
        owned.add_callback(Owned {
            channel: handle.channel.clone(),
            id: handle.id,
            endpoint: endpoint.clone(),
        });
        handle.owner = Some(Arc::downgrade(session));
        Ok(handle)
    }

    /// Ends `stream` (later joins through it fail) and removes what it added.
    pub(crate) async fn close_stream(&self, stream: &StreamingSession<P>) {
        let taken = {
            let mut owned = owned_listeners(&stream.handle().shared);
            stream.mark_stream_closed();
            owned
                .as_mut()
                .map(|owned| owned.take(Some(stream.endpoint())))
                .unwrap_or_default()
        };
        self.remove_owned(taken).await;
    }

    /// Removes every listener `session` owns; later joins are refused.
    pub(crate) async fn remove_session(&self, session: &SessionShared) {
        let taken = owned_listeners(session)
            .take()
            .map(|mut owned| owned.take(None))
            .unwrap_or_default();
        self.remove_owned(taken).await;
    }

    /// Removes `owned` from their channels, yielding now and then: O(channels held).
    async fn remove_owned(&self, owned: Vec<Owned>) {
        for chunk in owned.chunks(REMOVALS_PER_YIELD) {
            for listener in chunk {
                self.remove(&listener.channel, listener.id);
            }
            if owned.len() > REMOVALS_PER_YIELD {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Posts `message` to every listener of `channel`. Never waits for a consumer.
    ///
    /// # Errors
    ///
    /// [`PostError::Encode`] when the message cannot be encoded; for `Global` on a
    /// cluster, [`PostError::Cluster`] when Redis is unreachable or the publish queue
    /// is full (the post fails at once, it is not buffered).
    pub fn post_message(
        &self,
        channel: &str,
        message: impl Into<P>,
        scope: Scope,
    ) -> Result<DeliveryReport, PostError> {
        let message = message.into();
        match (scope, self.cluster()) {
            (Scope::Global, Some(cluster)) => {
                let payload = Envelope::encode(cluster.node, None, None, &message)?;
                cluster.publish(cluster.channel_name(channel), payload)?;
                self.count_post();
                Ok(DeliveryReport::default())
            }
            _ => self.deliver(channel, &[Arc::new(message)], |_| true),
        }
    }

    /// Posts `message` to `channel` on every server of the cluster and waits until Redis
    /// took it: the number of servers listening on `channel` (0 when none is). Without
    /// a cluster this posts locally and returns 1 when the channel has listeners here.
    ///
    /// # Errors
    ///
    /// [`PostError::Encode`]; [`PostError::Cluster`] when Redis is unreachable, the
    /// publish queue is full, or Redis did not confirm within the publish timeout.
    pub async fn post_global(
        &self,
        channel: &str,
        message: impl Into<P>,
    ) -> Result<usize, PostError> {
        let message = message.into();
        let Some(cluster) = self.cluster() else {
            let report = self.deliver(channel, &[Arc::new(message)], |_| true)?;
            return Ok(usize::from(report.delivered > 0));
        };
        let payload = Envelope::encode(cluster.node, None, None, &message)?;
        self.count_post();
        Ok(cluster
            .publish_confirmed(cluster.channel_name(channel), payload)
            .await?)
    }

    /// The cluster connection's state; `None` without a cluster.
    pub fn cluster_state(&self) -> Option<ClusterState> {
        self.cluster().map(Cluster::state)
    }

    /// Changes of the cluster connection's state; `None` without a cluster.
    pub fn cluster_state_changes(&self) -> Option<tokio::sync::watch::Receiver<ClusterState>> {
        self.cluster().map(Cluster::state_changes)
    }

    /// Stops the cluster tasks (server shutdown); `Global` posts fail afterwards.
    pub(crate) fn leave_cluster(&self) {
        if let Some(cluster) = self.cluster() {
            cluster.stop();
        }
    }

    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.get()
    }

    /// Connects this central to a cluster. Called once, by the server builder.
    pub(crate) fn start_cluster(&self, config: ClusterConfig) -> Result<(), redis::RedisError> {
        let central: Weak<Central<P>> = Arc::downgrade(&self.inner);
        let cluster = Cluster::start(
            config,
            Box::new(move |received| {
                if let Some(inner) = central.upgrade() {
                    MessageCentral { inner }.receive(&received);
                }
            }),
        )?;
        let _ = self.inner.cluster.set(cluster);
        Ok(())
    }

    /// Delivers a message that came through Redis to this server's listeners.
    fn receive(&self, received: &Received<'_>) {
        let envelope: Envelope<'_> = match serde_json::from_slice(received.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(target: "streampod::cluster", %error, "ignoring a malformed cluster message");
                return;
            }
        };
        let node = self.cluster().map(|c| c.node);
        // Session ids are per server: `except` applies on the posting server only.
        let except = envelope.except.filter(|_| Some(envelope.node) == node);
        let include = |session: &Arc<SessionShared>| Some(session.id) != except;
        let payload = Payload::Object(envelope.object.get());
        let result = match (received.channel, envelope.endpoint) {
            (Some(channel), _) => self.deliver_payload(channel, &payload, include),
            (None, Some(endpoint)) => {
                let sessions = match &envelope.user {
                    Some(user) => self.inner.sessions.sessions_of_user(user),
                    None => self.inner.sessions.snapshot(),
                };
                self.deliver_to_sessions(&sessions, &Arc::from(&*endpoint), &payload, include)
            }
            (None, None) => return,
        };
        if let Err(error) = result {
            tracing::warn!(target: "streampod::cluster", %error, "could not deliver a cluster message");
        }
    }

    /// Delivers `messages` to `channel`'s listeners: sessions get one frame (a batch
    /// frame for several messages) encoded once per endpoint; callbacks and streams get
    /// each message. `include` selects sessions.
    pub(crate) fn deliver(
        &self,
        channel: &str,
        messages: &[Arc<P>],
        include: impl Fn(&Arc<SessionShared>) -> bool,
    ) -> Result<DeliveryReport, PostError> {
        self.deliver_payload(channel, &Payload::Models(messages), include)
    }

    /// Pushes `payload`, framed as from `endpoint`, to each of `sessions` that `include`
    /// selects; one encode in all.
    pub(crate) fn deliver_to_sessions(
        &self,
        sessions: &[Arc<SessionShared>],
        endpoint: &Arc<str>,
        payload: &Payload<'_, P>,
        include: impl Fn(&Arc<SessionShared>) -> bool,
    ) -> Result<DeliveryReport, PostError> {
        self.count_post();
        let mut frames = Frames::new(
            |endpoint: &str, out: &mut Vec<u8>| payload.encode(endpoint, out),
            &self.inner.frames_encoded,
        );
        let mut report = DeliveryReport::default();
        for session in sessions.iter().filter(|s| include(s)) {
            report.count(session.push(frames.get(endpoint)?));
        }
        self.add_report(&report, None);
        Ok(report)
    }

    fn deliver_payload(
        &self,
        channel: &str,
        payload: &Payload<'_, P>,
        include: impl Fn(&Arc<SessionShared>) -> bool,
    ) -> Result<DeliveryReport, PostError> {
        self.inner.posts.fetch_add(1, Ordering::Relaxed);
        let mut report = DeliveryReport::default();
        let Some(channel) = self.channel(channel) else {
            return Ok(report);
        };
        let listeners = channel.snapshot();
        let policy = channel.policy();
        let mut frames = Frames::new(
            |endpoint: &str, out: &mut Vec<u8>| payload.encode(endpoint, out),
            &self.inner.frames_encoded,
        );
        // Decoded only if a callback or stream listens (a remote post arrives encoded).
        let mut models = None;
        for listener in listeners.iter() {
            match listener {
                Listener::Session {
                    session, endpoint, ..
                } => {
                    if include(session) {
                        report.count(session.push_from(frames.get(endpoint)?, channel.key, policy));
                    }
                }
                Listener::Callback { callback, .. } => {
                    let messages: &[Arc<P>] = models.get_or_insert_with(|| payload.models());
                    for message in messages {
                        if std::panic::catch_unwind(AssertUnwindSafe(|| callback(message))).is_ok()
                        {
                            report.delivered += 1;
                        } else {
                            tracing::error!(target: "streampod::messages", "a channel listener panicked");
                            report.dropped += 1;
                        }
                    }
                }
                Listener::Stream { queue, .. } => {
                    let messages: &[Arc<P>] = models.get_or_insert_with(|| payload.models());
                    for message in messages {
                        report.count(queue.push(message.clone(), policy));
                    }
                }
            }
        }
        self.add_report(&report, Some(policy));
        Ok(report)
    }

    /// Starts a broadcast to every session of the server, framed as from `endpoint`.
    pub fn to_all(&self, endpoint: &str) -> Broadcast<P> {
        Broadcast::all(self.clone(), Arc::from(endpoint))
    }

    /// Starts a broadcast to every session of `user_id` (all their devices), framed as
    /// from `endpoint`.
    pub fn to_user(&self, user_id: &str, endpoint: &str) -> Broadcast<P> {
        Broadcast::user(self.clone(), user_id.to_owned(), Arc::from(endpoint))
    }

    /// Starts a post to `channel` that can leave out sessions (`except`, `filter`).
    pub fn to_channel(&self, channel: &str) -> Broadcast<P> {
        Broadcast::channel(self.clone(), channel.to_owned())
    }

    /// Listeners on `channel`.
    pub fn listener_count(&self, channel: &str) -> usize {
        self.channel(channel).map_or(0, |c| c.snapshot().len())
    }

    /// Listeners on all channels.
    pub fn total_listeners(&self) -> usize {
        self.inner.listeners.load(Ordering::Relaxed)
    }

    /// Channels with at least one listener.
    pub fn channel_count(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Connected sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Cumulative counters.
    pub fn stats(&self) -> MessageStats {
        let inner = &self.inner;
        MessageStats {
            posts: inner.posts.load(Ordering::Relaxed),
            frames_encoded: inner.frames_encoded.load(Ordering::Relaxed),
            deliveries: inner.delivered.load(Ordering::Relaxed),
            dropped: inner
                .dropped
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .sum(),
            dropped_oldest: inner.dropped[1].load(Ordering::Relaxed),
            dropped_latest_value: inner.dropped[2].load(Ordering::Relaxed),
            disconnected: inner.disconnected.load(Ordering::Relaxed),
        }
    }

    /// Adds one post's outcome to the totals: an atomic add or three per post, none
    /// per recipient. `policy` is the channel's; `None` for broadcasts to sessions.
    fn add_report(&self, report: &DeliveryReport, policy: Option<SlowConsumerPolicy>) {
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let inner = &self.inner;
        inner
            .delivered
            .fetch_add(as_u64(report.delivered), Ordering::Relaxed);
        if report.dropped > 0 {
            let by = match policy {
                None | Some(SlowConsumerPolicy::Disconnect) => 0,
                Some(SlowConsumerPolicy::DropOldest) => 1,
                Some(SlowConsumerPolicy::LatestValue) => 2,
            };
            inner.dropped[by].fetch_add(as_u64(report.dropped), Ordering::Relaxed);
        }
        if report.disconnected > 0 {
            inner
                .disconnected
                .fetch_add(as_u64(report.disconnected), Ordering::Relaxed);
        }
    }

    pub(crate) fn count_post(&self) {
        self.inner.posts.fetch_add(1, Ordering::Relaxed);
    }
}

/// The listeners `session` owns; `None` inside once it closed. Holding this lock while
/// adding to a channel is what keeps a closing session from gaining listeners.
fn owned_listeners(session: &SessionShared) -> MutexGuard<'_, Option<OwnedListeners>> {
    session
        .listeners
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// What a post carries: models (a local post), or a frame object that came through the
/// cluster already encoded.
pub(crate) enum Payload<'a, P> {
    Models(&'a [Arc<P>]),
    Object(&'a str),
}

impl<P: ModelSet> Payload<'_, P> {
    fn encode(&self, endpoint: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Payload::Models(messages) => encode(endpoint, messages, out),
            Payload::Object(object) => {
                frame::encode_message_with_object(endpoint, object, out);
                Ok(())
            }
        }
    }

    /// The messages for callback and stream listeners (decoded from a remote object;
    /// none, with a warning, when it does not decode).
    fn models(&self) -> Cow<'_, [Arc<P>]> {
        match self {
            Payload::Models(messages) => Cow::Borrowed(messages),
            Payload::Object(object) => match decode_object::<P>(object) {
                Ok(message) => Cow::Owned(vec![Arc::new(message)]),
                Err(error) => {
                    tracing::warn!(target: "streampod::cluster", %error, "a cluster message does not decode here; callbacks skip it");
                    Cow::Owned(Vec::new())
                }
            },
        }
    }
}

/// Decodes a frame object `{"className":…,"data":…}`.
fn decode_object<P: ModelSet>(object: &str) -> Result<P, String> {
    #[derive(serde::Deserialize)]
    struct Object<'a> {
        #[serde(rename = "className", borrow)]
        class_name: Cow<'a, str>,
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let object: Object<'_> = serde_json::from_str(object).map_err(|e| e.to_string())?;
    P::decode(&object.class_name, object.data).map_err(|e| e.to_string())
}

/// One message as a message frame, several as a batch frame.
pub(crate) fn encode<P: ModelSet>(
    endpoint: &str,
    messages: &[Arc<P>],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match messages {
        [one] => frame::encode_message(endpoint, &**one, out),
        many => frame::encode_batch(endpoint, many.iter().map(|m| &**m), out),
    }
}

/// Cloning an entry clones its handles, never a message (so no `P: Clone` bound).
impl<P> Clone for Listener<P> {
    fn clone(&self) -> Self {
        match self {
            Listener::Session {
                id,
                session,
                endpoint,
            } => Listener::Session {
                id: *id,
                session: session.clone(),
                endpoint: endpoint.clone(),
            },
            Listener::Callback { id, callback } => Listener::Callback {
                id: *id,
                callback: callback.clone(),
            },
            Listener::Stream { id, queue } => Listener::Stream {
                id: *id,
                queue: queue.clone(),
            },
        }
    }
}

/// Removes a listener added with [`MessageCentral::add_listener`].
#[must_use = "keep the handle to remove the listener later; dropping it leaves the listener in place"]
pub struct ListenerHandle<P> {
    central: MessageCentral<P>,
    channel: Arc<str>,
    id: ListenerId,
    /// The session whose endpoint stream added it, if one did.
    owner: Option<Weak<SessionShared>>,
}

impl<P> fmt::Debug for ListenerHandle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("channel", &self.channel)
            .field("id", &self.id)
            .finish()
    }
}

impl<P> ListenerHandle<P> {
    /// Removes the listener; `false` when it was already gone.
    pub fn remove(self) -> bool {
        if let Some(owner) = self.owner.as_ref().and_then(Weak::upgrade) {
            if let Some(owned) = owned_listeners(&owner).as_mut() {
                owned.forget_callback(self.id);
            }
        }
        self.central.remove(&self.channel, self.id)
    }

    /// The channel the listener is on.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

/// A bounded queue feeding one [`ChannelStream`].
struct StreamQueue<P> {
    state: Mutex<StreamState<P>>,
    wake: Notify,
    capacity: usize,
}

struct StreamState<P> {
    items: VecDeque<Arc<P>>,
    closed: bool,
}

impl<P> StreamQueue<P> {
    fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(StreamState {
                items: VecDeque::new(),
                closed: false,
            }),
            wake: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn push(&self, item: Arc<P>, policy: SlowConsumerPolicy) -> Push {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return Push::Closed;
        }
        let mut dropped = 0;
        match policy {
            SlowConsumerPolicy::LatestValue if !state.items.is_empty() => {
                dropped = state.items.len();
                state.items.clear();
            }
            _ if state.items.len() >= self.capacity => match policy {
                SlowConsumerPolicy::Disconnect => {
                    state.closed = true;
                    drop(state);
                    self.wake.notify_one();
                    return Push::Overflow;
                }
                _ => {
                    state.items.pop_front();
                    dropped = 1;
                }
            },
            _ => {}
        }
        state.items.push_back(item);
        drop(state);
        self.wake.notify_one();
        if dropped == 0 {
            Push::Queued
        } else {
            Push::QueuedDropping(dropped)
        }
    }

    /// Ends the stream once what is queued has been read (its listener was removed).
    fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.wake.notify_one();
    }

    async fn recv(self: Arc<Self>) -> Option<Arc<P>> {
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }
}

type Recv<P> = Pin<Box<dyn Future<Output = Option<Arc<P>>> + Send>>;

/// The messages of one channel as an async [`Stream`](futures_util::Stream). Dropping it
/// removes its listener. It ends when it fell behind under the `Disconnect` policy.
pub struct ChannelStream<P> {
    queue: Arc<StreamQueue<P>>,
    guard: ListenerHandle<P>,
    pending: Option<Recv<P>>,
}

impl<P> fmt::Debug for ChannelStream<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelStream")
            .field("channel", &self.guard.channel)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> ChannelStream<P> {
    /// The next message, or `None` once the stream ended.
    pub async fn recv(&mut self) -> Option<Arc<P>> {
        futures_util::StreamExt::next(self).await
    }
}

impl<P: ModelSet> futures_util::Stream for ChannelStream<P> {
    type Item = Arc<P>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Arc<P>>> {
        let queue = self.queue.clone();
        let pending = self.pending.get_or_insert_with(|| Box::pin(queue.recv()));
        let result = pending.as_mut().poll(cx);
        if result.is_ready() {
            self.pending = None;
        }
        result
    }
}

impl<P> Drop for ChannelStream<P> {
    fn drop(&mut self) {
        self.guard
            .central
            .remove(&self.guard.channel, self.guard.id);
    }
}

/// The message central as one session and endpoint see it: joins deliver frames as
/// this endpoint, and everything added here is removed when the session closes.
pub struct SessionMessages<P> {
    session: StreamingSession<P>,
}

impl<P> fmt::Debug for SessionMessages<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionMessages")
            .field("session", &self.session)
            .finish()
    }
}

impl<P: ModelSet> SessionMessages<P> {
    pub(crate) fn new(session: StreamingSession<P>) -> Self {
        Self { session }
    }

    fn central(&self) -> &MessageCentral<P> {
        self.session.central()
    }

    /// Joins `channel`: posts to it reach this session as messages from this endpoint,
    /// until it leaves or this endpoint's stream closes. `Ok(false)` when already
    /// joined (through any endpoint).
    ///
    /// # Errors
    ///
    /// [`JoinError::Closed`] once the session or this endpoint's stream closed;
    /// [`JoinError::TooManyChannels`] and [`JoinError::NameTooLong`] at the
    /// per-session limits of [`ServerConfig`](crate::ServerConfig).
    pub fn join(&self, channel: &str) -> Result<bool, JoinError> {
        self.central().join(&self.session, channel)
    }

    /// Leaves `channel`; `false` when not joined.
    pub fn leave(&self, channel: &str) -> bool {
        self.central().leave(&self.session.handle().shared, channel)
    }

    /// Adds a callback listener that is removed when this endpoint's stream closes
    /// (Serverpod's `session.messages.addListener`). It counts towards
    /// [`ServerConfig::max_channels_per_session`](crate::ServerConfig::max_channels_per_session).
    ///
    /// # Errors
    ///
    /// As [`SessionMessages::join`].
    pub fn add_listener(
        &self,
        channel: &str,
        listener: impl Fn(&P) + Send + Sync + 'static,
    ) -> Result<ListenerHandle<P>, JoinError> {
        self.central()
            .add_session_callback(&self.session, channel, listener)
    }

    /// Posts to `channel`; see [`MessageCentral::post_message`].
    ///
    /// # Errors
    ///
    /// See [`MessageCentral::post_message`].
    pub fn post_message(
        &self,
        channel: &str,
        message: impl Into<P>,
        scope: Scope,
    ) -> Result<DeliveryReport, PostError> {
        self.central().post_message(channel, message, scope)
    }

    /// Starts a post to `channel` leaving this session out (all but the sender).
    pub fn to_others(&self, channel: &str) -> Broadcast<P> {
        self.central().to_channel(channel).except(self.session.id())
    }

    /// Starts a broadcast to every session, framed as from this endpoint.
    pub fn to_all(&self) -> Broadcast<P> {
        self.central().to_all(self.session.endpoint())
    }

    /// Starts a broadcast to every session of `user_id`, framed as from this endpoint.
    pub fn to_user(&self, user_id: &str) -> Broadcast<P> {
        self.central().to_user(user_id, self.session.endpoint())
    }

    /// The server's message central.
    pub fn central_handle(&self) -> MessageCentral<P> {
        self.central().clone()
    }
}

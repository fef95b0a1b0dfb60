//! The Redis backplane: two connections per node owned by one supervisor task, a
//! pub/sub connection for the channels this node listens on and a multiplexed one
//! pipelining the publishes (see the [module docs](super)).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{ClusterError, ClusterState, Received, Record, Sink};
use crate::util::backoff::Backoff;
use crate::util::log_limit::RateLimitedLog;

mod history;
mod presence;
mod pubsub;
mod sharded;

/// How a server joins a cluster. Its `Debug` shows the Redis host and port, never a
/// password in the URL.
#[derive(Clone)]
#[must_use]
pub struct ClusterConfig {
    pub(crate) url: String,
    /// Redis Cluster seed nodes (sharded pub/sub); empty for one Redis.
    pub(crate) cluster_nodes: Vec<String>,
    pub(crate) prefix: String,
    pub(crate) publish_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: Backoff,
    pub(crate) publish_queue: usize,
    pub(crate) liveness_interval: Duration,
    pub(crate) liveness_timeout: Duration,
    pub(crate) max_global_age: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &self.redacted())
            .field("prefix", &self.prefix)
            .field("publish_timeout", &self.publish_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("publish_queue", &self.publish_queue)
            .field("liveness_interval", &self.liveness_interval)
            .field("liveness_timeout", &self.liveness_timeout)
            .field("max_global_age", &self.max_global_age)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// The Redis address for logs: host and port only, never a password.
    pub(crate) fn redacted(&self) -> String {
        let host = url::Url::parse(&self.url).ok().map(|url| {
            let host = url.host_str().unwrap_or("?").to_owned();
            url.port().map_or(host.clone(), |port| format!("{host}:{port}"))
        });
        let host = host.unwrap_or_else(|| "<unparsable url>".to_owned());
        if self.cluster_nodes.len() > 1 {
            format!("{host} (+{} cluster nodes)", self.cluster_nodes.len() - 1)
        } else {
            host
        }
    }

    /// A cluster through the Redis at `url` (`redis://host:port/`), with defaults:
    /// prefix `streampod`, publish timeout 500 ms, connect timeout 1 s, reconnect
    /// backoff 100 ms doubling up to 2 s (jittered), 10,000 queued global posts, a
    /// liveness `PING` on both connections every 1 s that must be answered within 3 s,
    /// and global messages older than 5 s dropped on arrival.
    pub fn redis(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster_nodes: Vec::new(),
            prefix: "streampod".to_owned(),
            publish_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            reconnect: Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
            publish_queue: 10_000,
            liveness_interval: Duration::from_secs(1),
            liveness_timeout: Duration::from_secs(3),
            max_global_age: Duration::from_secs(5),
        }
    }

    /// How often both Redis connections are `PING`ed, and how long an answer may take
    /// before Redis counts as gone (a hung Redis keeps its sockets open and answers
    /// nothing): then the node is `Disconnected`, global posts fail at once, and it
    /// reconnects. Defaults 1 s and 3 s.
    pub fn liveness(mut self, interval: Duration, timeout: Duration) -> Self {
        self.liveness_interval = interval.max(Duration::from_millis(10));
        self.liveness_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Global messages older than this when they arrive (by the posting node's clock)
    /// are dropped and counted instead of reaching clients in a burst after a stall.
    /// Default 5 s. Nodes' clocks must agree to well within it (NTP keeps them within
    /// milliseconds): a clock behind by more drops its posts everywhere, one ahead lets
    /// older messages through.
    pub fn max_global_age(mut self, age: Duration) -> Self {
        self.max_global_age = age;
        self
    }

    /// A cluster through a Redis Cluster (Redis ≥ 7), reached from any of `nodes`
    /// (`redis://host:port/`; the rest are discovered), with the defaults of
    /// [`ClusterConfig::redis`]. Channels use sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`):
    /// each channel lives on the shard its name hashes to, so channel traffic spreads
    /// over the shards and each channel keeps one order. `to_all`/`to_user` broadcasts
    /// share one channel, hence one shard. The liveness `PING` goes to every master: a
    /// master that stops answering makes the node `Disconnected` (global posts fail)
    /// until the cluster is whole again — with replicas, until one is promoted.
    pub fn redis_cluster(nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut config = Self::redis(nodes.first().cloned().unwrap_or_default());
        config.cluster_nodes = nodes;
        config
    }

    /// Prefixes every Redis channel name (`<prefix>:channel:<name>`), so several apps
    /// can share one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a publish may wait for Redis before it counts as failed.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Delays between reconnection attempts.
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.reconnect = backoff;
        self
    }

    /// Global posts that may wait to be published; beyond that a post fails with
    /// [`ClusterError::Backlog`] instead of buffering.
    pub fn publish_queue(mut self, posts: usize) -> Self {
        self.publish_queue = posts.max(1);
        self
    }
}

/// The cluster's Redis URL cannot be used (the URL itself is not repeated: it may hold a
/// password). Fix the URL given to [`ClusterConfig::redis`].
#[derive(Debug, thiserror::Error)]
#[error("invalid cluster Redis URL: {0}")]
pub struct InvalidRedisUrl(#[source] redis::RedisError);

/// The connection publishes go out on: one Redis (pipelined `PUBLISH`) or a Redis
/// Cluster (`SPUBLISH`, routed to each channel's shard).
#[derive(Clone)]
enum Publisher {
    Single(MultiplexedConnection, Arc<history::Scripts>),
    Sharded(redis::cluster_async::ClusterConnection),
}

impl Publisher {
    /// Publishes `batch` in order: for each post, how many nodes received it, or why
    /// not (certainly not published, or maybe).
    async fn publish(&mut self, batch: &[Outgoing]) -> Vec<Result<usize, ClusterError>> {
        match self {
            Publisher::Single(connection, scripts) => {
                let mut pipe = redis::pipe();
                for post in batch {
                    match &post.record {
                        Some((record, keys)) => {
                            scripts.append(&mut pipe, keys, &post.channel, &post.payload, *record);
                        }
                        None => {
                            pipe.cmd("PUBLISH").arg(&post.channel).arg(&post.payload);
                        }
                    }
                }
                match pipe.query_async::<Vec<usize>>(connection).await {
                    Ok(receivers) => receivers.into_iter().map(Ok).collect(),
                    // Handed to the connection: some or all may have gone out (an error
                    // reply in a pipeline does not undo the others).
                    Err(error) => {
                        vec![Err(ClusterError::Unconfirmed(error.to_string())); batch.len()]
                    }
                }
            }
            Publisher::Sharded(connection) => {
                // Sent in order (each future is first polled in order), so a channel's
                // posts reach its shard in order; shards answer independently.
                let sends = batch.iter().map(|post| {
                    let mut connection = connection.clone();
                    async move {
                        redis::cmd("SPUBLISH")
                            .arg(&post.channel)
                            .arg(&post.payload)
                            .query_async::<usize>(&mut connection)
                            .await
                            .map_err(|error| match error.kind() {
                                // The shard answered and refused (CLUSTERDOWN, …).
                                redis::ErrorKind::Server(_) => {
                                    ClusterError::Unavailable(error.to_string())
                                }
                                _ => ClusterError::Unconfirmed(error.to_string()),
                            })
                    }
                });
                futures_util::future::join_all(sends).await
            }
        }
    }
}

struct Outgoing {
    channel: String,
    payload: Vec<u8>,
    /// Kept in the channel's history first (one Redis only; a Redis Cluster publishes
    /// without).
    record: Option<(Record, history::Keys)>,
    reply: Option<oneshot::Sender<Result<usize, ClusterError>>>,
}

/// A node's handle on the cluster: cheap checks, never waits.
pub(crate) struct RedisBackplane {
    prefix: String,
    /// This node's id in envelopes (random per process start).
    node: u64,
    state: watch::Receiver<ClusterState>,
    wanted: mpsc::UnboundedSender<Change>,
    publish: mpsc::Sender<Outgoing>,
    /// How long a history read may wait for the subscription and Redis.
    read_timeout: Duration,
    /// Presence writes, for the presence task.
    presence: mpsc::UnboundedSender<presence::Change>,
    /// Counts up when this node's members must be written again.
    presence_resets: watch::Receiver<u64>,
    presence_names: presence::Names,
    /// The connection publishes and history reads go out on, while connected.
    connection: watch::Receiver<Option<Publisher>>,
    publish_queue: usize,
    shutdown: CancellationToken,
    max_global_age: Duration,
}

enum Change {
    Subscribe(String),
    Unsubscribe(String),
    /// Answered once every change before it is in place in Redis.
    Confirm(oneshot::Sender<()>),
}

impl RedisBackplane {
    /// Starts the supervisor and publisher tasks on the current runtime.
    pub(crate) fn start(config: ClusterConfig, deliver: Sink) -> Result<Self, InvalidRedisUrl> {
        let target = if config.cluster_nodes.is_empty() {
            Target::Single(redis::Client::open(config.url.as_str()).map_err(InvalidRedisUrl)?)
        } else {
            sharded::target(&config)?
        };
        let (state_tx, state) = watch::channel(ClusterState::Connecting);
        let (wanted, changes) = mpsc::unbounded_channel();
        let (publish, outgoing) = mpsc::channel(config.publish_queue);
        let (connection_tx, connection) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let prefix = config.prefix.clone();
        let publish_queue = config.publish_queue;
        let max_global_age = config.max_global_age;
        let read_timeout = HISTORY_READ_TIMEOUT;
        let node = crate::util::random::random_u64();
        let presence_names = presence::Names::new(&prefix, node);
        let (presence, presence_changes) = mpsc::unbounded_channel();
        let (resets_tx, presence_resets) = watch::channel(0);
        let confirm_subscriptions = {
            let wanted = wanted.clone();
            move || {
                let (confirm, confirmed) = oneshot::channel();
                let asked = wanted.send(Change::Confirm(confirm));
                async move {
                    if asked.is_ok() {
                        let _ = confirmed.await;
                    }
                }
            }
        };
        tokio::spawn(presence::run(
            presence_names.clone(),
            presence_changes,
            confirm_subscriptions,
            connection.clone(),
            resets_tx,
            shutdown.clone(),
        ));
        tokio::spawn(publish_loop(
            outgoing,
            connection.clone(),
            config.publish_timeout,
            shutdown.clone(),
        ));
        let supervisor = Supervisor {
            target,
            broadcast: broadcast_name(&prefix),
            channel_prefix: channel_prefix(&prefix),
            config,
            state: state_tx,
            connection: connection_tx,
            deliver,
            wanted: HashSet::new(),
            confirms: Vec::new(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(supervisor.run(changes));
        Ok(Self {
            prefix,
            node,
            presence,
            presence_resets,
            presence_names,
            state,
            wanted,
            publish,
            read_timeout,
            connection,
            publish_queue,
            shutdown,
            max_global_age,
        })
    }

    /// Runs a presence read on the current connection, within the read timeout.
    async fn presence_read<'a, T, F, R>(&'a self, read: F) -> Result<T, ClusterError>
    where
        F: FnOnce(&'a presence::Names, MultiplexedConnection) -> R,
        R: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let current = self.connection.borrow().clone();
        let connection = match current {
            Some(Publisher::Single(connection, _)) => connection,
            Some(Publisher::Sharded(_)) => {
                return Err(ClusterError::Unavailable(
                    "presence is kept on a single Redis, not on a Redis Cluster".into(),
                ))
            }
            None => return Err(ClusterError::Unavailable("not connected to Redis".into())),
        };
        let timeout = self.read_timeout;
        match tokio::time::timeout(timeout, read(&self.presence_names, connection)).await {
            Ok(read) => read.map_err(|error| ClusterError::Unavailable(error.to_string())),
            Err(_) => Err(ClusterError::Timeout(timeout)),
        }
    }

    /// Queues a publish on Redis channel `channel` (numbered and kept first with a
    /// `record`); fails at once while disconnected or when the queue is full. The future
    /// answers once Redis did.
    fn enqueue(
        &self,
        channel: String,
        payload: Vec<u8>,
        record: Option<Record>,
    ) -> Result<impl std::future::Future<Output = Result<usize, ClusterError>> + Send + 'static, ClusterError>
    {
        let (reply, confirmed) = oneshot::channel();
        match &*self.state.borrow() {
            ClusterState::Connected => {}
            ClusterState::Connecting => {
                return Err(ClusterError::Unavailable("still connecting".into()));
            }
            ClusterState::Disconnected { error } => {
                return Err(ClusterError::Unavailable(error.clone()));
            }
        }
        self.publish
            .try_send(Outgoing {
                record: record.map(|record| (record, self.history_keys(&channel))),
                channel,
                payload,
                reply: Some(reply),
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => ClusterError::Backlog(self.publish_queue),
                mpsc::error::TrySendError::Closed(_) => {
                    ClusterError::Unavailable("the server is shutting down".into())
                }
            })?;
        Ok(async move {
            confirmed.await.unwrap_or_else(|_| {
                Err(ClusterError::Unavailable(
                    "the server is shutting down".into(),
                ))
            })
        })
    }

    /// This node's id in envelopes (it also names the node's presence keys).
    pub(crate) fn node(&self) -> u64 {
        self.node
    }

    /// Messages older than this on arrival are dropped.
    pub(crate) fn max_global_age(&self) -> Duration {
        self.max_global_age
    }

    /// The Redis channel of streampod channel `name`.
    fn channel_name(&self, name: &str) -> String {
        format!("{}{name}", channel_prefix(&self.prefix))
    }

    /// Stops the supervisor and publisher; the connections close with them.
    fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RedisBackplane {
    /// The history keys of Redis channel `channel` (`<prefix>:channel:<name>`).
    fn history_keys(&self, channel: &str) -> history::Keys {
        let name = channel
            .strip_prefix(&channel_prefix(&self.prefix))
            .unwrap_or(channel);
        history::Keys::new(&self.prefix, name)
    }
}

fn channel_prefix(prefix: &str) -> String {
    format!("{prefix}:channel:")
}

fn broadcast_name(prefix: &str) -> String {
    format!("{prefix}:broadcast")
}

/// How long a history read may wait for this node's subscription and for Redis: long
/// enough for a thousand clients recovering at once, each reading its missed posts.
const HISTORY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// While Redis stays unreachable, one line per this long.
const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Owns the Redis connections: connects, subscribes, receives, reconnects.
struct Supervisor {
    target: Target,
    broadcast: String,
    channel_prefix: String,
    config: ClusterConfig,
    state: watch::Sender<ClusterState>,
    connection: watch::Sender<Option<Publisher>>,
    deliver: Sink,
    /// Redis channels this node should be subscribed to.
    wanted: HashSet<String>,
    /// Waiting for the subscriptions wanted so far to be in place.
    confirms: Vec<oneshot::Sender<()>>,
    shutdown: CancellationToken,
}

/// What the supervisor connects to (one per node: size does not matter).
#[allow(clippy::large_enum_variant)]
enum Target {
    Single(redis::Client),
    /// A Redis Cluster, and the pushes (sharded messages) its connections deliver.
    Sharded {
        client: redis::cluster::ClusterClient,
        /// Taken by a session while it runs.
        pushes: Option<mpsc::UnboundedReceiver<redis::PushInfo>>,
    },
}

/// Why a connected session with Redis ended.
enum Ended {
    Shutdown,
    Lost(String),
}

impl Supervisor {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Change>) {
        self.wanted.insert(self.broadcast.clone());
        let mut failures: u32 = 0;
        let mut last_logged: Option<tokio::time::Instant> = None;
        loop {
            self.set_state(ClusterState::Connecting);
            let (ended, was_connected) = if matches!(self.target, Target::Single(_)) {
                match self.connect().await {
                    Ok((sink, stream, connection)) => {
                        (self.serve(sink, stream, connection, &mut changes).await, true)
                    }
                    Err(error) => (Ended::Lost(error), false),
                }
            } else {
                self.sharded_session(&mut changes).await
            };
            if was_connected {
                failures = 0;
            }
            let error = match ended {
                Ended::Shutdown => return,
                Ended::Lost(error) => error,
            };
            let _ = self.connection.send(None);
            failures = failures.saturating_add(1);
            let delay = self.config.reconnect.jittered(failures);
            // The loss once, then a line per interval while it lasts, not per attempt.
            let now = tokio::time::Instant::now();
            if failures == 1 || last_logged.is_none_or(|at| now - at >= OUTAGE_LOG_INTERVAL) {
                last_logged = Some(now);
                tracing::warn!(
                    target: "streampod::cluster",
                    redis = %self.config.redacted(), %error, attempts = failures, ?delay,
                    "Redis unreachable; global posts fail until it is back, retrying"
                );
            }
            self.set_state(ClusterState::Disconnected { error });
            // Keep track of joins and leaves while waiting, so the resubscribe is current.
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = &mut sleep => break,
                    change = changes.recv() => match change {
                        Some(change) => self.apply(change),
                        None => return,
                    },
                }
            }
        }
    }

    fn set_state(&self, state: ClusterState) {
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }

    async fn connect(
        &self,
    ) -> Result<
        (
            PubSubSink,
            redis::aio::PubSubStream,
            (MultiplexedConnection, Arc<history::Scripts>),
        ),
        String,
    > {
        let Target::Single(client) = &self.target else {
            return Err("not a single Redis".into());
        };
        let timeout = self.config.connect_timeout;
        let connect = async {
            let pubsub = client.get_async_pubsub().await?;
            // Our deadlines are the only ones: a redis-rs response timeout would fire
            // first and could not say whether the publish went out.
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(None);
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let scripts = history::Scripts::load(&mut connection).await?;
            let (mut sink, stream) = pubsub.split();
            let channels: Vec<&String> = self.wanted.iter().collect();
            sink.subscribe(&channels).await?;
            Ok::<_, redis::RedisError>((sink, stream, (connection, Arc::new(scripts))))
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(connected)) => Ok(connected),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no connection within {timeout:?}")),
        }
    }

    /// Runs a connected session until Redis goes away or the server shuts down.
    async fn serve(
        &mut self,
        mut sink: PubSubSink,
        mut stream: redis::aio::PubSubStream,
        (connection, scripts): (MultiplexedConnection, Arc<history::Scripts>),
        changes: &mut mpsc::UnboundedReceiver<Change>,
    ) -> Ended {
        let mut subscribed = self.wanted.clone();
        // Joins and leaves that came in while connecting.
        while let Ok(change) = changes.try_recv() {
            self.apply(change);
        }
        if let Err(error) = self.sync(&mut sink, &mut subscribed).await {
            return Ended::Lost(error);
        }
        let mut alive = Box::pin(liveness(
            sink.clone(),
            connection.clone(),
            self.config.liveness_interval,
            self.config.liveness_timeout,
        ));
        let _ = self
            .connection
            .send(Some(Publisher::Single(connection.clone(), scripts)));
        tracing::info!(
            target: "streampod::cluster",
            redis = %self.config.redacted(), channels = subscribed.len(),
            "connected to Redis; global posts go out"
        );
        self.set_state(ClusterState::Connected);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ended::Shutdown,
                why = &mut alive => return Ended::Lost(why),
                message = stream.next() => match message {
                    Some(message) => self.receive(&message),
                    // Only the pub/sub connection went (Redis's output-buffer limit,
                    // `CLIENT KILL TYPE pubsub`): replace it and keep publishing on
                    // the other, so queued posts are not lost with it.
                    None => match self.replace_pubsub(connection.clone()).await {
                        Ok((new_sink, new_stream)) => {
                            (sink, stream) = (new_sink, new_stream);
                            subscribed.clone_from(&self.wanted);
                            alive = Box::pin(liveness(
                                sink.clone(),
                                connection.clone(),
                                self.config.liveness_interval,
                                self.config.liveness_timeout,
                            ));
                            tracing::info!(target: "streampod::cluster", channels = subscribed.len(), "Redis closed the pub/sub connection; replaced it, publishing went on");
                        }
                        Err(error) => return Ended::Lost(error),
                    },
                },
                change = changes.recv() => {
                    let Some(change) = change else { return Ended::Shutdown };
                    self.apply(change);
                    while let Ok(change) = changes.try_recv() {
                        self.apply(change);
                    }
                    if let Err(error) = self.sync(&mut sink, &mut subscribed).await {
                        return Ended::Lost(error);
                    }
                }
            }
        }
    }

    /// A new pub/sub connection subscribed to every wanted channel, once the publish
    /// connection has shown it is still healthy.
    async fn replace_pubsub(
        &self,
        mut connection: MultiplexedConnection,
    ) -> Result<(PubSubSink, redis::aio::PubSubStream), String> {
        let Target::Single(client) = &self.target else {
            return Err("not a single Redis".into());
        };
        let timeout = self.config.connect_timeout;
        let replace = async {
            redis::cmd("PING")
                .query_async::<redis::Value>(&mut connection)
                .await?;
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            let channels: Vec<&String> = self.wanted.iter().collect();
            sink.subscribe(&channels).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        match tokio::time::timeout(timeout, replace).await {
            Ok(Ok(replaced)) => Ok(replaced),
            Ok(Err(error)) => Err(format!("pub/sub connection closed, and replacing it failed: {error}")),
            Err(_) => Err(format!("pub/sub connection closed, and no new one within {timeout:?}")),
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Subscribe(channel) => {
                self.wanted.insert(channel);
            }
            Change::Unsubscribe(channel) => {
                self.wanted.remove(&channel);
            }
            Change::Confirm(confirm) => self.confirms.push(confirm),
        }
    }

    /// Brings Redis's subscriptions in line with `wanted`, one command each way.
    async fn sync(
        &mut self,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), String> {
        let (add, remove) = self.subscription_changes(subscribed);
        let update = async {
            if !add.is_empty() {
                sink.subscribe(&add).await?;
            }
            if !remove.is_empty() {
                sink.unsubscribe(&remove).await?;
            }
            Ok(())
        };
        self.settle(update, self.config.publish_timeout, subscribed, "SUBSCRIBE")
            .await
    }

    /// The channels to subscribe and to leave for Redis to match `wanted`.
    fn subscription_changes(&self, subscribed: &HashSet<String>) -> (Vec<String>, Vec<String>) {
        (
            self.wanted.difference(subscribed).cloned().collect(),
            subscribed.difference(&self.wanted).cloned().collect(),
        )
    }

    /// Waits up to `timeout` for a subscription `update`; once it is confirmed,
    /// `subscribed` is `wanted`.
    async fn settle(
        &mut self,
        update: impl std::future::Future<Output = redis::RedisResult<()>>,
        timeout: Duration,
        subscribed: &mut HashSet<String>,
        command: &str,
    ) -> Result<(), String> {
        match tokio::time::timeout(timeout, update).await {
            Ok(Ok(())) => {
                subscribed.clone_from(&self.wanted);
                for confirm in self.confirms.drain(..) {
                    let _ = confirm.send(());
                }
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("{command} not confirmed within {timeout:?}")),
        }
    }

    fn receive(&self, message: &redis::Msg) {
        self.deliver_from(message.get_channel_name(), message.get_payload_bytes());
    }

    /// Hands a message of Redis channel `name` to the central.
    fn deliver_from(&self, name: &str, payload: &[u8]) {
        let channel = if name == self.broadcast {
            None
        } else if let Some(channel) = name.strip_prefix(&self.channel_prefix) {
            Some(channel)
        } else {
            return;
        };
        (self.deliver)(Received { channel, payload });
    }
}

/// `PING`s both connections every `interval` until one is not answered within
/// `timeout` (a hung Redis keeps its sockets open and answers nothing); says why.
/// Pub/sub connections may `PING` while subscribed.
async fn liveness(
    mut sink: PubSubSink,
    mut connection: MultiplexedConnection,
    interval: Duration,
    timeout: Duration,
) -> String {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let ping = redis::cmd("PING");
    loop {
        ticks.tick().await;
        let subscriber = sink.ping::<redis::Value>();
        let publisher = ping.query_async::<redis::Value>(&mut connection);
        match tokio::time::timeout(timeout, futures_util::future::try_join(subscriber, publisher))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return format!("PING failed: {error}"),
            Err(_) => return format!("Redis did not answer PING within {timeout:?}"),
        }
    }
}

/// Sends queued publishes, everything queued at once as one pipeline (one round trip,
/// order kept).
async fn publish_loop(
    mut outgoing: mpsc::Receiver<Outgoing>,
    connection: watch::Receiver<Option<Publisher>>,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    // Failures come in runs while Redis is in trouble: one line per interval, counted.
    static FAILED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
    let mut batch = Vec::new();
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            first = outgoing.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        batch.push(first);
        while batch.len() < 1024 {
            match outgoing.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let current = connection.borrow().clone();
        let outcomes: Vec<Result<usize, ClusterError>> = match current {
            // Never written: certainly not published.
            None => vec![Err(ClusterError::Unavailable("connection lost".into())); batch.len()],
            Some(mut publisher) => {
                match tokio::time::timeout(timeout, publisher.publish(&batch)).await {
                    Ok(outcomes) => outcomes,
                    Err(_) => vec![Err(ClusterError::Timeout(timeout)); batch.len()],
                }
            }
        };
        let failures = outcomes.iter().filter(|o| o.is_err()).count();
        if failures > 0 {
            if let Some(left_out) = FAILED_LOG.ready() {
                let error = outcomes.iter().find_map(|o| o.as_ref().err());
                tracing::warn!(
                    target: "streampod::cluster",
                    error = %error.map(ToString::to_string).unwrap_or_default(),
                    posts = failures, earlier_failures_left_out = left_out,
                    "global posts failed (unavailable means not published; a timeout or unconfirmed one may have gone out)"
                );
            }
        }
        for (post, outcome) in batch.drain(..).zip(outcomes) {
            if let Some(reply) = post.reply {
                let _ = reply.send(outcome);
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_carry_the_prefix() {
        assert_eq!(channel_prefix("app"), "app:channel:");
        assert_eq!(broadcast_name("app"), "app:broadcast");
        let config = ClusterConfig::redis("redis://127.0.0.1/").prefix("app");
        assert_eq!(config.prefix, "app");
        assert_eq!(config.publish_queue(0).publish_queue, 1);
    }

    #[test]
    fn logs_name_the_redis_without_its_password() {
        let config = ClusterConfig::redis("redis://user:hunter2@10.0.0.7:6380/0");
        assert_eq!(config.redacted(), "10.0.0.7:6380");
        let cluster = ClusterConfig::redis_cluster([
            "redis://:hunter2@10.0.0.7:7000/",
            "redis://10.0.0.8:7000/",
        ]);
        assert_eq!(cluster.redacted(), "10.0.0.7:7000 (+1 cluster nodes)");
        let debug = format!("{config:?} {cluster:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn a_bad_url_is_refused_up_front() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let result = RedisBackplane::start(ClusterConfig::redis("not a url"), Arc::new(|_| {}));
        assert!(result.is_err());
    }
}

//! The cluster backplane: `Reach::Global` posts travel through Redis pub/sub to every
//! server (node) of the cluster, the posting node included, so every subscriber sees
//! one order per channel.
//!
//! Each node keeps two Redis connections, both owned by one supervisor task: a pub/sub
//! connection that `SUBSCRIBE`s to `<prefix>:channel:<name>` while the node has a
//! listener on `<name>` (plus `<prefix>:broadcast` for `to_all` / `to_user`), and a
//! multiplexed connection that pipelines the `PUBLISH`es. Both are `PING`ed every
//! second; a Redis that closes them, or hangs (no answer within 3 s:
//! `ClusterConfig::liveness`), makes the node `Disconnected`: `/health` and metrics say
//! so, and the supervisor reconnects with jittered exponential backoff and re-subscribes
//! every channel the node still has. Meanwhile global posts fail at once
//! ([`PostError::Cluster`](crate::messages::PostError::Cluster) with
//! [`ClusterError::Unavailable`]) and local posts are unaffected.
//!
//! Outcomes are honest: `Unavailable` and `Backlog` mean certainly not published (safe
//! to retry); a post handed to Redis but not confirmed is `Timeout` or `Unconfirmed` —
//! it may have gone out ([`ClusterError::may_have_been_delivered`]). A method returning
//! either answers 503 with `Retry-After` or 504 ([`MethodError::cluster`](crate::MethodError::cluster)).
//! Each message carries its send time; one older than `max_global_age` on arrival (5 s;
//! after a stall) is dropped and counted rather than burst onto clients. Delivery is at
//! most once, as in Serverpod: what is posted while a node is cut off does not reach it
//! later — except on channels with history
//! ([`ChannelConfig::with_history`](crate::messages::ChannelConfig::with_history)):
//! Redis numbers their posts in one order for all nodes and keeps them (a script does
//! offset, append to the channel's stream and publish in one step), clients recover on
//! any node, and a node that skipped posts says so to its clients (`recovered: false`).
//! A history read waits for this node's subscription and Redis for up to 10 s; one that
//! fails or times out tells the client `recovered: false`.
//!
//! With the `redis` feature:
//!
//! ```no_run
//! # streampod::__doc_models!();
//! # struct Chat;
//! # impl streampod::Endpoint<Protocol> for Chat {}
//! # #[cfg(feature = "redis")]
//! # async fn run() -> Result<(), streampod::StartError> {
//! use streampod::cluster::ClusterConfig;
//!
//! let server = streampod::Server::<Protocol>::builder()
//!     .endpoint("chat", Chat)
//!     .cluster(ClusterConfig::redis("redis://127.0.0.1:6379/").prefix("my-app"))
//!     .bind("127.0.0.1:8080")
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The backplane sits behind the message central: Redis pub/sub is
//! the one implementation (feature `redis`); another (NATS, Redis Cluster) plugs in at
//! the same seam. Without a backplane, `Reach::Global` is the same as `Local`.

mod envelope;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

pub(crate) use envelope::{BroadcastTarget, Envelope};
#[cfg(feature = "redis")]
pub(crate) use envelope::{Received, Sink};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{ClusterConfig, InvalidRedisUrl};
#[cfg(feature = "redis")]
pub(crate) use redis::RedisBackplane;

/// The state of a node's connection to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// Connecting (first attempt or after a loss).
    Connecting,
    /// Connected and subscribed: global posts go out.
    Connected,
    /// Redis is unreachable; a reconnect is scheduled. Global posts fail meanwhile.
    Disconnected {
        /// Why the last attempt or connection failed.
        error: String,
    },
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterState::Connecting => f.write_str("connecting"),
            ClusterState::Connected => f.write_str("connected"),
            ClusterState::Disconnected { error } => write!(f, "disconnected ({error})"),
        }
    }
}

/// Why a global publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis cannot be reached now.
    #[error(
        "the cluster's Redis is unreachable ({0}); global posts fail until it is back \
         (local posts still work)"
    )]
    Unavailable(String),
    /// Too many global posts are already waiting.
    #[error(
        "{0} global posts are already waiting for Redis; post less often or raise \
         ClusterConfig::publish_queue"
    )]
    Backlog(usize),
    /// Redis did not confirm in time: the publish was written and may still go out.
    #[error("Redis did not confirm the publish within {0:?}; it may or may not have gone out")]
    Timeout(Duration),
    /// The connection failed after the publish was written: it may or may not have gone
    /// out.
    #[error(
        "the connection to Redis failed after the publish was sent ({0}); it may or may \
         not have gone out"
    )]
    Unconfirmed(String),
}

impl ClusterError {
    /// Whether the post may have reached other servers anyway ([`ClusterError::Timeout`],
    /// [`ClusterError::Unconfirmed`]): retrying it may deliver it twice. `false` means
    /// certainly not published ([`ClusterError::Unavailable`], [`ClusterError::Backlog`]).
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Unconfirmed(_))
    }
}

/// A publish waiting for the backplane's confirmation: the number of servers reached.
pub(crate) type Confirmation<'a> =
    Pin<Box<dyn Future<Output = Result<usize, ClusterError>> + Send + 'a>>;

/// An answer from the backplane, pending.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClusterError>> + Send + 'a>>;

/// A history read from the backplane, pending.
pub(crate) type Reading<'a> = Pending<'a, HistoryRead>;

/// How a post to a channel with history is kept by the backplane: numbered in the
/// channel's one cluster-wide order, the newest `size` kept for `ttl` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) size: usize,
    pub(crate) ttl: Duration,
}

/// A channel's history as the backplane holds it, read after this node subscribed to
/// the channel (so every later post reaches the node live).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryRead {
    /// The history's epoch (made by this read when the channel had none).
    pub(crate) epoch: String,
    /// The newest offset given out, 0 before the first post.
    pub(crate) newest: u64,
    /// The unexpired messages after the offset asked for, oldest first: each offset
    /// and the envelope it was published in.
    pub(crate) entries: Vec<(u64, Vec<u8>)>,
}

/// What the message central needs from a cluster backplane: per-channel interest, fire
/// and confirmed publishes, and the connection's state. Received messages go to the
/// [`Sink`] the backplane was started with.
pub(crate) trait Backplane: Send + Sync + 'static {
    /// This node's id in envelopes.
    fn node(&self) -> u64;
    /// The backplane channel of streampod channel `name`.
    fn channel_name(&self, name: &str) -> String;
    /// The backplane channel of `to_all` / `to_user` broadcasts.
    fn broadcast_name(&self) -> String;
    /// The node got its first listener on `channel`.
    fn subscribe(&self, channel: &str);
    /// The node's last listener on `channel` left.
    fn unsubscribe(&self, channel: &str);
    /// Queues a publish; fails at once while disconnected or when the queue is full.
    /// With `record`, the post is numbered and kept in the channel's history first, and
    /// goes out with its position.
    fn publish(
        &self,
        channel: String,
        payload: Vec<u8>,
        record: Option<Record>,
    ) -> Result<(), ClusterError>;
    /// Publishes and waits for the backplane: the number of nodes subscribed to `channel`.
    fn publish_confirmed(
        &self,
        channel: String,
        payload: Vec<u8>,
        record: Option<Record>,
    ) -> Confirmation<'_>;
    /// Adds `member` (its JSON) to `channel`'s presence, under id `id`, and announces the
    /// join to the channel's nodes. Fire and forget: lost while disconnected, and
    /// written again on reconnect ([`Backplane::presence_resets`]).
    fn presence_join(&self, channel: &str, id: &str, member: &str);
    /// Removes member `id` from `channel`'s presence and announces the leave.
    fn presence_leave(&self, channel: &str, id: &str);
    /// Replaces every member this node wrote with `members` (channel, id, JSON),
    /// announcing each as a join.
    fn presence_resync(&self, members: Vec<(String, String, String)>);
    /// The JSON of every member of `channel` on a live node.
    fn presence_of(&self, channel: &str) -> Pending<'_, Vec<Vec<u8>>>;
    /// How many members `channel` has on live nodes.
    fn presence_count(&self, channel: &str) -> Pending<'_, usize>;
    /// Counts up each time this node's members must be written again: Redis lost them
    /// (restarted, or the node's heartbeat lapsed and others removed them).
    // Read by the ingress, which only a backplane implementation (feature `redis`) feeds.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn presence_resets(&self) -> watch::Receiver<u64>;
    /// Reads streampod channel `channel`'s history after offset `after` (only its epoch
    /// and newest offset when `None`), once this node's subscription to it is in place.
    fn read_history(&self, channel: &str, after: Option<u64>, record: Record) -> Reading<'_>;
    /// The current connection state.
    fn state(&self) -> ClusterState;
    /// A receiver of state changes.
    fn state_changes(&self) -> watch::Receiver<ClusterState>;
    /// How long the last publish took to be answered; `None` before one was.
    fn last_round_trip(&self) -> Option<Duration>;
    /// Global posts that failed after being queued, fire-and-forget ones included.
    fn failed_posts(&self) -> u64;
    /// Messages older than this on arrival are dropped.
    // Read by the ingress, which only a backplane implementation (feature `redis`) feeds.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn max_global_age(&self) -> Duration;
    /// Stops the backplane's tasks; later publishes fail.
    fn stop(&self);
}

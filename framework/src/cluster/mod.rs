//! The cluster backplane: `Reach::Global` posts travel through Redis pub/sub (one
//! Redis or a Redis Cluster; or through NATS, see [`NatsConfig`] with feature `nats`) to
//! every server (node) of the cluster, the posting node included, so every subscriber
//! sees one order per channel. What follows describes Redis; NATS behaves the same way
//! towards the app (states, honest failures, `max_global_age`).
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
//! The backplane sits behind the message central, at a seam of three small traits:
//! [`PubSub`] (every backend), [`History`] and [`Presence`] (where a backend keeps
//! them). Redis (feature `redis`) implements all three, one file each under `redis/`,
//! on one Redis and on a Redis Cluster alike (each channel's keys on its shard); NATS
//! (feature `nats`) too, under `nats/`: history in a JetStream stream per channel,
//! presence in JetStream key-value buckets. A
//! backend of your own implements [`PubSub`] (and the others if it keeps them) and is
//! plugged in with
//! [`ServerBuilder::backplane`](crate::ServerBuilder::backplane). Without a backplane,
//! `Reach::Global` is the same as `Local`.

mod backplane;
mod envelope;
#[cfg(feature = "nats")]
mod nats;
#[cfg(any(feature = "redis", feature = "nats"))]
mod presence_queue;
#[cfg(any(feature = "redis", feature = "nats"))]
mod publish_queue;
#[cfg(feature = "redis")]
mod redis;
mod seam;

use std::fmt;
use std::time::Duration;

pub(crate) use backplane::{Backplane, Record, DEFAULT_MAX_GLOBAL_AGE};
pub use backplane::Backends;
pub(crate) use envelope::{BroadcastTarget, Envelope};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{ClusterConfig, InvalidRedisUrl};
#[cfg(feature = "redis")]
pub(crate) use redis::RedisBackplane;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::{InvalidNatsUrl, NatsConfig};
#[cfg(feature = "nats")]
pub(crate) use nats::NatsBackplane;
pub(crate) use seam::{is_provisional, Received, Sink};
pub use seam::{
    History, HistoryRead, Inbox, Presence, PubSub, Reached, Retention, StoredMember, Topic,
    PROVISIONAL_EPOCH,
};

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

/// Why a global publish failed. The messages name the backplane generically; the text
/// inside says which (Redis, NATS) and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The backplane (Redis, NATS) cannot be reached now.
    #[error(
        "the cluster's backplane is unreachable ({0}); global posts fail until it is back \
         (local posts still work)"
    )]
    Unavailable(String),
    /// Too many global posts, or too many bytes of them, are already waiting.
    #[error(
        "global posts are already waiting for the backplane up to {0}; post less often or \
         raise the config's publish_queue and publish_queue_bytes"
    )]
    Backlog(String),
    /// The backplane did not confirm in time: the publish was written and may still go
    /// out.
    #[error(
        "the backplane did not confirm the publish within {0:?}; it may or may not have \
         gone out"
    )]
    Timeout(Duration),
    /// The connection failed after the publish was written: it may or may not have gone
    /// out.
    #[error(
        "the connection to the backplane failed after the publish was sent ({0}); it may \
         or may not have gone out"
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

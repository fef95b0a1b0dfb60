//! What the message central holds of a cluster: the backends behind the seam
//! ([`PubSub`], and [`History`] and [`Presence`] where the backend keeps them), erased
//! once when the server starts, and what the central adds around them: this node's id,
//! the confirmation of fire-and-forget publishes, and the counters of it all.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::seam::{HistoryRead, Retention, StoredMember, Topic};
use super::{ClusterError, ClusterState, History, Presence, PubSub, Reached};
use crate::metrics::Micros;

/// A publish waiting for the backend's confirmation: the number of nodes reached.
pub(crate) type Confirmation =
    Pin<Box<dyn Future<Output = Result<Reached, ClusterError>> + Send + 'static>>;

/// An answer from the backend, pending.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClusterError>> + Send + 'a>>;

/// How a post to a channel with history is kept by the backend: numbered in the
/// channel's one cluster-wide order, the newest `size` kept for `ttl` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) size: usize,
    pub(crate) ttl: Duration,
    pub(crate) bytes: usize,
}

impl From<Retention> for Record {
    fn from(retention: Retention) -> Self {
        Self {
            size: retention.size,
            ttl: retention.ttl,
            bytes: retention.bytes,
        }
    }
}

impl Record {
    fn retention(self) -> Retention {
        Retention {
            size: self.size,
            ttl: self.ttl,
            bytes: self.bytes,
        }
    }
}

/// How old a global message may be on arrival, for backends that do not say.
pub(crate) const DEFAULT_MAX_GLOBAL_AGE: Duration = Duration::from_secs(5);

/// [`PubSub`] as an object.
trait DynPubSub: Send + Sync + 'static {
    fn subscribe(&self, topic: Topic<'_>);
    fn unsubscribe(&self, topic: Topic<'_>);
    fn publish(&self, topic: Topic<'_>, payload: Vec<u8>) -> Result<Confirmation, ClusterError>;
    fn state(&self) -> watch::Receiver<ClusterState>;
    fn stop(&self);
}

impl<T: PubSub> DynPubSub for T {
    fn subscribe(&self, topic: Topic<'_>) {
        PubSub::subscribe(self, topic);
    }

    fn unsubscribe(&self, topic: Topic<'_>) {
        PubSub::unsubscribe(self, topic);
    }

    fn publish(&self, topic: Topic<'_>, payload: Vec<u8>) -> Result<Confirmation, ClusterError> {
        PubSub::publish(self, topic, payload).map(|confirm| Box::pin(confirm) as Confirmation)
    }

    fn state(&self) -> watch::Receiver<ClusterState> {
        PubSub::state(self)
    }

    fn stop(&self) {
        PubSub::stop(self);
    }
}

/// [`History`] as an object.
trait DynHistory: Send + Sync + 'static {
    fn append_and_publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
        retention: Retention,
    ) -> Result<Confirmation, ClusterError>;
    fn follow(&self, channel: &str, retention: Retention);
    fn read<'a>(
        &'a self,
        channel: &'a str,
        since: Option<(&'a str, u64)>,
        retention: Retention,
    ) -> Pending<'a, HistoryRead>;
}

impl<T: History> DynHistory for T {
    fn append_and_publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
        retention: Retention,
    ) -> Result<Confirmation, ClusterError> {
        History::append_and_publish(self, channel, payload, retention)
            .map(|confirm| Box::pin(confirm) as Confirmation)
    }

    fn follow(&self, channel: &str, retention: Retention) {
        History::follow(self, channel, retention);
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        since: Option<(&'a str, u64)>,
        retention: Retention,
    ) -> Pending<'a, HistoryRead> {
        Box::pin(History::read(self, channel, since, retention))
    }
}

/// [`Presence`] as an object.
trait DynPresence: Send + Sync + 'static {
    fn join(&self, member: StoredMember);
    fn leave(&self, channel: &str, id: &str);
    fn resync(&self, members: Vec<StoredMember>);
    fn members<'a>(&'a self, channel: &'a str, limit: usize) -> Pending<'a, Vec<Vec<u8>>>;
    fn count<'a>(&'a self, channel: &'a str) -> Pending<'a, usize>;
    fn resets(&self) -> watch::Receiver<u64>;
}

impl<T: Presence> DynPresence for T {
    fn join(&self, member: StoredMember) {
        Presence::join(self, member);
    }

    fn leave(&self, channel: &str, id: &str) {
        Presence::leave(self, channel, id);
    }

    fn resync(&self, members: Vec<StoredMember>) {
        Presence::resync(self, members);
    }

    fn members<'a>(&'a self, channel: &'a str, limit: usize) -> Pending<'a, Vec<Vec<u8>>> {
        Box::pin(Presence::members(self, channel, limit))
    }

    fn count<'a>(&'a self, channel: &'a str) -> Pending<'a, usize> {
        Box::pin(Presence::count(self, channel))
    }

    fn resets(&self) -> watch::Receiver<u64> {
        Presence::resets(self)
    }
}

/// The counters of the publishes of one node.
#[derive(Debug, Default)]
struct Counters {
    /// From handing the last publish over to its confirmation.
    round_trip: Micros,
    /// Publishes that failed after the backend took them.
    failed: AtomicU64,
}

impl Counters {
    /// Awaits `confirm`, counting its outcome.
    async fn settle(
        self: Arc<Self>,
        confirm: Confirmation,
        started: Instant,
    ) -> Result<Reached, ClusterError> {
        let outcome = confirm.await;
        self.round_trip.set(started.elapsed());
        if outcome.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}

/// The parts of a cluster backend a server uses: [`PubSub`] always, [`History`] and
/// [`Presence`] where the backend keeps them. Without [`History`], channels with history
/// keep none across the cluster (a join recovers nothing: `recovered: false`); without
/// [`Presence`], a channel's members are this server's only (and
/// [`presence`](crate::messages::MessageCentral::presence) answers an error).
#[must_use]
pub struct Backends {
    pubsub: Box<dyn DynPubSub>,
    history: Option<Box<dyn DynHistory>>,
    presence: Option<Box<dyn DynPresence>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("history", &self.history.is_some())
            .field("presence", &self.presence.is_some())
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// A backend of pub/sub alone.
    pub fn new(pubsub: impl PubSub) -> Self {
        Self {
            pubsub: Box::new(pubsub),
            history: None,
            presence: None,
        }
    }

    /// With `history` keeping the posts of channels with history.
    pub fn with_history(mut self, history: impl History) -> Self {
        self.history = Some(Box::new(history));
        self
    }

    /// With `presence` keeping members across the cluster.
    pub fn with_presence(mut self, presence: impl Presence) -> Self {
        self.presence = Some(Box::new(presence));
        self
    }
}

/// A node's cluster: the backends behind the seam, and this node's id and counters.
pub(crate) struct Backplane {
    node: u64,
    pubsub: Box<dyn DynPubSub>,
    history: Option<Box<dyn DynHistory>>,
    presence: Option<Box<dyn DynPresence>>,
    max_global_age: Duration,
    counters: Arc<Counters>,
    /// The resets of a backend without presence: never.
    no_resets: watch::Sender<u64>,
    /// Where fire-and-forget publishes wait for their confirmation (posts may come
    /// from threads outside the runtime).
    runtime: tokio::runtime::Handle,
}

impl Backplane {
    /// Node `node` of a cluster on `backends`, dropping global messages older than
    /// `max_global_age` on arrival. Made on the server's runtime.
    pub(crate) fn new(node: u64, backends: Backends, max_global_age: Duration) -> Self {
        backends.pubsub.subscribe(Topic::Broadcasts);
        Self {
            node,
            pubsub: backends.pubsub,
            history: backends.history,
            presence: backends.presence,
            max_global_age,
            counters: Arc::default(),
            no_resets: watch::channel(0).0,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// This node's id in envelopes.
    pub(crate) fn node(&self) -> u64 {
        self.node
    }

    /// The node got its first listener on `channel` (a channel with history when it
    /// has a `record`).
    pub(crate) fn subscribe(&self, channel: &str, record: Option<Record>) {
        self.pubsub.subscribe(Topic::Channel(channel));
        if let (Some(record), Some(history)) = (record, &self.history) {
            history.follow(channel, record.retention());
        }
    }

    /// The node's last listener on `channel` left.
    pub(crate) fn unsubscribe(&self, channel: &str) {
        self.pubsub.unsubscribe(Topic::Channel(channel));
    }

    /// Hands a publish to the backend: numbered and kept first when it has a `record`
    /// and the backend keeps history.
    fn hand_over(
        &self,
        topic: Topic<'_>,
        payload: Vec<u8>,
        record: Option<Record>,
    ) -> Result<Confirmation, ClusterError> {
        match (topic, record, &self.history) {
            (Topic::Channel(channel), Some(record), Some(history)) => {
                history.append_and_publish(channel, payload, record.retention())
            }
            _ => self.pubsub.publish(topic, payload),
        }
    }

    /// Publishes without waiting; fails at once when the backend cannot take it. How it
    /// went is counted ([`failed_posts`](Self::failed_posts)).
    pub(crate) fn publish(
        &self,
        topic: Topic<'_>,
        payload: Vec<u8>,
        record: Option<Record>,
    ) -> Result<(), ClusterError> {
        let confirm = self.hand_over(topic, payload, record)?;
        let settle = self.counters.clone().settle(confirm, Instant::now());
        self.runtime.spawn(async move {
            let _ = settle.await;
        });
        Ok(())
    }

    /// Publishes and waits for the backend: the number of nodes subscribed to `topic`,
    /// where the backend counts them.
    pub(crate) async fn publish_confirmed(
        &self,
        topic: Topic<'_>,
        payload: Vec<u8>,
        record: Option<Record>,
    ) -> Result<Reached, ClusterError> {
        let confirm = self.hand_over(topic, payload, record)?;
        self.counters.clone().settle(confirm, Instant::now()).await
    }

    /// Adds `member` (its JSON) to `channel`'s presence under `id` (with a presence
    /// backend).
    pub(crate) fn presence_join(&self, channel: &str, id: &str, member: &str) {
        if let Some(presence) = &self.presence {
            presence.join(StoredMember {
                channel: channel.to_owned(),
                id: id.to_owned(),
                member: member.to_owned(),
            });
        }
    }

    /// Removes member `id` from `channel`'s presence.
    pub(crate) fn presence_leave(&self, channel: &str, id: &str) {
        if let Some(presence) = &self.presence {
            presence.leave(channel, id);
        }
    }

    /// Replaces every member this node wrote with `members`.
    pub(crate) fn presence_resync(&self, members: Vec<StoredMember>) {
        if let Some(presence) = &self.presence {
            presence.resync(members);
        }
    }

    fn no_presence() -> ClusterError {
        ClusterError::Unavailable("this cluster backend keeps no presence".into())
    }

    /// The JSON of at most `limit` members of `channel` on live nodes.
    pub(crate) fn presence_of<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> Pending<'a, Vec<Vec<u8>>> {
        match &self.presence {
            Some(presence) => presence.members(channel, limit),
            None => Box::pin(std::future::ready(Err(Self::no_presence()))),
        }
    }

    /// How many members `channel` has on live nodes.
    pub(crate) fn presence_count<'a>(&'a self, channel: &'a str) -> Pending<'a, usize> {
        match &self.presence {
            Some(presence) => presence.count(channel),
            None => Box::pin(std::future::ready(Err(Self::no_presence()))),
        }
    }

    /// Counts up each time this node's members must be written again.
    pub(crate) fn presence_resets(&self) -> watch::Receiver<u64> {
        match &self.presence {
            Some(presence) => presence.resets(),
            None => self.no_resets.subscribe(),
        }
    }

    /// Reads `channel`'s history after `since` (see [`History::read`]).
    pub(crate) fn read_history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<(&'a str, u64)>,
        record: Record,
    ) -> Pending<'a, HistoryRead> {
        match &self.history {
            Some(history) => history.read(channel, since, record.retention()),
            None => Box::pin(std::future::ready(Err(ClusterError::Unavailable(
                "this cluster backend keeps no history".into(),
            )))),
        }
    }

    /// The current connection state.
    pub(crate) fn state(&self) -> ClusterState {
        self.pubsub.state().borrow().clone()
    }

    /// A receiver of state changes.
    pub(crate) fn state_changes(&self) -> watch::Receiver<ClusterState> {
        self.pubsub.state()
    }

    /// How long the last publish took to be confirmed; `None` before one was.
    pub(crate) fn last_round_trip(&self) -> Option<Duration> {
        self.counters.round_trip.get()
    }

    /// Global posts that failed after the backend took them, fire-and-forget ones
    /// included.
    pub(crate) fn failed_posts(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Messages older than this on arrival are dropped.
    pub(crate) fn max_global_age(&self) -> Duration {
        self.max_global_age
    }

    /// Stops the backend's tasks; later publishes fail.
    pub(crate) fn stop(&self) {
        self.pubsub.stop();
    }
}

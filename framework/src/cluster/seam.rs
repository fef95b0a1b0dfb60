//! The backplane seam: small public traits a cluster backend implements. [`PubSub`]
//! carries `Reach::Global` posts between the nodes; [`History`] numbers and keeps the
//! posts of channels with history, in one order for all nodes; [`Presence`] keeps who is
//! in a channel across nodes. Redis implements all three (on one Redis or a Redis
//! Cluster), and so does NATS (history and presence in JetStream); a backend of your own needs only [`PubSub`] and is plugged in with
//! [`ServerBuilder::backplane`](crate::ServerBuilder::backplane).
//!
//! Payloads are opaque bytes: the central encodes a post once (its envelope), the
//! backend carries it, and every node, the posting one included, hands what it receives
//! to its [`Inbox`]. A backend promises one order per topic for all nodes, and honest
//! failures: an error from [`PubSub::publish`] itself means certainly not published; a
//! failed confirmation says, with [`ClusterError::may_have_been_delivered`], whether it
//! may have gone out anyway.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::{ClusterError, ClusterState};

/// Where a message travels between the nodes of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic<'a> {
    /// The posts to one streampod channel (its name as the app gave it).
    Channel(&'a str),
    /// Broadcasts to every session, or to every session of a user (`to_all`,
    /// `to_user`): one topic every node subscribes to.
    Broadcasts,
}

/// How many nodes a publish reached: `Some(n)` as the backend counted them (Redis:
/// `PUBLISH`'s count), `None` when it cannot tell (core NATS confirms that the server
/// took a message, not who received it).
pub type Reached = Option<usize>;

/// A message a backend received, as handed to the central.
pub(crate) struct Received<'a> {
    /// The streampod channel, or `None` for the broadcasts.
    pub(crate) channel: Option<&'a str>,
    pub(crate) payload: &'a [u8],
}

/// What a backend's receiver hands received messages to.
pub(crate) type Sink = Arc<dyn Fn(Received<'_>) + Send + Sync>;

/// Where a backend hands what it receives: this node's message central. Cheap to clone.
#[derive(Clone)]
pub struct Inbox(Sink);

impl Inbox {
    pub(crate) fn new(sink: Sink) -> Self {
        Self(sink)
    }

    /// Hands `payload`, received on `topic`, to this node. Call it for every message
    /// published on a topic this node subscribes to — its own posts included — in the
    /// order the backend delivers them: the same order on every node.
    pub fn deliver(&self, topic: Topic<'_>, payload: &[u8]) {
        let channel = match topic {
            Topic::Channel(channel) => Some(channel),
            Topic::Broadcasts => None,
        };
        (self.0)(Received { channel, payload });
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

/// Pub/sub between the nodes of a cluster: the part every backend provides.
///
/// The server calls [`subscribe`](Self::subscribe) when this node gets its first
/// listener on a channel (and for [`Topic::Broadcasts`] once, at start) and
/// [`unsubscribe`](Self::unsubscribe) after the last one leaves; neither waits, so a
/// backend queues the change and applies changes in order (and again after it
/// reconnects). While [`state`](Self::state) is not `Connected`, global posts fail at
/// once and local ones go on.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a streampod pub/sub backend",
    note = "implement `streampod::cluster::PubSub`: subscribe, unsubscribe, publish and state"
)]
pub trait PubSub: Send + Sync + 'static {
    /// Starts receiving `topic` (this node's first listener on it arrived).
    fn subscribe(&self, topic: Topic<'_>);

    /// Stops receiving `topic` (this node's last listener on it left).
    fn unsubscribe(&self, topic: Topic<'_>);

    /// Publishes `payload` to every node subscribed to `topic`, this one included.
    ///
    /// # Errors
    ///
    /// At once, when the backend cannot take the message now (disconnected, its queue
    /// full): then it is certainly not published. Otherwise the returned future says
    /// how it went: the number of nodes that received it ([`Reached`]), or an error that tells
    /// ([`ClusterError::may_have_been_delivered`]) whether it may have gone out anyway.
    fn publish(
        &self,
        topic: Topic<'_>,
        payload: Vec<u8>,
    ) -> Result<impl Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>;

    /// The connection's state, and its changes.
    fn state(&self) -> watch::Receiver<ClusterState>;

    /// Stops the backend's tasks (the server shuts down); later publishes fail.
    fn stop(&self) {}
}

/// How a channel's history is kept: the newest `size` posts, each for `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Posts kept.
    pub size: usize,
    /// How long each is kept.
    pub ttl: std::time::Duration,
    /// Most bytes of posts kept: the oldest go first past it (the newest stays even
    /// when it alone is larger).
    pub bytes: usize,
}

/// A channel's history as a backend holds it, read after this node subscribed to the
/// channel (so every later post reaches the node live).
///
/// A channel nobody has posted to has no stored history and a *provisional* epoch, one
/// that starts with [`PROVISIONAL_EPOCH`]: the backend makes it up at the read and
/// stores nothing for it, so readers of rooms that stay silent leave nothing behind.
/// The first post starts the real epoch at offset 1, which continues a provisional
/// epoch's offset 0: live, a reader at offset 0 of a provisional epoch takes offset 1
/// of any epoch as the next post (and keeps the provisional epoch with the real one's
/// offsets, as clients only learn epochs from `joined` frames); recovering, the backend
/// says whether the current epoch continues the reader's provisional one
/// ([`continues`](Self::continues)), and the reader's offsets are then the current
/// epoch's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRead {
    /// The history's epoch: changes whenever the history may have been lost;
    /// provisional (see above) while the channel has none.
    pub epoch: String,
    /// The newest offset given out, 0 before the first post.
    pub newest: u64,
    /// The unexpired posts after the offset asked for, oldest first: each offset and the
    /// payload it was published with (at most the retention's size of them).
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Whether `epoch` continues the provisional epoch the read was asked from: the
    /// reader's offsets are `epoch`'s, and it missed nothing before its offset 1.
    pub continues: bool,
}

/// How a provisional epoch starts (see [`HistoryRead`]).
pub const PROVISIONAL_EPOCH: char = '~';

/// Whether `epoch` is provisional (see [`HistoryRead`]).
pub(crate) fn is_provisional(epoch: &str) -> bool {
    epoch.starts_with(PROVISIONAL_EPOCH)
}

/// Cluster-wide history for channels that keep it: a backend numbers each post in the
/// channel's one order, keeps it, and publishes it with its position, in one step.
pub trait History: Send + Sync + 'static {
    /// Numbers `payload` in `channel`'s order, keeps it as `retention` says, and
    /// publishes it on [`Topic::Channel`] with its position: `"epoch":"<epoch>",
    /// "offset":<offset>,` inserted right after the payload's opening `{` (the payload
    /// is a JSON object). A node may get the live copy after a history read that
    /// already had the post; it sends it once.
    ///
    /// # Errors
    ///
    /// As [`PubSub::publish`].
    fn append_and_publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
        retention: Retention,
    ) -> Result<impl Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>;

    /// This node got its first listener on `channel`, a channel with history (called
    /// right after [`PubSub::subscribe`]): a backend that delivers such channels' posts
    /// other than through its pub/sub subscription starts that here, so listeners that
    /// never read the history (the app's own) get the posts too. Nothing by default:
    /// Redis publishes them on the channel the node subscribed to.
    fn follow(&self, channel: &str, retention: Retention) {
        let _ = (channel, retention);
    }

    /// Reads `channel`'s history after the position `since` (an epoch and the last
    /// offset the reader has; only the epoch and newest offset when `None`), once this
    /// node's subscription to it is in place. Stores nothing for a channel without
    /// history (its epoch is provisional, see [`HistoryRead`]).
    fn read(
        &self,
        channel: &str,
        since: Option<(&str, u64)>,
        retention: Retention,
    ) -> impl Future<Output = Result<HistoryRead, ClusterError>> + Send;
}

/// One member of a channel's presence as a backend stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// The channel.
    pub channel: String,
    /// The member's id, unique across nodes.
    pub id: String,
    /// The member as JSON.
    pub member: String,
}

/// Cluster-wide presence: who is in a channel on every live node, with the members of a
/// dead node expiring.
pub trait Presence: Send + Sync + 'static {
    /// Adds `member` to its channel and announces the join to the channel's nodes. Fire
    /// and forget: lost while disconnected, written again on reconnect (see
    /// [`resets`](Self::resets)).
    fn join(&self, member: StoredMember);

    /// Removes member `id` from `channel` and announces the leave.
    fn leave(&self, channel: &str, id: &str);

    /// Replaces every member this node wrote with `members`, announcing each as a join.
    fn resync(&self, members: Vec<StoredMember>);

    /// The JSON of at most `limit` members of `channel` on live nodes (which ones is
    /// the backend's choice).
    fn members(
        &self,
        channel: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, ClusterError>> + Send;

    /// How many members `channel` has on live nodes.
    fn count(&self, channel: &str) -> impl Future<Output = Result<usize, ClusterError>> + Send;

    /// Counts up each time this node's members must be written again (the backend lost
    /// them: restarted, or this node's heartbeat lapsed).
    fn resets(&self) -> watch::Receiver<u64>;
}

/// A backend shared by several parts of the seam (one Redis connection serving pub/sub,
/// history and presence) is each of them through an `Arc`.
impl<T: PubSub> PubSub for Arc<T> {
    fn subscribe(&self, topic: Topic<'_>) {
        (**self).subscribe(topic);
    }

    fn unsubscribe(&self, topic: Topic<'_>) {
        (**self).unsubscribe(topic);
    }

    fn publish(
        &self,
        topic: Topic<'_>,
        payload: Vec<u8>,
    ) -> Result<impl Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        (**self).publish(topic, payload)
    }

    fn state(&self) -> watch::Receiver<ClusterState> {
        (**self).state()
    }

    fn stop(&self) {
        (**self).stop();
    }
}

impl<T: History> History for Arc<T> {
    fn append_and_publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
        retention: Retention,
    ) -> Result<impl Future<Output = Result<Reached, ClusterError>> + Send + 'static, ClusterError>
    {
        (**self).append_and_publish(channel, payload, retention)
    }

    fn follow(&self, channel: &str, retention: Retention) {
        (**self).follow(channel, retention);
    }

    fn read(
        &self,
        channel: &str,
        since: Option<(&str, u64)>,
        retention: Retention,
    ) -> impl Future<Output = Result<HistoryRead, ClusterError>> + Send {
        (**self).read(channel, since, retention)
    }
}

impl<T: Presence> Presence for Arc<T> {
    fn join(&self, member: StoredMember) {
        (**self).join(member);
    }

    fn leave(&self, channel: &str, id: &str) {
        (**self).leave(channel, id);
    }

    fn resync(&self, members: Vec<StoredMember>) {
        (**self).resync(members);
    }

    fn members(
        &self,
        channel: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, ClusterError>> + Send {
        (**self).members(channel, limit)
    }

    fn count(&self, channel: &str) -> impl Future<Output = Result<usize, ClusterError>> + Send {
        (**self).count(channel)
    }

    fn resets(&self) -> watch::Receiver<u64> {
        (**self).resets()
    }
}

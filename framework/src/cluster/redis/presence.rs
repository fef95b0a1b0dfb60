//! Presence in Redis: who is in each channel, on every node.
//!
//! `<prefix>:presence:<channel>` is a hash from member id (`<node>-<session>`) to the
//! member's JSON; `<prefix>:memberships:<node>` the set of `<member id> <channel>` a node
//! has written, so it shrinks with every leave and says exactly what to remove when the
//! node dies; `<prefix>:nodes` a sorted set of node ids scored by their last heartbeat
//! (Redis' clock, in milliseconds); `<prefix>:sweeping` the dead nodes whose members are
//! still being removed. A join or leave runs one script on the channel's hash that
//! writes and publishes a notice (`{"presence":{"channel":…,"member":…,"joined":…}}`) on
//! the channel's pub/sub channel, so every node with members there hears it, and
//! updates the node's memberships beside it. Every [`HEARTBEAT`] each node beats and
//! sweeps: a node whose heartbeat is older than [`NODE_TTL`] is moved to the sweeping
//! set and its members are removed, each announced as a leave, [`BATCH`] per round;
//! reads take the live nodes first and skip other nodes' members even before a sweep.
//!
//! No script touches keys of two groups (a channel's, the node list's, a node's), so
//! the same commands serve a Redis Cluster, where each group carries a hash tag of its
//! own (see [`layout`](super::layout)): a channel's presence lives on the channel's
//! shard, beside its history.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::layout::Layout;
use super::{Publisher, RedisBackplane};
use crate::cluster::presence_queue::{Change, Queue};
use crate::cluster::{ClusterError, Presence, StoredMember};
use crate::util::log_limit::RateLimitedLog;

/// How often a node beats its heartbeat and sweeps dead nodes.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(2);

/// A node whose heartbeat is this old is dead: its members leave.
pub(super) const NODE_TTL: Duration = Duration::from_secs(6);

/// Most memberships one round of a sweep or a clear removes (a pipeline of one short
/// script per membership).
pub(super) const BATCH: usize = 500;

/// Most sweep rounds one heartbeat makes (`BATCH` memberships each); the rest waits
/// for the next beat, of this node or another.
const SWEEP_CALLS_PER_BEAT: usize = 100;


/// KEYS: the channel's hash. ARGV: the member's id, its JSON, the channel, the channel's
/// Redis channel, the publish command. A member Redis already holds (a resync writing it
/// again) is not announced again: nobody joined.
const JOIN: &str = r#"
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call(ARGV[5], ARGV[4], cjson.encode({presence = {channel = ARGV[3], member = cjson.decode(ARGV[2]), joined = true}}))
end
"#;

/// KEYS: the channel's hash. ARGV: the member's id, the channel, the channel's Redis
/// channel, the publish command. Announces the leave of a member Redis held.
const LEAVE: &str = r#"
local member = redis.call('HGET', KEYS[1], ARGV[1])
if member then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call(ARGV[4], ARGV[3], cjson.encode({presence = {channel = ARGV[2], member = cjson.decode(member), joined = false}}))
end
"#;

/// KEYS: the nodes. ARGV: node TTL (ms). Returns the ids of the live nodes.
const LIVE: &str = r#"
local now = redis.call('TIME')
local oldest = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], oldest, '+inf')
"#;

/// KEYS: the channel's hash. ARGV: `1` to count the members (reading only their ids)
/// instead of returning their JSON, the most to return, then the live nodes' ids.
const READ: &str = r#"
local count_only = ARGV[1] == '1'
local limit = tonumber(ARGV[2])
local alive = {}
for i = 3, #ARGV do
  alive[ARGV[i]] = true
end
local function live(id)
  local node = string.match(id, '^([^-]+)-')
  return node ~= nil and alive[node] == true
end
if count_only then
  local count = 0
  for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
    if live(id) then
      count = count + 1
    end
  end
  return count
end
local members = {}
local seen = {}
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 100)
  cursor = page[1]
  local entries = page[2]
  for i = 1, #entries, 2 do
    local id = entries[i]
    if not seen[id] and live(id) then
      seen[id] = true
      table.insert(members, entries[i + 1])
      if #members >= limit then
        return members
      end
    end
  end
until cursor == '0'
return members
"#;

/// KEYS: the nodes, the sweeping set. ARGV: this node, node TTL (ms). Moves the dead
/// nodes to the sweeping set. Returns 1 when this node was not in the set (new, swept,
/// or taken out by a sweep it came back during): its members must be written again.
const BEAT: &str = r#"
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local added = redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))) do
  redis.call('ZREM', KEYS[1], node)
  redis.call('SADD', KEYS[2], node)
end
return added
"#;

/// KEYS: the nodes, the sweeping set. Returns a dead node whose members are still to
/// be removed (dropping from the set those that beat again), or nil.
const DEAD: &str = r#"
for _ = 1, 10 do
  local node = redis.call('SRANDMEMBER', KEYS[2])
  if not node then
    return false
  end
  if redis.call('ZSCORE', KEYS[1], node) then
    redis.call('SREM', KEYS[2], node)
  else
    return node
  end
end
return false
"#;

/// KEYS: the nodes. ARGV: a node being swept. A node that beat again while its members
/// were being removed may have written some of them back meanwhile: it is taken out of
/// the nodes, so its next beat writes them all again.
const REVIVED: &str = r#"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
"#;

/// The Redis keys and names presence uses: a hash per channel beside the channel
/// (its shard, on a cluster), the nodes and sweeping sets together, and each node's
/// memberships together. No script touches keys of two of these groups, so presence
/// works the same on one Redis and on a Redis Cluster.
#[derive(Debug, Clone)]
pub(super) struct Names {
    layout: Layout,
    node: String,
}

impl Names {
    pub(super) fn new(layout: Layout, node: u64) -> Self {
        Self {
            layout,
            node: format!("{node:x}"),
        }
    }

    fn hash(&self, channel: &str) -> String {
        self.layout.channel_key("presence", channel)
    }

    fn nodes(&self) -> String {
        self.layout.shared_key("nodes")
    }

    fn sweeping(&self) -> String {
        self.layout.shared_key("sweeping")
    }

    /// The set of `<member id> <channel>` node `node` has written.
    fn memberships_of(&self, node: &str) -> String {
        self.layout.node_key("memberships", node)
    }

    fn memberships(&self) -> String {
        self.memberships_of(&self.node)
    }

    /// The memberships a resync writes (kept only while it runs).
    fn kept(&self) -> String {
        self.layout.node_key("memberships-kept", &self.node)
    }

    /// The memberships a resync did not keep, to be removed (only while it runs).
    fn stale(&self) -> String {
        self.layout.node_key("memberships-stale", &self.node)
    }

    /// Adds a join to `pipe`; in a resync, also to the memberships it keeps.
    fn add_join(&self, pipe: &mut redis::Pipeline, (channel, id, member): (&str, &str, &str), resync: bool) {
        let membership = format!("{id} {channel}");
        pipe.sadd(self.memberships(), &membership).ignore();
        if resync {
            pipe.sadd(self.kept(), &membership).ignore();
        }
        pipe.cmd("EVAL")
            .arg(JOIN)
            .arg(1)
            .arg(self.hash(channel))
            .arg(id)
            .arg(member)
            .arg(channel)
            .arg(self.layout.channel(channel))
            .arg(self.layout.publish_command())
            .ignore();
    }

    /// Adds the removal of member `id` from `channel` to `pipe`, announced as a leave.
    fn add_leave(&self, pipe: &mut redis::Pipeline, channel: &str, id: &str) {
        pipe.cmd("EVAL")
            .arg(LEAVE)
            .arg(1)
            .arg(self.hash(channel))
            .arg(id)
            .arg(channel)
            .arg(self.layout.channel(channel))
            .arg(self.layout.publish_command())
            .ignore();
    }

    /// Adds a join or a leave to `pipe`; a resync's joins and the set difference that
    /// finds what it did not keep ([`Names::forget`] removes those).
    fn add(&self, pipe: &mut redis::Pipeline, change: &Change) {
        match change {
            Change::Join {
                channel,
                id,
                member,
            } => self.add_join(pipe, (channel, id, member), false),
            Change::Leave { channel, id } => {
                self.add_leave(pipe, channel, id);
                pipe.srem(self.memberships(), format!("{id} {channel}"))
                    .ignore();
            }
            Change::Resync(members) => {
                pipe.del(self.kept()).ignore();
                for (channel, id, member) in members {
                    self.add_join(pipe, (channel, id, member), true);
                }
                pipe.cmd("SDIFFSTORE")
                    .arg(self.stale())
                    .arg(self.memberships())
                    .arg(self.kept())
                    .ignore();
                pipe.del(self.kept()).ignore();
            }
        }
    }

    /// Removes memberships `taken` (`<member id> <channel>`) from their channels, each
    /// announced as a leave, then from the sets `from`.
    async fn remove(&self, connection: &mut Connection, taken: &[String], from: &[String]) -> redis::RedisResult<()> {
        if taken.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for membership in taken {
            if let Some((id, channel)) = membership.split_once(' ') {
                self.add_leave(&mut pipe, channel, id);
            }
        }
        for set in from {
            pipe.srem(set, taken).ignore();
        }
        connection.run(&pipe).await
    }

    /// Removes the memberships the last resync did not keep, a batch per round, each
    /// announced as a leave.
    async fn forget(&self, connection: &mut Connection) -> redis::RedisResult<()> {
        let sets = [self.stale(), self.memberships()];
        loop {
            let taken: Vec<String> = connection.srandmember_multiple(&sets[0], BATCH as isize).await?;
            if !taken.is_empty() {
                self.remove(connection, &taken, &sets).await?;
            }
            if taken.len() < BATCH {
                return Ok(());
            }
        }
    }

    /// Beats this node's heartbeat and marks dead nodes for sweeping; `true` when this
    /// node had been swept (or is new): its members must be written again.
    async fn beat(&self, connection: &mut Connection) -> redis::RedisResult<bool> {
        let added: i64 = redis::cmd("EVAL")
            .arg(BEAT)
            .arg(2)
            .arg(self.nodes())
            .arg(self.sweeping())
            .arg(&self.node)
            .arg(millis(NODE_TTL))
            .query_async(connection)
            .await?;
        Ok(added == 1)
    }

    /// Removes dead nodes' members, a batch per round, at most
    /// [`SWEEP_CALLS_PER_BEAT`] rounds.
    async fn sweep(&self, connection: &mut Connection) -> redis::RedisResult<()> {
        for _ in 0..SWEEP_CALLS_PER_BEAT {
            let dead: Option<String> = redis::cmd("EVAL")
                .arg(DEAD)
                .arg(2)
                .arg(self.nodes())
                .arg(self.sweeping())
                .query_async(connection)
                .await?;
            let Some(dead) = dead else { break };
            let memberships = self.memberships_of(&dead);
            let taken: Vec<String> = connection.srandmember_multiple(&memberships, BATCH as isize).await?;
            self.remove(connection, &taken, std::slice::from_ref(&memberships))
                .await?;
            redis::cmd("EVAL")
                .arg(REVIVED)
                .arg(1)
                .arg(self.nodes())
                .arg(&dead)
                .query_async::<()>(connection)
                .await?;
            if taken.len() < BATCH {
                connection.srem::<_, _, ()>(self.sweeping(), &dead).await?;
            }
        }
        Ok(())
    }

    /// The JSON of at most `limit` of `channel`'s members on live nodes.
    pub(super) async fn read(
        &self,
        connection: &mut Connection,
        channel: &str,
        limit: usize,
    ) -> redis::RedisResult<Vec<Vec<u8>>> {
        let command = self.read_command(connection, channel, false, limit).await?;
        command.query_async(connection).await
    }

    /// How many members `channel` has on live nodes (their JSON stays in Redis).
    pub(super) async fn count(&self, connection: &mut Connection, channel: &str) -> redis::RedisResult<usize> {
        let command = self.read_command(connection, channel, true, 0).await?;
        command.query_async(connection).await
    }

    /// The read of `channel`'s members, with the live nodes read first (their set
    /// lives apart from the channel on a cluster).
    async fn read_command(
        &self,
        connection: &mut Connection,
        channel: &str,
        count_only: bool,
        limit: usize,
    ) -> redis::RedisResult<redis::Cmd> {
        let live: Vec<String> = redis::cmd("EVAL")
            .arg(LIVE)
            .arg(1)
            .arg(self.nodes())
            .arg(millis(NODE_TTL))
            .query_async(connection)
            .await?;
        let mut command = redis::cmd("EVAL");
        command
            .arg(READ)
            .arg(1)
            .arg(self.hash(channel))
            .arg(u8::from(count_only))
            .arg(limit.max(1))
            .arg(live);
        Ok(command)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How long a batch of joins waits for this node's subscriptions before it is written
/// anyway (its notices may then not reach this node's own hooks).
const SUBSCRIBED_WAIT: Duration = Duration::from_secs(2);

/// How long a read waits for this node's members to be written back after a reconnect
/// (or a sweep, or dropped changes) before it reads anyway: a count taken before would
/// miss them, and a member list would jump `0 → 1 → 2` as they come back.
pub(super) const SYNCED_WAIT: Duration = Duration::from_secs(2);

/// What the presence task tells the rest of the backplane.
pub(super) struct Signals {
    /// Counts up whenever this node's members must be written again.
    pub(super) resets: watch::Sender<u64>,
    /// Whether they are written (reads wait for it, up to [`SYNCED_WAIT`]).
    pub(super) synced: watch::Sender<Option<u64>>,
}

/// Writes presence changes as they come and beats the heartbeat; counts up `resets`
/// when this node's members must be written again: on every (re)connect, when the node
/// finds it was swept, and when changes were dropped at the queue's bound. Changes made
/// while disconnected are dropped (the resync after the reconnect writes the current
/// members, and removes any that left).
///
/// Joins are written once `subscribed()` resolves: once this node is subscribed to the
/// channels its members joined, so it hears its own join notices too.
pub(super) async fn run<S, F>(
    names: Names,
    queue: Arc<Queue>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    subscribed: S,
    mut connection: watch::Receiver<Option<Publisher>>,
    signals: Signals,
    shutdown: CancellationToken,
) where
    S: Fn() -> F,
    F: std::future::Future<Output = ()>,
{
    static FAILED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    // The connection (its supervisor's session number) this node last wrote on.
    let mut last_session = None;
    // Whether this node's members are in Redis as it knows them: beaten since the
    // connection came up, and no resync pending. Reads wait for it (`synced` names the
    // session they are written on).
    let mut beaten = false;
    let mut resync_pending = false;
    // A write failed: everything is written again after the next beat (at most one
    // resync per beat while Redis keeps failing).
    let mut write_failed = false;
    let Signals { resets, synced } = signals;
    let reset = |resync_pending: &mut bool| {
        *resync_pending = true;
        synced.send_replace(None);
        resets.send_modify(|count| *count += 1);
    };
    loop {
        let current = connection.borrow_and_update().clone();
        let session = current.as_ref().map(|publisher| publisher.session);
        let single = current.map(|publisher: Publisher| publisher.connection);
        // A new connection, even one that replaced the last before this task saw it
        // go: Redis may have lost everything meanwhile.
        if session.is_some() && session != last_session {
            beaten = false;
            write_failed = false;
            reset(&mut resync_pending);
            // Beat at once: until it does, reads skip this node's members.
            beat.reset_immediately();
        }
        last_session = session;
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = connection.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = beat.tick() => {
                let Some(mut connection) = single else { continue };
                let beaten_now = match names.beat(&mut connection).await {
                    Ok(swept) => names.sweep(&mut connection).await.map(|()| swept),
                    Err(error) => Err(error),
                };
                match beaten_now {
                    // New here, or swept: beaten, and the members to write again.
                    Ok(true) => {
                        beaten = true;
                        reset(&mut resync_pending);
                    }
                    Ok(false) if write_failed => {
                        beaten = true;
                        write_failed = false;
                        reset(&mut resync_pending);
                    }
                    Ok(false) => {
                        beaten = true;
                        if !resync_pending {
                            synced.send_replace(session);
                        }
                    }
                    Err(error) => {
                        if let Some(left_out) = FAILED.ready() {
                            tracing::warn!(target: "streampod::cluster", %error, left_out, "presence heartbeat failed");
                        }
                    }
                }
            }
            change = changes.recv() => {
                let Some(change) = change else { return };
                batch.push(change);
                while let Ok(next) = changes.try_recv() {
                    batch.push(next);
                }
                queue.taken(batch.len());
                let Some(mut connection) = single else {
                    batch.clear();
                    continue;
                };
                match write(&names, &mut connection, &mut batch, &subscribed).await {
                    Ok(true) => {
                        resync_pending = false;
                        if beaten {
                            synced.send_replace(session);
                        }
                    }
                    Ok(false) => {}
                    Err(error) => {
                        write_failed = true;
                        if let Some(left_out) = FAILED.ready() {
                            tracing::warn!(target: "streampod::cluster", %error, left_out, "presence changes not written");
                        }
                    }
                }
                batch.clear();
                if queue.take_overflow() {
                    reset(&mut resync_pending);
                }
            }
        }
    }
}

/// The most members a resync writes in one transaction: Redis serves nobody else while
/// it runs (about 20 µs a member), so a larger resync goes as a plain pipeline, and
/// other nodes may read part of it for the moment it takes.
const ATOMIC_RESYNC: usize = 5_000;

/// Writes `batch` in order and says whether it held a resync. A resync supersedes
/// whatever came before it: its joins go first, in one transaction with the set
/// difference of what it did not keep (so a reader sees the node's members before or
/// after it, never half of them, and members Redis held are not announced again), then
/// the memberships it did not keep are removed (in batches, announced as leaves), then
/// the changes after it (a resync of more than [`ATOMIC_RESYNC`] members goes as a plain
/// pipeline, and on a Redis Cluster every resync does: a transaction cannot span
/// shards; joins still go before the removals, so a member that stays never drops out).
async fn write<S, F>(
    names: &Names,
    connection: &mut Connection,
    batch: &mut Vec<Change>,
    subscribed: &S,
) -> redis::RedisResult<bool>
where
    S: Fn() -> F,
    F: std::future::Future<Output = ()>,
{
    if batch.iter().any(|change| !matches!(change, Change::Leave { .. })) {
        let _ = tokio::time::timeout(SUBSCRIBED_WAIT, subscribed()).await;
    }
    let resynced = match batch
        .iter()
        .rposition(|change| matches!(change, Change::Resync(_)))
    {
        Some(last_resync) => {
            batch.drain(..last_resync);
            let mut pipe = redis::pipe();
            if matches!(&batch[0], Change::Resync(members) if members.len() <= ATOMIC_RESYNC) {
                pipe.atomic();
            }
            names.add(&mut pipe, &batch[0]);
            connection.run(&pipe).await?;
            names.forget(connection).await?;
            batch.remove(0);
            true
        }
        None => false,
    };
    let mut pipe = redis::pipe();
    for change in batch.iter() {
        names.add(&mut pipe, change);
    }
    if !pipe.is_empty() {
        connection.run(&pipe).await?;
    }
    Ok(resynced)
}

/// Cluster-wide presence on one Redis or a Redis Cluster: a hash of members per channel, each node's
/// heartbeat keeping its members alive, changes announced on the channel.
impl Presence for RedisBackplane {
    fn join(&self, member: StoredMember) {
        self.presence.push(Change::Join {
            channel: member.channel,
            id: member.id,
            member: member.member,
        });
    }

    fn leave(&self, channel: &str, id: &str) {
        self.presence.push(Change::Leave {
            channel: channel.to_owned(),
            id: id.to_owned(),
        });
    }

    fn resync(&self, members: Vec<StoredMember>) {
        let members = members
            .into_iter()
            .map(|m| (m.channel, m.id, m.member))
            .collect();
        self.presence.push(Change::Resync(members));
    }

    async fn members(&self, channel: &str, limit: usize) -> Result<Vec<Vec<u8>>, ClusterError> {
        self.presence_read(|names, mut connection| async move {
            names.read(&mut connection, channel, limit).await
        })
        .await
    }

    async fn count(&self, channel: &str) -> Result<usize, ClusterError> {
        self.presence_read(|names, mut connection| async move {
            names.count(&mut connection, channel).await
        })
        .await
    }

    fn resets(&self) -> watch::Receiver<u64> {
        self.presence_resets.clone()
    }
}


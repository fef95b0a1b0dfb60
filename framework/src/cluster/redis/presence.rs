//! Presence in Redis: who is in each channel, on every node.
//!
//! `<prefix>:presence:<channel>` is a hash from member id (`<node>-<session>`) to the
//! member's JSON; `<prefix>:memberships:<node>` the set of `<member id> <channel>` a node
//! has written, so it shrinks with every leave and says exactly what to remove when the
//! node dies; `<prefix>:nodes` a sorted set of node ids scored by their last heartbeat
//! (Redis' clock, in milliseconds); `<prefix>:sweeping` the dead nodes whose members are
//! still being removed. Joins and leaves run one script each that writes and publishes a
//! notice (`{"presence":{"channel":…,"member":…,"joined":…}}`) on the channel's pub/sub
//! channel, so every node with members there hears it. Every [`HEARTBEAT`] each node
//! beats and sweeps: a node whose heartbeat is older than [`NODE_TTL`] is moved to the
//! sweeping set and its members are removed, each announced as a leave, [`BATCH`] per
//! script call, so no call walks an unbounded set while Redis serves no one else; reads
//! skip such members even before a sweep.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Publisher, RedisBackplane};
use crate::cluster::{ClusterError, Presence, StoredMember};
use crate::util::log_limit::RateLimitedLog;

/// How often a node beats its heartbeat and sweeps dead nodes.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(2);

/// A node whose heartbeat is this old is dead: its members leave.
pub(super) const NODE_TTL: Duration = Duration::from_secs(6);

/// Most memberships one script call removes (a sweep, a clear), and most members a
/// read scans at once: Redis runs one script at a time, so each call stays short.
pub(super) const BATCH: usize = 500;

/// Most sweep calls one heartbeat makes (`BATCH` memberships each); the rest waits for
/// the next beat, of this node or another.
const SWEEP_CALLS_PER_BEAT: usize = 100;

/// Most presence changes queued for Redis: a change is a member's id, channel and JSON
/// (about 200 bytes), so at most about 20 MB. Past it (Redis slow or hanging) changes
/// are dropped and the node's members are written again from scratch once Redis
/// answers, so the queue's memory stays bounded and nothing is lost for good. Well
/// above a storm: 10,000 clients joining at once queue 10,000 changes while a write is
/// out, and a resync then would double the work.
pub(super) const MAX_QUEUED_CHANGES: usize = 100_000;

/// KEYS: the channel's hash, this node's memberships, and (in a resync) the set of
/// memberships it keeps. ARGV: the member's id, its JSON, the channel, the channel's
/// Redis channel. A member Redis already holds (a resync writing it again) is not
/// announced again: nobody joined.
const JOIN: &str = r#"
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1] .. ' ' .. ARGV[3])
if KEYS[3] then
  redis.call('SADD', KEYS[3], ARGV[1] .. ' ' .. ARGV[3])
end
if added == 1 then
  redis.call('PUBLISH', ARGV[4], cjson.encode({presence = {channel = ARGV[3], member = cjson.decode(ARGV[2]), joined = true}}))
end
"#;

const LEAVE: &str = r#"
redis.call('SREM', KEYS[2], ARGV[1] .. ' ' .. ARGV[2])
local member = redis.call('HGET', KEYS[1], ARGV[1])
if member then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[3], cjson.encode({presence = {channel = ARGV[2], member = cjson.decode(member), joined = false}}))
end
"#;

/// A Lua function the scripts that remove memberships share: `drain(memberships,
/// prefix, batch, announce, also)` removes up to `batch` of the set `memberships` (a
/// node's, or those of its memberships a resync did not keep) from their channels, and
/// from the set `also` when given, announcing each as a leave when `announce`, and
/// returns how many it took.
macro_rules! drain_function {
    () => {
        r#"
local function drain(memberships, prefix, batch, announce, also)
  local taken = redis.call('SPOP', memberships, batch)
  for _, entry in ipairs(taken) do
    if also then
      redis.call('SREM', also, entry)
    end
    local id, channel = string.match(entry, '^(%S+) (.*)$')
    if id then
      local hash = prefix .. ':presence:' .. channel
      local member = redis.call('HGET', hash, id)
      if member then
        redis.call('HDEL', hash, id)
        if announce then
          redis.call('PUBLISH', prefix .. ':channel:' .. channel, cjson.encode({presence = {channel = channel, member = cjson.decode(member), joined = false}}))
        end
      end
    end
  end
  return #taken
end
"#
    };
}

/// KEYS: the memberships a resync did not keep, this node's memberships. ARGV: the key
/// prefix, the batch. Removes up to a batch of them, each announced as a leave (the
/// member left while Redis could not hear it). Returns how many it removed.
const FORGET: &str = concat!(
    drain_function!(),
    "return drain(KEYS[1], ARGV[1], tonumber(ARGV[2]), true, KEYS[2])"
);

/// KEYS: the channel's hash, the nodes. ARGV: node TTL (ms), `1` to count the members
/// (reading only their ids) instead of returning their JSON, the most to return.
const READ: &str = r#"
local now = redis.call('TIME')
local oldest = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[1])
local count_only = ARGV[2] == '1'
local limit = tonumber(ARGV[3])
local alive = {}
local function live(id)
  local node = string.match(id, '^([^-]+)-')
  local known = alive[node]
  if known == nil then
    local beat = redis.call('ZSCORE', KEYS[2], node)
    known = (beat ~= false and beat ~= nil and tonumber(beat) >= oldest)
    alive[node] = known
  end
  return known
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
/// nodes to the sweeping set. Returns 1 when this node was not in the set (new, or
/// swept): its members must be written again.
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

/// KEYS: the nodes, the sweeping set. ARGV: the key prefix, the batch. Removes up to a
/// batch of one dead node's members, each announced as a leave (a node that beat again
/// meanwhile is left to write its own members). Returns 1 while nodes remain to sweep.
const SWEEP: &str = concat!(
    drain_function!(),
    r#"
local node = redis.call('SRANDMEMBER', KEYS[2])
if not node then
  return 0
end
if redis.call('ZSCORE', KEYS[1], node) then
  redis.call('SREM', KEYS[2], node)
elseif drain(ARGV[1] .. ':memberships:' .. node, ARGV[1], tonumber(ARGV[2]), true, nil) < tonumber(ARGV[2]) then
  redis.call('SREM', KEYS[2], node)
end
if redis.call('SCARD', KEYS[2]) > 0 then
  return 1
end
return 0
"#
);

/// A presence write for the presence task.
pub(super) enum Change {
    Join {
        channel: String,
        id: String,
        member: String,
    },
    Leave {
        channel: String,
        id: String,
    },
    /// Replaces everything this node wrote with these members (channel, id, JSON):
    /// the ones Redis holds stay unannounced, new ones are announced as joins, the
    /// ones it no longer has as leaves.
    Resync(Vec<(String, String, String)>),
}

/// The Redis keys and names presence uses under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Names {
    prefix: String,
    node: String,
}

impl Names {
    pub(super) fn new(prefix: &str, node: u64) -> Self {
        Self {
            prefix: prefix.to_owned(),
            node: format!("{node:x}"),
        }
    }

    fn hash(&self, channel: &str) -> String {
        format!("{}:presence:{channel}", self.prefix)
    }

    fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    fn pubsub(&self, channel: &str) -> String {
        format!("{}{channel}", super::channel_prefix(&self.prefix))
    }

    fn sweeping(&self) -> String {
        format!("{}:sweeping", self.prefix)
    }

    fn memberships(&self) -> String {
        format!("{}:memberships:{}", self.prefix, self.node)
    }

    /// The memberships a resync writes (kept only while it runs).
    fn kept(&self) -> String {
        format!("{}:memberships-kept:{}", self.prefix, self.node)
    }

    /// The memberships a resync did not keep, to be removed (only while it runs).
    fn stale(&self) -> String {
        format!("{}:memberships-stale:{}", self.prefix, self.node)
    }

    /// Adds a join to `pipe`; in a resync, also to the memberships it keeps.
    fn add_join(
        &self,
        pipe: &mut redis::Pipeline,
        (channel, id, member): (&str, &str, &str),
        resync: bool,
    ) {
        let command = pipe.cmd("EVAL").arg(JOIN);
        if resync {
            command.arg(3);
        } else {
            command.arg(2);
        }
        command.arg(self.hash(channel)).arg(self.memberships());
        if resync {
            command.arg(self.kept());
        }
        command
            .arg(id)
            .arg(member)
            .arg(channel)
            .arg(self.pubsub(channel))
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
            } => {
                self.add_join(pipe, (channel, id, member), false);
                return;
            }
            Change::Leave { channel, id } => {
                pipe.cmd("EVAL")
                    .arg(LEAVE)
                    .arg(2)
                    .arg(self.hash(channel))
                    .arg(self.memberships())
                    .arg(id)
                    .arg(channel)
                    .arg(self.pubsub(channel));
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
                return;
            }
        }
        pipe.ignore();
    }

    /// Removes the memberships the last resync did not keep, a batch per call, each
    /// announced as a leave.
    async fn forget(&self, connection: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        loop {
            let removed: usize = redis::cmd("EVAL")
                .arg(FORGET)
                .arg(2)
                .arg(self.stale())
                .arg(self.memberships())
                .arg(&self.prefix)
                .arg(BATCH)
                .query_async(connection)
                .await?;
            if removed < BATCH {
                return Ok(());
            }
        }
    }

    /// Beats this node's heartbeat and marks dead nodes for sweeping; `true` when this
    /// node had been swept (or is new): its members must be written again.
    async fn beat(&self, connection: &mut MultiplexedConnection) -> redis::RedisResult<bool> {
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

    /// Removes dead nodes' members, a batch per call, at most
    /// [`SWEEP_CALLS_PER_BEAT`] calls.
    async fn sweep(&self, connection: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        for _ in 0..SWEEP_CALLS_PER_BEAT {
            let more: i64 = redis::cmd("EVAL")
                .arg(SWEEP)
                .arg(2)
                .arg(self.nodes())
                .arg(self.sweeping())
                .arg(&self.prefix)
                .arg(BATCH)
                .query_async(connection)
                .await?;
            if more == 0 {
                break;
            }
        }
        Ok(())
    }

    /// The JSON of at most `limit` of `channel`'s members on live nodes.
    pub(super) async fn read(
        &self,
        connection: &mut MultiplexedConnection,
        channel: &str,
        limit: usize,
    ) -> redis::RedisResult<Vec<Vec<u8>>> {
        self.read_command(channel, false, limit)
            .query_async(connection)
            .await
    }

    /// How many members `channel` has on live nodes (their JSON stays in Redis).
    pub(super) async fn count(
        &self,
        connection: &mut MultiplexedConnection,
        channel: &str,
    ) -> redis::RedisResult<usize> {
        self.read_command(channel, true, 0)
            .query_async(connection)
            .await
    }

    fn read_command(&self, channel: &str, count_only: bool, limit: usize) -> redis::Cmd {
        let mut command = redis::cmd("EVAL");
        command
            .arg(READ)
            .arg(2)
            .arg(self.hash(channel))
            .arg(self.nodes())
            .arg(millis(NODE_TTL))
            .arg(u8::from(count_only))
            .arg(limit.max(1));
        command
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

/// The presence changes waiting for Redis: at most [`MAX_QUEUED_CHANGES`]; past it they
/// are dropped and the node's members written again from scratch once Redis answers.
#[derive(Debug)]
pub(super) struct Queue {
    changes: mpsc::UnboundedSender<Change>,
    queued: AtomicUsize,
    overflowed: AtomicBool,
}

impl Queue {
    pub(super) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Change>) {
        let (changes, receiver) = mpsc::unbounded_channel();
        let queue = Arc::new(Self {
            changes,
            queued: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
        });
        (queue, receiver)
    }

    /// Queues `change`, or drops it (and asks for a resync) when the queue is full; a
    /// resync is always queued: it replaces everything before it.
    pub(super) fn push(&self, change: Change) {
        let resync = matches!(change, Change::Resync(_));
        if !resync && self.queued.load(Ordering::Relaxed) >= MAX_QUEUED_CHANGES {
            self.overflowed.store(true, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.changes.send(change).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The task took `count` changes off the queue.
    fn taken(&self, count: usize) {
        self.queued.fetch_sub(count, Ordering::Relaxed);
    }

    /// Whether changes were dropped since the last call.
    fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::Relaxed)
    }
}

/// What the presence task tells the rest of the backplane.
pub(super) struct Signals {
    /// Counts up whenever this node's members must be written again.
    pub(super) resets: watch::Sender<u64>,
    /// Whether they are written (reads wait for it, up to [`SYNCED_WAIT`]).
    pub(super) synced: watch::Sender<bool>,
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
    let mut was_connected = false;
    // Whether this node's members are in Redis as it knows them: beaten since the
    // connection came up, and no resync pending. Reads wait for it (see `Synced`).
    let mut beaten = false;
    let mut resync_pending = false;
    let Signals { resets, synced } = signals;
    let reset = |resync_pending: &mut bool| {
        *resync_pending = true;
        synced.send_replace(false);
        resets.send_modify(|count| *count += 1);
    };
    loop {
        let current = connection.borrow_and_update().clone();
        let single = match current {
            Some(Publisher::Single(connection, _)) => Some(connection),
            _ => None,
        };
        if single.is_some() && !was_connected {
            beaten = false;
            reset(&mut resync_pending);
            // Beat at once: until it does, reads skip this node's members.
            beat.reset_immediately();
        }
        was_connected = single.is_some();
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
                    Ok(false) => {
                        beaten = true;
                        if !resync_pending {
                            synced.send_replace(true);
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
                            synced.send_replace(true);
                        }
                    }
                    Ok(false) => {}
                    Err(error) => {
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
/// pipeline).
async fn write<S, F>(
    names: &Names,
    connection: &mut MultiplexedConnection,
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
            pipe.query_async::<()>(connection).await?;
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
        pipe.query_async::<()>(connection).await?;
    }
    Ok(resynced)
}

/// Cluster-wide presence on one Redis: a hash of members per channel, each node's
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


#[cfg(test)]
mod tests {
    use super::*;

    fn join(n: usize) -> Change {
        Change::Join {
            channel: "room".into(),
            id: format!("n-{n}"),
            member: "{}".into(),
        }
    }

    #[test]
    fn past_its_bound_the_queue_drops_changes_and_asks_for_a_resync() {
        let (queue, mut changes) = Queue::new();
        for n in 0..MAX_QUEUED_CHANGES + 5 {
            queue.push(join(n));
        }
        assert_eq!(queue.queued.load(Ordering::Relaxed), MAX_QUEUED_CHANGES);
        // A resync is queued even so: it replaces everything before it.
        queue.push(Change::Resync(Vec::new()));
        let mut taken = 0;
        while changes.try_recv().is_ok() {
            taken += 1;
        }
        assert_eq!(taken, MAX_QUEUED_CHANGES + 1);
        queue.taken(taken);
        assert!(queue.take_overflow());
        assert!(!queue.take_overflow(), "asked once");
        queue.push(join(0));
        assert_eq!(queue.queued.load(Ordering::Relaxed), 1);
    }
}

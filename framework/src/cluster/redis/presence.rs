//! Presence in Redis: who is in each channel, on every node.
//!
//! `<prefix>:presence:<channel>` is a hash from member id (`<node>-<session>`) to the
//! member's JSON; `<prefix>:presence-of:<node>` the set of channels a node has written
//! members to; `<prefix>:nodes` a sorted set of node ids scored by their last heartbeat
//! (Redis' clock, in milliseconds). Joins and leaves run one script each that writes and
//! publishes a notice (`{"presence":{"channel":…,"member":…,"joined":…}}`) on the
//! channel's pub/sub channel, so every node with members there hears it. Every
//! [`HEARTBEAT`] each node beats and sweeps: a node whose heartbeat is older than
//! [`NODE_TTL`] is removed with its members, each announced as a leave; reads skip such
//! members even before a sweep.

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

const JOIN: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], cjson.encode({presence = {channel = ARGV[3], member = cjson.decode(ARGV[2]), joined = true}}))
"#;

const LEAVE: &str = r#"
local member = redis.call('HGET', KEYS[1], ARGV[1])
if member then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[3], cjson.encode({presence = {channel = ARGV[2], member = cjson.decode(member), joined = false}}))
end
"#;

/// Removes every member this node wrote, without notices (the joins that follow in the
/// same pipeline announce the members it still has). KEYS: the node's channel set.
/// ARGV: this node, the key prefix.
const CLEAR: &str = r#"
local node = ARGV[1]
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local hash = ARGV[2] .. ':presence:' .. channel
  for _, id in ipairs(redis.call('HKEYS', hash)) do
    if string.sub(id, 1, #node + 1) == node .. '-' then
      redis.call('HDEL', hash, id)
    end
  end
end
redis.call('DEL', KEYS[1])
"#;

/// KEYS: the channel's hash, the nodes. ARGV: node TTL (ms), `1` to count the members
/// (reading only their ids) instead of returning their JSON.
const READ: &str = r#"
local now = redis.call('TIME')
local oldest = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[1])
local count_only = ARGV[2] == '1'
local alive = {}
local members = {}
local count = 0
local entries, step
if count_only then
  entries, step = redis.call('HKEYS', KEYS[1]), 1
else
  entries, step = redis.call('HGETALL', KEYS[1]), 2
end
for i = 1, #entries, step do
  local node = string.match(entries[i], '^([^-]+)-')
  local live = alive[node]
  if live == nil then
    local beat = redis.call('ZSCORE', KEYS[2], node)
    live = (beat ~= false and beat ~= nil and tonumber(beat) >= oldest)
    alive[node] = live
  end
  if live then
    count = count + 1
    if not count_only then
      table.insert(members, entries[i + 1])
    end
  end
end
if count_only then
  return count
end
return members
"#;

/// KEYS: the nodes. ARGV: this node, node TTL (ms), the key prefix. Returns 1 when this
/// node was not in the set (new, or swept): its members must be written again.
const BEAT: &str = r#"
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local added = redis.call('ZADD', KEYS[1], ms, ARGV[1])
local prefix = ARGV[3]
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))) do
  if redis.call('ZREM', KEYS[1], node) == 1 then
    local channels = prefix .. ':presence-of:' .. node
    for _, channel in ipairs(redis.call('SMEMBERS', channels)) do
      local hash = prefix .. ':presence:' .. channel
      for _, id in ipairs(redis.call('HKEYS', hash)) do
        if string.sub(id, 1, #node + 1) == node .. '-' then
          local member = redis.call('HGET', hash, id)
          redis.call('HDEL', hash, id)
          redis.call('PUBLISH', prefix .. ':channel:' .. channel, cjson.encode({presence = {channel = channel, member = cjson.decode(member), joined = false}}))
        end
      end
    end
    redis.call('DEL', channels)
  end
end
return added
"#;

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
    /// Replaces everything this node wrote with these members (channel, id, JSON).
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

    fn add(&self, pipe: &mut redis::Pipeline, change: &Change) {
        match change {
            Change::Join {
                channel,
                id,
                member,
            } => {
                pipe.cmd("EVAL")
                    .arg(JOIN)
                    .arg(2)
                    .arg(self.hash(channel))
                    .arg(self.node_channels())
                    .arg(id)
                    .arg(member)
                    .arg(channel)
                    .arg(self.pubsub(channel));
            }
            Change::Leave { channel, id } => {
                pipe.cmd("EVAL")
                    .arg(LEAVE)
                    .arg(1)
                    .arg(self.hash(channel))
                    .arg(id)
                    .arg(channel)
                    .arg(self.pubsub(channel));
            }
            Change::Resync(members) => {
                pipe.cmd("EVAL")
                    .arg(CLEAR)
                    .arg(1)
                    .arg(self.node_channels())
                    .arg(&self.node)
                    .arg(&self.prefix)
                    .ignore();
                for (channel, id, member) in members {
                    let join = Change::Join {
                        channel: channel.clone(),
                        id: id.clone(),
                        member: member.clone(),
                    };
                    self.add(pipe, &join);
                }
                return;
            }
        }
        pipe.ignore();
    }

    fn node_channels(&self) -> String {
        format!("{}:presence-of:{}", self.prefix, self.node)
    }

    /// The JSON of `channel`'s members on live nodes.
    pub(super) async fn read(
        &self,
        connection: &mut MultiplexedConnection,
        channel: &str,
    ) -> redis::RedisResult<Vec<Vec<u8>>> {
        self.read_command(channel, false)
            .query_async(connection)
            .await
    }

    /// How many members `channel` has on live nodes (their JSON stays in Redis).
    pub(super) async fn count(
        &self,
        connection: &mut MultiplexedConnection,
        channel: &str,
    ) -> redis::RedisResult<usize> {
        self.read_command(channel, true)
            .query_async(connection)
            .await
    }

    fn read_command(&self, channel: &str, count_only: bool) -> redis::Cmd {
        let mut command = redis::cmd("EVAL");
        command
            .arg(READ)
            .arg(2)
            .arg(self.hash(channel))
            .arg(self.nodes())
            .arg(millis(NODE_TTL))
            .arg(u8::from(count_only));
        command
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How long a batch of joins waits for this node's subscriptions before it is written
/// anyway (its notices may then not reach this node's own hooks).
const SUBSCRIBED_WAIT: Duration = Duration::from_secs(2);

/// Writes presence changes as they come and beats the heartbeat; counts up `resets`
/// when this node's members must be written again: on every (re)connect, and when the
/// node finds it was swept. Changes made while disconnected are dropped (the resync
/// after the reconnect writes the current members, and removes any that left).
///
/// Joins are written once `subscribed()` resolves: once this node is subscribed to the
/// channels its members joined, so it hears its own join notices too.
pub(super) async fn run<S, F>(
    names: Names,
    mut changes: mpsc::UnboundedReceiver<Change>,
    subscribed: S,
    mut connection: watch::Receiver<Option<Publisher>>,
    resets: watch::Sender<u64>,
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
    loop {
        let current = connection.borrow_and_update().clone();
        let single = match current {
            Some(Publisher::Single(connection, _)) => Some(connection),
            _ => None,
        };
        if single.is_some() && !was_connected {
            resets.send_modify(|count| *count += 1);
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
                let added: redis::RedisResult<i64> = redis::cmd("EVAL")
                    .arg(BEAT)
                    .arg(1)
                    .arg(names.nodes())
                    .arg(&names.node)
                    .arg(millis(NODE_TTL))
                    .arg(&names.prefix)
                    .query_async(&mut connection)
                    .await;
                match added {
                    Ok(1) => {
                        resets.send_modify(|count| *count += 1);
                    }
                    Ok(_) => {}
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
                let Some(mut connection) = single else {
                    batch.clear();
                    continue;
                };
                if batch.iter().any(|change| !matches!(change, Change::Leave { .. })) {
                    let _ = tokio::time::timeout(SUBSCRIBED_WAIT, subscribed()).await;
                }
                let mut pipe = redis::pipe();
                for change in &batch {
                    names.add(&mut pipe, change);
                }
                batch.clear();
                if let Err(error) = pipe.query_async::<()>(&mut connection).await {
                    if let Some(left_out) = FAILED.ready() {
                        tracing::warn!(target: "streampod::cluster", %error, left_out, "presence changes not written");
                    }
                }
            }
        }
    }
}
/// Cluster-wide presence on one Redis: a hash of members per channel, each node's
/// heartbeat keeping its members alive, changes announced on the channel.
impl Presence for RedisBackplane {
    fn join(&self, member: StoredMember) {
        let _ = self.presence.send(Change::Join {
            channel: member.channel,
            id: member.id,
            member: member.member,
        });
    }

    fn leave(&self, channel: &str, id: &str) {
        let _ = self.presence.send(Change::Leave {
            channel: channel.to_owned(),
            id: id.to_owned(),
        });
    }

    fn resync(&self, members: Vec<StoredMember>) {
        let members = members
            .into_iter()
            .map(|m| (m.channel, m.id, m.member))
            .collect();
        let _ = self.presence.send(Change::Resync(members));
    }

    async fn members(&self, channel: &str) -> Result<Vec<Vec<u8>>, ClusterError> {
        self.presence_read(|names, mut connection| async move {
            names.read(&mut connection, channel).await
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


//! Channel history in Redis: one order for every node.
//!
//! Each channel with history has two keys: `<prefix>:history-meta:<name>`, a hash with
//! the history's `epoch` and the last `offset` given out, and `<prefix>:history:<name>`,
//! a stream of the kept posts (entry id `<offset>-0`, fields `t`, Redis' clock in
//! milliseconds, and `d`, the envelope), trimmed to the history's size and bytes (the
//! meta counts them). A post runs one script that numbers it, keeps it and publishes it
//! with its position, so every node delivers the same offsets in
//! the same order, whichever node posted. A new epoch is made by the first post whenever
//! the meta key is missing: Redis restarted or was flushed, or the channel saw no post
//! nor join for the meta's lifetime; clients holding older positions are then told
//! `recovered: false`. Reading a channel that has no history writes nothing (its epoch
//! is provisional, see [`HistoryRead`]): joining a thousand silent rooms leaves no key
//! behind.
//!
//! On a Redis Cluster the keys and the channel carry the channel's hash tag (see
//! [`layout`](super::layout)), so the script runs on the channel's shard and publishes
//! with `SPUBLISH` there: each channel keeps one order, and channels spread over the
//! shards.
//!
//! Why scripts and not a Redis Stream read by every node: a script does offset, append
//! and publish atomically in one round trip, and nodes keep receiving through the
//! pub/sub subscriptions they already hold. The stream is only read when a client
//! joins.

use std::time::Duration;


use super::super::{ClusterError, History, HistoryRead, Record, Retention};
use super::connection::Connection;
use super::layout::Layout;
use super::{Change, Publisher, RedisBackplane};

/// How long a channel's epoch and last offset outlive its last post or join, unless
/// its history's TTL is longer: a client coming back within it can be told exactly
/// whether it missed anything.
pub(super) const META_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Numbers, keeps and publishes one post. KEYS: stream, meta. ARGV: the Redis channel,
/// the envelope, size, TTL (ms), meta TTL (ms), a fresh epoch, most bytes, the publish
/// command (`PUBLISH`, or `SPUBLISH` on a Redis Cluster, where the channel shares the
/// keys' slot). Returns the publish's count. The first post of an epoch creates the meta, with the epoch's start
/// (`started`, Redis' clock in milliseconds); the meta also counts the bytes the stream
/// holds, and the oldest posts go while it holds more than the size or the bytes (the
/// newest always stays).
const APPEND: &str = r#"
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0, 'started', ms, 'bytes', 0)
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[2], 'bytes', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
redis.call('XADD', KEYS[1], offset .. '-0', 't', ms, 'd', ARGV[2])
local bytes = redis.call('HINCRBY', KEYS[2], 'bytes', #ARGV[2])
local length = redis.call('XLEN', KEYS[1])
local size = tonumber(ARGV[3])
local most = tonumber(ARGV[7])
while length > 1 and (length > size or bytes > most) do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[1], oldest[1])
  bytes = redis.call('HINCRBY', KEYS[2], 'bytes', -#oldest[2][4])
  length = length - 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local positioned = '{"epoch":"' .. epoch .. '","offset":' .. offset .. ',' .. string.sub(ARGV[2], 2)
return redis.call(ARGV[8], ARGV[1], positioned)
"#;

/// Reads the epoch, the newest offset and, when ARGV[2] is an offset, at most ARGV[5] of
/// the unexpired posts after it; writes nothing for a channel without history, whose
/// epoch is provisional: `~<generation>:<now>`. The generation (KEYS[3], one key per
/// prefix, or per slot on a Redis Cluster) changes when Redis loses its data, so a provisional epoch from before that
/// is never taken as continued. A real epoch continues a provisional one when it started
/// after it, and too soon after for another epoch to have started and expired in
/// between (ARGV[7], the shortest a meta key lives): a reader that joined before the
/// first post keeps the provisional epoch with the offsets of the real one.
///
/// KEYS: stream, meta, generation. ARGV: the reader's epoch ('' for none), its offset
/// ('' for none), TTL (ms), meta TTL (ms), most posts, a fresh generation, the meta's
/// shortest life (ms). Returns epoch, newest offset, entries, 1 when continued.
const READ: &str = r#"
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local generation = redis.call('GET', KEYS[3])
if not generation then
  generation = ARGV[6]
  redis.call('SET', KEYS[3], generation)
end
local provisional_at = nil
local given, at = string.match(ARGV[1], '^~([^:]+):(%d+)$')
if given == generation then
  provisional_at = tonumber(at)
end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  local continues = 0
  if provisional_at and ARGV[2] == '0' then
    continues = 1
  end
  return {'~' .. generation .. ':' .. ms, '0', {}, continues}
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local newest = redis.call('HGET', KEYS[2], 'offset')
local continues = 0
if provisional_at then
  local started = tonumber(redis.call('HGET', KEYS[2], 'started') or '-1')
  if started >= provisional_at and started - provisional_at < tonumber(ARGV[7]) then
    continues = 1
  end
end
local entries = {}
if ARGV[2] ~= '' then
  local oldest = ms - tonumber(ARGV[3])
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[2] .. '-0', '+', 'COUNT', ARGV[5])) do
    local fields = entry[2]
    if tonumber(fields[2]) >= oldest then
      table.insert(entries, {entry[1], fields[4]})
    end
  end
end
return {epoch, newest, entries, continues}
"#;

/// The two scripts, loaded on every Redis (or every master of a cluster) when the node
/// connects, and again by a shard that lost them (see [`Connection::eval`]).
#[derive(Debug, Clone)]
pub(super) struct Scripts {
    append: redis::Script,
    read: redis::Script,
}

impl Scripts {
    /// Loads both scripts (`SCRIPT LOAD`).
    pub(super) async fn load(connection: &mut Connection) -> redis::RedisResult<Self> {
        let scripts = Self {
            append: redis::Script::new(APPEND),
            read: redis::Script::new(READ),
        };
        scripts.append.load_async(connection).await?;
        scripts.read.load_async(connection).await?;
        Ok(scripts)
    }

    /// A recorded publish of `payload` on Redis channel `channel` (streampod channel
    /// `name`): the append script's `EVALSHA`.
    pub(super) fn append(&self, keys: &Keys, channel: &str, payload: &[u8], record: Record) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.append.get_hash())
            .arg(2)
            .arg(&keys.stream)
            .arg(&keys.meta)
            .arg(channel)
            .arg(payload)
            .arg(record.size.max(1))
            .arg(millis(record.ttl))
            .arg(millis(meta_ttl(record)))
            .arg(fresh_epoch())
            .arg(record.bytes.max(1))
            .arg(keys.publish);
        command
    }

    /// Runs an [`append`](Self::append) command on its own (a Redis Cluster's shard),
    /// loading the script first where the shard lost it.
    pub(super) async fn run_append(&self, connection: &mut Connection, command: &redis::Cmd) -> redis::RedisResult<usize> {
        connection.eval(&self.append, command).await
    }

    /// Reads a channel's history after `since` (see [`History::read`]).
    pub(super) async fn read(
        &self,
        connection: &mut Connection,
        keys: &Keys,
        since: Option<(&str, u64)>,
        record: Record,
    ) -> Result<HistoryRead, ClusterError> {
        let (epoch, after) = since.map_or((None, None), |(epoch, offset)| (Some(epoch), Some(offset)));
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.read.get_hash())
            .arg(3)
            .arg(&keys.stream)
            .arg(&keys.meta)
            .arg(&keys.generation)
            .arg(epoch.unwrap_or_default())
            .arg(after.map(|after| after.to_string()).unwrap_or_default())
            .arg(millis(record.ttl))
            .arg(millis(meta_ttl(record)))
            .arg(record.size.max(1))
            .arg(fresh_epoch())
            .arg(millis(META_TTL));
        let reply: (String, String, Vec<(String, Vec<u8>)>, u8) = connection
            .eval(&self.read, &command)
            .await
            .map_err(|error| ClusterError::Unavailable(error.to_string()))?;
        let (epoch, newest, entries, continues) = reply;
        let newest = newest.parse().map_err(|_| malformed("offset"))?;
        let entries = entries
            .into_iter()
            .map(|(id, envelope)| {
                let offset = id
                    .strip_suffix("-0")
                    .and_then(|offset| offset.parse().ok())
                    .ok_or_else(|| malformed("entry id"))?;
                Ok((offset, envelope))
            })
            .collect::<Result<_, ClusterError>>()?;
        Ok(HistoryRead {
            epoch,
            newest,
            entries,
            continues: continues == 1,
        })
    }
}

fn malformed(what: &str) -> ClusterError {
    ClusterError::Unavailable(format!(
        "the channel history in Redis has a malformed {what} (written by something other than streampod?)"
    ))
}

/// The Redis keys of one channel's history, and how to publish on its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Keys {
    stream: String,
    meta: String,
    /// Names what this Redis (or shard) holds (see `READ`).
    generation: String,
    publish: &'static str,
}

impl Keys {
    /// The keys of streampod channel `name`.
    pub(super) fn new(layout: &Layout, name: &str) -> Self {
        Self {
            stream: layout.channel_key("history", name),
            meta: layout.channel_key("history-meta", name),
            generation: layout.generation(name),
            publish: layout.publish_command(),
        }
    }
}

fn meta_ttl(record: Record) -> Duration {
    record.ttl.max(META_TTL)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A new epoch: 16 hex digits, random.
fn fresh_epoch() -> String {
    format!("{:016x}", crate::util::random::random_u64())
}

/// Cluster-wide history on one Redis: an append-and-publish script numbers each post,
/// keeps it in the channel's stream and publishes it with its position, in one step.
impl History for RedisBackplane {
    fn append_and_publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
        retention: Retention,
    ) -> Result<
        impl std::future::Future<Output = Result<crate::cluster::Reached, ClusterError>> + Send + 'static,
        ClusterError,
    > {
        let record = Record::from(retention);
        let keys = Keys::new(&self.layout, channel);
        self.enqueue(self.layout.channel(channel), payload, Some((record, keys)))
    }

    /// Waits until this node's subscriptions (`channel`'s included, once its first
    /// listener asked) are in place, then reads the history in one script.
    async fn read(
        &self,
        channel: &str,
        since: Option<(&str, u64)>,
        retention: Retention,
    ) -> Result<HistoryRead, ClusterError> {
        let record = Record::from(retention);
        let keys = Keys::new(&self.layout, channel);
        let (confirm, confirmed) = tokio::sync::oneshot::channel();
        let asked = self.wanted.send(Change::Confirm(confirm));
        let timeout = self.read_timeout;
        let unavailable = || ClusterError::Unavailable("not connected to Redis".into());
        asked.map_err(|_| unavailable())?;
        let read = async {
            confirmed.await.map_err(|_| unavailable())?;
            let current = self.connection.borrow().clone();
            match current {
                Some(Publisher {
                    mut connection,
                    scripts,
                    ..
                }) => scripts.read(&mut connection, &keys, since, record).await,
                None => Err(unavailable()),
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(ClusterError::Timeout(timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_the_channel() {
        let keys = Keys::new(&Layout::new("app", false), "room-1");
        assert_eq!(keys.stream, "app:history:room-1");
        assert_eq!(keys.meta, "app:history-meta:room-1");
        assert_eq!(keys.publish, "PUBLISH");
        assert_eq!(fresh_epoch().len(), 16);
        let short = Record {
            size: 10,
            ttl: Duration::from_secs(1),
            bytes: 1 << 20,
        };
        assert_eq!(meta_ttl(short), META_TTL);
    }
}

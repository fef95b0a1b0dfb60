//! The connection commands go out on: one Redis, or a Redis Cluster whose client routes
//! each command to the shard of its first key.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, RedisFuture, RedisResult, Value};

/// A multiplexed connection to one Redis or to a Redis Cluster. Cheap to clone.
#[derive(Clone)]
pub(super) enum Connection {
    Single(MultiplexedConnection),
    Sharded(ClusterConnection),
}

impl Connection {
    /// Runs `pipe`'s commands in order and ignores their answers. On one Redis: one
    /// pipeline (a transaction when `pipe` is atomic). On a Redis Cluster the commands
    /// are grouped by the slot of their first key, each group a pipeline to its shard
    /// (all groups at once): the commands of one slot run in order, those of different
    /// slots in no set order, and an atomic `pipe` is not atomic there (a transaction
    /// cannot span shards).
    pub(super) async fn run(&mut self, pipe: &redis::Pipeline) -> RedisResult<()> {
        match self {
            Connection::Single(connection) => pipe.query_async(connection).await,
            Connection::Sharded(connection) => {
                let mut groups: Vec<(Slot, redis::Pipeline)> = Vec::new();
                for command in pipe.cmd_iter() {
                    let slot = first_key(command).map(Slot::for_key);
                    let at = groups.iter().position(|(group, _)| Some(*group) == slot);
                    match (at, slot) {
                        (Some(at), _) => {
                            groups[at].1.add_command(command.clone()).ignore();
                        }
                        (None, Some(slot)) => {
                            let mut group = redis::pipe();
                            group.add_command(command.clone()).ignore();
                            groups.push((slot, group));
                        }
                        (None, None) => {
                            return Err(redis::RedisError::from((
                                redis::ErrorKind::Client,
                                "a command without a key cannot be routed in a group",
                            )))
                        }
                    }
                }
                let sends = groups.iter().map(|(_, group)| {
                    let mut connection = connection.clone();
                    async move { group.query_async::<()>(&mut connection).await }
                });
                for outcome in futures_util::future::join_all(sends).await {
                    outcome?;
                }
                Ok(())
            }
        }
    }

    /// Runs `command`, an `EVALSHA` of `script`; when the Redis (or the shard) does not
    /// have the script (it restarted, or a replica took over), loads it and runs the
    /// command again: a missing script ran nothing.
    pub(super) async fn eval<T: redis::FromRedisValue>(
        &mut self,
        script: &redis::Script,
        command: &Cmd,
    ) -> RedisResult<T> {
        match command.query_async(self).await {
            Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(self).await?;
                command.query_async(self).await
            }
            outcome => outcome,
        }
    }
}

/// The first key of `command`: the fourth argument of `EVAL`/`EVALSHA` with keys,
/// otherwise the second (`SADD key …`, `DEL key`, …).
fn first_key(command: &Cmd) -> Option<&[u8]> {
    let mut args = command.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()??;
    if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA") {
        let keys = args.nth(1)??;
        if keys == b"0" {
            return None;
        }
        args.next()?
    } else {
        args.next()?
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Sharded(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Connection::Sharded(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Sharded(connection) => connection.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_grouped_by_their_first_key() {
        let mut eval = redis::cmd("EVAL");
        eval.arg("return 1").arg(1).arg("the-key").arg("an-arg");
        assert_eq!(first_key(&eval), Some(&b"the-key"[..]));
        let mut keyless = redis::cmd("EVAL");
        keyless.arg("return 1").arg(0);
        assert_eq!(first_key(&keyless), None);
        let mut sadd = redis::cmd("SADD");
        sadd.arg("set").arg("member");
        assert_eq!(first_key(&sadd), Some(&b"set"[..]));
        assert_eq!(first_key(&redis::cmd("PING")), None);
    }
}

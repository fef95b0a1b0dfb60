//! The connection commands go out on: one Redis, or a Redis Cluster whose client routes
//! each command to the shard of its first key.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisFuture, RedisResult, Value};

/// A multiplexed connection to one Redis or to a Redis Cluster. Cheap to clone.
#[derive(Clone)]
pub(super) enum Connection {
    Single(MultiplexedConnection),
    Sharded(ClusterConnection),
}

impl Connection {
    /// Runs `pipe`'s commands in order and ignores their answers. On one Redis: one
    /// pipeline (a transaction when `pipe` is atomic). On a Redis Cluster each command
    /// goes to its shard, all sent at once in order (each future is first polled in
    /// order), so the commands of one slot arrive in order; an atomic `pipe` is not
    /// atomic there (a transaction cannot span shards).
    pub(super) async fn run(&mut self, pipe: &redis::Pipeline) -> RedisResult<()> {
        match self {
            Connection::Single(connection) => pipe.query_async(connection).await,
            Connection::Sharded(connection) => {
                let sends = pipe.cmd_iter().map(|command| {
                    let mut connection = connection.clone();
                    async move { command.query_async::<Value>(&mut connection).await }
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

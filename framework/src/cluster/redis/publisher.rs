//! The publishing side: the connection publishes go out on (one Redis, or a Redis
//! Cluster's shards) and the task that sends everything queued as one pipeline.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::history;
use crate::cluster::publish_queue::next_batch;
use crate::cluster::{ClusterError, Record};
use crate::util::byte_budget::HeldBytes;
use crate::util::log_limit::RateLimitedLog;

/// The connection publishes and reads go out on, with the history scripts it loaded.
#[derive(Clone)]
pub(super) struct Publisher {
    pub(super) connection: Connection,
    pub(super) scripts: Arc<history::Scripts>,
    /// Which of the supervisor's connections this is (counts up with each).
    pub(super) session: u64,
}

impl Publisher {
    /// Publishes `batch` in order: for each post, how many nodes received it, or why
    /// not (certainly not published, or maybe).
    async fn publish(&mut self, batch: &[Outgoing]) -> Vec<Result<usize, ClusterError>> {
        // Sharded pub/sub on a cluster: the channel's shard.
        let publish = match self.connection {
            Connection::Single(_) => "PUBLISH",
            Connection::Sharded(_) => "SPUBLISH",
        };
        let command = |post: &Outgoing| match &post.record {
            Some((record, keys)) => self.scripts.append(keys, &post.channel, &post.payload, *record),
            None => {
                let mut command = redis::cmd(publish);
                command.arg(&post.channel).arg(&post.payload);
                command
            }
        };
        match &self.connection {
            Connection::Single(connection) => {
                let mut pipe = redis::pipe();
                for post in batch {
                    pipe.add_command(command(post));
                }
                let mut connection = connection.clone();
                match pipe.query_async::<Vec<usize>>(&mut connection).await {
                    Ok(receivers) => receivers.into_iter().map(Ok).collect(),
                    // Handed to the connection: some or all may have gone out (an error
                    // reply in a pipeline does not undo the others).
                    Err(error) => {
                        vec![Err(ClusterError::Unconfirmed(error.to_string())); batch.len()]
                    }
                }
            }
            Connection::Sharded(_) => {
                // Sent in order (each future is first polled in order), so a channel's
                // posts reach its shard in order; shards answer independently.
                let sends = batch.iter().map(|post| {
                    let mut connection = self.connection.clone();
                    let scripts = &self.scripts;
                    let command = command(post);
                    async move {
                        let sent = if post.record.is_some() {
                            scripts.run_append(&mut connection, &command).await
                        } else {
                            command.query_async::<usize>(&mut connection).await
                        };
                        sent.map_err(|error| match error.kind() {
                            // The shard answered and refused (CLUSTERDOWN, …).
                            redis::ErrorKind::Server(_) => ClusterError::Unavailable(error.to_string()),
                            _ => ClusterError::Unconfirmed(error.to_string()),
                        })
                    }
                });
                futures_util::future::join_all(sends).await
            }
        }
    }
}

pub(super) struct Outgoing {
    pub(super) channel: String,
    pub(super) payload: Vec<u8>,
    /// Kept in the channel's history first.
    pub(super) record: Option<(Record, history::Keys)>,
    pub(super) reply: Option<oneshot::Sender<Result<usize, ClusterError>>>,
    /// The payload's bytes, counted in the queue's total until the post is done with.
    pub(super) _held: HeldBytes,
}

/// Sends queued publishes, everything queued at once as one pipeline (one round trip,
/// order kept).
pub(super) async fn publish_loop(
    mut outgoing: mpsc::Receiver<Outgoing>,
    connection: watch::Receiver<Option<Publisher>>,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    // Failures come in runs while Redis is in trouble: one line per interval, counted.
    static FAILED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
    let mut batch = Vec::new();
    while next_batch(&mut outgoing, &mut batch, &shutdown).await {
        let current = connection.borrow().clone();
        let outcomes: Vec<Result<usize, ClusterError>> = match current {
            // Never written: certainly not published.
            None => vec![Err(ClusterError::Unavailable("connection lost".into())); batch.len()],
            Some(mut publisher) => {
                match tokio::time::timeout(timeout, publisher.publish(&batch)).await {
                    Ok(outcomes) => outcomes,
                    Err(_) => vec![Err(ClusterError::Timeout(timeout)); batch.len()],
                }
            }
        };
        let failures = outcomes.iter().filter(|o| o.is_err()).count();
        if failures > 0 {
            if let Some(left_out) = FAILED_LOG.ready() {
                let error = outcomes.iter().find_map(|o| o.as_ref().err());
                tracing::warn!(
                    target: "streampod::cluster",
                    error = %error.map(ToString::to_string).unwrap_or_default(),
                    posts = failures, earlier_failures_left_out = left_out,
                    "global posts failed (unavailable means not published; a timeout or unconfirmed one may have gone out)"
                );
            }
        }
        for (post, outcome) in batch.drain(..).zip(outcomes) {
            if let Some(reply) = post.reply {
                let _ = reply.send(outcome);
            }
        }
        batch.clear();
    }
}

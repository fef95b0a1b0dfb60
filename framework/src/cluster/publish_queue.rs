//! The queue global posts wait in for a backend's connection (Redis, NATS): bounded in
//! posts and bytes, refusing at once what cannot go out now, and drained in batches by
//! the backend's publishing task.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ClusterError, ClusterState};
use crate::util::byte_budget::{ByteBudget, HeldBytes};

/// Most posts one batch takes off the queue.
const BATCH: usize = 1024;

/// The sending side, held by the backend's handle.
pub(crate) struct PublishQueue<T> {
    sender: mpsc::Sender<T>,
    posts: usize,
    bytes: Arc<ByteBudget>,
}

impl<T> PublishQueue<T> {
    /// A queue of at most `posts` posts and `bytes` bytes of them; the receiver goes to
    /// the publishing task.
    pub(crate) fn new(posts: usize, bytes: usize) -> (Self, mpsc::Receiver<T>) {
        let (sender, receiver) = mpsc::channel(posts.max(1));
        let queue = Self {
            sender,
            posts,
            bytes: ByteBudget::new(bytes),
        };
        (queue, receiver)
    }

    /// Queues the post `make` builds around the bytes it holds, or says at once why it
    /// cannot go out (certainly not published): `backend` (named in the error) is not
    /// connected in `state`, or the queue is full in posts or bytes.
    pub(crate) fn admit(
        &self,
        state: &ClusterState,
        backend: &str,
        payload_bytes: usize,
        make: impl FnOnce(HeldBytes) -> T,
    ) -> Result<(), ClusterError> {
        match state {
            ClusterState::Connected => {}
            ClusterState::Connecting => {
                return Err(ClusterError::Unavailable(format!("still connecting to {backend}")));
            }
            ClusterState::Disconnected { error } => {
                return Err(ClusterError::Unavailable(format!("{backend}: {error}")));
            }
        }
        let held = self
            .bytes
            .hold(payload_bytes)
            .ok_or_else(|| ClusterError::Backlog(format!("{} bytes", self.bytes.ceiling())))?;
        self.sender.try_send(make(held)).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                ClusterError::Backlog(format!("{} posts", self.posts))
            }
            mpsc::error::TrySendError::Closed(_) => shutting_down(),
        })
    }
}

/// The error of a post the server's shutdown left unpublished.
pub(crate) fn shutting_down() -> ClusterError {
    ClusterError::Unavailable("the server is shutting down".into())
}

/// Waits for the next post, then takes whatever else is queued (up to a batch) into
/// `batch`; `false` once the server shuts down or the queue is gone.
pub(crate) async fn next_batch<T>(
    queue: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    shutdown: &CancellationToken,
) -> bool {
    let first = tokio::select! {
        () = shutdown.cancelled() => return false,
        first = queue.recv() => match first {
            Some(first) => first,
            None => return false,
        },
    };
    batch.push(first);
    while batch.len() < BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_are_refused_at_once_unless_connected_and_within_both_bounds() {
        let (queue, mut receiver) = PublishQueue::<HeldBytes>::new(2, 10);
        let down = ClusterState::Disconnected { error: "gone".into() };
        let refused = queue.admit(&down, "Redis", 1, |held| held).unwrap_err();
        assert_eq!(refused.to_string(), ClusterError::Unavailable("Redis: gone".into()).to_string());
        let up = ClusterState::Connected;
        assert!(matches!(queue.admit(&up, "NATS", 11, |held| held), Err(ClusterError::Backlog(_))));
        queue.admit(&up, "NATS", 4, |held| held).unwrap();
        queue.admit(&up, "NATS", 4, |held| held).unwrap();
        assert!(matches!(queue.admit(&up, "NATS", 1, |held| held), Err(ClusterError::Backlog(_))));
        let mut batch = Vec::new();
        assert!(next_batch(&mut receiver, &mut batch, &CancellationToken::new()).await);
        assert_eq!(batch.len(), 2);
        batch.clear();
        let stopped = CancellationToken::new();
        stopped.cancel();
        assert!(!next_batch(&mut receiver, &mut batch, &stopped).await);
    }
}

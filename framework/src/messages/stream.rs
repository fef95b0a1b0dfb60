//! A channel's messages as an async stream (Serverpod's `createStream`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::central::MessageCentral;
use super::channel::Listener;
use super::listener::ListenerHandle;
use super::queue::StreamQueue;
use crate::protocol::ModelSet;
use crate::session::owned::JoinError;

type Recv<P> = Pin<Box<dyn Future<Output = Option<Arc<P>>> + Send>>;

/// The messages of one channel as an async [`Stream`](futures_util::Stream). Dropping it
/// removes its listener. It ends when it fell behind under the `Disconnect` policy.
pub struct ChannelStream<P> {
    queue: Arc<StreamQueue<P>>,
    guard: ListenerHandle<P>,
    pending: Option<Recv<P>>,
}

impl<P> fmt::Debug for ChannelStream<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelStream")
            .field("channel", &self.guard.channel)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> ChannelStream<P> {
    /// The next message, or `None` once the stream ended.
    pub async fn recv(&mut self) -> Option<Arc<P>> {
        futures_util::StreamExt::next(self).await
    }
}

impl<P: ModelSet> futures_util::Stream for ChannelStream<P> {
    type Item = Arc<P>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Arc<P>>> {
        let queue = self.queue.clone();
        let pending = self.pending.get_or_insert_with(|| Box::pin(queue.recv()));
        let result = pending.as_mut().poll(cx);
        if result.is_ready() {
            self.pending = None;
        }
        result
    }
}

impl<P> Drop for ChannelStream<P> {
    fn drop(&mut self) {
        self.guard.forget_and_remove();
    }
}

impl<P: ModelSet> MessageCentral<P> {
    /// A stream of the messages posted to `channel` from now on (Serverpod's
    /// `createStream`). It holds at most the server's outbound queue size; the
    /// channel's slow-consumer policy applies when it is full (`Disconnect` ends it).
    ///
    /// # Errors
    ///
    /// [`JoinError::NameTooLong`] past
    /// [`ServerConfig::max_channel_name_len`](crate::ServerConfig::max_channel_name_len);
    /// from a streaming-method call's central (see [`MessageCentral`]) also
    /// [`JoinError::TooManyChannels`] and [`JoinError::Closed`], as for a join.
    pub fn create_stream(&self, channel: &str) -> Result<ChannelStream<P>, JoinError> {
        let queue = Arc::new(StreamQueue::new(self.stream_capacity()));
        let (id, owner) = self.add_checked(channel, |id| Listener::Stream {
            id,
            queue: queue.clone(),
        })?;
        Ok(ChannelStream {
            queue,
            guard: ListenerHandle {
                central: self.clone(),
                channel: Arc::from(channel),
                id,
                owner,
            },
            pending: None,
        })
    }
}

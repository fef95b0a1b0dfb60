//! A channel's values of one model type as a streaming method's answer
//! ([`ChannelFeed`]): returned by a method, its values go from the post straight into
//! the caller's socket queue, encoded once per post for every call that takes them,
//! under the channel's slow-consumer policy — as a channel's posts reach endpoint
//! streams. Used any other way it is an async stream of the values.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use uuid::Uuid;

use super::central::MessageCentral;
use super::channel::Listener;
use super::delivery::{
    call_frame_value, push_call_frames, CallMember, DeliveryReport, FeedSink, Post, PostError,
};
use super::gate::Recovered;
use super::history::{Entry, Since, REPLAY_FRAME_OVERHEAD};
use crate::cluster::{ClusterError, HistoryRead};
use crate::util::log_limit::RateLimitedLog;
use tokio::sync::Notify;
use super::listener::ListenerHandle;
use super::queue::StreamQueue;
use crate::config::SlowConsumerPolicy;
use crate::protocol::history::Position;
use crate::protocol::method_stream::{write_wrapped, Resume};
use crate::protocol::wire::WireValue;
use crate::protocol::{ModelSet, SerializableModel};
use crate::session::outbound::ChannelKey;
use crate::session::owned::JoinError;
use crate::session::state::SessionShared;
use crate::ws::frame::{CallFrameShape, TextFrame};

/// Where a feed sends once a call took it over.
struct Socket {
    session: Arc<SessionShared>,
    /// The shape of the call's frames.
    shape: Arc<CallFrameShape>,
}

/// A value waiting in a feed, with its offset when its channel gave one.
struct Held<T> {
    value: T,
    at: Option<u64>,
}

/// Where a feed whose call asked for positions started: its channel's newest position
/// then, whether everything after the position the client resumed from is in
/// `replay`, and that replay (offsets and objects), oldest first.
struct Start {
    /// `None` when the cluster's history could not be read.
    position: Option<Position>,
    recovered: bool,
    replay: Vec<(u64, Arc<str>)>,
}

/// What a feed and its listener share.
struct FeedCore<T> {
    class_name: &'static str,
    /// The feed's own key in the socket's queue: its policy drops only its frames.
    key: ChannelKey,
    /// The values, while the feed is a stream (and those posted before a call took it).
    queue: StreamQueue<Held<T>>,
    /// Set once for a call that asked for positions on a channel that keeps history:
    /// while the listener is added (history here), or when the cluster's history was
    /// read (see `reading`).
    start: OnceLock<Start>,
    /// The cluster's history is being read: the call waits for `start` (and `started`)
    /// before it sends anything.
    reading: AtomicBool,
    started: Notify,
    /// Set once, by a call taking the feed over; read without a lock per post.
    socket: OnceLock<Socket>,
    /// Held by a post queueing a value and by the takeover, so no value is queued
    /// after the takeover drained the queue.
    switch: Mutex<()>,
    closed: AtomicBool,
    /// Told once when the feed ends after a call took it over.
    on_end: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The call it listens for, a member of a channel with presence.
    member: Option<CallMember>,
}

impl<T: SerializableModel + Clone> FeedCore<T> {
    /// Pushes what of `post` is of this feed's type to the socket.
    fn send(
        &self,
        socket: &Socket,
        post: &mut Post<'_, '_, impl ModelSet>,
        policy: SlowConsumerPolicy,
        report: &mut DeliveryReport,
    ) -> Result<(), PostError> {
        if self.has(post) {
            return Ok(());
        }
        // The socket named the call after the feed's key: its writer puts the id in.
        let positioned = self
            .start
            .get()
            .is_some_and(|start| start.position.is_some());
        let frames = post.call_frames(&socket.shape, positioned, || self.class_name)?;
        push_call_frames(&socket.session, self.key, frames, policy, report);
        Ok(())
    }

    /// The cluster's history was read for a call that resumes after `since` (or starts
    /// with positions): where the call starts, and what it replays. A failed read gives
    /// no positions (the client is told it did not recover).
    fn read_done(
        &self,
        read: Result<HistoryRead, ClusterError>,
        since: Option<&Position>,
        owner: Option<&std::sync::Weak<SessionShared>>,
    ) {
        let start = match read {
            Ok(read) => {
                let fits = |bytes| {
                    owner
                        .and_then(std::sync::Weak::upgrade)
                        .is_some_and(|session| session.can_take_replay(bytes))
                };
                let recovery = Recovered::of(since, read, fits);
                Start {
                    position: Some(Position::new(&*recovery.epoch, recovery.newest)),
                    // Nothing asked, nothing lost; asked: all of it, or not.
                    recovered: since.is_none() || recovery.replay.is_some(),
                    replay: recovery
                        .objects()
                        .map(|(offset, object)| (offset, Arc::from(object)))
                        .collect(),
                }
            }
            Err(error) => {
                static FAILED: RateLimitedLog = RateLimitedLog::new(std::time::Duration::from_secs(10));
                if let Some(left_out) = FAILED.ready() {
                    tracing::warn!(target: "streampod::cluster", %error, left_out, "could not read a channel's history for a streaming call; it goes on without positions");
                }
                Start {
                    position: None,
                    recovered: since.is_none(),
                    replay: Vec::new(),
                }
            }
        };
        let _ = self.start.set(start);
        self.reading.store(false, Ordering::Release);
        self.started.notify_waiters();
    }

    /// Marks the feed ended and tells whoever waits for it.
    fn end(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(socket) = self.socket.get() {
            socket.session.end_call(self.key);
        }
        self.queue.close();
        let on_end = self
            .on_end
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(on_end) = on_end {
            on_end();
        }
    }
}

impl<P: ModelSet, T: SerializableModel + Clone> FeedSink<P> for FeedCore<T> {
    fn offer(
        &self,
        post: &mut Post<'_, '_, P>,
        policy: SlowConsumerPolicy,
        report: &mut DeliveryReport,
    ) -> Result<(), PostError> {
        if let Some(socket) = self.socket.get() {
            return self.send(socket, post, policy, report);
        }
        let _switch = self.switch.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(socket) = self.socket.get() {
            return self.send(socket, post, policy, report);
        }
        let at = post.at();
        for message in post.models() {
            if message.class_name() != self.class_name {
                continue;
            }
            if let Some(value) = message.model().downcast_ref::<T>() {
                let held = Held {
                    value: value.clone(),
                    at,
                };
                report.count(self.queue.push(Arc::new(held), policy));
            }
        }
        Ok(())
    }

    fn close(&self) {
        self.end();
    }

    fn class_name(&self) -> &'static str {
        self.class_name
    }

    fn member(&self) -> Option<&CallMember> {
        self.member.as_ref()
    }

    fn has(&self, post: &Post<'_, '_, P>) -> bool {
        self.start
            .get()
            .and_then(|start| start.position.as_ref())
            .is_some_and(|start| post.is_at_or_before(start))
    }
}

type Recv<T> = Pin<Box<dyn Future<Output = Option<Arc<Held<T>>>> + Send>>;

/// The values of type `T` posted to one channel from now on, for a streaming method to
/// return:
///
/// ```no_run
/// # streampod::__doc_models!();
/// use streampod::{endpoint, messages::ChannelFeed, MethodError, Session};
///
/// struct Chat;
///
/// #[endpoint]
/// impl Chat {
///     /// The messages posted to `room`, as they come.
///     pub async fn messages(&self, session: &Session<Protocol>, room: String) -> Result<ChannelFeed<ChatMessage>, MethodError> {
///         Ok(session.messages().channel_stream::<ChatMessage>(&room)?)
///     }
/// }
/// ```
///
/// Returned so (the method's return type names `ChannelFeed`), the call's values go
/// from each post straight into the socket's queue: the value is encoded once for every
/// call that takes it, and the channel's slow-consumer policy applies to the socket as
/// to an endpoint stream's (`Disconnect` closes a socket that fell that far behind).
/// Anywhere else — mapped, merged, read by a task, returned as `impl Stream` — it is an
/// async [`Stream`](futures_util::Stream) of the values, holding at most the server's
/// stream queue size, and it ends when it fell behind under `Disconnect`. Dropping it
/// removes its listener.
pub struct ChannelFeed<T> {
    core: Arc<FeedCore<T>>,
    listener: Box<dyn FeedListener>,
    pending: Option<Recv<T>>,
}

/// A feed's listener, whatever its model set.
trait FeedListener: Send + Sync {
    fn remove(&self);

    fn channel(&self) -> &str;

    /// Has posts push to `session` themselves, as call frames of `shape` under `key`,
    /// rather than through the feed (one pointer less per delivery).
    fn go_inline(
        &self,
        session: &Arc<SessionShared>,
        key: ChannelKey,
        shape: &Arc<CallFrameShape>,
        positioned: bool,
    );
}

/// A feed's listener handle and what the channel holds for it.
struct Listening<P> {
    handle: ListenerHandle<P>,
    sink: Arc<dyn FeedSink<P>>,
}

impl<P: Send + Sync + 'static> FeedListener for Listening<P> {
    fn remove(&self) {
        self.handle.forget_and_remove();
    }

    fn channel(&self) -> &str {
        &self.handle.channel
    }

    fn go_inline(
        &self,
        session: &Arc<SessionShared>,
        key: ChannelKey,
        shape: &Arc<CallFrameShape>,
        positioned: bool,
    ) {
        let handle = &self.handle;
        handle.central.inner.channels.replace(&handle.channel, handle.id, |old| {
            matches!(old, Listener::Feed { .. }).then(|| Listener::Call {
                id: handle.id,
                session: session.clone(),
                key,
                shape: shape.clone(),
                positioned,
                feed: self.sink.clone(),
            })
        });
    }
}

impl<T> fmt::Debug for ChannelFeed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelFeed")
            .field("channel", &self.listener.channel())
            .field("class_name", &self.core.class_name)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for ChannelFeed<T> {
    fn drop(&mut self) {
        self.listener.remove();
    }
}

impl<T: SerializableModel + Clone> futures_util::Stream for ChannelFeed<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let core = self.core.clone();
        let pending = self
            .pending
            .get_or_insert_with(|| Box::pin(async move { core.queue.recv_ref().await }));
        let result = pending.as_mut().poll(cx);
        if result.is_ready() {
            self.pending = None;
        }
        result.map(|held| {
            held.map(|held| match Arc::try_unwrap(held) {
                Ok(held) => held.value,
                Err(shared) => shared.value.clone(),
            })
        })
    }
}

/// A feed a streaming-method call sends from, whatever its item type.
pub(crate) trait CallFeed: Send {
    /// Where the feed's channel stood when the feed began, and whether the position
    /// the call resumed from was recovered; `None` when the feed gives no positions
    /// (the call did not ask, or the channel keeps no history here).
    fn start(&self) -> Option<(Option<Position>, bool)>;

    /// Waits until the feed knows where it starts (a cluster's history read is back).
    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// From now on, sends the feed's values to `session` as frames of `shape` for
    /// `call`: first `first` (the call's open response, if it still has to go, and
    /// where the call stands), then the replay and what the feed holds, then each post
    /// as it comes. `on_end` runs if the feed's listener is removed afterwards (its
    /// call or socket went, or the app's subscriptions for the call were released); at
    /// once if it already was.
    fn send_to(
        &self,
        session: &Arc<SessionShared>,
        shape: Arc<CallFrameShape>,
        call: Uuid,
        first: Vec<TextFrame>,
        on_end: Box<dyn FnOnce() + Send>,
    );
}

impl<T: SerializableModel + WireValue + Clone> CallFeed for ChannelFeed<T> {
    fn start(&self) -> Option<(Option<Position>, bool)> {
        let start = self.core.start.get()?;
        Some((start.position.clone(), start.recovered))
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let core = &self.core;
        Box::pin(async move {
            loop {
                let started = core.started.notified();
                if !core.reading.load(Ordering::Acquire) {
                    return;
                }
                started.await;
            }
        })
    }

    fn send_to(
        &self,
        session: &Arc<SessionShared>,
        shape: Arc<CallFrameShape>,
        call: Uuid,
        first: Vec<TextFrame>,
        on_end: Box<dyn FnOnce() + Send>,
    ) {
        let core = &self.core;
        let switch = core.switch.lock().unwrap_or_else(PoisonError::into_inner);
        for frame in first {
            session.push(frame);
        }
        session.name_call(core.key, call);
        let start = core.start.get();
        let positioned = start.is_some_and(|start| start.position.is_some());
        // What the replay (or the channel, when the call began) has: held posts at or
        // before it came in while the cluster's history was read.
        let newest = start.and_then(|start| start.position.as_ref()).map(|p| p.offset);
        // The replay and what was posted while the method ran: bounded (the replay by
        // half the socket's cap, the rest by the stream queue's size), so a socket that
        // cannot take them is as far behind as `Disconnect` means.
        let push = |object: &[u8], at: Option<u64>| {
            let at = at.filter(|_| positioned).map(|at| at.to_string());
            let frame = shape.frame(&call_frame_value(object, at.as_deref()));
            session.push_from(frame, core.key, SlowConsumerPolicy::Disconnect);
        };
        for (offset, object) in core.start.get().map(|start| &start.replay[..]).unwrap_or_default() {
            push(object.as_bytes(), Some(*offset));
        }
        let class_name = crate::protocol::method_stream::wrapped_class::<T>();
        for held in core.queue.take_all() {
            if let (Some(at), Some(newest)) = (held.at, newest) {
                if at <= newest {
                    continue;
                }
            }
            let mut object = Vec::with_capacity(256);
            if write_wrapped(&mut object, &class_name, &held.value).is_err() {
                // A model that encoded when posted encodes now; nothing to send if not.
                continue;
            }
            push(&object, held.at);
        }
        let _ = core.socket.set(Socket {
            session: session.clone(),
            shape: shape.clone(),
        });
        drop(switch);
        // Posts that took the listener list before this still go through the feed.
        self.listener.go_inline(session, core.key, &shape, positioned);
        *core.on_end.lock().unwrap_or_else(PoisonError::into_inner) = Some(on_end);
        if core.closed.load(Ordering::Acquire) {
            // Ended before `on_end` was in place: run it now (once, whoever takes it).
            let on_end = core.on_end.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(on_end) = on_end {
                on_end();
            }
        }
    }
}

/// A feed a method returned, on its way to the call that sends from it.
#[doc(hidden)]
pub struct FeedAnswer(pub(crate) Box<dyn CallFeed>);

impl fmt::Debug for FeedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FeedAnswer")
    }
}

impl<P: ModelSet> MessageCentral<P> {
    /// The values of type `T` posted to `channel` from now on, as a [`ChannelFeed`]: a
    /// streaming method that returns it sends each value to its caller encoded once
    /// for all the calls that take it.
    ///
    /// # Errors
    ///
    /// As [`create_stream`](Self::create_stream): [`JoinError::NameTooLong`], and from
    /// a streaming-method call's central [`JoinError::TooManyChannels`] and
    /// [`JoinError::Closed`].
    pub fn channel_stream<T: SerializableModel + Clone + WireValue>(
        &self,
        channel: &str,
    ) -> Result<ChannelFeed<T>, JoinError> {
        let core = Arc::new(FeedCore {
            class_name: T::CLASS_NAME,
            key: self.inner.channels.new_key(),
            queue: StreamQueue::new(self.stream_capacity()),
            start: OnceLock::new(),
            reading: AtomicBool::new(false),
            started: Notify::new(),
            socket: OnceLock::new(),
            switch: Mutex::new(()),
            closed: AtomicBool::new(false),
            on_end: Mutex::new(None),
            member: self.call_member(),
        });
        let sink: Arc<dyn FeedSink<P>> = core.clone();
        let feed = sink.clone();
        // Positions, for a call that asked, where this server keeps the history (in a
        // cluster it is in Redis: no positions, and a resume is not recovered).
        let resume = self.resume();
        let history = resume
            .filter(|_| self.cluster().is_none())
            .and_then(|_| self.history_of(channel));
        // In a cluster a channel's history is in the cluster: read after the listener
        // is in place (live posts wait in the feed, with their offsets, meanwhile).
        let record = resume
            .and(self.cluster())
            .and_then(|_| self.record_of(channel));
        core.reading.store(record.is_some(), Ordering::Release);
        // Posts number, keep and deliver under this lock: each lands either in the
        // replay or, live, after it.
        let ring = history.as_ref().map(|history| history.lock());
        let (id, owner) = self.add_checked(channel, |id| Listener::Feed { id, feed })?;
        // A call listening to a room with presence is a member of it while it lasts.
        if let Some(member) = core.member.as_ref().filter(|_| self.has_presence(channel)) {
            self.announce(channel, self.member_of_call(member), true);
        }
        if let (Some(ring), Some(resume)) = (ring, resume) {
            let replay = match resume {
                Resume::After(since) => match ring.since(since) {
                    Since::Recovered(entries) => Some(entries),
                    Since::Lost => None,
                },
                Resume::Fresh => Some(Vec::new()),
            };
            // Too much to replay at once: not recovered (the client reloads) rather
            // than a reader cut as a slow consumer for what the server chose to send.
            let fits = |entries: &Vec<&Entry<P>>| {
                let bytes = entries
                    .iter()
                    .map(|entry| entry.message.object.len() + REPLAY_FRAME_OVERHEAD)
                    .sum();
                owner
                    .as_ref()
                    .and_then(std::sync::Weak::upgrade)
                    .is_some_and(|session| session.can_take_replay(bytes))
            };
            let replay = replay.filter(fits);
            let _ = core.start.set(Start {
                position: Some(ring.newest()),
                recovered: replay.is_some(),
                replay: replay
                    .into_iter()
                    .flatten()
                    .map(|entry| (entry.offset, entry.message.object.clone()))
                    .collect(),
            });
        }
        if let (Some(record), Some(resume)) = (record, resume) {
            let since = match resume {
                Resume::After(since) => Some(since.clone()),
                Resume::Fresh => None,
            };
            let (central, channel, core) = (self.clone(), channel.to_owned(), core.clone());
            let owner = owner.clone();
            self.runtime().spawn(async move {
                let Some(cluster) = central.cluster() else {
                    return;
                };
                let from = since.as_ref().map(|since| (&*since.epoch, since.offset));
                let read = cluster.read_history(&channel, from, record).await;
                core.read_done(read, since.as_ref(), owner.as_ref());
            });
        }
        Ok(ChannelFeed {
            core,
            listener: Box::new(Listening {
                handle: ListenerHandle {
                    central: self.clone(),
                    channel: Arc::from(channel),
                    id,
                    owner,
                },
                sink,
            }),
            pending: None,
        })
    }
}

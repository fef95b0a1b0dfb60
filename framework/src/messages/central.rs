//! The message central's core: channels and their listeners, posting with one encode
//! per endpoint name, delivery to sessions' queues, and the counters of it all.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use super::channel::{Channel, ChannelConfig, ChannelMap, Listener};
use super::gate::{Gate, Positioned, Target};
use super::hooks::Hooks;
use super::idempotency_keys::Idempotency;
use super::history::{History, Kept};
use super::delivery::{
    check_size, CallMember, push_call_frames, Delivery, DeliveryReport, Frames, MessageStats, Payload, Post,
    PostError, Reach,
};
use crate::auth::Revocations;
use crate::rate_limit::UserBudget;
use crate::cluster::{Backplane, ClusterState, Envelope, Reached, Record, Topic};
use crate::config::SlowConsumerPolicy;
use crate::session::owned::{JoinError, ListenerId, Owned, SessionLimits};
use crate::protocol::method_stream::Resume;
use crate::protocol::ModelSet;
use crate::session::registry::SessionRegistry;
use crate::session::state::SessionShared;
use crate::util::trace_context;

/// Listeners removed between two yields to the runtime, so a session holding many
/// channels never stalls other tasks while it closes.
const REMOVALS_PER_YIELD: usize = 64;

pub(crate) struct Central<P> {
    pub(crate) channels: ChannelMap<P>,
    sessions: Arc<SessionRegistry>,
    stream_capacity: usize,
    limits: SessionLimits,
    posts: AtomicU64,
    frames_encoded: AtomicU64,
    /// Totals of every local post's [`DeliveryReport`], added once per post.
    delivered: AtomicU64,
    /// Dropped frames by the policy that dropped them: index 0 direct sends and
    /// broadcasts, 1 `DropOldest` channels, 2 `LatestValue` channels.
    dropped: [AtomicU64; 3],
    disconnected: AtomicU64,
    /// Global messages dropped on arrival for being older than `max_global_age`.
    stale_global: AtomicU64,
    /// The cluster backplane for `Global` posts, when configured.
    pub(crate) cluster: OnceLock<Backplane>,
    /// Where throttled and batched posts schedule their timers.
    runtime: tokio::runtime::Handle,
    /// Who hears presence changes.
    pub(crate) presence_hooks: Hooks<MessageCentral<P>>,
    /// What is revoked, here and (through the backplane) on every node.
    pub(crate) revocations: Arc<Revocations>,
    /// The idempotency keys of recent posts (the publish API's), cluster-wide.
    pub(crate) idempotency: Idempotency,
    /// What each signed-in user may post, when limited.
    pub(crate) user_budget: OnceLock<Arc<UserBudget>>,
}

/// The message central of a server: cheap to clone, usable from any task.
///
/// The central a streaming-method call gets ([`Session::messages`](crate::Session::messages))
/// subscribes on behalf of the caller's socket: the channel streams and listeners it
/// creates count against that socket's
/// [`max_channels_per_session`](crate::ServerConfig::max_channels_per_session), as an
/// endpoint stream's joins do, and are removed when the call ends.
pub struct MessageCentral<P> {
    pub(crate) inner: Arc<Central<P>>,
    /// Who what this handle subscribes is counted against, if anyone.
    owner: Option<Arc<Owner>>,
}

/// A socket that owns what a handle subscribes, under a tag (one per call).
struct Owner {
    session: Arc<SessionShared>,
    tag: Arc<str>,
    /// The user the call signed in as.
    user: Option<String>,
    /// What the call's client asked of positions (streampod's clients ask).
    resume: Option<Resume>,
}

/// Removes what an owner's handle subscribed and still holds, when dropped (when the
/// call it was made for ends, however it ends).
pub(crate) struct ReleaseOnDrop<P> {
    central: MessageCentral<P>,
    owner: Arc<Owner>,
}

impl<P> Drop for ReleaseOnDrop<P> {
    fn drop(&mut self) {
        let taken = self
            .owner
            .session
            .owned_listeners()
            .as_mut()
            .map(|owned| owned.take(Some(&self.owner.tag)))
            .unwrap_or_default();
        for listener in taken {
            self.central.remove(&listener.channel, listener.id);
        }
    }
}

impl<P> Clone for MessageCentral<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owner: self.owner.clone(),
        }
    }
}

impl<P> fmt::Debug for MessageCentral<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageCentral")
            .field("listeners", &self.inner.channels.total_listeners())
            .finish_non_exhaustive()
    }
}

impl<P> MessageCentral<P> {
    /// A handle (with no owner) to the central `inner`.
    pub(crate) fn from_inner(inner: Arc<Central<P>>) -> Self {
        Self { inner, owner: None }
    }

    /// A handle to the same central whose subscriptions `session` owns under `tag`
    /// (one per streaming-method call): each counts against the session's budget, and
    /// what is left of them goes when the returned guard drops.
    pub(crate) fn owned_by(
        &self,
        session: Arc<SessionShared>,
        (tag, user): (Arc<str>, Option<String>),
        resume: Option<Resume>,
    ) -> (Self, ReleaseOnDrop<P>) {
        let owner = Arc::new(Owner {
            session,
            tag,
            user,
            resume,
        });
        let owned = Self {
            inner: self.inner.clone(),
            owner: Some(owner.clone()),
        };
        let release = ReleaseOnDrop {
            central: self.clone(),
            owner,
        };
        (owned, release)
    }

    /// The member a listener this handle adds is, for a call's handle.
    pub(crate) fn call_member(&self) -> Option<CallMember> {
        self.owner.as_ref().map(|owner| CallMember {
            session: owner.session.clone(),
            call: owner.tag.clone(),
            user: owner.user.clone(),
        })
    }

    /// What the client of the call this handle subscribes for asked of positions.
    pub(crate) fn resume(&self) -> Option<&Resume> {
        self.owner.as_ref().and_then(|owner| owner.resume.as_ref())
    }

    /// Adds the listener `make` builds to `channel`, where every listener of an app (as
    /// opposed to a session's join) is added: the name is checked against the limit,
    /// and, when this handle has an owner, the owner's budget too (the listener is then
    /// the owner's). Returns the id and the owner to forget it from when it goes.
    pub(crate) fn add_checked(
        &self,
        channel: &str,
        make: impl FnOnce(ListenerId) -> Listener<P>,
    ) -> Result<(ListenerId, Option<Weak<SessionShared>>), JoinError> {
        let Some(owner) = &self.owner else {
            self.limits().check_name(channel)?;
            return Ok((self.add(channel, make), None));
        };
        let mut owned = owner.session.owned_listeners();
        let owned = owned.as_mut().ok_or(JoinError::Closed)?;
        self.limits().check(owned, channel)?;
        let id = self.add(channel, make);
        owned.add_callback(Owned {
            channel: Arc::from(channel),
            id,
            endpoint: owner.tag.clone(),
        });
        Ok((id, Some(Arc::downgrade(&owner.session))))
    }


    /// Adds the listener `make` builds to `channel` (subscribing the cluster to a new
    /// channel).
    pub(crate) fn add(
        &self,
        channel: &str,
        make: impl FnOnce(ListenerId) -> Listener<P>,
    ) -> ListenerId {
        self.inner.channels.add(channel, make, || {
            if let Some(cluster) = self.inner.cluster.get() {
                cluster.subscribe(channel, self.record_of(channel));
            }
        })
    }

    /// Removes a listener; `false` when it was not there. An emptied channel is dropped
    /// (and the cluster unsubscribed from it).
    pub(crate) fn remove(&self, channel: &str, id: ListenerId) -> bool {
        let removed = self.inner.channels.remove(channel, id, || {
            if let Some(cluster) = self.inner.cluster.get() {
                cluster.unsubscribe(channel);
            }
        });
        if let Some(member) = removed.as_ref().and_then(|l| self.member_of_listener(l)) {
            if self.has_presence(channel) {
                self.announce(channel, member, false);
            }
        }
        removed.is_some()
    }

    /// Removes `owned` from their channels, yielding now and then: O(channels held).
    pub(crate) async fn remove_owned(&self, owned: Vec<Owned>) {
        for chunk in owned.chunks(REMOVALS_PER_YIELD) {
            for listener in chunk {
                self.remove(&listener.channel, listener.id);
            }
            if owned.len() > REMOVALS_PER_YIELD {
                tokio::task::yield_now().await;
            }
        }
    }

    /// What one session may hold.
    pub(crate) fn limits(&self) -> SessionLimits {
        self.inner.limits
    }

    /// How many messages a [`ChannelStream`](super::ChannelStream) holds.
    pub(crate) fn stream_capacity(&self) -> usize {
        self.inner.stream_capacity
    }

    /// The live sessions, for broadcasts.
    pub(crate) fn sessions(&self) -> &SessionRegistry {
        &self.inner.sessions
    }

    /// Where throttled and batched posts schedule their timers.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    pub(crate) fn cluster(&self) -> Option<&Backplane> {
        self.inner.cluster.get()
    }

    /// How the cluster keeps posts to `channel`: `Some` when it has history configured
    /// (with or without a cluster).
    pub(crate) fn record_of(&self, channel: &str) -> Option<Record> {
        self.inner
            .channels
            .config_of(channel)
            .history
            .map(|history| Record {
                size: history.size,
                ttl: history.ttl,
                bytes: history.max_bytes,
            })
    }
}

impl<P: ModelSet> MessageCentral<P> {
    pub(crate) fn new(
        sessions: Arc<SessionRegistry>,
        stream_capacity: usize,
        limits: SessionLimits,
        runtime: tokio::runtime::Handle,
        revocations: Arc<Revocations>,
    ) -> Self {
        Self {
            inner: Arc::new(Central {
                channels: ChannelMap::default(),
                sessions,
                stream_capacity,
                limits,
                posts: AtomicU64::new(0),
                frames_encoded: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                dropped: std::array::from_fn(|_| AtomicU64::new(0)),
                disconnected: AtomicU64::new(0),
                stale_global: AtomicU64::new(0),
                cluster: OnceLock::new(),
                runtime,
                presence_hooks: Hooks::default(),
                revocations,
                idempotency: Idempotency::default(),
                user_budget: OnceLock::new(),
            }),
            owner: None,
        }
    }

    /// Sets a channel's options; they apply to current and future listeners and stay
    /// after the channel's last listener leaves.
    pub fn configure_channel(&self, channel: &str, config: ChannelConfig) {
        self.inner.channels.configure(channel, config);
    }

    /// Sets the options of every channel whose name starts with `prefix` and that has
    /// none of its own (the longest matching prefix wins): one call for all the rooms of
    /// a kind, however many clients create.
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # fn demo(messages: streampod::messages::MessageCentral<Protocol>) {
    /// use std::time::Duration;
    /// use streampod::messages::{ChannelConfig, HistoryConfig};
    ///
    /// let history = HistoryConfig::new(1_000, Duration::from_secs(300));
    /// messages.configure_namespace("chat-room-", ChannelConfig::default().with_history(history));
    /// # }
    /// ```
    pub fn configure_namespace(&self, prefix: &str, config: ChannelConfig) {
        self.inner.channels.configure_namespace(prefix, config);
    }

    /// Posts `message` to every listener of `channel`. Never waits for a consumer.
    /// A `Local` post (or any post without a cluster) returns [`Delivery::Local`] with
    /// what it did; a `Global` one [`Delivery::Published`] once Redis' publish queue
    /// took it.
    ///
    /// # Errors
    ///
    /// [`PostError::Encode`] when the message cannot be encoded; for `Global` on a
    /// cluster, [`PostError::Cluster`] when Redis is unreachable or the publish queue
    /// is full (the post fails at once, it is not buffered).
    pub fn post_message(
        &self,
        channel: &str,
        message: impl Into<P>,
        reach: Reach,
    ) -> Result<Delivery, PostError> {
        let message = message.into();
        match (reach, self.cluster()) {
            (Reach::Global, Some(cluster)) => {
                let payload = {
                    let _post = trace_context::post_span(Some(channel));
                    Envelope::encode(cluster.node(), None, None, &message)?
                };
                check_size(payload.len(), self.inner.limits.frame_bytes)?;
                cluster.publish(Topic::Channel(channel), payload, self.record_of(channel))?;
                self.count_post();
                Ok(Delivery::Published)
            }
            _ => self
                .deliver(channel, &[Arc::new(message)], |_| true)
                .map(Delivery::Local),
        }
    }

    /// Posts `message` to `channel` on every server of the cluster and waits until the
    /// backplane took it: the number of servers listening on `channel` (0 when none
    /// is) where the backplane counts them, `None` where it cannot (NATS). Without a
    /// cluster this posts locally and returns 1 when the channel has listeners here.
    ///
    /// # Errors
    ///
    /// [`PostError::Encode`]; [`PostError::Cluster`] when Redis is unreachable, the
    /// publish queue is full, or Redis did not confirm within the publish timeout.
    pub async fn post_global(
        &self,
        channel: &str,
        message: impl Into<P>,
    ) -> Result<Reached, PostError> {
        let message = message.into();
        let Some(cluster) = self.cluster() else {
            let report = self.deliver(channel, &[Arc::new(message)], |_| true)?;
            return Ok(Some(usize::from(report.delivered > 0)));
        };
        let payload = {
            let _post = trace_context::post_span(Some(channel));
            Envelope::encode(cluster.node(), None, None, &message)?
        };
        check_size(payload.len(), self.inner.limits.frame_bytes)?;
        self.count_post();
        Ok(cluster
            .publish_confirmed(Topic::Channel(channel), payload, self.record_of(channel))
            .await?)
    }

    /// The cluster connection's state; `None` without a cluster.
    pub fn cluster_state(&self) -> Option<ClusterState> {
        self.cluster().map(Backplane::state)
    }

    /// Changes of the cluster connection's state; `None` without a cluster.
    pub fn cluster_state_changes(&self) -> Option<tokio::sync::watch::Receiver<ClusterState>> {
        self.cluster().map(Backplane::state_changes)
    }

    /// Stops the cluster tasks (server shutdown); `Global` posts fail afterwards.
    pub(crate) fn leave_cluster(&self) {
        if let Some(cluster) = self.cluster() {
            cluster.stop();
        }
    }

    /// Delivers `messages` to `channel`'s listeners: sessions get one frame (a batch
    /// frame for several messages) encoded once per endpoint; callbacks and streams get
    /// each message. `include` selects sessions.
    pub(crate) fn deliver(
        &self,
        channel: &str,
        messages: &[Arc<P>],
        include: impl Fn(&Arc<SessionShared>) -> bool,
    ) -> Result<DeliveryReport, PostError> {
        self.deliver_payload(channel, &Payload::Models(messages), include)
    }

    /// Pushes `payload`, framed as from `endpoint`, to each of `sessions` that `include`
    /// selects; one encode in all.
    pub(crate) fn deliver_to_sessions(
        &self,
        sessions: &[Arc<SessionShared>],
        endpoint: &Arc<str>,
        payload: &Payload<'_, P>,
        include: impl Fn(&Arc<SessionShared>) -> bool,
    ) -> Result<DeliveryReport, PostError> {
        self.count_post();
        let mut frames = Frames::new(
            |endpoint: &str, out: &mut Vec<u8>| payload.encode(endpoint, out),
            &self.inner.frames_encoded,
            self.inner.limits.frame_bytes,
        );
        let mut report = DeliveryReport::default();
        for session in sessions.iter().filter(|s| include(s)) {
            report.count(session.push(frames.get(endpoint)?));
        }
        self.add_report(&report, None);
        Ok(report)
    }

    pub(crate) fn deliver_payload(
        &self,
        channel: &str,
        payload: &Payload<'_, P>,
        include: impl Fn(&Arc<SessionShared>) -> bool,
    ) -> Result<DeliveryReport, PostError> {
        self.inner.posts.fetch_add(1, Ordering::Relaxed);
        let name = channel;
        let found = self.inner.channels.get(name);
        // In a cluster, Redis numbers a channel's posts (see `deliver_positioned`); a
        // local post to it goes out unnumbered.
        let history = match &found {
            _ if self.cluster().is_some() => None,
            Some(channel) => channel.history.get().cloned(),
            None => self.inner.channels.history(name),
        };
        if let Some(history) = history {
            return self.deliver_recorded(name, &history, payload, &include);
        }
        let Some(channel) = found else {
            return Ok(DeliveryReport::default());
        };
        let policy = channel.policy();
        let mut frames = Frames::new(
            |endpoint: &str, out: &mut Vec<u8>| payload.encode(endpoint, out),
            &self.inner.frames_encoded,
            self.inner.limits.frame_bytes,
        );
        let report = self.fan_out(&channel, payload, (None, None, None), &include, |session, endpoint, _, report| {
            match payload.batch() {
                // A Serverpod client would fail on a batch frame.
                Some(messages) if !session.is_extended() => {
                    let each = frames.separately(endpoint, messages)?;
                    report.count_separate(
                        each.iter()
                            .map(|frame| session.push_from(frame.clone(), channel.key, policy)),
                    );
                }
                _ => report.count(session.push_from(frames.get(endpoint)?, channel.key, policy)),
            }
            Ok(())
        })?;
        self.add_report(&report, Some(policy));
        Ok(report)
    }

    /// Delivers to a channel that keeps history: each message is numbered, kept and
    /// delivered under the history's lock (so a recovering join sees it either in its
    /// replay or live, exactly once); `streampod.v1` sessions get its channel and
    /// position in the frame. A batch goes out as one frame per message.
    fn deliver_recorded(
        &self,
        name: &str,
        history: &History<P>,
        payload: &Payload<'_, P>,
        include: &impl Fn(&Arc<SessionShared>) -> bool,
    ) -> Result<DeliveryReport, PostError> {
        let mut total = DeliveryReport::default();
        let messages = Kept::of(payload)?;
        for kept in &messages {
            check_size(kept.object.len(), self.inner.limits.frame_bytes)?;
        }
        for kept in messages {
            let mut ring = history.lock();
            let offset = ring.append(kept.clone());
            // Looked up under the lock: a listener that joined before it is found.
            let Some(channel) = self.inner.channels.get(name) else {
                continue;
            };
            let policy = channel.policy();
            let counter = &self.inner.frames_encoded;
            let mut plain = Frames::new(
                |endpoint: &str, out: &mut Vec<u8>| {
                    kept.encode(endpoint, None, out);
                    Ok(())
                },
                counter,
                self.inner.limits.frame_bytes,
            );
            let mut positioned = Frames::new(
                |endpoint: &str, out: &mut Vec<u8>| {
                    kept.encode(endpoint, Some((name, offset)), out);
                    Ok(())
                },
                counter,
                self.inner.limits.frame_bytes,
            );
            let one = kept.payload();
            let kept_at = (Some(&*kept.object), Some(offset), None);
            let report = self.fan_out(&channel, &one, kept_at, include, |session, endpoint, _, report| {
                let frame = if session.is_extended() {
                    positioned.get(endpoint)?
                } else {
                    plain.get(endpoint)?
                };
                report.count(session.push_from(frame, channel.key, policy));
                Ok(())
            })?;
            drop(ring);
            self.add_report(&report, Some(policy));
            total.add(&report);
        }
        Ok(total)
    }

    /// Delivers a post Redis numbered at `offset` of `epoch` in `name`'s history:
    /// `streampod.v1` sessions get it through their gate, with its channel and offset;
    /// others as any post.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn deliver_positioned(
        &self,
        name: &str,
        (epoch, offset): (&str, u64),
        payload: &Payload<'_, P>,
        include: impl Fn(&Arc<SessionShared>) -> bool,
    ) -> Result<DeliveryReport, PostError> {
        self.inner.posts.fetch_add(1, Ordering::Relaxed);
        let Some(channel) = self.inner.channels.get(name) else {
            return Ok(DeliveryReport::default());
        };
        let epoch = channel.shared_epoch(epoch);
        let policy = channel.policy();
        let counter = &self.inner.frames_encoded;
        let mut plain = Frames::new(
            |endpoint: &str, out: &mut Vec<u8>| payload.encode(endpoint, out),
            counter,
            self.inner.limits.frame_bytes,
        );
        let mut positioned = Frames::new(
            |endpoint: &str, out: &mut Vec<u8>| {
                payload.encode(endpoint, out)?;
                crate::protocol::frame::append_offset(out, name, offset);
                Ok(())
            },
            counter,
            self.inner.limits.frame_bytes,
        );
        // Sessions left out still move their gate past the post (else the next one
        // would look like a gap).
        let everyone = |_: &Arc<SessionShared>| true;
        let report = self.fan_out(&channel, payload, (None, Some(offset), Some(&*epoch)), &everyone, |session, endpoint, gate, report| {
            let included = include(session);
            match gate {
                Some(gate) => {
                    let to = Target {
                        session,
                        endpoint,
                        channel: name,
                    };
                    let post = Positioned {
                        epoch: &epoch,
                        offset,
                        frame: if included {
                            Some(positioned.get(endpoint)?)
                        } else {
                            None
                        },
                        key: channel.key,
                        policy,
                    };
                    if let Some(push) = gate.pass(&to, post) {
                        report.count(push);
                    }
                }
                None if included => {
                    report.count(session.push_from(plain.get(endpoint)?, channel.key, policy));
                }
                None => {}
            }
            Ok(())
        })?;
        self.add_report(&report, Some(policy));
        Ok(report)
    }

    /// Hands `payload` to every listener of `channel`: sessions through `to_session`
    /// (which picks and pushes their frame), callbacks and streams each message, feeds
    /// what is of their type. `kept`: the payload's one object, when already encoded,
    /// and its offset in the channel's history.
    fn fan_out(
        &self,
        channel: &Channel<P>,
        payload: &Payload<'_, P>,
        (object, at, epoch): (Option<&str>, Option<u64>, Option<&str>),
        include: &impl Fn(&Arc<SessionShared>) -> bool,
        mut to_session: impl FnMut(
            &Arc<SessionShared>,
            &Arc<str>,
            Option<&Arc<Gate>>,
            &mut DeliveryReport,
        ) -> Result<(), PostError>,
    ) -> Result<DeliveryReport, PostError> {
        let listeners = channel.snapshot();
        let policy = channel.policy();
        let mut report = DeliveryReport::default();
        // Models decoded, and call bodies encoded, only if a listener takes them.
        let mut post = Post::new(
            payload,
            (object, at),
            &self.inner.frames_encoded,
            self.inner.limits.frame_bytes,
        )
        .in_epoch(epoch);
        for listener in listeners.iter() {
            match listener {
                Listener::Session {
                    session,
                    endpoint,
                    gate,
                    ..
                } => {
                    if include(session) {
                        to_session(session, endpoint, gate.as_ref(), &mut report)?;
                    }
                }
                Listener::Callback { callback, .. } => {
                    for message in post.models() {
                        if std::panic::catch_unwind(AssertUnwindSafe(|| callback(message))).is_ok()
                        {
                            report.delivered += 1;
                        } else {
                            tracing::error!(target: "streampod::messages", "a channel listener panicked");
                            report.dropped += 1;
                        }
                    }
                }
                Listener::Stream { queue, .. } => {
                    for message in post.models() {
                        report.count(queue.push(message.clone(), policy));
                    }
                }
                Listener::Feed { feed, .. } => feed.offer(&mut post, policy, &mut report)?,
                Listener::Call {
                    session,
                    key,
                    shape,
                    positioned,
                    feed,
                    ..
                } => {
                    if feed.has(&post) {
                        continue;
                    }
                    let frames = post.call_frames(shape, *positioned, || feed.class_name())?;
                    push_call_frames(session, *key, frames, policy, &mut report);
                }
            }
        }
        Ok(report)
    }

    /// The history `channel` keeps, if configured.
    pub(crate) fn history_of(&self, channel: &str) -> Option<Arc<History<P>>> {
        self.inner.channels.history(channel)
    }

    /// Listeners on `channel`.
    pub fn listener_count(&self, channel: &str) -> usize {
        self.inner
            .channels
            .get(channel)
            .map_or(0, |c| c.snapshot().len())
    }

    /// Listeners on all channels.
    pub fn total_listeners(&self) -> usize {
        self.inner.channels.total_listeners()
    }

    /// Channels with at least one listener.
    pub fn channel_count(&self) -> usize {
        self.inner.channels.len()
    }

    /// Connected sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Cumulative counters.
    pub fn stats(&self) -> MessageStats {
        let inner = &self.inner;
        MessageStats {
            posts: inner.posts.load(Ordering::Relaxed),
            frames_encoded: inner.frames_encoded.load(Ordering::Relaxed),
            deliveries: inner.delivered.load(Ordering::Relaxed),
            dropped: inner
                .dropped
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .sum(),
            dropped_oldest: inner.dropped[1].load(Ordering::Relaxed),
            dropped_latest_value: inner.dropped[2].load(Ordering::Relaxed),
            disconnected: inner.disconnected.load(Ordering::Relaxed),
            stale_global: inner.stale_global.load(Ordering::Relaxed),
        }
    }

    /// Counts a global message dropped as stale; the total so far.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn count_stale_global(&self) -> u64 {
        self.inner.stale_global.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds one post's outcome to the totals: an atomic add or three per post, none
    /// per recipient. `policy` is the channel's; `None` for broadcasts to sessions.
    fn add_report(&self, report: &DeliveryReport, policy: Option<SlowConsumerPolicy>) {
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let inner = &self.inner;
        inner
            .delivered
            .fetch_add(as_u64(report.delivered), Ordering::Relaxed);
        if report.dropped > 0 {
            let by = match policy {
                None | Some(SlowConsumerPolicy::Disconnect) => 0,
                Some(SlowConsumerPolicy::DropOldest) => 1,
                Some(SlowConsumerPolicy::LatestValue) => 2,
            };
            inner.dropped[by].fetch_add(as_u64(report.dropped), Ordering::Relaxed);
        }
        if report.disconnected > 0 {
            inner
                .disconnected
                .fetch_add(as_u64(report.disconnected), Ordering::Relaxed);
        }
    }

    pub(crate) fn count_post(&self) {
        self.inner.posts.fetch_add(1, Ordering::Relaxed);
    }
}

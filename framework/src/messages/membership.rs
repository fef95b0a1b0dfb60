//! What one endpoint stream holds in the message central: its joins (with recovery
//! from history, cluster gates and presence), its callback listeners, and their removal
//! when the stream closes; [`SessionMessages`] is the app's view of it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::broadcast::Broadcast;
use super::central::MessageCentral;
use super::channel::Listener;
use super::delivery::{Delivery, PostError, Reach};
use super::gate::{Gate, Target as GateTarget};
use super::history::{Since, REPLAY_FRAME_OVERHEAD};
use super::listener::ListenerHandle;
use crate::protocol::history::{JoinedFrame, Position};
use crate::protocol::ModelSet;
use crate::session::outbound::Push;
use crate::session::owned::{JoinError, Owned};
use crate::session::state::SessionShared;
use crate::ws::frame::TextFrame;

/// One endpoint stream of a session, as the central sees it: the session, the endpoint
/// its joins deliver as, and whether the stream is still open. Everything added through
/// it is owned by `(session, endpoint)` and removed by [`end`](Self::end).
pub(crate) struct StreamScope<P> {
    pub(crate) central: MessageCentral<P>,
    pub(crate) session: Arc<SessionShared>,
    pub(crate) endpoint: Arc<str>,
    /// Shared by every view of the same endpoint stream; false once it closed.
    open: Arc<AtomicBool>,
}

impl<P> Clone for StreamScope<P> {
    fn clone(&self) -> Self {
        Self {
            central: self.central.clone(),
            session: self.session.clone(),
            endpoint: self.endpoint.clone(),
            open: self.open.clone(),
        }
    }
}

impl<P> fmt::Debug for StreamScope<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamScope")
            .field("session", &self.session.id)
            .field("endpoint", &self.endpoint)
            .field("open", &self.is_open())
            .finish()
    }
}

impl<P> StreamScope<P> {
    /// A new, open stream of `session` on `endpoint`.
    pub(crate) fn open(
        central: MessageCentral<P>,
        session: Arc<SessionShared>,
        endpoint: Arc<str>,
    ) -> Self {
        Self {
            central,
            session,
            endpoint,
            open: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the stream is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Marks the stream closed: later joins through it fail.
    pub(crate) fn mark_closed(&self) {
        self.open.store(false, Ordering::Release);
    }
}

impl<P: ModelSet> StreamScope<P> {
    /// Joins `channel` through this stream, recovering from `since` (or, when `None`,
    /// from the position the client sent with `recover`, if any) when the channel
    /// keeps history.
    pub(crate) fn join(
        &self,
        channel: &str,
        since: Option<Position>,
        info: Option<&Arc<str>>,
    ) -> Result<Recovery, JoinError> {
        let session = &self.session;
        let mut owned = session.owned_listeners();
        // Checked under the lock the stream's closing takes: nothing joins after it.
        let owned = owned
            .as_mut()
            .filter(|_| self.is_open())
            .ok_or(JoinError::Closed)?;
        if owned.has_joined(channel) {
            return Ok(Recovery::default());
        }
        self.central.limits().check(owned, channel)?;
        let since = since.or_else(|| owned.take_recovery(channel));
        // In a cluster, a channel's history is in Redis: a `streampod.v1` session joins
        // through a gate that a read from there opens.
        let record = self
            .central
            .cluster()
            .and(self.central.record_of(channel))
            .filter(|_| session.is_extended());
        let gate = record.map(|_| Gate::closed());
        let history = match record {
            Some(_) => None,
            None => self.central.history_of(channel),
        };
        // Posts number, keep and deliver under this lock: every post lands either in
        // the replay below or, live, after it.
        let mut ring = history.as_ref().map(|history| history.lock());
        let id = self.central.add(channel, |id| Listener::Session {
            id,
            session: session.clone(),
            endpoint: self.endpoint.clone(),
            gate: gate.clone(),
            info: info.cloned(),
        });
        if self.central.has_presence(channel) {
            self.central.presence_changed(channel, session, info, true);
        }
        owned.add_join(Owned {
            channel: Arc::from(channel),
            id,
            endpoint: self.endpoint.clone(),
        });
        if let (Some(record), Some(gate)) = (record, gate) {
            let central = self.central.clone();
            let (session, endpoint, channel) =
                (session.clone(), self.endpoint.clone(), channel.to_owned());
            self.central.runtime().spawn(async move {
                let Some(cluster) = central.cluster() else {
                    return;
                };
                let from = since.as_ref().map(|since| (&*since.epoch, since.offset));
                let read = cluster.read_history(&channel, from, record).await;
                // Left (or left and joined again) meanwhile: nothing to open.
                let still_joined = session
                    .owned_listeners()
                    .as_ref()
                    .is_some_and(|owned| owned.holds(&channel, id));
                if !still_joined {
                    return;
                }
                let to = GateTarget {
                    session: &session,
                    endpoint: &endpoint,
                    channel: &channel,
                };
                gate.open(&to, since.as_ref(), read);
            });
            return Ok(Recovery {
                joined: true,
                pending: true,
                ..Recovery::default()
            });
        }
        let Some(ring) = ring.as_mut() else {
            return Ok(Recovery {
                joined: true,
                ..Recovery::default()
            });
        };
        let newest = ring.newest();
        let replay = match &since {
            Some(since) => match ring.since(since) {
                Since::Recovered(entries) => Some(entries),
                Since::Lost => None,
            },
            None => None,
        };
        // Too much to replay at once: not recovered (the client reloads) rather than
        // a reader cut as a slow consumer for what the server chose to send.
        let replay = replay.filter(|entries| {
            let bytes = entries
                .iter()
                .map(|entry| entry.message.object.len() + REPLAY_FRAME_OVERHEAD)
                .sum();
            session.can_take_replay(bytes)
        });
        let recovery = Recovery {
            joined: true,
            recovered: replay.is_some(),
            replayed: replay.as_ref().map_or(0, Vec::len),
            position: Some(newest.clone()),
            pending: false,
        };
        let extended = session.is_extended();
        if extended {
            let joined = JoinedFrame {
                endpoint: self.endpoint.to_string(),
                channel: channel.to_owned(),
                position: newest,
                recovering: since.is_some(),
                recovered: recovery.recovered,
                replayed: recovery.replayed as u64,
            };
            session.push(TextFrame::encode_infallible(|out| joined.encode(out)));
        }
        for entry in replay.into_iter().flatten() {
            let at = extended.then_some((channel, entry.offset));
            let pushed = session.push(TextFrame::encode_infallible(|out| {
                entry.message.encode(&self.endpoint, at, out);
            }));
            // A session that overflowed (or closed) takes nothing more: stop copying
            // under the history's lock.
            if matches!(pushed, Push::Overflow | Push::Closed) {
                break;
            }
        }
        Ok(recovery)
    }

    /// Leaves `channel`; `false` when the session was not there.
    pub(crate) fn leave(&self, channel: &str) -> bool {
        let left = self
            .session
            .owned_listeners()
            .as_mut()
            .and_then(|owned| owned.take_join(channel));
        left.is_some_and(|left| self.central.remove(&left.channel, left.id))
    }

    /// Adds a callback owned by this stream: removed when it closes.
    pub(crate) fn add_callback(
        &self,
        channel: &str,
        listener: impl Fn(&P) + Send + Sync + 'static,
    ) -> Result<ListenerHandle<P>, JoinError> {
        let session = &self.session;
        let mut owned = session.owned_listeners();
        let owned = owned
            .as_mut()
            .filter(|_| self.is_open())
            .ok_or(JoinError::Closed)?;
        self.central.limits().check(owned, channel)?;
        let mut handle = self.central.add_listener(channel, listener)?;
        owned.add_callback(Owned {
            channel: handle.channel.clone(),
            id: handle.id,
            endpoint: self.endpoint.clone(),
        });
        handle.owner = Some(Arc::downgrade(session));
        Ok(handle)
    }

    /// Ends this stream (later joins through it fail) and removes what it added.
    pub(crate) async fn end(&self) {
        let taken = {
            let mut owned = self.session.owned_listeners();
            self.mark_closed();
            owned
                .as_mut()
                .map(|owned| owned.take(Some(&self.endpoint)))
                .unwrap_or_default()
        };
        self.central.remove_owned(taken).await;
    }
}

/// Removes every listener `session`'s streams still own; later joins are refused.
pub(crate) async fn release_session<P>(central: &MessageCentral<P>, session: &SessionShared) {
    let taken = session
        .owned_listeners()
        .take()
        .map(|mut owned| owned.take(None))
        .unwrap_or_default();
    central.remove_owned(taken).await;
}

/// What a join did, and what it recovered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Whether the session joined now (`false`: it was already there).
    pub joined: bool,
    /// Whether every message after the position given was replayed before any live
    /// one. `false` when no position was given, when it was too old or from another
    /// epoch, or when the channel keeps no history: the client should reload.
    pub recovered: bool,
    /// Messages replayed.
    pub replayed: usize,
    /// The channel's newest position at the join; `None` without history, and while
    /// `pending`.
    pub position: Option<Position>,
    /// In a cluster, the history is read from Redis after the join returns: the client
    /// learns the outcome from its `joined` frame, which comes before the channel's
    /// messages; `recovered`, `replayed` and `position` say nothing then.
    pub pending: bool,
}

/// The message central as one session and endpoint see it: joins deliver frames as
/// this endpoint, and everything added here is removed when the session closes.
pub struct SessionMessages<P> {
    stream: StreamScope<P>,
}

impl<P> fmt::Debug for SessionMessages<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionMessages")
            .field("stream", &self.stream)
            .finish()
    }
}

impl<P: ModelSet> SessionMessages<P> {
    pub(crate) fn new(stream: StreamScope<P>) -> Self {
        Self { stream }
    }

    fn central(&self) -> &MessageCentral<P> {
        &self.stream.central
    }

    /// Joins `channel`: posts to it reach this session as messages from this endpoint,
    /// until it leaves or this endpoint's stream closes. `Ok(false)` when already
    /// joined (through any endpoint).
    ///
    /// # Errors
    ///
    /// [`JoinError::Closed`] once the session or this endpoint's stream closed;
    /// [`JoinError::TooManyChannels`] and [`JoinError::NameTooLong`] at the
    /// per-session limits of [`ServerConfig`](crate::ServerConfig).
    pub fn join(&self, channel: &str) -> Result<bool, JoinError> {
        self.stream
            .join(channel, None, None)
            .map(|recovery| recovery.joined)
    }

    /// Joins `channel` as [`join`](Self::join) does, listed in its presence with `info`
    /// (a display name, say: [`Member::info`](crate::messages::Member::info)).
    ///
    /// # Errors
    ///
    /// As [`SessionMessages::join`].
    pub fn join_with_info(&self, channel: &str, info: &str) -> Result<bool, JoinError> {
        self.stream
            .join(channel, None, Some(&Arc::from(info)))
            .map(|recovery| recovery.joined)
    }

    /// Joins `channel` and, when it keeps history, first replays every message after
    /// `since` that history still holds, exactly once and in order, before any live
    /// one; or reports `recovered: false` (the position is too old or from another
    /// epoch) so the client reloads its state. With `since` `None`, the position the
    /// client sent with its `recover` command is used, if any; `streampod.v1` clients
    /// get a `joined` frame first (see [`crate::protocol::history`]).
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # fn demo(session: streampod::StreamingSession<Protocol>) -> Result<(), streampod::messages::JoinError> {
    /// use streampod::protocol::history::Position;
    /// let recovery = session.messages().join_from("room-1", Some(Position::new("5f1c", 17)))?;
    /// if !recovery.recovered {
    ///     // Too old, or the server restarted: tell the client to reload the room.
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SessionMessages::join`].
    pub fn join_from(
        &self,
        channel: &str,
        since: Option<Position>,
    ) -> Result<Recovery, JoinError> {
        self.stream.join(channel, since, None)
    }

    /// Leaves `channel`; `false` when not joined.
    pub fn leave(&self, channel: &str) -> bool {
        self.stream.leave(channel)
    }

    /// Adds a callback listener that is removed when this endpoint's stream closes
    /// (Serverpod's `session.messages.addListener`). It counts towards
    /// [`ServerConfig::max_channels_per_session`](crate::ServerConfig::max_channels_per_session).
    ///
    /// # Errors
    ///
    /// As [`SessionMessages::join`].
    pub fn add_listener(
        &self,
        channel: &str,
        listener: impl Fn(&P) + Send + Sync + 'static,
    ) -> Result<ListenerHandle<P>, JoinError> {
        self.stream.add_callback(channel, listener)
    }

    /// Posts to `channel`; see [`MessageCentral::post_message`].
    ///
    /// # Errors
    ///
    /// See [`MessageCentral::post_message`].
    pub fn post_message(
        &self,
        channel: &str,
        message: impl Into<P>,
        reach: Reach,
    ) -> Result<Delivery, PostError> {
        self.central().post_message(channel, message, reach)
    }

    /// Starts a post to `channel` leaving this session out (all but the sender).
    pub fn to_others(&self, channel: &str) -> Broadcast<P> {
        self.central().to_channel(channel).except(self.stream.session.id)
    }

    /// Starts a broadcast to every session, framed as from this endpoint.
    pub fn to_all(&self) -> Broadcast<P> {
        self.central().to_all(&self.stream.endpoint)
    }

    /// Starts a broadcast to every session of `user_id`, framed as from this endpoint.
    pub fn to_user(&self, user_id: &str) -> Broadcast<P> {
        self.central().to_user(user_id, &self.stream.endpoint)
    }

    /// The server's message central.
    pub fn central_handle(&self) -> MessageCentral<P> {
        self.central().clone()
    }
}

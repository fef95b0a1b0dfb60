//! Endpoint streams: a session as one endpoint sees it ([`StreamingSession`]), and the
//! message central seen from that stream ([`SessionMessages`]): what a stream joins or
//! adds is owned by it and removed when it closes.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::auth::AuthInfo;
use crate::messages::broadcast::Broadcast;
use crate::messages::central::MessageCentral;
use crate::messages::channel::Listener;
use crate::messages::delivery::{Delivery, PostError, Reach};
use crate::messages::listener::ListenerHandle;
use crate::owned::{JoinError, Owned};
use crate::protocol::ModelSet;
use crate::session::{SendError, SessionHandle, SessionId, SessionShared};

/// A session as one endpoint sees it: [`send_stream_message`](Self::send_stream_message)
/// frames messages with this endpoint's name; [`handle`](Self::handle) reaches the
/// rest of the session (tags, state, closing); clone it to use it from another task.
///
/// One endpoint stream lasts from `stream_opened` to `stream_closed`: until the socket
/// closes, or until the session's identity changes (the stream is then closed and a new
/// one opened under the new identity). A clone kept by a background task sees the end:
/// [`is_stream_closed`](Self::is_stream_closed) turns true, sends and joins fail.
pub struct StreamingSession<P> {
    handle: SessionHandle<P>,
    endpoint: Arc<str>,
    central: MessageCentral<P>,
    /// Shared by every view of the same endpoint stream; false once it closed.
    open: Arc<AtomicBool>,
}

impl<P> Clone for StreamingSession<P> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            endpoint: self.endpoint.clone(),
            central: self.central.clone(),
            open: self.open.clone(),
        }
    }
}

impl<P> fmt::Debug for StreamingSession<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingSession")
            .field("id", &self.handle.shared.id)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> StreamingSession<P> {
    /// A new endpoint stream of `handle`'s session.
    pub(crate) fn open(
        handle: SessionHandle<P>,
        endpoint: Arc<str>,
        central: MessageCentral<P>,
    ) -> Self {
        Self {
            handle,
            endpoint,
            central,
            open: Arc::new(AtomicBool::new(true)),
        }
    }

    pub(crate) fn is_stream_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn mark_stream_closed(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// Whether this endpoint stream has ended: the socket closed, or the session's
    /// identity changed since it opened. Background tasks holding a clone should stop.
    pub fn is_stream_closed(&self) -> bool {
        !self.is_stream_open() || self.handle.is_closed()
    }

    /// The endpoint this view belongs to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The session handle, without the endpoint: tags, state, closing, sending as
    /// another endpoint.
    pub fn handle(&self) -> &SessionHandle<P> {
        &self.handle
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.handle.id()
    }

    /// Who the session is signed in as, if anyone.
    pub fn auth(&self) -> Option<Arc<AuthInfo>> {
        self.handle.auth()
    }

    /// The signed-in user's id, if the session is authenticated.
    pub fn authenticated_user_id(&self) -> Option<String> {
        self.handle.authenticated_user_id()
    }

    /// The client's address.
    pub fn remote_addr(&self) -> std::net::SocketAddr {
        self.handle.remote_addr()
    }

    /// Sends `message` to this session from this endpoint. Never waits.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once this endpoint stream closed (even if the socket is
    /// still open under another identity); otherwise see [`SessionHandle::send`].
    pub fn send_stream_message(&self, message: impl Into<P>) -> Result<(), SendError> {
        if !self.is_stream_open() {
            return Err(SendError::Closed);
        }
        self.handle.send(&self.endpoint, message)
    }

    /// The message central, seen from this session and endpoint: channels it joins
    /// deliver as this endpoint, and what it adds is removed when this stream closes.
    pub fn messages(&self) -> SessionMessages<P> {
        SessionMessages::new(self.clone())
    }

    /// Joins `channel` through this stream; `Ok(false)` when the session already
    /// listens there.
    fn join(&self, channel: &str) -> Result<bool, JoinError> {
        let session = &self.handle.shared;
        let mut owned = session.owned_listeners();
        // Checked under the lock the stream's closing takes: nothing joins after it.
        let owned = owned
            .as_mut()
            .filter(|_| self.is_stream_open())
            .ok_or(JoinError::Closed)?;
        if owned.has_joined(channel) {
            return Ok(false);
        }
        self.central.limits().check(owned, channel)?;
        let id = self.central.add(channel, |id| Listener::Session {
            id,
            session: session.clone(),
            endpoint: self.endpoint.clone(),
        });
        owned.add_join(Owned {
            channel: Arc::from(channel),
            id,
            endpoint: self.endpoint.clone(),
        });
        Ok(true)
    }

    /// Leaves `channel`; `false` when the session was not there.
    fn leave(&self, channel: &str) -> bool {
        let left = self
            .handle
            .shared
            .owned_listeners()
            .as_mut()
            .and_then(|owned| owned.take_join(channel));
        left.is_some_and(|left| self.central.remove(&left.channel, left.id))
    }

    /// Adds a callback owned by this stream: removed when it closes.
    fn add_callback(
        &self,
        channel: &str,
        listener: impl Fn(&P) + Send + Sync + 'static,
    ) -> Result<ListenerHandle<P>, JoinError> {
        let session = &self.handle.shared;
        let mut owned = session.owned_listeners();
        let owned = owned
            .as_mut()
            .filter(|_| self.is_stream_open())
            .ok_or(JoinError::Closed)?;
        self.central.limits().check(owned, channel)?;
        let mut handle = self.central.add_listener(channel, listener);
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
            let mut owned = self.handle.shared.owned_listeners();
            self.mark_stream_closed();
            owned
                .as_mut()
                .map(|owned| owned.take(Some(self.endpoint())))
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

/// The message central as one session and endpoint see it: joins deliver frames as
/// this endpoint, and everything added here is removed when the session closes.
pub struct SessionMessages<P> {
    session: StreamingSession<P>,
}

impl<P> fmt::Debug for SessionMessages<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionMessages")
            .field("session", &self.session)
            .finish()
    }
}

impl<P: ModelSet> SessionMessages<P> {
    pub(crate) fn new(session: StreamingSession<P>) -> Self {
        Self { session }
    }

    fn central(&self) -> &MessageCentral<P> {
        &self.session.central
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
        self.session.join(channel)
    }

    /// Leaves `channel`; `false` when not joined.
    pub fn leave(&self, channel: &str) -> bool {
        self.session.leave(channel)
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
        self.session.add_callback(channel, listener)
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
        self.central().to_channel(channel).except(self.session.id())
    }

    /// Starts a broadcast to every session, framed as from this endpoint.
    pub fn to_all(&self) -> Broadcast<P> {
        self.central().to_all(self.session.endpoint())
    }

    /// Starts a broadcast to every session of `user_id`, framed as from this endpoint.
    pub fn to_user(&self, user_id: &str) -> Broadcast<P> {
        self.central().to_user(user_id, self.session.endpoint())
    }

    /// The server's message central.
    pub fn central_handle(&self) -> MessageCentral<P> {
        self.central().clone()
    }
}

//! Sessions: one per WebSocket. The state a connection's tasks, the message central
//! and every handle share, and [`SessionHandle`], which reaches it from any task.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::auth::{AuthInfo, Scope};
use crate::config::SlowConsumerPolicy;
use crate::session::outbound::{ChannelKey, Limits, Outbound, Push, TotalHeld, DIRECT};
use crate::session::owned::OwnedListeners;
use crate::protocol::frame::{self, ErrorFrame};
use crate::protocol::{EncodeError, ModelSet};
use crate::util::flag::{Flag, Nudge};
use crate::util::log_limit::RateLimitedLog;
use crate::ws::frame::TextFrame;

/// A session's id, unique within one server process.
pub type SessionId = u64;

/// Why a frame was not queued for a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closing or closed; nothing more can be sent to it.
    #[error("session is closed")]
    Closed,
    /// The session's outbound queue was full and its policy disconnects slow consumers:
    /// the session is now closing (1008 "slow consumer").
    #[error("session's outbound queue is full; it was disconnected as a slow consumer")]
    SlowConsumer,
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The message's frame alone is larger than the session's outbound byte cap
    /// ([`ServerConfig::outbound_queue_bytes`](crate::ServerConfig::outbound_queue_bytes)):
    /// it was not sent, and the session stays open. Send less at once.
    #[error("a frame of {bytes} bytes exceeds the session's outbound cap of {limit} bytes; not sent")]
    TooLarge {
        /// The frame's size.
        bytes: usize,
        /// The cap.
        limit: usize,
    },
}

/// Input bytes a session holds for one of its methods; given back when dropped.
pub(crate) struct HeldInput {
    session: Option<Arc<SessionShared>>,
    bytes: usize,
}

impl fmt::Debug for HeldInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldInput").field("bytes", &self.bytes).finish()
    }
}

impl HeldInput {
    /// A value held by nothing (tests that feed methods without a socket).
    #[cfg(test)]
    pub(crate) fn untracked() -> Self {
        Self {
            session: None,
            bytes: 0,
        }
    }
}

impl Drop for HeldInput {
    fn drop(&mut self) {
        if let Some(session) = &self.session {
            session.outbound.release_input(self.bytes);
        }
    }
}

/// Per-session state shared by the connection's tasks and every handle.
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) remote_addr: SocketAddr,
    auth: RwLock<Option<Arc<AuthInfo>>>,
    pub(crate) outbound: Outbound,
    /// Raised when the session starts closing: the reader stops, the writer flushes
    /// (unless aborted) and sends the close frame.
    pub(crate) closing: Flag,
    /// Raised when pending frames must be dropped and a blocked write abandoned (slow
    /// consumer, keepalive timeout); `closing` is raised with it.
    pub(crate) abort: Flag,
    close_frame: Mutex<Option<CloseFrame>>,
    state: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    tags: RwLock<HashSet<String>>,
    /// Channel listeners this session's endpoint streams own, removed when the stream
    /// that added them closes. `None` once the session closed: no more may be added.
    listeners: Mutex<Option<OwnedListeners>>,
    /// The policy for frames sent to the session directly.
    direct_policy: SlowConsumerPolicy,
    /// Whether the client asked for streampod's extended frames (error and batch frames,
    /// [`EXTENDED_SUBPROTOCOL`](crate::protocol::frame::EXTENDED_SUBPROTOCOL)); a
    /// Serverpod client did not and gets neither.
    extended: bool,
    /// The client was told its key expires soon (`auth_expiring`); reset with the key.
    pub(crate) expiry_told: std::sync::atomic::AtomicBool,
    /// Raised when a revocation may concern the session (or, on a streaming-method
    /// socket, one of its calls): its reader looks at the identities it holds again.
    pub(crate) recheck_identity: Nudge,
    pub(crate) span: tracing::Span,
}

impl SessionShared {
    pub(crate) fn new(
        id: SessionId,
        remote_addr: SocketAddr,
        limits: Limits,
        total: Arc<TotalHeld>,
        direct_policy: SlowConsumerPolicy,
        extended: bool,
        span: tracing::Span,
    ) -> Self {
        Self {
            id,
            remote_addr,
            auth: RwLock::new(None),
            outbound: Outbound::new(limits, total),
            closing: Flag::default(),
            abort: Flag::default(),
            close_frame: Mutex::new(None),
            state: Mutex::new(HashMap::new()),
            tags: RwLock::new(HashSet::new()),
            listeners: Mutex::new(Some(OwnedListeners::default())),
            direct_policy: match direct_policy {
                SlowConsumerPolicy::LatestValue => SlowConsumerPolicy::DropOldest,
                other => other,
            },
            extended,
            expiry_told: std::sync::atomic::AtomicBool::new(false),
            recheck_identity: Nudge::default(),
            span,
        }
    }

    /// The listeners the session's streams own; `None` inside once it closed. Holding
    /// this lock while adding to a channel is what keeps a closing session from gaining
    /// listeners.
    pub(crate) fn owned_listeners(&self) -> MutexGuard<'_, Option<OwnedListeners>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn has_tag(&self, tag: &str) -> bool {
        self.tags
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(tag)
    }

    pub(crate) fn auth(&self) -> Option<Arc<AuthInfo>> {
        self.auth
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_auth(&self, auth: Option<AuthInfo>) {
        let user = auth.as_ref().map(|a| a.user_id.clone());
        *self.auth.write().unwrap_or_else(PoisonError::into_inner) = auth.map(Arc::new);
        let user = user.unwrap_or_else(|| "-".to_owned());
        self.span.record("user", tracing::field::display(user));
    }

    /// Holds `bytes` that came in and wait for one of the socket's methods (within the
    /// outbound byte limit, counted by the memory guard) until the guard drops; `None`
    /// when the socket holds as much input as it may.
    pub(crate) fn hold_input(self: &Arc<Self>, bytes: usize) -> Option<HeldInput> {
        self.outbound.hold_input(bytes).then(|| HeldInput {
            session: Some(self.clone()),
            bytes,
        })
    }

    /// Whether a replay of `bytes` (a recovery the server composes at once) fits this
    /// session: at most half its outbound byte cap, so a reader that keeps up is never
    /// cut for what the server chose to send, and live posts still have room. A larger
    /// one is not replayed: the client is told `recovered: false` and reloads.
    pub(crate) fn can_take_replay(&self, bytes: usize) -> bool {
        bytes <= self.outbound.byte_limit() / 2
    }

    /// Names the call whose frames this session queues with `key` (see
    /// `ws::frame`): its writer writes `id` into them.
    pub(crate) fn name_call(&self, key: ChannelKey, id: uuid::Uuid) {
        self.outbound.name_call(key, id);
    }

    /// The call named with `key` ended.
    pub(crate) fn end_call(&self, key: ChannelKey) {
        self.outbound.end_call(key);
    }

    /// Queues a frame sent to this session directly.
    pub(crate) fn push(&self, frame: TextFrame) -> Push {
        self.push_from(frame, DIRECT, self.direct_policy)
    }

    /// Queues a frame from `channel` under its policy; a full queue under `Disconnect`
    /// closes the session.
    pub(crate) fn push_from(
        &self,
        frame: TextFrame,
        channel: ChannelKey,
        policy: SlowConsumerPolicy,
    ) -> Push {
        let frame_len = frame.len();
        let outcome = self.outbound.push(frame, channel, policy);
        match outcome {
            Push::Overflow => {
                tracing::warn!(
                    target: "streampod::session",
                    parent: &self.span,
                    "outbound queue full; disconnecting slow consumer"
                );
                self.abort(CloseCode::Policy, "slow consumer");
            }
            Push::QueuedDropping(dropped) => tracing::trace!(
                target: "streampod::session",
                parent: &self.span,
                dropped,
                "consumer behind; dropped older frames"
            ),
            Push::Dropped(_) => tracing::trace!(
                target: "streampod::session",
                parent: &self.span,
                "outbound queue full; dropped a frame"
            ),
            Push::TooLarge => {
                static TOO_LARGE: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
                if let Some(left_out) = TOO_LARGE.ready() {
                    tracing::warn!(
                        target: "streampod::session",
                        parent: &self.span,
                        bytes = frame_len,
                        limit = self.outbound.byte_limit(),
                        left_out,
                        "a frame larger than a session's outbound byte cap was not sent (raise ServerConfig::outbound_queue_bytes, or send less at once)"
                    );
                }
            }
            Push::Queued | Push::Closed => {}
        }
        outcome
    }

    /// Sends an error frame to a client that understands them; `false` (nothing sent)
    /// for a Serverpod client, whose parser would fail on it and drop the socket.
    pub(crate) fn push_error(&self, error: &ErrorFrame<'_>) -> bool {
        if !self.extended {
            return false;
        }
        self.push(TextFrame::from_text(&error.to_json()));
        true
    }

    /// Whether the client understands error and batch frames.
    pub(crate) fn is_extended(&self) -> bool {
        self.extended
    }

    fn set_close_frame(&self, code: CloseCode, reason: &str) {
        let mut frame = self
            .close_frame
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if frame.is_none() {
            *frame = Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(truncate_reason(reason).to_owned()),
            });
        }
    }

    /// Starts a graceful close: queued frames are flushed, then the close frame is sent.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        self.set_close_frame(code, reason);
        self.outbound.close(false);
        self.closing.raise();
    }

    /// Closes without flushing: queued frames are dropped and a blocked write abandoned.
    pub(crate) fn abort(&self, code: CloseCode, reason: &str) {
        self.set_close_frame(code, reason);
        self.outbound.close(true);
        self.abort.raise();
        self.closing.raise();
    }

    /// Ends the session after the peer went away: nothing more is queued, no close frame
    /// of ours is sent (the reader answered a peer's close frame already).
    pub(crate) fn peer_closed(&self) {
        self.outbound.close(true);
        self.closing.raise();
    }

    pub(crate) fn take_close_frame(&self) -> Option<CloseFrame> {
        self.close_frame
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Close reasons must fit a control frame (123 bytes); cut at a character boundary.
fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= 123 {
        return reason;
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A handle to one session, usable from any task: cheap to clone, valid after the
/// session closes (sends then fail with [`SendError::Closed`]).
pub struct SessionHandle<P> {
    pub(crate) shared: Arc<SessionShared>,
    _protocol: PhantomData<fn(P)>,
}

impl<P> Clone for SessionHandle<P> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _protocol: PhantomData,
        }
    }
}

impl<P> fmt::Debug for SessionHandle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.shared.id)
            .field("remote_addr", &self.shared.remote_addr)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> SessionHandle<P> {
    pub(crate) fn new(shared: Arc<SessionShared>) -> Self {
        Self {
            shared,
            _protocol: PhantomData,
        }
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The client's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.shared.remote_addr
    }

    /// Who the session is signed in as, if anyone.
    pub fn auth(&self) -> Option<Arc<AuthInfo>> {
        self.shared.auth()
    }

    /// The signed-in user's id, if the session is authenticated.
    pub fn authenticated_user_id(&self) -> Option<String> {
        self.shared.auth().map(|auth| auth.user_id.clone())
    }

    /// Whether the session is signed in with `scope`.
    pub fn has_scope(&self, scope: &Scope) -> bool {
        self.shared.auth().is_some_and(|auth| auth.has_scope(scope))
    }

    /// Sends `message` to this session as a message from `endpoint`. Never waits.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once the session is closing, [`SendError::SlowConsumer`]
    /// when its queue overflowed (the session is then closed), [`SendError::Encode`]
    /// when the model cannot be encoded.
    pub fn send(&self, endpoint: &str, message: impl Into<P>) -> Result<(), SendError> {
        let message = message.into();
        let frame = TextFrame::encode(128, |out| frame::encode_message(endpoint, &message, out))?;
        self.send_frame(frame)
    }

    /// Queues an already encoded frame.
    pub(crate) fn send_frame(&self, frame: TextFrame) -> Result<(), SendError> {
        let frame_len = frame.len();
        match self.shared.push(frame) {
            Push::Queued | Push::QueuedDropping(_) | Push::Dropped(_) => Ok(()),
            Push::Overflow => Err(SendError::SlowConsumer),
            Push::Closed => Err(SendError::Closed),
            Push::TooLarge => Err(SendError::TooLarge {
                bytes: frame_len,
                limit: self.shared.outbound.byte_limit(),
            }),
        }
    }

    /// Closes the session: frames already queued are sent, then a close frame with
    /// `code` (an RFC 6455 code, e.g. 1000, or 4000–4999 for applications) and `reason`
    /// (cut to 123 bytes). `stream_closed` then runs for every opened endpoint.
    pub fn close(&self, code: u16, reason: &str) {
        self.shared.close(CloseCode::from(code), reason);
    }

    /// Tags the session (for [`Broadcast::filter`](crate::messages::Broadcast::filter)
    /// and your own bookkeeping); `false` when it already had the tag.
    pub fn add_tag(&self, tag: impl Into<String>) -> bool {
        self.shared
            .tags
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tag.into())
    }

    /// Removes a tag; `false` when the session did not have it.
    pub fn remove_tag(&self, tag: &str) -> bool {
        self.shared
            .tags
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tag)
    }

    /// Whether the session has `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.shared.has_tag(tag)
    }

    /// Whether the session is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closing.is_raised()
    }

    /// Stores a value of type `T` for this session, replacing (and returning) any
    /// previous one. One value per type, shared by all endpoints.
    pub fn insert_state<T: Send + Sync + 'static>(&self, value: T) -> Option<Arc<T>> {
        let previous = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(TypeId::of::<T>(), Arc::new(value));
        previous.and_then(|p| p.downcast::<T>().ok())
    }

    /// The session's value of type `T`, if one was stored.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&TypeId::of::<T>())
            .cloned();
        value.and_then(|v| v.downcast::<T>().ok())
    }

    /// Removes and returns the session's value of type `T`.
    pub fn remove_state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&TypeId::of::<T>());
        value.and_then(|v| v.downcast::<T>().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123);
        assert!(long.starts_with(cut));
        assert_eq!(truncate_reason("slow consumer"), "slow consumer");
    }
}

//! The handle background tasks use to reach a server: its message central, its live
//! sessions, and graceful drain and shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Fingerprint, Revoked};
use crate::protocol::auth;
use crate::cluster::{ClusterError, Reached};
use crate::messages::central::MessageCentral;
use crate::protocol::ModelSet;
use crate::session::registry::SessionRegistry;
use crate::session::state::{SessionHandle, SessionId};

/// The close reason of a drained socket (with 1012).
const DRAIN_REASON: &str = "server restarting; reconnect to another server";

/// Waves to drain `sockets` in over `over`: one per 100 ms, no more than sockets, at
/// least one.
fn drain_waves(over: Duration, sockets: usize) -> usize {
    let slots = usize::try_from(over.as_millis() / 100).unwrap_or(usize::MAX);
    slots.min(sockets).max(1)
}

/// What a handle reaches.
struct HandleState<P> {
    messages: MessageCentral<P>,
    sessions: Arc<SessionRegistry>,
    /// The streaming-method sockets (`/v1/websocket`), drained like sessions.
    method_sockets: Arc<SessionRegistry>,
    /// Set when a drain begins: `/health` answers 503, new sockets are refused.
    draining: AtomicBool,
    /// Cancelled when shutdown begins: the accept loop stops, new sockets close at once.
    shutdown: CancellationToken,
    /// Every socket's task, awaited on shutdown.
    tasks: TaskTracker,
    shutdown_timeout: Duration,
}

/// A cheap, clonable handle to a running server for background tasks.
pub struct ServerHandle<P: ModelSet> {
    state: Arc<HandleState<P>>,
}

impl<P: ModelSet> Clone for ServerHandle<P> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<P: ModelSet> std::fmt::Debug for ServerHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("sessions", &self.state.sessions.len())
            .finish()
    }
}

impl<P: ModelSet> ServerHandle<P> {
    pub(crate) fn new(
        messages: MessageCentral<P>,
        sessions: Arc<SessionRegistry>,
        method_sockets: Arc<SessionRegistry>,
        shutdown: CancellationToken,
        shutdown_timeout: Duration,
    ) -> Self {
        Self {
            state: Arc::new(HandleState {
                messages,
                sessions,
                method_sockets,
                draining: AtomicBool::new(false),
                shutdown,
                tasks: TaskTracker::new(),
                shutdown_timeout,
            }),
        }
    }

    /// Cancelled when shutdown begins.
    pub(crate) fn shutdown_signal(&self) -> &CancellationToken {
        &self.state.shutdown
    }

    /// Where socket tasks are spawned, so shutdown waits for them.
    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.state.tasks
    }

    /// The message central: channels, listeners, posts and broadcasts.
    pub fn messages(&self) -> MessageCentral<P> {
        self.state.messages.clone()
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.state.sessions.len()
    }

    /// The open session with `id`.
    pub fn session(&self, id: SessionId) -> Option<SessionHandle<P>> {
        self.state.sessions.get(id).map(SessionHandle::new)
    }

    /// Every open session, at the time of the call.
    pub fn sessions(&self) -> Vec<SessionHandle<P>> {
        self.state
            .sessions
            .snapshot()
            .into_iter()
            .map(SessionHandle::new)
            .collect()
    }

    /// Revokes every identity of `user_id`, on every server of the cluster: its
    /// endpoint sessions are signed out (`auth_revoked` error frame for `streampod.v1`
    /// clients; what the identity opened or joined closes, the socket stays), and its
    /// streaming-method calls close with `error`. Keys of the user issued before now
    /// are refused from then on when the authentication handler says when a key was
    /// issued ([`AuthInfo::issued_at`](crate::auth::AuthInfo::issued_at); [`Jwt`]
    /// reads `iat`), for [`revocation_retention`](crate::ServerConfig::revocation_retention);
    /// a key without an issue time signs the user in again, so keep a ban in the
    /// handler. Returns the number of servers reached: 1 on a single server, the
    /// servers the backplane reached in a cluster.
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # async fn demo(server: streampod::ServerHandle<Protocol>) -> Result<(), streampod::cluster::ClusterError> {
    /// // The user signed out everywhere (or was banned): close what they have open.
    /// server.revoke_user("42").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`Jwt`]: crate::auth::Jwt
    ///
    /// # Errors
    ///
    /// The backplane's [`ClusterError`] when the revocation could not be published;
    /// it holds on this server either way, and retrying is harmless.
    pub async fn revoke_user(&self, user_id: &str) -> Result<Reached, ClusterError> {
        self.revoke(Revoked::User {
            user: user_id.to_owned(),
            at: SystemTime::now(),
        })
        .await
    }

    /// Revokes one auth key (a token), on every server of the cluster: every session
    /// and streaming-method call signed in with it ends as for
    /// [`revoke_user`](Self::revoke_user), and the key is refused from then on (with
    /// reason `revoked`) for [`revocation_retention`](crate::ServerConfig::revocation_retention).
    /// Only a fingerprint of the key (SHA-256) is kept and sent over the backplane.
    /// Returns the number of servers reached, as `revoke_user`.
    ///
    /// # Errors
    ///
    /// As [`revoke_user`](Self::revoke_user).
    pub async fn revoke_key(&self, key: &str) -> Result<Reached, ClusterError> {
        self.revoke(Revoked::Key(Fingerprint::of(&auth::unwrap_key(key))))
            .await
    }

    async fn revoke(&self, revoked: Revoked) -> Result<Reached, ClusterError> {
        tracing::info!(target: "streampod::server", what = match &revoked { Revoked::User { .. } => "user", Revoked::Key(_) => "key" }, "revoking an identity");
        let reached = self.state.messages.revoke(revoked).await?;
        Ok(reached.map(|servers| servers.max(1)))
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.state.shutdown.is_cancelled()
    }

    /// Whether a [`drain`](Self::drain) has begun.
    pub fn is_draining(&self) -> bool {
        self.state.draining.load(Ordering::Relaxed)
    }

    /// Why a new socket (a WebSocket or an event stream) is refused now, if it is: the
    /// error code and message of the `503` answer.
    pub(crate) fn refuses_sockets(&self) -> Option<(&'static str, &'static str)> {
        if self.is_shutting_down() {
            Some((
                "shutting_down",
                "the server is shutting down; reconnect to another one",
            ))
        } else if self.is_draining() {
            Some((
                "draining",
                "the server is draining for a restart; connect to another one",
            ))
        } else {
            None
        }
    }

    /// Takes the server out of service for a deploy without sending every client back
    /// in the same second: `/health` answers `503` `"draining"` at once (load balancers
    /// stop sending new clients), new WebSockets and event streams are refused with
    /// `503` (clients go to another server), and the open sessions and streaming-method
    /// sockets are closed in waves spread evenly over `over` (one wave per 100 ms) with
    /// 1012 "server restarting; reconnect to another server", after their queued frames.
    /// A client that reconnects at once lands on another server, and the reconnects
    /// arrive at about `sockets / over` per second rather than all at once; history
    /// channels lose nothing across the move (recovery). HTTP method calls are still
    /// answered. Returns once every socket was asked to close (a second call returns at
    /// once); [`shutdown`](Self::shutdown) then finishes the job.
    pub async fn drain(&self, over: Duration) {
        if self.state.draining.swap(true, Ordering::Relaxed) {
            return;
        }
        let sockets: Vec<_> = self
            .state
            .sessions
            .snapshot()
            .into_iter()
            .chain(self.state.method_sockets.snapshot())
            .collect();
        let waves = drain_waves(over, sockets.len());
        tracing::info!(target: "streampod::server", sockets = sockets.len(), waves, over_ms = over.as_millis() as u64, "draining");
        let started = tokio::time::Instant::now();
        let count = sockets.len();
        let mut sockets = sockets.into_iter();
        for wave in 0..waves {
            // Wave `wave` closes the sockets up to its share of the whole, at its time.
            let until = count * (wave + 1) / waves;
            let at = over.mul_f64(wave as f64 / waves as f64);
            tokio::time::sleep_until(started + at).await;
            for socket in sockets.by_ref().take(until - count * wave / waves) {
                socket.close(CloseCode::Restart, DRAIN_REASON);
            }
        }
        // Sockets that opened while the refusal took effect.
        for socket in self
            .state
            .sessions
            .snapshot()
            .into_iter()
            .chain(self.state.method_sockets.snapshot())
        {
            socket.close(CloseCode::Restart, DRAIN_REASON);
        }
        tracing::info!(target: "streampod::server", "drained");
    }

    /// Stops accepting connections, closes every session with 1001 "server shutting
    /// down" after flushing what was queued (running `stream_closed`), and waits up to
    /// [`ServerConfig::shutdown_timeout`](crate::ServerConfig::shutdown_timeout) for them
    /// to finish. Under [`StreampodService`](crate::StreampodService) the host server
    /// keeps serving its other routes; WebSocket upgrades are then refused.
    pub async fn shutdown(&self) {
        let state = &self.state;
        state.shutdown.cancel();
        let sessions = state.sessions.snapshot();
        tracing::info!(target: "streampod::server", sessions = sessions.len(), "shutting down");
        for session in sessions {
            session.close(CloseCode::Away, "server shutting down");
        }
        state.tasks.close();
        if tokio::time::timeout(state.shutdown_timeout, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                target: "streampod::server",
                remaining = state.sessions.len(),
                "shutdown timeout reached with sessions still closing"
            );
        }
        // Sessions are gone: leave the cluster (unsubscribes with the connection).
        state.messages.leave_cluster();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_has_a_wave_per_100_ms_but_never_more_than_sockets() {
        assert_eq!(drain_waves(Duration::from_secs(2), 5_000), 20);
        assert_eq!(drain_waves(Duration::from_secs(2), 7), 7);
        assert_eq!(drain_waves(Duration::from_millis(50), 100), 1);
        assert_eq!(drain_waves(Duration::ZERO, 0), 1);
    }
}

//! The handle background tasks use to reach a server: its message central, its live
//! sessions, and graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Fingerprint, Revoked};
use crate::protocol::auth;
use crate::cluster::ClusterError;
use crate::messages::central::MessageCentral;
use crate::protocol::ModelSet;
use crate::session::registry::SessionRegistry;
use crate::session::state::{SessionHandle, SessionId};

/// What a handle reaches.
struct HandleState<P> {
    messages: MessageCentral<P>,
    sessions: Arc<SessionRegistry>,
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
        shutdown: CancellationToken,
        shutdown_timeout: Duration,
    ) -> Self {
        Self {
            state: Arc::new(HandleState {
                messages,
                sessions,
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
    pub async fn revoke_user(&self, user_id: &str) -> Result<usize, ClusterError> {
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
    pub async fn revoke_key(&self, key: &str) -> Result<usize, ClusterError> {
        self.revoke(Revoked::Key(Fingerprint::of(&auth::unwrap_key(key))))
            .await
    }

    async fn revoke(&self, revoked: Revoked) -> Result<usize, ClusterError> {
        tracing::info!(target: "streampod::server", what = match &revoked { Revoked::User { .. } => "user", Revoked::Key(_) => "key" }, "revoking an identity");
        let reached = self.state.messages.revoke(revoked).await?;
        Ok(reached.max(1))
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.state.shutdown.is_cancelled()
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

//! The handle background tasks use to reach a server: its message central, its live
//! sessions, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

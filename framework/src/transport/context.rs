//! What serving a socket needs from the server (endpoints, configuration, registries,
//! message central, metrics), and what a socket runs over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::endpoint::definition::Endpoints;
use crate::messages::central::MessageCentral;
use crate::metrics::Metrics;
use crate::protocol::ModelSet;
use crate::session::outbound::TotalHeld;
use crate::session::registry::SessionRegistry;
use crate::session::state::SessionId;

/// What a WebSocket runs over: an upgraded HTTP connection, or any byte stream (a test's
/// in-memory pipe).
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for S {}

/// What serving a WebSocket needs: the endpoints and who may use them, the
/// configuration, the live sessions, the message central, and the metrics.
pub(crate) struct SocketContext<P: ModelSet> {
    pub(crate) endpoints: Endpoints<P>,
    pub(crate) authentication: Authenticator,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) sessions: Arc<SessionRegistry>,
    /// The streaming-method sockets (`/v1/websocket`), apart: broadcasts to sessions
    /// must not reach them; the memory guard sheds them like sessions.
    pub(crate) method_sockets: Arc<SessionRegistry>,
    pub(crate) messages: MessageCentral<P>,
    pub(crate) metrics: Arc<Metrics>,
    /// Bytes queued for all sessions, for the memory guard.
    pub(crate) held_bytes: Arc<TotalHeld>,
    /// Cancelled when the server shuts down: a socket opened after it closes at once.
    pub(crate) shutdown: CancellationToken,
    /// The next session's id (start at 1).
    pub(crate) next_id: AtomicU64,
}

impl<P: ModelSet> SocketContext<P> {
    pub(crate) fn next_session_id(&self) -> SessionId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}


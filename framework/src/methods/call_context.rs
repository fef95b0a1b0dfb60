//! [`Session`]: what a method call knows of its caller and reaches of the server.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;



use crate::auth::{AuthInfo, Scope};
use crate::endpoint::server_handle::ServerHandle;
use crate::messages::central::MessageCentral;
use crate::protocol::ModelSet;


/// The session of one HTTP method call: who is calling, and the server's message
/// central and handle, so a call can post to channels and reach streaming sessions.
pub struct Session<P: ModelSet> {
    pub(crate) auth: Option<Arc<AuthInfo>>,
    pub(crate) remote_addr: SocketAddr,
    pub(crate) endpoint: Arc<str>,
    pub(crate) method: &'static str,
    pub(crate) server: ServerHandle<P>,
    /// The central this call subscribes through (counted against its socket, for a
    /// streaming call).
    pub(crate) messages: MessageCentral<P>,
}

impl<P: ModelSet> fmt::Debug for Session<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint)
            .field("method", &self.method)
            .field("remote_addr", &self.remote_addr)
            .field("user", &self.auth.as_ref().map(|a| &a.user_id))
            .finish()
    }
}

impl<P: ModelSet> Session<P> {
    /// Who is calling, if signed in.
    pub fn auth(&self) -> Option<&AuthInfo> {
        self.auth.as_deref()
    }

    /// The caller's user id, if signed in.
    pub fn authenticated_user_id(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.user_id.as_str())
    }

    /// Whether the caller is signed in with `scope`.
    pub fn has_scope(&self, scope: &Scope) -> bool {
        self.auth.as_ref().is_some_and(|a| a.has_scope(scope))
    }

    /// The caller's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The endpoint called.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The method called (camelCase, as on the wire).
    pub fn method(&self) -> &str {
        self.method
    }

    /// The message central: post to channels, broadcast to sessions, listen. In a
    /// streaming call, the streams and listeners it creates count against the caller's
    /// socket (as joins do, [`ServerConfig::max_channels_per_session`](crate::ServerConfig::max_channels_per_session))
    /// and are removed when the call ends.
    pub fn messages(&self) -> MessageCentral<P> {
        self.messages.clone()
    }

    /// The server handle.
    pub fn server(&self) -> &ServerHandle<P> {
        &self.server
    }
}

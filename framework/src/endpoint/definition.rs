//! The `Endpoint` trait and the registry of named endpoints.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use super::server_handle::ServerHandle;
use crate::auth::{AuthInfo, Scope};
use crate::protocol::ModelSet;
use crate::rate_limit::RateLimit;
use crate::endpoint::streaming_session::StreamingSession;

/// A streaming endpoint, as in Serverpod: one per name, shared by every session.
///
/// When a socket opens, [`stream_opened`](Endpoint::stream_opened) runs for every
/// endpoint the session may access; each frame addressed to the endpoint is decoded into
/// the generated `Protocol` enum and passed to
/// [`handle_stream_message`](Endpoint::handle_stream_message), one at a time per
/// socket; when the stream ends, [`stream_closed`](Endpoint::stream_closed) runs exactly
/// once for each endpoint whose `stream_opened` succeeded.
///
/// **A stream belongs to one identity.** It ends when the socket closes, and also when
/// the session's identity changes (sign-in, sign-out, another user, other scopes through
/// the `auth` command): every stream then closes under the old identity and
/// `stream_opened` runs again under the new one, for the endpoints it may use. What a
/// stream added through [`StreamingSession::messages`] (joins, listeners) is removed
/// when *that stream* closes, so no channel outlives the identity that joined it; a
/// clone of the old [`StreamingSession`] kept by a background task can no longer join
/// or send ([`StreamingSession::is_stream_closed`]). Sending the same identity again
/// changes nothing.
///
/// ```
/// use streampod::{Endpoint, EndpointError, StreamingSession};
/// # streampod::__doc_models!();
///
/// struct Echo;
///
/// impl Endpoint<Protocol> for Echo {
///     async fn handle_stream_message(
///         &self,
///         session: &StreamingSession<Protocol>,
///         message: Protocol,
///     ) -> Result<(), EndpointError> {
///         session.send_stream_message(message)?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a streampod endpoint for `{P}`",
    note = "implement `Endpoint<{P}>`: its methods are plain `async fn`s, no attribute needed"
)]
pub trait Endpoint<P: ModelSet>: Send + Sync + 'static {
    /// A socket opened and may access this endpoint. An error is logged, sent to the
    /// client as an `internal` error frame, and leaves the endpoint closed for this
    /// session (its messages are refused and `stream_closed` does not run).
    ///
    /// Write it as `async fn stream_opened(&self, session: &StreamingSession<P>) -> …`;
    /// the future must be `Send` (hold no `Rc` or `std` mutex guard across an `.await`).
    fn stream_opened(
        &self,
        session: &StreamingSession<P>,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send {
        let _ = session;
        async { Ok(()) }
    }

    /// A message for this endpoint arrived. An error (or a panic) is logged and the
    /// client gets an `internal` error frame; the session stays open.
    fn handle_stream_message(
        &self,
        session: &StreamingSession<P>,
        message: P,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send {
        let _ = (session, message);
        async { Ok(()) }
    }

    /// The stream ended: the socket closed (client close, network drop, keepalive
    /// timeout, slow consumer, [`SessionHandle::close`](crate::SessionHandle::close), server shutdown) or the
    /// session's identity changed. `session` still shows the old identity. After it
    /// returns, what this stream joined is left.
    fn stream_closed(&self, session: &StreamingSession<P>) -> impl Future<Output = ()> + Send {
        let _ = session;
        async {}
    }

    /// Whether only authenticated sessions may use this endpoint. Default `false`.
    fn require_login(&self) -> bool {
        false
    }

    /// Scopes a session needs to use this endpoint (implies login). Default none.
    fn required_scopes(&self) -> &[Scope] {
        &[]
    }

    /// How many frames per second one session may send to this endpoint, when it
    /// differs from the server's [`ServerConfig::inbound_rate_limit`](crate::ServerConfig::inbound_rate_limit)
    /// (e.g. higher for a game's position updates). Frames to this endpoint then count
    /// against a bucket of their own instead of the server's. Default `None`: the
    /// server's limit.
    fn inbound_rate_limit(&self) -> Option<RateLimit> {
        None
    }

    /// Runs once, when the server is built and before it serves a socket: configure
    /// this endpoint's channels ([`MessageCentral::configure_namespace`](crate::messages::MessageCentral::configure_namespace)),
    /// add presence hooks, start background tasks with `tokio::spawn` (clone the handle
    /// into them). Default: nothing.
    fn on_start(&self, server: &ServerHandle<P>) {
        let _ = server;
    }
}

/// An endpoint shared through an `Arc` (e.g. registered both as a streaming endpoint and
/// for its HTTP methods) is an endpoint too.
impl<P: ModelSet, T: Endpoint<P>> Endpoint<P> for Arc<T> {
    fn stream_opened(
        &self,
        session: &StreamingSession<P>,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send {
        (**self).stream_opened(session)
    }

    fn handle_stream_message(
        &self,
        session: &StreamingSession<P>,
        message: P,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send {
        (**self).handle_stream_message(session, message)
    }

    fn stream_closed(&self, session: &StreamingSession<P>) -> impl Future<Output = ()> + Send {
        (**self).stream_closed(session)
    }

    fn require_login(&self) -> bool {
        (**self).require_login()
    }

    fn required_scopes(&self) -> &[Scope] {
        (**self).required_scopes()
    }

    fn inbound_rate_limit(&self) -> Option<RateLimit> {
        (**self).inbound_rate_limit()
    }

    fn on_start(&self, server: &ServerHandle<P>) {
        (**self).on_start(server);
    }
}

/// [`Endpoint`] as an object: what the registry stores, boxing each call's future once.
#[async_trait]
pub(crate) trait DynEndpoint<P: ModelSet>: Send + Sync + 'static {
    async fn stream_opened(&self, session: &StreamingSession<P>) -> Result<(), EndpointError>;
    async fn handle_stream_message(
        &self,
        session: &StreamingSession<P>,
        message: P,
    ) -> Result<(), EndpointError>;
    async fn stream_closed(&self, session: &StreamingSession<P>);
    fn require_login(&self) -> bool;
    fn required_scopes(&self) -> &[Scope];
    fn inbound_rate_limit(&self) -> Option<RateLimit>;
    fn on_start(&self, server: &ServerHandle<P>);
}

#[async_trait]
impl<P: ModelSet, E: Endpoint<P>> DynEndpoint<P> for E {
    async fn stream_opened(&self, session: &StreamingSession<P>) -> Result<(), EndpointError> {
        Endpoint::stream_opened(self, session).await
    }

    async fn handle_stream_message(
        &self,
        session: &StreamingSession<P>,
        message: P,
    ) -> Result<(), EndpointError> {
        Endpoint::handle_stream_message(self, session, message).await
    }

    async fn stream_closed(&self, session: &StreamingSession<P>) {
        Endpoint::stream_closed(self, session).await;
    }

    fn require_login(&self) -> bool {
        Endpoint::require_login(self)
    }

    fn required_scopes(&self) -> &[Scope] {
        Endpoint::required_scopes(self)
    }

    fn inbound_rate_limit(&self) -> Option<RateLimit> {
        Endpoint::inbound_rate_limit(self)
    }

    fn on_start(&self, server: &ServerHandle<P>) {
        Endpoint::on_start(self, server);
    }
}

/// An endpoint failed. Any `std::error::Error` converts into it with `?`; the details go
/// to the server log, never to the client.
pub struct EndpointError(Box<dyn std::error::Error + Send + Sync>);

impl EndpointError {
    /// An error with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(message.to_string().into())
    }

    /// The underlying error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync> {
        self.0
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for EndpointError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl fmt::Debug for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a session may not use an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    Unauthenticated,
    Forbidden(Scope),
}

/// One registered endpoint.
pub(crate) struct Registered<P: ModelSet> {
    pub(crate) name: Arc<str>,
    pub(crate) endpoint: Arc<dyn DynEndpoint<P>>,
}

impl<P: ModelSet> Registered<P> {
    /// Whether a session with `auth` may use the endpoint.
    pub(crate) fn check_access(&self, auth: Option<&AuthInfo>) -> Result<(), Denied> {
        let scopes = self.endpoint.required_scopes();
        if !self.endpoint.require_login() && scopes.is_empty() {
            return Ok(());
        }
        let auth = auth.ok_or(Denied::Unauthenticated)?;
        match scopes.iter().find(|scope| !auth.has_scope(scope)) {
            Some(missing) => Err(Denied::Forbidden(missing.clone())),
            None => Ok(()),
        }
    }
}

/// The endpoints of a server, by name, in registration order.
pub(crate) struct Endpoints<P: ModelSet> {
    list: Vec<Registered<P>>,
    by_name: HashMap<Arc<str>, usize>,
}

impl<P: ModelSet> Default for Endpoints<P> {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            by_name: HashMap::new(),
        }
    }
}

impl<P: ModelSet> Endpoints<P> {
    /// Adds an endpoint; `false` when the name is taken.
    pub(crate) fn insert(&mut self, name: &str, endpoint: Arc<dyn DynEndpoint<P>>) -> bool {
        if self.by_name.contains_key(name) {
            return false;
        }
        let name: Arc<str> = Arc::from(name);
        self.by_name.insert(name.clone(), self.list.len());
        self.list.push(Registered { name, endpoint });
        true
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Registered<P>> {
        self.list.get(index)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Registered<P>> {
        self.list.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The registered name closest to `name`, for "did you mean" hints.
    pub(crate) fn closest(&self, name: &str) -> Option<&str> {
        crate::protocol::suggest::closest(name, self.list.iter().map(|r| &*r.name), 2)
    }
}

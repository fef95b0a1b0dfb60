//! One WebSocket: the reader loop (decode, dispatch one frame at a time, keepalive) and
//! the writer task (drain the outbound queue, write each batch in a few large writes).

use std::any::Any;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::io::{ReadHalf, WriteHalf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument;

use super::close::{close_abusive, pong, triage, Read};
use super::context::{Io, SocketContext};
use super::keepalive::Keepalive;
use super::write_task::write_loop;
use crate::auth::{AuthInfo, KeyCheck, Refusal};
use crate::endpoint::definition::Denied;
use crate::endpoint::streaming_session::StreamingSession;
use crate::messages::membership::release_session;
use crate::protocol::frame::{ErrorFrame, Frame, MessageFrame, PONG};
use crate::protocol::{auth, DecodeError, ErrorCode, ModelSet};
use crate::rate_limit::{InboundLimiter, Verdict};
use crate::session::outbound::Limits;
use crate::session::state::{SessionHandle, SessionShared};
use crate::util::log_limit::RateLimitedLog;
use crate::util::panic_text::panic_message;
use crate::util::peer_text::{ErrorText, PeerText};
use crate::ws::frame::TextFrame;
use crate::util::trace_context;
use crate::ws::deflate::Deflate;
use crate::ws::reader::FrameReader;

/// A session on one upgraded socket: the future serves it until it closes, then runs
/// `stream_closed`. `extended`: the client negotiated streampod's extended frames (error
/// and batch frames). Not an `async fn`: what is set up here is moved into the returned
/// future, which the socket keeps for its whole life, rather than kept beside it.
pub(crate) fn run<P: ModelSet>(
    server: Arc<SocketContext<P>>,
    io: impl Io,
    remote_addr: SocketAddr,
    auth_key: Option<String>,
    extended: bool,
    deflate: Option<Deflate>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let config = &server.config;
    let id = server.next_session_id();
    let span = tracing::info_span!(
        target: "streampod::connection",
        "session",
        id,
        peer = %remote_addr,
        user = tracing::field::Empty,
    );
    let limits = Limits {
        frames: config.outbound_queue_frames,
        bytes: config.outbound_queue_bytes,
    };
    let shared = Arc::new(SessionShared::new(
        id,
        remote_addr,
        limits,
        server.held_bytes.clone(),
        config.slow_consumer,
        extended,
        span.clone(),
    ));
    // The reader parses frames as they arrive (see `ws::reader`); the writer task
    // writes (see `transport::write_task` and `ws::writer`).
    let (read, write) = tokio::io::split(io);
    let reader = FrameReader::new(config.max_frame_size).inflating(deflate);
    let streams = server.endpoints.iter().map(|_| None).collect();
    let inbound = InboundLimiter::new(
        config.inbound_rate_limit,
        server
            .endpoints
            .iter()
            .map(|registered| registered.endpoint.inbound_rate_limit()),
    );
    let connection = Connection {
        handle: SessionHandle::new(shared.clone()),
        shared,
        server,
        streams,
        inbound,
    };
    connection
        .serve(write, read, reader, auth_key)
        .instrument(span)
}

/// How long opening a session may take before it is logged: Serverpod's Dart client
/// gives its first ping 5 s.
const SLOW_OPENING: Duration = Duration::from_secs(3);

struct Connection<P: ModelSet> {
    server: Arc<SocketContext<P>>,
    shared: Arc<SessionShared>,
    handle: SessionHandle<P>,
    /// Each endpoint's open stream: its `stream_opened` succeeded and `stream_closed`
    /// is owed.
    streams: Vec<Option<StreamingSession<P>>>,
    /// The session's inbound rate limits.
    inbound: InboundLimiter,
}

/// How long before its key expires a `streampod.v1` session is told (`auth_expiring`).
const EXPIRY_NOTICE: Duration = Duration::from_secs(60);

impl<P: ModelSet> Connection<P> {
    /// Not an `async fn`: its arguments would be kept twice, as arguments and as the
    /// locals they are moved into, in the future every idle socket keeps.
    #[allow(clippy::manual_async_fn)]
    fn serve<I: Io>(
        mut self,
        write: WriteHalf<I>,
        mut read: ReadHalf<I>,
        mut reader: FrameReader,
        auth_key: Option<String>,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            tracing::debug!(target: "streampod::connection", "socket opened");
            self.server.sessions.insert(self.shared.clone());
            if self.server.shutdown.is_cancelled() {
                self.shared.close(CloseCode::Away, "server shutting down");
            }
            // Two tasks per socket: the writer's own lets reading and writing run on two
            // workers, and a writer wake-up does not poll the reader (one task for both cost
            // 10-20 % more CPU per delivery at 1,000 subscribers for 0.17 KiB less memory).
            let writer = self.spawn_writer(write, reader.deflate());

            // The opening and closing steps run once per socket: boxed, so their state does
            // not enlarge the future every idle socket keeps for its whole life.
            Box::pin(self.open(auth_key)).await;
            // By reference: moved in, the socket would sit in both futures' state.
            self.read_loop(&mut read, &mut reader).await;

            // Whatever ended the loop, nothing more is read. A close of ours (raised before
            // the loop ended) flushes what was queued; a peer that left gets nothing more.
            if !self.shared.closing.is_raised() {
                self.shared.peer_closed();
            }
            Box::pin(self.close_all()).await;
            self.server.sessions.remove(self.shared.id);
            let grace = self.server.config.close_timeout + Duration::from_millis(500);
            if tokio::time::timeout(grace, writer).await.is_err() {
                tracing::warn!(target: "streampod::connection", "writer did not finish in time");
            }
            tracing::debug!(target: "streampod::connection", "socket closed");
        }
    }

    /// Starts the writer task. Not inline in `serve`: there the writer's future would
    /// take room in the reader's state for the socket's whole life.
    fn spawn_writer(
        &self,
        write: WriteHalf<impl Io>,
        deflate: Option<Deflate>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(
            write_loop(
                write,
                self.shared.clone(),
                deflate,
                self.server.config.close_timeout,
                self.server.metrics.writer_batch_frames.clone(),
            )
            .in_current_span(),
        )
    }

    /// Signs in with the handshake's key, if any, and opens the accessible endpoints.
    /// Frames, the client's first ping included, are read only after: a Dart client
    /// closes a socket whose first ping gets no answer within 5 s, so a slow opening is
    /// logged.
    async fn open(&mut self, auth_key: Option<String>) {
        let started = tokio::time::Instant::now();
        if let Some(key) = auth_key {
            let auth = self.resolve(Some(&key)).await;
            self.change_identity(auth).await;
        }
        self.open_accessible().await;
        let took = started.elapsed();
        if took >= SLOW_OPENING {
            static SLOW: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(5));
            if let Some(left_out) = SLOW.ready() {
                tracing::warn!(target: "streampod::connection", took_ms = took.as_millis() as u64, left_out, "authenticating and stream_opened took this long before the first frame was read; Serverpod's Dart client closes a socket whose first ping is not answered within 5 s");
            }
        }
    }

    /// Closes every stream and removes what the session still holds.
    async fn close_all(&mut self) {
        self.close_streams().await;
        release_session(&self.server.messages, &self.shared).await;
    }

    async fn read_loop<I: Io>(&mut self, read: &mut ReadHalf<I>, reader: &mut FrameReader) {
        let mut keepalive = Keepalive::for_sockets(&self.server.config);
        loop {
            // One timer for both: the keepalive's, or the identity's expiry if sooner.
            let alive = keepalive.deadline();
            let (deadline, expiring) = match self.expiry_event() {
                Some(at) if at < alive => (at, true),
                _ => (alive, false),
            };
            tokio::select! {
                biased;
                () = self.shared.closing.raised() => return,
                incoming = reader.next(read) => {
                    keepalive.activity();
                    // Boxed: dispatching is deep (the endpoint's own future), and
                    // inline it would enlarge what every idle socket keeps by ~1.4 KB.
                    match triage(&self.shared, incoming) {
                        Read::Text(text) => Box::pin(self.handle_text(&text)).await,
                        Read::Binary => if self.admit(None) {
                            self.reject(&ErrorFrame::new(ErrorCode::BinaryNotSupported, "binary frames are not supported; send JSON text frames"));
                        },
                        // Pings count against the inbound rate limit like any frame.
                        Read::Ping(payload) => if self.admit(None) {
                            pong(&self.shared, &payload);
                        },
                        Read::Nothing => {}
                        Read::Stop => return,
                    }
                }
                () = self.shared.recheck_identity.raised() => {
                    Box::pin(self.recheck_identity()).await;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if expiring {
                        Box::pin(self.expiry_due()).await;
                    } else if !keepalive.at_deadline(&self.shared) {
                        return;
                    }
                }
            }
        }
    }

    /// The identity's expiry needs attention: a `streampod.v1` client is told it comes
    /// (once, [`EXPIRY_NOTICE`] before); once it passed without a fresh key, the session
    /// is signed out as by an `auth` command without a key, and stays open.
    async fn expiry_due(&mut self) {
        let Some(at) = self.shared.auth().and_then(|auth| auth.expires_at) else {
            return;
        };
        match at.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => {
                if !self.shared.expiry_told.swap(true, Ordering::Relaxed) {
                    self.shared.push_error(&ErrorFrame::new(
                        ErrorCode::AuthExpiring,
                        format!("the auth key expires in {} s: send a fresh one with the auth command to keep the session's streams", left.as_secs()),
                    ));
                }
            }
            _ => {
                tracing::debug!(target: "streampod::connection", "auth key expired; signing the session out");
                self.change_identity(None).await;
                self.shared.push_error(&ErrorFrame::new(
                    ErrorCode::AuthExpired,
                    "the auth key expired: the session is signed out (send a fresh key with the auth command)",
                ));
            }
        }
    }

    /// A revocation may concern the session: if its identity was revoked (its user or
    /// its key, here or on another node), the session is signed out as at an expiry.
    async fn recheck_identity(&mut self) {
        let revoked = self
            .shared
            .auth()
            .is_some_and(|auth| self.server.authentication.revocations().is_revoked(&auth));
        if revoked {
            tracing::debug!(target: "streampod::connection", "identity revoked; signing the session out");
            self.change_identity(None).await;
            self.shared.push_error(&ErrorFrame::new(
                ErrorCode::AuthRevoked,
                "the session's identity was revoked: the session is signed out",
            ));
        }
    }

    fn reject(&self, error: &ErrorFrame<'_>) {
        let sent = self.shared.push_error(error);
        if sent {
            tracing::debug!(target: "streampod::connection", code = %error.code, message = %PeerText(&error.message), "rejected frame");
            return;
        }
        // A client without `streampod.v1` gets no error frame (Serverpod's would drop
        // the socket on one): say it in the log instead, so a developer on a raw
        // socket sees why nothing came back.
        static UNANSWERED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
        if let Some(left_out) = UNANSWERED.ready() {
            tracing::info!(target: "streampod::connection", code = %error.code, message = %PeerText(&error.message), left_out, "rejected a frame of a client without the streampod.v1 subprotocol (it gets no error frame; connect with it to see errors)");
        }
    }

    /// Whether a frame for the endpoint with index `endpoint` (or for the session) is
    /// within the inbound rate limit; refuses it, or closes an abusive client, if not.
    fn admit(&mut self, endpoint: Option<usize>) -> bool {
        let (verdict, limit) = self.inbound.take(endpoint);
        let Some(limit) = limit else {
            return true;
        };
        match verdict {
            Verdict::Allowed => true,
            Verdict::Refused => {
                self.server.metrics.rate_limited.inc();
                self.reject(&ErrorFrame::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} frames per second (bursts of {}); this frame was not handled, slow down",
                        limit.per_second, limit.burst
                    ),
                ));
                false
            }
            Verdict::Abusive => {
                close_abusive(&self.shared, limit);
                false
            }
        }
    }

    /// Whether the signed-in user may post one more message (across their sessions and
    /// servers, [`ServerConfig::user_rate_limit`](crate::ServerConfig::user_rate_limit));
    /// refuses it if not. The socket stays: the user's other devices may be the cause.
    fn within_user_budget(&self) -> bool {
        let Some(auth) = self.shared.auth() else {
            return true;
        };
        match self.server.messages.spend_user_budget(&auth.user_id) {
            Ok(()) => true,
            Err((limit, _)) => {
                self.server.metrics.rate_limited.inc();
                self.reject(&ErrorFrame::new(
                    ErrorCode::RateLimited,
                    format!(
                        "this user sent more than {} messages per second across their sessions (bursts of {}); this message was not handled, slow down",
                        limit.per_second, limit.burst
                    ),
                ));
                false
            }
        }
    }

    async fn handle_text(&mut self, text: &str) {
        let frame = Frame::parse(text);
        let endpoint = match &frame {
            Ok(Frame::Message(message)) => self.server.endpoints.index_of(&message.endpoint),
            _ => None,
        };
        if !self.admit(endpoint) {
            return;
        }
        match frame {
            Err(error) => self.reject(&ErrorFrame::new(error.code(), error.to_string())),
            Ok(Frame::Message(message)) => {
                if self.within_user_budget() {
                    self.dispatch(message).await;
                }
            }
            Ok(Frame::Ping) => {
                self.shared.push(TextFrame::from_text(PONG));
            }
            Ok(Frame::Auth { key }) => {
                // Rare, and deep (every stream closes and opens): boxed, see `serve`.
                Box::pin(async {
                    let auth = self.resolve(key.as_deref()).await;
                    self.change_identity(auth).await;
                })
                .await;
            }
            Ok(Frame::Pong) => {}
            Ok(Frame::Recover(recover)) => {
                // At most what the session may join, so an anonymous peer parks no more
                // than a few KiB of positions here.
                let limits = self.server.messages.limits();
                if recover.channels.len() > limits.channels {
                    return self.reject(&ErrorFrame::new(
                        ErrorCode::InvalidFrame,
                        format!(
                            "recover names {} channels; a session may hold at most {}",
                            recover.channels.len(),
                            limits.channels
                        ),
                    ));
                }
                if let Some((channel, _)) = recover
                    .channels
                    .iter()
                    .find(|(channel, _)| channel.len() > limits.channel_name_len)
                {
                    return self.reject(&ErrorFrame::new(
                        ErrorCode::InvalidFrame,
                        format!(
                            "recover names a channel of {} bytes; the limit is {}",
                            channel.len(),
                            limits.channel_name_len
                        ),
                    ));
                }
                if let Some(owned) = self.shared.owned_listeners().as_mut() {
                    owned.set_recovery(recover.channels);
                }
            }
            Ok(_) => self.reject(&ErrorFrame::new(
                ErrorCode::InvalidFrame,
                "clients send endpoint messages and the ping, auth and recover commands only",
            )),
        }
    }

    /// Who `key` signs the session in as; `None` signs out. A key the handler does not
    /// accept gets an `unauthenticated` error frame, and one from an address that sent
    /// too many such keys a `rate_limited` one (either signs out).
    async fn resolve(&self, key: Option<&str>) -> Option<AuthInfo> {
        let key = key?;
        if !self.server.authentication.has_handler() {
            tracing::warn!(target: "streampod::connection", "auth key sent but the server has no authentication handler");
        }
        let peer = self.shared.remote_addr.ip();
        match self.server.authentication.check(peer, &auth::unwrap_key(key)).await {
            KeyCheck::Accepted(auth) => return Some(auth),
            KeyCheck::Refused(refusal) => {
                let code = match refusal {
                    Refusal::Expired => ErrorCode::AuthExpired,
                    Refusal::Revoked => ErrorCode::AuthRevoked,
                    _ => ErrorCode::Unauthenticated,
                };
                self.reject(&ErrorFrame::new(
                    code,
                    format!("{refusal} ({}); the session is signed out", refusal.as_str()),
                ));
            }
            KeyCheck::Throttled(retry_after) => self.reject(&ErrorFrame::new(
                ErrorCode::RateLimited,
                format!("too many refused auth keys from this address: the key was not checked; try again in {retry_after} s (the session is signed out)"),
            )),
        }
        None
    }

    /// Makes `auth` the session's identity. When it differs from the current one (sign
    /// in, sign out, another user, other scopes), every endpoint stream closes under the
    /// old identity, taking what it joined with it, and the endpoints the new identity
    /// may use open again: no channel outlives the identity that joined it.
    /// When the session's identity next needs attention: the notice before its key
    /// expires (for a client that can be told), or the expiry; `None` for a key that
    /// does not expire.
    fn expiry_event(&self) -> Option<tokio::time::Instant> {
        let at = self.shared.auth()?.expires_at?;
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        let wait = if self.shared.is_extended() && !self.shared.expiry_told.load(Ordering::Relaxed) {
            left.saturating_sub(EXPIRY_NOTICE)
        } else {
            left
        };
        Some(tokio::time::Instant::now() + wait)
    }

    async fn change_identity(&mut self, auth: Option<AuthInfo>) {
        let old = self.shared.auth();
        self.shared.expiry_told.store(false, Ordering::Relaxed);
        if let (Some(old), Some(new)) = (&old, &auth) {
            if old.user_id == new.user_id && old.scopes == new.scopes {
                // A fresh key for the same identity (a refreshed token): every stream
                // stays; only the expiry moves.
                self.shared.set_auth(auth);
                return;
            }
        }
        if old.as_deref() == auth.as_ref() {
            return;
        }
        self.close_streams().await;
        self.server.sessions.set_user(
            &self.shared,
            old.as_ref().map(|a| a.user_id.as_str()),
            auth.as_ref().map(|a| a.user_id.as_str()),
        );
        self.shared.set_auth(auth);
        self.open_accessible().await;
    }

    async fn dispatch(&mut self, message: MessageFrame<'_>) {
        let server = self.server.clone();
        let Some(index) = server.endpoints.index_of(&message.endpoint) else {
            let hint = server
                .endpoints
                .closest(&message.endpoint)
                .map(|name| format!(" (did you mean '{name}'?)"))
                .unwrap_or_default();
            return self.reject(
                &ErrorFrame::new(
                    ErrorCode::UnknownEndpoint,
                    format!("no endpoint named '{}'{hint}", message.endpoint),
                )
                .with_endpoint(message.endpoint.as_ref()),
            );
        };
        let Some(registered) = server.endpoints.get(index) else {
            return;
        };
        let refused = |code, text: String| {
            ErrorFrame::new(code, text)
                .with_endpoint(message.endpoint.as_ref())
                .with_class_name(message.class_name.as_ref())
        };
        if let Err(denied) = registered.check_access(self.shared.auth().as_deref()) {
            let frame = match denied {
                Denied::Unauthenticated => refused(
                    ErrorCode::Unauthenticated,
                    format!(
                        "endpoint '{}' requires a signed-in session; send the auth command first",
                        registered.name
                    ),
                ),
                Denied::Forbidden(scope) => refused(
                    ErrorCode::Forbidden,
                    format!(
                        "endpoint '{}' requires the scope '{scope}'",
                        registered.name
                    ),
                ),
            };
            return self.reject(&frame);
        }
        let Some(session) = self.streams[index].clone() else {
            return self.reject(&refused(
                ErrorCode::Internal,
                format!(
                    "endpoint '{}' failed to open this stream; reconnect to retry",
                    registered.name
                ),
            ));
        };
        let decoded = match P::decode(&message.class_name, message.data) {
            Ok(decoded) => decoded,
            Err(error) => {
                let code = match error {
                    DecodeError::UnknownClass { .. } => ErrorCode::UnknownClass,
                    _ => ErrorCode::InvalidData,
                };
                return self.reject(&refused(code, error.to_string()));
            }
        };
        let span = tracing::debug_span!(
            target: "streampod::endpoint",
            "handle_stream_message",
            endpoint = %registered.name,
            class = %message.class_name,
        );
        // The sender's trace goes on here (feature `otel`).
        let span = trace_context::continue_from(span, message.traceparent.as_deref());
        let outcome =
            AssertUnwindSafe(registered.endpoint.handle_stream_message(&session, decoded))
                .catch_unwind()
                .instrument(span.clone())
                .await;
        if let Some(failure) = failure(outcome) {
            span.in_scope(|| {
                tracing::error!(
                    target: "streampod::endpoint",
                    endpoint = %registered.name,
                    class = %message.class_name,
                    error = %ErrorText(&failure),
                    "handle_stream_message failed"
                );
            });
            self.reject(&refused(
                ErrorCode::Internal,
                format!(
                    "endpoint '{}' failed to handle {}",
                    registered.name, message.class_name
                ),
            ));
        }
    }

    /// Runs `stream_opened` for every endpoint the session may access and has not opened.
    async fn open_accessible(&mut self) {
        let server = self.server.clone();
        for (index, registered) in server.endpoints.iter().enumerate() {
            if self.streams[index].is_some() || self.shared.closing.is_raised() {
                continue;
            }
            if registered
                .check_access(self.shared.auth().as_deref())
                .is_err()
            {
                continue;
            }
            let session = StreamingSession::open(
                self.handle.clone(),
                registered.name.clone(),
                self.server.messages.clone(),
            );
            let outcome = AssertUnwindSafe(registered.endpoint.stream_opened(&session))
                .catch_unwind()
                .await;
            match failure(outcome) {
                None => {
                    self.server.metrics.streams(&registered.name).inc();
                    self.streams[index] = Some(session);
                }
                Some(failure) => {
                    // Whatever it joined before failing goes with it.
                    session.end().await;
                    tracing::error!(target: "streampod::endpoint", endpoint = %registered.name, error = %ErrorText(&failure), "stream_opened failed");
                    self.reject(
                        &ErrorFrame::new(
                            ErrorCode::Internal,
                            format!("endpoint '{}' failed to open this stream", registered.name),
                        )
                        .with_endpoint(&*registered.name),
                    );
                }
            }
        }
    }

    /// Runs `stream_closed` for every open stream, then removes what each stream added
    /// to the message central.
    async fn close_streams(&mut self) {
        let server = self.server.clone();
        for (index, registered) in server.endpoints.iter().enumerate() {
            let Some(session) = self.streams[index].take() else {
                continue;
            };
            let outcome = AssertUnwindSafe(registered.endpoint.stream_closed(&session))
                .catch_unwind()
                .await
                .map(Ok::<(), std::convert::Infallible>);
            if let Some(failure) = failure(outcome) {
                tracing::error!(target: "streampod::endpoint", endpoint = %registered.name, error = %ErrorText(&failure), "stream_closed panicked");
            }
            self.server.metrics.streams(&registered.name).dec();
            session.end().await;
        }
    }
}

/// Describes a handler's error or panic, or `None` when it succeeded.
fn failure<E: std::fmt::Display>(
    outcome: Result<Result<(), E>, Box<dyn Any + Send>>,
) -> Option<String> {
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(panic) => Some(panic_message(&*panic)),
    }
}

/// A session served over an in-memory pipe: the whole socket path without a socket.
#[cfg(test)]
#[allow(unreachable_pub)] // the doc models are `pub`
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    use std::sync::atomic::AtomicU64;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::ServerConfig;
    use crate::endpoint::definition::{Endpoint, EndpointError, Endpoints};
    use crate::messages::central::MessageCentral;
    use crate::metrics::Metrics;
    use crate::session::registry::SessionRegistry;
    use crate::session::owned::SessionLimits;

    crate::__doc_models!();

    struct Echo;

    impl Endpoint<Protocol> for Echo {
        async fn handle_stream_message(
            &self,
            session: &StreamingSession<Protocol>,
            message: Protocol,
        ) -> Result<(), EndpointError> {
            session.send_stream_message(message)?;
            Ok(())
        }
    }

    pub(super) fn context() -> Arc<SocketContext<Protocol>> {
        let mut endpoints = Endpoints::default();
        assert!(endpoints.insert("echo", Arc::new(Echo)));
        let sessions = Arc::new(SessionRegistry::default());
        let config = ServerConfig::default();
        let messages = MessageCentral::new(
            sessions.clone(),
            config.outbound_queue_frames,
            SessionLimits {
                channels: 8,
                channel_name_len: 64,
                frame_bytes: config.outbound_queue_bytes,
            },
            tokio::runtime::Handle::current(),
                std::sync::Arc::default(),
        );
        Arc::new(SocketContext {
            endpoints,
            authentication: crate::auth::Authenticator::default(),
            config: Arc::new(config),
            sessions,
            method_sockets: Arc::default(),
            messages,
            metrics: Arc::new(Metrics::new(Box::new(crate::metrics::Snapshot::default))),
            held_bytes: Arc::default(),
            shutdown: CancellationToken::new(),
            next_id: AtomicU64::new(1),
        })
    }

    async fn next_text(
        client: &mut WebSocketStream<tokio::io::DuplexStream>,
    ) -> String {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => return text.as_str().to_owned(),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no text frame: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_session_over_a_pipe_answers_pings_echoes_and_reports_errors() {
        let context = context();
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(run(
            context.clone(),
            server_io,
            SocketAddr::from(([127, 0, 0, 1], 9)),
            None,
            true,
            None,
        ));
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        client
            .send(Message::text(crate::protocol::frame::PING))
            .await
            .unwrap();
        assert_eq!(next_text(&mut client).await, PONG);
        let hello =
            r#"{"endpoint":"echo","object":{"className":"ChatMessage","data":{"content":"hi"}}}"#;
        client.send(Message::text(hello)).await.unwrap();
        let echoed = next_text(&mut client).await;
        assert!(echoed.contains(r#""content":"hi""#), "{echoed}");
        client.send(Message::text("{not json")).await.unwrap();
        let error = next_text(&mut client).await;
        assert!(error.starts_with(r#"{"error":{"code":"#), "{error}");
        assert_eq!(context.sessions.len(), 1);
        client.close(None).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(context.sessions.len(), 0, "the session is gone");
    }
}
/// What every idle socket keeps for its whole life: its two tasks' futures. Boxing the
/// deep, short-lived steps (dispatching, writing a batch, opening, closing) and building
/// the session outside its future keep them small; this fails when a change puts one of
/// those back inline.
#[cfg(test)]
mod idle_size {
    use std::sync::Arc;

    use crate::session::outbound::Limits;
    use crate::session::state::SessionShared;

    #[tokio::test]
    async fn an_idle_session_s_futures_stay_small() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
        let (io, _client) = tokio::io::duplex(64);
        let reader = super::run(super::tests::context(), io, addr, None, true, None);
        let shared = Arc::new(SessionShared::new(
            1,
            addr,
            Limits { frames: 1, bytes: 1 },
            Arc::default(),
            crate::config::SlowConsumerPolicy::Disconnect,
            true,
            tracing::Span::none(),
        ));
        let (_, write) = tokio::io::split(tokio::io::duplex(64).0);
        let histogram = prometheus_client::metrics::histogram::Histogram::new([1.0]);
        let writer = crate::transport::write_task::write_loop(write, shared, None, std::time::Duration::from_secs(1), histogram);
        // Measured 608 and 232 bytes (2,064 and 744 before the boxing; the reader 1,552
        // with tungstenite reading, before the frame reader and the sync `run`/`serve`).
        assert!(std::mem::size_of_val(&reader) <= 640, "{}", std::mem::size_of_val(&reader));
        assert!(std::mem::size_of_val(&writer) <= 320, "{}", std::mem::size_of_val(&writer));
    }
}

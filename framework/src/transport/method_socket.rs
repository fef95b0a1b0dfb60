//! One `/v1/websocket` socket of Serverpod's streaming methods: the reader loop decodes
//! frames (`streampod_protocol::method_stream`) and routes them by call id; each open
//! call is a task of its own that authenticates, runs the method and writes its answer
//! stream through a bounded per-call queue. Closing a call (or the socket) aborts its
//! task, which drops the method's future.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::io::ReadHalf;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use http::StatusCode;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::{AuthInfo, KeyCheck, Revocations};
use crate::messages::membership::release_session;
use crate::transport::close::{close_abusive, pong, triage, Read};
use crate::transport::context::{Io, SocketContext};
use crate::transport::keepalive::Keepalive;
use crate::transport::write_task::write_loop;
use crate::util::flag::Nudge;
use crate::util::panic_text::panic_message;
use crate::util::peer_text::{ErrorText, PeerText};
use crate::util::trace_context;
use crate::ws::deflate::Deflate;
use crate::ws::reader::FrameReader;
use crate::endpoint::server_handle::ServerHandle;
use crate::util::log_limit::RateLimitedLog;
use crate::methods::input::{InputEvent, Inputs};
use crate::messages::feed::{CallFeed, FeedAnswer};
use crate::methods::answer::Answer;
use crate::methods::args::Args;
use crate::methods::registry::MethodEndpoints;
use crate::methods::info::MethodInfo;
use crate::methods::{MethodError, Methods, Session};
use crate::session::outbound::{Limits, Push};
use crate::protocol::method_stream::{
    answer_message_head, CallId, CloseReason, KeyForm, MethodStreamFrame, OpenCall, OpenResult,
    Resume,
    ANSWER_MESSAGE_TAIL,
};
use crate::protocol::history::Position;
use crate::protocol::{auth, ModelSet};
use crate::rate_limit::{InboundLimiter, Verdict};
use crate::session::state::SessionShared;
use crate::ws::frame::{CallFrameShape, TextFrame};
use prometheus_client::metrics::gauge::Gauge;

/// What serving a streaming-method socket needs: the streaming context (configuration,
/// authentication, metrics, shutdown), the method endpoints and the server handle.
pub(crate) struct MethodSocketContext<P: ModelSet> {
    pub(crate) streams: Arc<SocketContext<P>>,
    pub(crate) methods: Arc<MethodEndpoints<P>>,
    pub(crate) handle: ServerHandle<P>,
    /// The shapes of call frames in use, one per method and key form, shared by every
    /// call on every socket: a post frames a value once per shape.
    pub(crate) shapes: CallShapes,
}

/// The shapes of call frames, by endpoint, method and key form. At most two per
/// registered streaming method (one per key form): a call is shaped only once its
/// method was found.
#[derive(Default)]
pub(crate) struct CallShapes(std::sync::Mutex<Vec<Shaped>>);

/// One method's shape in one key form: endpoint, method, form, shape.
type Shaped = (Arc<str>, &'static str, KeyForm, Arc<CallFrameShape>);

impl CallShapes {
    /// The shape of `call`'s answer messages in `form`.
    fn of(&self, endpoint: &Arc<str>, method: &'static str, call: &CallId, form: KeyForm) -> Option<Arc<CallFrameShape>> {
        let mut shapes = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((.., shape)) = shapes
            .iter()
            .find(|(e, m, f, _)| e == endpoint && *m == method && *f == form)
        {
            return Some(shape.clone());
        }
        let head = answer_message_head(call, form);
        let shape = Arc::new(CallFrameShape::around(&head, &call.connection_id.to_string())?);
        shapes.push((endpoint.clone(), method, form, shape.clone()));
        Some(shape)
    }
}

/// The longest part of a bad frame echoed back in a `brm` answer.
const ECHOED_REQUEST: usize = 256;

/// Serves one upgraded `/v1/websocket` socket until it closes. `auth_key`: the
/// handshake's key, used by calls whose open command carries none.
pub(crate) fn run<P: ModelSet>(
    context: Arc<MethodSocketContext<P>>,
    io: impl Io,
    remote_addr: SocketAddr,
    auth_key: Option<String>,
    deflate: Option<Deflate>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let config = &context.streams.config;
    let id = context.streams.next_session_id();
    let span = tracing::info_span!(
        target: "streampod::method_socket",
        "method_socket",
        id,
        peer = %remote_addr,
    );
    let shared = Arc::new(SessionShared::new(
        id,
        remote_addr,
        Limits {
            frames: config.outbound_queue_frames,
            bytes: config.outbound_queue_bytes,
        },
        context.streams.held_bytes.clone(),
        config.slow_consumer,
        false,
        span.clone(),
    ));
    let (read, write) = tokio::io::split(io);
    let reader = FrameReader::new(config.max_frame_size).inflating(deflate);
    let inbound = InboundLimiter::new(config.inbound_rate_limit, std::iter::empty());
    let socket = Socket {
        context,
        shared,
        auth_key: auth_key.map(Arc::from),
        calls: Calls::default(),
        endings: Arc::default(),
        next_serial: 0,
        inbound,
    };
    socket.serve(read, write, reader).instrument(span)
}

/// One open call, as the reader keeps it.
struct Call {
    /// Tells this call from an earlier one that used the same id.
    serial: u64,
    id: CallId,
    /// The key form the client opened it in; its frames are answered in it.
    form: KeyForm,
    /// Input streams by name; `None` once closed.
    inputs: Vec<(String, Option<mpsc::Sender<InputEvent>>)>,
    /// The call's task, until it ends (or hands its feed over).
    task: Option<tokio::task::JoinHandle<()>>,
    /// The feed the call sends from, once its task handed it over: the call lasts
    /// as long as this, and holds no task meanwhile.
    fed: Option<Box<Fed>>,
    /// Who the call is signed in as, once its task authorized it: the call closes when
    /// the key expires or is revoked; an `msa` frame with a fresh key of the same user
    /// and scopes replaces it.
    identity: Identity,
}

/// A call's identity, shared by the reader and the call's task.
type Identity = Arc<IdentityCell>;

/// Who a call is signed in as, and a wake-up for its task when that changes: a lock
/// and a nudge, lighter than a watch channel in every open call.
#[derive(Default)]
struct IdentityCell {
    auth: std::sync::Mutex<Option<Arc<AuthInfo>>>,
    changed: Nudge,
}

impl IdentityCell {
    fn get(&self) -> Option<Arc<AuthInfo>> {
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, auth: Option<Arc<AuthInfo>>) {
        *self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = auth;
        self.changed.raise();
    }
}

/// A socket's open calls, found by connection id. A list, grown one at a time: most
/// sockets hold a call or two, and a map would hold room for four (the search is over
/// at most `max_method_calls_per_socket`).
#[derive(Default)]
struct Calls(Vec<Call>);

impl Calls {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, id: &Uuid) -> Option<&Call> {
        self.0.iter().find(|call| call.id.connection_id == *id)
    }

    fn get_mut(&mut self, id: &Uuid) -> Option<&mut Call> {
        self.0.iter_mut().find(|call| call.id.connection_id == *id)
    }

    fn insert(&mut self, call: Call) {
        if self.0.len() == self.0.capacity() {
            self.0.reserve_exact(self.0.len().max(1));
        }
        self.0.push(call);
    }

    fn remove(&mut self, id: &Uuid) -> Option<Call> {
        let index = self.0.iter().position(|call| call.id.connection_id == *id)?;
        Some(self.0.swap_remove(index))
    }

    fn drain(&mut self) -> std::vec::Drain<'_, Call> {
        self.0.drain(..)
    }

    /// When the first key of a call served from a feed expires.
    fn first_expiry(&self) -> Option<SystemTime> {
        self.0
            .iter()
            .filter(|call| call.fed.is_some())
            .filter_map(|call| call.identity.get()?.expires_at)
            .min()
    }

    /// Takes the calls served from a feed whose identity was revoked (a call with its
    /// own task watches for revocations itself).
    fn take_revoked(&mut self, revocations: &Revocations) -> Vec<Call> {
        self.take_where(|auth| revocations.is_revoked(auth))
    }

    /// Takes the calls served from a feed whose key expired.
    fn take_expired(&mut self) -> Vec<Call> {
        let now = SystemTime::now();
        self.take_where(|auth| auth.expires_at.is_some_and(|at| at <= now))
    }

    /// Takes the calls served from a feed whose identity `lapsed`.
    fn take_where(&mut self, lapsed: impl Fn(&AuthInfo) -> bool) -> Vec<Call> {
        let mut taken = Vec::new();
        let mut index = 0;
        while index < self.0.len() {
            let call = &self.0[index];
            if call.fed.is_some() && call.identity.get().as_deref().is_some_and(&lapsed) {
                taken.push(self.0.swap_remove(index));
            } else {
                index += 1;
            }
        }
        taken
    }
}

impl Call {
    fn abort(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A call whose values go from the message central straight to the socket: its feed,
/// what the call subscribed (released when dropped), and its count among open calls.
struct Fed {
    _feed: Box<dyn CallFeed>,
    _release: Box<dyn Send>,
    _open: OpenCallCount,
}

/// Waits until a call's identity lapses: its key expires (a fresh key replaces it
/// meanwhile), or it is revoked; forever for a call without one.
async fn lapse(identity: Identity, revocations: Arc<Revocations>) {
    let mut changes = revocations.changes();
    loop {
        let Some(auth) = identity.get() else {
            return std::future::pending().await;
        };
        if revocations.is_revoked(&auth) {
            return;
        }
        tokio::select! {
            () = until(auth.expires_at) => return,
            changed = changes.changed() => if changed.is_err() {
                // The server is gone; the expiry still counts.
                return until(auth.expires_at).await;
            },
            () = identity.changed.raised() => {}
        }
    }
}

/// Waits until `at`; forever without one.
async fn until(at: Option<SystemTime>) {
    match at {
        Some(at) => {
            tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await;
        }
        None => std::future::pending().await,
    }
}

/// A call task's end, reported to the reader.
struct Ended {
    connection_id: Uuid,
    serial: u64,
    how: EndedHow,
}

/// Call ends reported to the reader: a list and a wake-up, which hold nothing while
/// no call ends (a channel would hold a block of slots per socket).
#[derive(Default)]
struct Endings {
    ended: std::sync::Mutex<Vec<Ended>>,
    wake: tokio::sync::Notify,
}

impl Endings {
    fn push(&self, ended: Ended) {
        self.ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ended);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Ended> {
        std::mem::take(
            &mut *self
                .ended
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// How a call's task ended.
enum EndedHow {
    /// Refused at opening: the open response was sent.
    Refused,
    /// The answer stream closed with this reason; the task sent the close.
    Closed(CloseReason),
    /// The task handed its feed over: the call goes on without it.
    Fed(Box<Fed>),
    /// A handed-over feed ended on its own (its listener was removed): the reader
    /// closes the call with this reason.
    FeedEnded(CloseReason),
}

struct Socket<P: ModelSet> {
    context: Arc<MethodSocketContext<P>>,
    shared: Arc<SessionShared>,
    auth_key: Option<Arc<str>>,
    calls: Calls,
    endings: Arc<Endings>,
    next_serial: u64,
    inbound: InboundLimiter,
}

impl<P: ModelSet> Socket<P> {
    async fn serve<I: Io>(
        mut self,
        mut read: ReadHalf<I>,
        write: tokio::io::WriteHalf<I>,
        mut reader: FrameReader,
    ) {
        tracing::debug!(target: "streampod::method_socket", "socket opened");
        let registry = self.context.streams.method_sockets.clone();
        registry.insert(self.shared.clone());
        let config = self.context.streams.config.clone();
        let writer = tokio::spawn(
            write_loop(
                write,
                self.shared.clone(),
                reader.deflate(),
                config.close_timeout,
                self.context.streams.metrics.writer_batch_frames.clone(),
            )
            .in_current_span(),
        );
        self.read_loop(&mut read, &mut reader).await;
        if !self.shared.closing.is_raised() {
            self.shared.peer_closed();
        }
        for call in self.calls.drain() {
            call.abort();
        }
        // Whatever a call's clone of its central subscribed after the call ended.
        release_session(&self.context.handle.messages(), &self.shared).await;
        registry.remove(self.shared.id);
        let grace = config.close_timeout + Duration::from_millis(500);
        if tokio::time::timeout(grace, writer).await.is_err() {
            tracing::warn!(target: "streampod::method_socket", "writer did not finish in time");
        }
        tracing::debug!(target: "streampod::method_socket", "socket closed");
    }

    async fn read_loop<I: Io>(&mut self, read: &mut ReadHalf<I>, reader: &mut FrameReader) {
        let shutdown = self.context.streams.shutdown.clone();
        let mut keepalive = Keepalive::for_sockets(&self.context.streams.config);
        loop {
            let deadline = keepalive.deadline();
            tokio::select! {
                biased;
                () = self.shared.closing.raised() => return,
                () = shutdown.cancelled() => {
                    self.shared.close(CloseCode::Away, "server shutting down");
                    return;
                }
                () = self.endings.wake.notified() => {
                    for ended in self.endings.take() {
                        self.ended(ended);
                    }
                }
                () = self.shared.recheck_identity.raised() => {
                    let revocations = self.context.streams.authentication.revocations().clone();
                    for open in self.calls.take_revoked(&revocations) {
                        tracing::debug!(target: "streampod::method_socket", "a call's identity was revoked; closing it");
                        self.closed(&open, CloseReason::Error);
                    }
                }
                () = until(self.calls.first_expiry()) => {
                    // A call lasts no longer than the key it was opened with.
                    for open in self.calls.take_expired() {
                        tracing::debug!(target: "streampod::method_socket", "a call's auth key expired; closing it");
                        self.closed(&open, CloseReason::Error);
                    }
                }
                incoming = reader.next(read) => {
                    keepalive.activity();
                    match triage(&self.shared, incoming) {
                        Read::Text(text) => if let Some((key, form)) = self.handle_text(&text) {
                            // Rare: boxed, so the key check does not enlarge the reader.
                            Box::pin(self.refresh(key, form)).await;
                        },
                        Read::Binary => self.bad_request("(a binary frame)", "binary frames are not supported; send JSON text frames"),
                        Read::Ping(payload) => if self.admit() {
                            pong(&self.shared, &payload);
                        },
                        Read::Nothing => {}
                        Read::Stop => return,
                    }
                }
                () = tokio::time::sleep_until(deadline) => if !keepalive.at_deadline(&self.shared) {
                    return;
                }
            }
        }
    }

    /// Whether a frame is within the inbound rate limit; a client that keeps sending
    /// past it is closed (a refused frame is answered where it is handled).
    fn admit(&mut self) -> bool {
        let (verdict, limit) = self.inbound.take(None);
        let Some(limit) = limit else {
            return true;
        };
        match verdict {
            Verdict::Allowed => true,
            Verdict::Refused => {
                self.context.streams.metrics.rate_limited.inc();
                false
            }
            Verdict::Abusive => {
                close_abusive(&self.shared, limit);
                false
            }
        }
    }

    /// Queues one frame of the socket's own (answers to the reader's input).
    fn send(&self, frame: &MethodStreamFrame, form: KeyForm) {
        self.shared
            .push(TextFrame::from_text(&frame.to_json(form)));
    }

    /// Answers a frame that makes no sense with `brm` and closes the socket, as
    /// Serverpod does (its clients close on `brm` too).
    fn bad_request(&self, request: &str, why: &str) {
        static BAD_INPUT: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(5));
        if let Some(suppressed) = BAD_INPUT.ready() {
            tracing::info!(target: "streampod::method_socket", why = %PeerText(why), suppressed, "closing on a bad request");
        }
        let mut end = request.len().min(ECHOED_REQUEST);
        while !request.is_char_boundary(end) {
            end -= 1;
        }
        let frame = MethodStreamFrame::BadRequest {
            request: request[..end].to_owned(),
        };
        self.send(&frame, KeyForm::Short);
        self.shared
            .close(CloseCode::Policy, &format!("bad request: {why}"));
    }

    /// Handles a text frame; a fresh key (`msa`) is handed back, to be checked with
    /// [`refresh`](Self::refresh).
    fn handle_text(&mut self, text: &str) -> Option<(Option<String>, KeyForm)> {
        let admitted = self.admit();
        let (frame, form) = match MethodStreamFrame::parse(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.bad_request(text, &error.to_string());
                return None;
            }
        };
        if !admitted {
            self.refuse(frame, form);
            return None;
        }
        if let MethodStreamFrame::Auth { key } = frame {
            return Some((key, form));
        }
        self.handle_frame(frame, form, text);
        None
    }

    /// Checks a fresh key sent on the socket (streampod's `msa`): every open call signed
    /// in as the same user with the same scopes takes it (its new expiry), and later
    /// opens without a key of their own use it. A refused key changes nothing.
    async fn refresh(&mut self, key: Option<String>, form: KeyForm) {
        let answer = |result, refreshed, reason: Option<&str>| MethodStreamFrame::AuthResponse {
            result,
            refreshed,
            reason: reason.map(str::to_owned),
        };
        let Some(key) = key else {
            self.auth_key = None;
            return self.send(&answer(OpenResult::Success, 0, None), form);
        };
        let peer = self.shared.remote_addr.ip();
        let checked = self
            .context
            .streams
            .authentication
            .check(peer, &auth::unwrap_key(&key))
            .await;
        let fresh = match checked {
            KeyCheck::Accepted(fresh) => Arc::new(fresh),
            KeyCheck::Refused(refusal) => {
                let frame = answer(OpenResult::AuthenticationFailed, 0, Some(refusal.as_str()));
                return self.send(&frame, form);
            }
            KeyCheck::Throttled(_) => {
                let frame = answer(OpenResult::AuthenticationFailed, 0, Some("rate_limited"));
                return self.send(&frame, form);
            }
        };
        let mut refreshed = 0u32;
        for call in &self.calls.0 {
            let same = call.identity.get().is_some_and(|held| {
                held.user_id == fresh.user_id && held.scopes == fresh.scopes
            });
            if same {
                call.identity.set(Some(fresh.clone()));
                refreshed += 1;
            }
        }
        tracing::debug!(target: "streampod::method_socket", refreshed, "a fresh key for the socket's calls");
        self.auth_key = Some(Arc::from(key));
        self.send(&answer(OpenResult::Success, refreshed, None), form);
    }

    fn handle_frame(&mut self, frame: MethodStreamFrame, form: KeyForm, text: &str) {
        match frame {
            MethodStreamFrame::Ping => self.send(&MethodStreamFrame::Pong, form),
            MethodStreamFrame::Pong | MethodStreamFrame::OpenResponse { .. } => {}
            MethodStreamFrame::Open(open) => self.open(open, form),
            MethodStreamFrame::Message {
                call,
                parameter: Some(parameter),
                object,
                ..
            } => match RawValue::from_string(object) {
                // Input waiting for the socket's methods is held within its byte
                // limit and counted by the memory guard, as what it sends.
                Ok(object) => match self.shared.hold_input(object.get().len()) {
                    Some(held) => {
                        self.feed(&call, &parameter, InputEvent::Value(object, held), form);
                    }
                    // The socket holds as much input as it may: this stream overflows.
                    None => self.overflow(&call, &parameter, form),
                },
                Err(_) => self.bad_request(text, "'o' is not JSON"),
            },
            MethodStreamFrame::Exception {
                call,
                parameter: Some(parameter),
                exception,
            } => match RawValue::from_string(exception) {
                Ok(exception) => {
                    self.feed(&call, &parameter, InputEvent::Exception(exception), form);
                    self.close_input(&call, &parameter, None);
                }
                Err(_) => self.bad_request(text, "'ex' is not JSON"),
            },
            MethodStreamFrame::Message { parameter: None, .. }
            | MethodStreamFrame::Exception { parameter: None, .. } => self.bad_request(
                text,
                "the answer stream is the server's: messages from the client name an input stream ('p')",
            ),
            MethodStreamFrame::Close {
                call,
                parameter: Some(parameter),
                reason,
            } => {
                let event = (reason == CloseReason::Error).then_some(InputEvent::ClosedWithError);
                self.close_input(&call, &parameter, event);
            }
            MethodStreamFrame::Close {
                call,
                parameter: None,
                reason,
            } => self.cancel(&call, reason),
            MethodStreamFrame::BadRequest { request } => {
                tracing::debug!(target: "streampod::method_socket", request = %PeerText(&request), "the client reported a bad request; closing");
                self.shared
                    .close(CloseCode::Normal, "the client reported a bad request");
            }
            // A frame kind added to the protocol later.
            _ => self.bad_request(text, "not a frame a client sends"),
        }
    }

    /// Answers a frame refused by the rate limit in the terms of its kind: an open is
    /// refused, a value's input stream is closed with `error` (the value is lost, and
    /// the method learns so), anything else is dropped.
    fn refuse(&mut self, frame: MethodStreamFrame, form: KeyForm) {
        static REFUSED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(5));
        if let Some(suppressed) = REFUSED.ready() {
            tracing::info!(target: "streampod::method_socket", suppressed, "frame over the inbound rate limit refused");
        }
        match frame {
            MethodStreamFrame::Open(open) => self.send(
                &MethodStreamFrame::OpenResponse {
                    call: open.call,
                    result: OpenResult::InvalidArguments,
                },
                form,
            ),
            MethodStreamFrame::Message {
                call,
                parameter: Some(parameter),
                ..
            } => {
                self.close_input(&call, &parameter, Some(InputEvent::ClosedWithError));
            }
            _ => {}
        }
    }

    fn open(&mut self, open: OpenCall, form: KeyForm) {
        let connection_id = open.call.connection_id;
        if self.calls.get(&connection_id).is_some() {
            return self.bad_request(
                &connection_id.to_string(),
                "a call with this connection id is already open",
            );
        }
        let refuse = |socket: &Self, result: OpenResult, why: &str| {
            tracing::debug!(target: "streampod::method_socket", endpoint = %PeerText(&open.call.endpoint), method = %PeerText(&open.call.method), why = %PeerText(why), result = result.as_str(), "call refused");
            // Only names the server knows become labels.
            let (endpoint, method) = match socket.context.methods.get(&open.call.endpoint) {
                Some((name, methods)) => (
                    name.to_string(),
                    methods
                        .method_table()
                        .iter()
                        .find(|info| info.name == open.call.method)
                        .map_or("unknown", |info| info.name),
                ),
                None => ("unknown".to_owned(), "unknown"),
            };
            socket
                .context
                .streams
                .metrics
                .method_stream_opened(&endpoint, method, result.as_str());
            socket.send(
                &MethodStreamFrame::OpenResponse {
                    call: open.call.clone(),
                    result,
                },
                form,
            );
        };
        let limit = self.context.streams.config.max_method_calls_per_socket;
        if self.calls.len() >= limit {
            static FULL: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(5));
            if let Some(suppressed) = FULL.ready() {
                tracing::warn!(target: "streampod::method_socket", limit, suppressed, "a socket asked for more streaming calls than max_method_calls_per_socket; refused");
            }
            return refuse(self, OpenResult::InvalidArguments, "too many open calls");
        }
        let Some((endpoint, methods)) = self.context.methods.get(&open.call.endpoint).cloned()
        else {
            return refuse(self, OpenResult::EndpointNotFound, "no such endpoint");
        };
        let table = methods.method_table();
        let Some(index) = table.iter().position(|m| m.name == open.call.method) else {
            return refuse(self, OpenResult::EndpointNotFound, "no such method");
        };
        let info: &'static MethodInfo = &table[index];
        if !info.streaming {
            return refuse(
                self,
                OpenResult::EndpointNotFound,
                "not a streaming method (call it over HTTP)",
            );
        }
        let mut requested: Vec<&str> = open.input_streams.iter().map(String::as_str).collect();
        requested.sort_unstable();
        let mut expected: Vec<&str> = info.input_streams.to_vec();
        expected.sort_unstable();
        if requested != expected {
            return refuse(
                self,
                OpenResult::InvalidArguments,
                "the input streams differ from the method's",
            );
        }
        let Ok(args) = serde_json::from_str::<HashMap<String, Box<RawValue>>>(&open.args) else {
            return refuse(self, OpenResult::InvalidArguments, "'args' is not a JSON object");
        };
        let queue = self.context.streams.config.method_stream_queue.max(2);
        let mut inputs = Vec::with_capacity(info.input_streams.len());
        let mut receivers = Vec::with_capacity(info.input_streams.len());
        for name in info.input_streams {
            let (sender, receiver) = mpsc::channel(queue);
            inputs.push(((*name).to_owned(), Some(sender)));
            receivers.push(((*name).to_owned(), receiver));
        }
        // The call's own key, else the handshake's (Serverpod 4's cookie mode has no
        // cookie here: streampod keeps keys out of cookies).
        let key = open
            .authentication
            .map(Arc::from)
            .or_else(|| self.auth_key.clone());
        self.next_serial += 1;
        let serial = self.next_serial;
        let task = CallTask {
            context: self.context.clone(),
            shared: self.shared.clone(),
            methods,
            endpoint,
            index,
            info,
            call: open.call.clone(),
            form,
            resume: open.resume.clone(),
            endings: self.endings.clone(),
            serial,
            identity: Identity::default(),
        };
        let identity = task.identity.clone();
        let span = tracing::debug_span!(target: "streampod::method_socket", "call", endpoint = %open.call.endpoint, method = info.name, cid = %connection_id);
        // The caller's trace, when it sent one (feature `otel`).
        let span = trace_context::continue_from(span, open.traceparent.as_deref());
        let task = tokio::spawn(task.run(key, args, Inputs::new(receivers)).instrument(span));
        self.calls.insert(Call {
            serial,
            id: open.call,
            form,
            inputs,
            task: Some(task),
            fed: None,
            identity,
        });
    }

    /// Hands `event` to an input stream; a value for a stream that is not open, or one
    /// that would overflow its queue, closes that input stream with `error`.
    fn feed(&mut self, call: &CallId, parameter: &str, event: InputEvent, form: KeyForm) {
        let sender = self
            .calls
            .get(&call.connection_id)
            .filter(|open| open.id.endpoint == call.endpoint && open.id.method == call.method)
            .and_then(|open| open.inputs.iter().find(|(name, _)| name == parameter))
            .and_then(|(_, sender)| sender.as_ref());
        let Some(sender) = sender else {
            // Not (or no longer) open: Serverpod answers so.
            return self.send(
                &MethodStreamFrame::Close {
                    call: call.clone(),
                    parameter: Some(parameter.to_owned()),
                    reason: CloseReason::Error,
                },
                form,
            );
        };
        // The last slot is kept for the overflow notice.
        let result = if sender.capacity() > 1 {
            sender.try_send(event).map_err(|_| ())
        } else {
            Err(())
        };
        if result.is_err() {
            self.overflow(call, parameter, form);
        }
    }

    /// Closes an input stream the client sent faster than its method read (past the
    /// stream's queue, or the socket's input bytes) with `error`.
    fn overflow(&mut self, call: &CallId, parameter: &str, form: KeyForm) {
        static OVERFLOW: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(5));
        if let Some(suppressed) = OVERFLOW.ready() {
            tracing::info!(target: "streampod::method_socket", endpoint = %PeerText(&call.endpoint), method = %PeerText(&call.method), parameter = %PeerText(parameter), suppressed, "input stream closed: the client sent faster than the method read (or the method stopped reading)");
        }
        self.close_input(call, parameter, Some(InputEvent::Overflow));
        self.send(
            &MethodStreamFrame::Close {
                call: call.clone(),
                parameter: Some(parameter.to_owned()),
                reason: CloseReason::Error,
            },
            form,
        );
    }

    /// Ends an input stream (after `last`, if any).
    fn close_input(&mut self, call: &CallId, parameter: &str, last: Option<InputEvent>) {
        let Some(open) = self.calls.get_mut(&call.connection_id) else {
            return;
        };
        if let Some((_, sender)) = open.inputs.iter_mut().find(|(name, _)| name == parameter) {
            if let (Some(sender), Some(last)) = (sender.take(), last) {
                // Full or gone: the method ends the stream either way.
                let _ = sender.try_send(last);
            }
        }
    }

    /// The client closed a whole call: its task is aborted (dropping the method's
    /// future), and the close is confirmed.
    fn cancel(&mut self, call: &CallId, reason: CloseReason) {
        let Some(open) = self.calls.remove(&call.connection_id) else {
            return;
        };
        open.abort();
        self.closed(&open, reason);
    }

    /// A call task ended: forget it and close its inputs; or it handed its feed over:
    /// keep that; or that feed ended: close the call.
    fn ended(&mut self, ended: Ended) {
        let Some(open) = self.calls.get_mut(&ended.connection_id) else {
            return;
        };
        if open.serial != ended.serial {
            return;
        }
        if let EndedHow::Fed(fed) = ended.how {
            // The task is done: its handle (and the memory of its future) goes too.
            open.task = None;
            open.fed = Some(fed);
            return;
        }
        let Some(open) = self.calls.remove(&ended.connection_id) else {
            return;
        };
        match ended.how {
            EndedHow::Refused | EndedHow::Fed(_) => {}
            // The task already sent the call's close.
            EndedHow::Closed(reason) => self.close_inputs(&open, reason),
            EndedHow::FeedEnded(reason) => self.closed(&open, reason),
        }
    }

    /// Sends the close of a call and of its inputs still open.
    fn closed(&self, open: &Call, reason: CloseReason) {
        self.send(
            &MethodStreamFrame::Close {
                call: open.id.clone(),
                parameter: None,
                reason,
            },
            open.form,
        );
        self.close_inputs(open, reason);
    }

    fn close_inputs(&self, open: &Call, reason: CloseReason) {
        for (name, sender) in &open.inputs {
            if sender.is_some() {
                self.send(
                    &MethodStreamFrame::Close {
                        call: open.id.clone(),
                        parameter: Some(name.clone()),
                        reason,
                    },
                    open.form,
                );
            }
        }
    }
}

/// Counts one open call in a gauge until dropped.
struct OpenCallCount(Gauge);

impl OpenCallCount {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenCallCount {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The open result for a method that failed before it opened, when the failure is a
/// refusal an HTTP call gets as 400, 401, 403 or 404 (not an exception of the app's).
fn open_refusal(failure: &MethodError) -> Option<OpenResult> {
    if failure.is_exception() {
        return None;
    }
    match failure.status() {
        StatusCode::BAD_REQUEST => Some(OpenResult::InvalidArguments),
        StatusCode::UNAUTHORIZED => Some(OpenResult::AuthenticationFailed),
        StatusCode::FORBIDDEN => Some(OpenResult::AuthorizationDeclined),
        StatusCode::NOT_FOUND => Some(OpenResult::EndpointNotFound),
        _ => None,
    }
}

/// One call, run on a task of its own.
struct CallTask<P: ModelSet> {
    context: Arc<MethodSocketContext<P>>,
    shared: Arc<SessionShared>,
    methods: Arc<dyn Methods<P>>,
    endpoint: Arc<str>,
    index: usize,
    info: &'static MethodInfo,
    call: CallId,
    form: KeyForm,
    /// What the client asked of positions (streampod's clients).
    resume: Option<Resume>,
    endings: Arc<Endings>,
    serial: u64,
    identity: Identity,
}

impl<P: ModelSet> CallTask<P> {
    async fn run(
        self,
        key: Option<Arc<str>>,
        args: HashMap<String, Box<RawValue>>,
        inputs: Inputs,
    ) {
        let how = match self.authorize(key.as_deref()).await {
            Ok(auth) => self.serve(auth, args, inputs).await,
            Err(result) => {
                self.respond(result);
                EndedHow::Refused
            }
        };
        self.endings.push(Ended {
            connection_id: self.call.connection_id,
            serial: self.serial,
            how,
        });
    }

    fn respond(&self, result: OpenResult) {
        self.shared.push(self.open_response(result));
    }

    /// The call's open response, counted in the metrics.
    fn open_response(&self, result: OpenResult) -> TextFrame {
        self.context.streams.metrics.method_stream_opened(
            &self.endpoint,
            self.info.name,
            result.as_str(),
        );
        let frame = MethodStreamFrame::OpenResponse {
            call: self.call.clone(),
            result,
        };
        TextFrame::from_text(&frame.to_json(self.form))
    }

    /// Where the call stands, for a client that asked for positions (`None` for one
    /// that did not): `start` from its feed, if it has one that gives positions.
    fn position_frame(&self, start: Option<(Option<Position>, bool)>) -> Option<TextFrame> {
        let resume = self.resume.as_ref()?;
        let asked_to_recover = matches!(resume, Resume::After(_));
        let (position, recovered) = start.unwrap_or((None, !asked_to_recover));
        let frame = MethodStreamFrame::Position {
            call: self.call.clone(),
            position,
            recovered,
        };
        Some(TextFrame::from_text(&frame.to_json(self.form)))
    }

    /// Who the key signs in, and whether the method lets them in, as for HTTP calls.
    async fn authorize(&self, key: Option<&str>) -> Result<Option<Arc<AuthInfo>>, OpenResult> {
        let auth = match key {
            Some(key) => {
                let peer = self.shared.remote_addr.ip();
                match self.context.streams.authentication.check(peer, &auth::unwrap_key(key)).await {
                    KeyCheck::Accepted(auth) => Some(Arc::new(auth)),
                    KeyCheck::Refused(refusal) => {
                        tracing::debug!(target: "streampod::method_socket", reason = refusal.as_str(), "auth key refused");
                        None
                    }
                    KeyCheck::Throttled(_) => {
                        // Serverpod's clients know no "slow down": a refused sign-in.
                        return Err(OpenResult::AuthenticationFailed);
                    }
                }
            }
            None => None,
        };
        let info = self.info;
        if info.require_login || !info.scopes.is_empty() {
            let Some(auth) = &auth else {
                tracing::debug!(target: "streampod::method_socket", with_key = key.is_some(), "not signed in");
                return Err(OpenResult::AuthenticationFailed);
            };
            if let Some(missing) = info
                .scopes
                .iter()
                .find(|s| !auth.scopes.iter().any(|held| held.as_str() == **s))
            {
                tracing::debug!(target: "streampod::method_socket", scope = missing, "scope missing");
                return Err(OpenResult::AuthorizationDeclined);
            }
        }
        Ok(auth)
    }

    /// Opens the method and forwards its answer stream, or hands its feed over.
    async fn serve(
        &self,
        auth: Option<Arc<AuthInfo>>,
        args: HashMap<String, Box<RawValue>>,
        inputs: Inputs,
    ) -> EndedHow {
        // What the call subscribes is the socket's, under the call's tag, and goes
        // with `_release` when the call ends (or its task is aborted).
        let tag = Arc::from(format!("call {}", self.serial));
        let (messages, release) = self
            .context
            .handle
            .messages()
            .owned_by(
                self.shared.clone(),
                (tag, auth.as_ref().map(|auth| auth.user_id.clone())),
                self.resume.clone(),
            );
        let session = Session {
            auth,
            remote_addr: self.shared.remote_addr,
            endpoint: self.endpoint.clone(),
            method: self.info.name,
            server: self.context.handle.clone(),
            messages,
        };
        let stream = match self.methods.open_stream(
            self.index,
            &session,
            Args::new(args, self.info),
            inputs,
        ) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(target: "streampod::method_socket", error = %PeerText(&error.to_string()), "arguments refused");
                self.respond(OpenResult::InvalidArguments);
                return EndedHow::Refused;
            }
        };
        // A call lasts no longer than its key (a token's `exp`, or a revocation; a fresh
        // key of the same identity sent on the socket moves the expiry).
        self.identity.set(session.auth.clone());
        let lapsed = lapse(
            self.identity.clone(),
            self.context.streams.authentication.revocations().clone(),
        );
        tokio::pin!(lapsed);
        let head = answer_message_head(&self.call, self.form);
        let slots = Arc::new(Semaphore::new(
            self.context.streams.config.method_stream_queue.max(1),
        ));
        let mut stream = AssertUnwindSafe(stream).catch_unwind();
        let mut opened = false;
        // Counted while open; dropped with this future, also when the call is aborted.
        let mut open_calls: Option<OpenCallCount> = None;
        let reason = loop {
            let next = tokio::select! {
                biased;
                () = &mut lapsed => {
                    tracing::debug!(target: "streampod::method_socket", "the call's auth key expired or was revoked; closing it");
                    break CloseReason::Error;
                }
                next = stream.next() => next,
            };
            let failure = match next {
                None => break CloseReason::Done,
                Some(Ok(Answer::Opened)) => {
                    opened = true;
                    self.respond(OpenResult::Success);
                    if let Some(position) = self.position_frame(None) {
                        // A method that streams values of its own gives no positions
                        // (one with inputs that returns a feed says so again later).
                        self.shared.push(position);
                    }
                    open_calls = Some(OpenCallCount::new(
                        self.context
                            .streams
                            .metrics
                            .method_streams(&self.endpoint, self.info.name),
                    ));
                    continue;
                }
                Some(Ok(Answer::Value(object))) => {
                    // A slot frees when the writer has written the frame: a client
                    // that reads slowly pauses this call's stream, not the others.
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        break CloseReason::Error;
                    };
                    let length = head.len() + object.len() + ANSWER_MESSAGE_TAIL.len();
                    let framed = TextFrame::encode(length, |buffer| {
                        buffer.extend_from_slice(head.as_bytes());
                        buffer.extend_from_slice(&object);
                        buffer.extend_from_slice(ANSWER_MESSAGE_TAIL.as_bytes());
                        Ok::<(), std::convert::Infallible>(())
                    });
                    let Ok(frame) = framed;
                    let frame = frame.holding(slot);
                    match self.shared.push(frame) {
                        // A value too large for any socket ends the call as failed
                        // (the session logs it); the socket goes on.
                        Push::Closed | Push::Overflow | Push::TooLarge => {
                            return EndedHow::Closed(CloseReason::Error)
                        }
                        _ => continue,
                    }
                }
                Some(Ok(Answer::Feed(FeedAnswer(feed)))) => {
                    // In a cluster, a resuming call's history read comes back first.
                    feed.ready().await;
                    // The open response (if it still has to go), what the feed holds,
                    // then every post: in order, from the message central.
                    let opening = (!opened).then(|| self.open_response(OpenResult::Success));
                    let first = opening
                        .into_iter()
                        .chain(self.position_frame(feed.start()))
                        .collect();
                    let open = open_calls.take().unwrap_or_else(|| {
                        OpenCallCount::new(
                            self.context
                                .streams
                                .metrics
                                .method_streams(&self.endpoint, self.info.name),
                        )
                    });
                    // Should its listener go while the call is open (the app released
                    // what the call subscribed), the reader closes the call.
                    let endings = self.endings.clone();
                    let (connection_id, serial) = (self.call.connection_id, self.serial);
                    let on_end = Box::new(move || {
                        endings.push(Ended {
                            connection_id,
                            serial,
                            how: EndedHow::FeedEnded(CloseReason::Error),
                        });
                    });
                    let Some(shape) = self.context.shapes.of(&self.endpoint, self.info.name, &self.call, self.form) else {
                        // Never: the head names the call's id.
                        break CloseReason::Error;
                    };
                    feed.send_to(&self.shared, shape, self.call.connection_id, first, on_end);
                    return EndedHow::Fed(Box::new(Fed {
                        _feed: feed,
                        _release: Box::new(release),
                        _open: open,
                    }));
                }
                Some(Ok(Answer::Failed(error))) => error,
                Some(Err(panic)) => MethodError::internal(panic_message(&*panic)),
            };
            if !opened {
                // Refused before it opened, as an HTTP call would be (a limit of the
                // core, bad arguments, no access): the matching open result, and no
                // stream. Anything else (an exception, a panic) still opens, then ends.
                if let Some(refusal) = open_refusal(&failure) {
                    tracing::debug!(target: "streampod::method_socket", error = %PeerText(&failure.to_string()), result = refusal.as_str(), "call refused by the method");
                    self.respond(refusal);
                    return EndedHow::Refused;
                }
                opened = true;
                self.respond(OpenResult::Success);
            }
            if failure.is_exception() {
                let frame = MethodStreamFrame::Exception {
                    call: self.call.clone(),
                    parameter: None,
                    exception: failure.body().to_owned(),
                };
                self.shared
                    .push(TextFrame::from_text(&frame.to_json(self.form)));
            }
            match failure.detail() {
                Some(detail) => {
                    tracing::error!(target: "streampod::method_socket", error = %ErrorText(detail), "streaming method failed");
                }
                None => {
                    tracing::debug!(target: "streampod::method_socket", error = %PeerText(&failure.to_string()), "streaming method ended with an error");
                }
            }
            break CloseReason::Error;
        };
        if !opened {
            self.respond(OpenResult::Success);
        }
        let frame = MethodStreamFrame::Close {
            call: self.call.clone(),
            parameter: None,
            reason,
        };
        self.shared
            .push(TextFrame::from_text(&frame.to_json(self.form)));
        drop(open_calls);
        drop(release);
        EndedHow::Closed(reason)
    }
}

//! Streaming-method calls (Serverpod 2.1+): many calls multiplexed on one socket to
//! `/v1/websocket`, each a typed answer stream with typed input sinks. The socket opens
//! with the first call and is opened again for the next call after it is lost.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::error::BoxError;
use super::transport::{Socket, Transport};
use crate::protocol::history::Position;
use crate::protocol::method_stream::{
    unwrap_value, wrap_value, CallId, CloseReason, KeyForm, MethodStreamFrame, OpenCall,
    OpenResult, Resume, Wrapped,
};
use crate::protocol::wire::WireValue;
use crate::protocol::SerializableModel;
use crate::util::backoff::Backoff;

/// The client pings every 20 s and gives a socket up after 40 s without a frame, as
/// Serverpod's client does.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const IDLE_TIMEOUT: Duration = Duration::from_secs(40);

/// How long an open waits for the server's answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed or ended streaming-method call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamCallError<E> {
    /// The server refused to open the call; the result says why
    /// (`endpointNotFound`, `authenticationFailed`, `authorizationDeclined`,
    /// `invalidArguments`).
    #[error("the server refused the call: {}", .0.as_str())]
    Refused(OpenResult),
    /// The method ended the call with its typed exception `E`.
    #[error("the method ended the call with an exception")]
    Exception(E),
    /// The method ended the call with an exception of another class.
    #[error("the method ended the call with the exception {class_name}")]
    OtherException {
        /// The exception's class.
        class_name: String,
        /// Its data, as JSON text.
        data: String,
    },
    /// The call ended with an error the server did not describe (a failure it logs).
    #[error("the call ended with an error")]
    Failed,
    /// The socket was lost while the call ran, and the call could not go on on a new
    /// one (it gives no positions, takes input streams, or no socket opened again in
    /// [`MAX_RESUME_ATTEMPTS`] tries); open it again to go on.
    #[error("the connection to the server was lost")]
    ConnectionLost,
    /// Not an end: the socket was lost, the call went on on a new one, but what was
    /// posted meanwhile could not all be recovered (too old, or the channel's history
    /// was reset). Values may be missing before the next one; reload what the app
    /// shows if that matters. The stream goes on.
    #[error("the call went on after a lost connection, but values in between may be missing")]
    NotRecovered,
    /// The socket could not be opened.
    #[error("cannot open the streaming-method socket")]
    Connect(#[source] BoxError),
    /// The server did not answer the open in time.
    #[error("the server did not answer the open within {0:?}")]
    Timeout(Duration),
    /// The arguments could not be encoded as a JSON object.
    #[error("the arguments cannot be sent")]
    Arguments(#[source] BoxError),
    /// A value did not decode as the expected type.
    #[error("unexpected value")]
    Decode(#[source] serde_json::Error),
    /// The app read the call's values too slowly: more than `limit` bytes of them waited
    /// ([`MethodClient::max_stream_queue_bytes`](super::MethodClient::max_stream_queue_bytes)),
    /// so the call was closed (the server cancels the method). Open it again and read
    /// faster, or raise the limit.
    #[error("more than {limit} bytes of the call's values waited unread; the call was closed")]
    Overflow {
        /// The limit that was passed.
        limit: usize,
    },
}

/// What one queued value counts against a call's queue besides its text: the event and
/// the string's own bookkeeping.
const VALUE_OVERHEAD: usize = 64;

/// Tries to open a call again after its socket was lost, each after a jittered wait
/// (up to the client's backoff cap), before it ends with
/// [`StreamCallError::ConnectionLost`].
pub const MAX_RESUME_ATTEMPTS: u32 = 8;

/// What the reader hands one call.
#[derive(Debug)]
enum CallEvent {
    /// A value, with its offset when the call has positions.
    Value(String, Option<u64>),
    /// Where the call stands (`msp`): its channel's position, and whether a resume
    /// was recovered.
    Position(Option<Position>, bool),
    Exception(String),
    Closed(CloseReason),
    Lost,
    /// The call's queue passed its limit (in bytes); the reader closed the call.
    Overflow(usize),
}

/// One call as the connection keeps it.
struct Slot {
    opened: Option<oneshot::Sender<OpenResult>>,
    events: mpsc::UnboundedSender<CallEvent>,
    /// Bytes of values waiting in `events` (see [`VALUE_OVERHEAD`]), shared with the
    /// call, which takes them off as it reads.
    queued: Arc<AtomicUsize>,
    /// The most `queued` may reach.
    limit: usize,
}

/// The socket calls share.
pub(crate) struct Connection {
    outgoing: mpsc::UnboundedSender<Message>,
    calls: Mutex<HashMap<Uuid, Slot>>,
    lost: CancellationToken,
}

impl Connection {
    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, frame: &MethodStreamFrame) -> bool {
        self.outgoing
            .send(Message::text(frame.to_json(KeyForm::Short)))
            .is_ok()
    }

    /// Opens the socket and starts its task.
    async fn open(transport: &Transport) -> Result<Arc<Self>, BoxError> {
        let socket = transport.open_method_socket().await?;
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let connection = Arc::new(Self {
            outgoing,
            calls: Mutex::new(HashMap::new()),
            lost: CancellationToken::new(),
        });
        tokio::spawn(serve(connection.clone(), socket, outgoing_rx));
        Ok(connection)
    }

    fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Routes one frame from the server.
    fn route(&self, frame: MethodStreamFrame) {
        let event = match frame {
            MethodStreamFrame::Ping => {
                self.send(&MethodStreamFrame::Pong);
                return;
            }
            MethodStreamFrame::OpenResponse { call, result } => {
                let mut calls = self.calls();
                let Some(slot) = calls.get_mut(&call.connection_id) else {
                    return;
                };
                if let Some(opened) = slot.opened.take() {
                    let _ = opened.send(result);
                }
                if result != OpenResult::Success {
                    calls.remove(&call.connection_id);
                }
                return;
            }
            MethodStreamFrame::Message {
                call,
                parameter: None,
                object,
                at,
            } => (call, CallEvent::Value(object, at)),
            MethodStreamFrame::Position {
                call,
                position,
                recovered,
            } => (call, CallEvent::Position(position, recovered)),
            MethodStreamFrame::Exception {
                call,
                parameter: None,
                exception,
            } => (call, CallEvent::Exception(exception)),
            MethodStreamFrame::Close {
                call,
                parameter: None,
                reason,
            } => (call, CallEvent::Closed(reason)),
            // Closes of input streams (the call's own close follows), pongs, and
            // frames a server does not send.
            MethodStreamFrame::AuthResponse { result, reason, .. }
                if result != OpenResult::Success =>
            {
                tracing::info!(target: "streampod::client", result = result.as_str(), reason = reason.as_deref().unwrap_or("-"), "the server refused the fresh key; the calls keep their old one");
                return;
            }
            _ => return,
        };
        let (call, event) = event;
        let mut calls = self.calls();
        let mut closed = matches!(event, CallEvent::Closed(_));
        if let Some(slot) = calls.get(&call.connection_id) {
            let event = match event {
                CallEvent::Value(object, at) => {
                    let cost = object.len() + VALUE_OVERHEAD;
                    if slot.queued.load(Ordering::Relaxed) + cost > slot.limit {
                        // The app is not reading: close the call rather than hold more.
                        closed = true;
                        self.send(&MethodStreamFrame::Close {
                            call: call.clone(),
                            parameter: None,
                            reason: CloseReason::Done,
                        });
                        CallEvent::Overflow(slot.limit)
                    } else {
                        slot.queued.fetch_add(cost, Ordering::Relaxed);
                        CallEvent::Value(object, at)
                    }
                }
                other => other,
            };
            let _ = slot.events.send(event);
        }
        if closed {
            calls.remove(&call.connection_id);
        }
    }
}

/// Reads, writes and pings the socket until it is lost; then every open call learns so.
async fn serve(
    connection: Arc<Connection>,
    socket: Socket,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
) {
    let (mut write, mut read) = socket.split();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            incoming = read.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    last_heard = tokio::time::Instant::now();
                    match MethodStreamFrame::parse(&text) {
                        Ok((frame, _)) => connection.route(frame),
                        Err(error) => {
                            tracing::warn!(target: "streampod::client", %error, "the server sent a frame that is no streaming-method frame");
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
            },
            message = outgoing.recv() => match message {
                Some(message) => if write.send(message).await.is_err() { break },
                None => break,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= IDLE_TIMEOUT {
                    tracing::debug!(target: "streampod::client", "streaming-method socket silent; giving it up");
                    break;
                }
                let ping = MethodStreamFrame::Ping.to_json(KeyForm::Short);
                if write.send(Message::text(ping)).await.is_err() { break }
            }
        }
    }
    connection.lost.cancel();
    let _ = write.close().await;
    for (_, slot) in connection.calls().drain() {
        // Dropping `opened` tells a pending open; a running call gets `Lost`.
        let _ = slot.events.send(CallEvent::Lost);
    }
}

/// The streaming-method socket of one [`MethodClient`](super::MethodClient): opened for
/// the first call, and again after it was lost.
#[derive(Default)]
pub(crate) struct MethodSocket {
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

/// A call opened on a connection: what a [`StreamCall`] reads from.
struct Opened {
    shared: Arc<CallShared>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    queued: Arc<AtomicUsize>,
}

/// What a call needs to be opened again on a new socket.
struct Reopen {
    socket: Arc<MethodSocket>,
    transport: Arc<Transport>,
    endpoint: String,
    method: String,
    args: String,
    queue_limit: usize,
    backoff: Backoff,
}

impl Reopen {
    /// Opens the call again after `last`, on the socket's current connection or a new
    /// one, waiting a jittered while before each try.
    async fn resume<E: SerializableModel>(
        self: Arc<Self>,
        last: Position,
    ) -> Result<Opened, StreamCallError<E>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Every call of a lost socket resumes at once: spread them out.
            tokio::time::sleep(self.backoff.jittered(attempt)).await;
            let opened = self
                .socket
                .open(
                    &self.transport,
                    (&self.endpoint, &self.method),
                    &self.args,
                    &[],
                    Resume::After(last.clone()),
                    self.queue_limit,
                )
                .await;
            match opened {
                Ok(opened) => return Ok(opened),
                Err(refused @ StreamCallError::Refused(_)) => return Err(refused),
                Err(error) if attempt >= MAX_RESUME_ATTEMPTS => {
                    tracing::debug!(target: "streampod::client", %error, attempt, "a streaming call could not go on after its socket was lost");
                    return Err(StreamCallError::ConnectionLost);
                }
                // The server is gone or refuses sockets (draining): the next address,
                // if the client has several.
                Err(_) => {
                    self.transport.rotate();
                }
            }
        }
    }
}

impl MethodSocket {
    /// Sends a fresh key (`Bearer <key>`) to the open socket, if any (streampod's
    /// `msa`): its calls of the same user go on with it.
    pub(crate) async fn refresh(&self, authorization: &str) {
        let current = self.current.lock().await;
        if let Some(connection) = current.as_ref().filter(|c| !c.is_lost()) {
            connection.send(&MethodStreamFrame::Auth {
                key: Some(authorization.to_owned()),
            });
        }
    }

    /// The current connection, or a new one when there is none or it was lost.
    async fn connection(&self, transport: &Transport) -> Result<Arc<Connection>, BoxError> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref().filter(|c| !c.is_lost()) {
            return Ok(connection.clone());
        }
        let connection = Connection::open(transport).await?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Opens `endpoint.method` with `args` (a JSON object's text) and the input streams
    /// named `inputs`, asking for positions; at most `queue_limit` bytes of its values
    /// wait unread.
    async fn open<E: SerializableModel>(
        &self,
        transport: &Transport,
        (endpoint, method): (&str, &str),
        args: &str,
        inputs: &[&str],
        resume: Resume,
        queue_limit: usize,
    ) -> Result<Opened, StreamCallError<E>> {
        let connection = self
            .connection(transport)
            .await
            .map_err(StreamCallError::Connect)?;
        let call = CallId {
            endpoint: endpoint.to_owned(),
            method: method.to_owned(),
            connection_id: Uuid::new_v4(),
        };
        let (opened_tx, opened) = oneshot::channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        connection.calls().insert(
            call.connection_id,
            Slot {
                opened: Some(opened_tx),
                events: events_tx,
                queued: queued.clone(),
                limit: queue_limit,
            },
        );
        let authentication = transport
            .authorization()
            .and_then(|value| value.to_str().ok().map(str::to_owned));
        // The server's handling of the call continues the caller's trace (feature
        // `otel`).
        #[cfg(feature = "otel")]
        let traceparent = crate::util::trace_context::current();
        #[cfg(not(feature = "otel"))]
        let traceparent = None;
        let open = MethodStreamFrame::Open(OpenCall {
            call: call.clone(),
            args: args.to_owned(),
            input_streams: inputs.iter().map(|name| (*name).to_owned()).collect(),
            authentication,
            auth_mode: None,
            resume: Some(resume),
            traceparent,
        });
        if !connection.send(&open) {
            connection.calls().remove(&call.connection_id);
            return Err(StreamCallError::ConnectionLost);
        }
        let result = match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => return Err(StreamCallError::ConnectionLost),
            Err(_) => {
                connection.calls().remove(&call.connection_id);
                return Err(StreamCallError::Timeout(OPEN_TIMEOUT));
            }
        };
        if result != OpenResult::Success {
            return Err(StreamCallError::Refused(result));
        }
        Ok(Opened {
            shared: Arc::new(CallShared { connection, call }),
            events,
            queued,
        })
    }

    /// Opens `endpoint.method` with `args` and the input streams named `inputs`; at
    /// most `queue_limit` bytes of its values wait unread. A call without input
    /// streams whose method gives positions goes on by itself on a new socket when
    /// its socket is lost, after `backoff`'s jittered waits.
    pub(crate) async fn call<R: WireValue, E: SerializableModel>(
        self: &Arc<Self>,
        transport: &Arc<Transport>,
        (endpoint, method): (&str, &str),
        args: impl Serialize,
        inputs: &[&str],
        (queue_limit, backoff): (usize, Backoff),
    ) -> Result<StreamCall<R, E>, StreamCallError<E>> {
        let args =
            serde_json::to_string(&args).map_err(|e| StreamCallError::Arguments(Box::new(e)))?;
        let opened = self
            .open(
                transport,
                (endpoint, method),
                &args,
                inputs,
                Resume::Fresh,
                queue_limit,
            )
            .await?;
        let reopen = inputs.is_empty().then(|| {
            Arc::new(Reopen {
                socket: self.clone(),
                transport: transport.clone(),
                endpoint: endpoint.to_owned(),
                method: method.to_owned(),
                args,
                queue_limit,
                backoff,
            })
        });
        Ok(StreamCall {
            shared: opened.shared,
            events: opened.events,
            queued: opened.queued,
            ended: false,
            reopen,
            last: None,
            resuming: None,
            resumed: false,
            resumes: 0,
            _types: PhantomData,
        })
    }
}

/// What a call and its input sinks share.
struct CallShared {
    connection: Arc<Connection>,
    call: CallId,
}

/// An open streaming-method call: a [`Stream`] of the method's values, ending when the
/// method ends (an error item, then the end, when it failed). Dropping it closes the
/// call on the server, which cancels the method.
///
/// Values wait here until read, up to the client's
/// [`max_stream_queue_bytes`](super::MethodClient::max_stream_queue_bytes); past it the
/// call is closed and ends with [`StreamCallError::Overflow`].
pub struct StreamCall<R, E> {
    shared: Arc<CallShared>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    /// Bytes of values waiting (shared with the reader).
    queued: Arc<AtomicUsize>,
    ended: bool,
    /// How to open the call again, when it can go on after a lost socket.
    reopen: Option<Arc<Reopen>>,
    /// The position of the last value read (or where the call began): where a resume
    /// starts; `None` while the call gives no positions.
    last: Option<Position>,
    /// The call being opened again.
    resuming: Option<Resuming<E>>,
    /// Opened again; its position frame says whether it recovered.
    resumed: bool,
    resumes: u32,
    _types: PhantomData<fn() -> (R, E)>,
}

/// A call being opened again.
type Resuming<E> =
    Pin<Box<dyn std::future::Future<Output = Result<Opened, StreamCallError<E>>> + Send>>;

impl<R, E> fmt::Debug for StreamCall<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCall")
            .field("endpoint", &self.shared.call.endpoint)
            .field("method", &self.shared.call.method)
            .field("ended", &self.ended)
            .finish()
    }
}

impl<R, E> StreamCall<R, E> {
    /// A sink for the input stream `parameter` (one named when the call was opened).
    pub fn input<T: WireValue>(&self, parameter: &str) -> InputSink<T> {
        InputSink {
            shared: self.shared.clone(),
            parameter: parameter.to_owned(),
            _item: PhantomData,
        }
    }

    /// How many times the call went on on a new socket after its socket was lost.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Closes the call (the server cancels the method); the stream ends.
    pub fn close(&mut self) {
        if !self.ended {
            self.ended = true;
            self.shared
                .connection
                .calls()
                .remove(&self.shared.call.connection_id);
            self.shared.connection.send(&MethodStreamFrame::Close {
                call: self.shared.call.clone(),
                parameter: None,
                reason: CloseReason::Done,
            });
        }
    }
}

impl<R, E> Drop for StreamCall<R, E> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<R: WireValue, E: SerializableModel> StreamCall<R, E> {
    fn event(&mut self, event: CallEvent) -> Option<Result<R, StreamCallError<E>>> {
        match event {
            CallEvent::Value(object, at) => {
                self.queued
                    .fetch_sub(object.len() + VALUE_OVERHEAD, Ordering::Relaxed);
                if let (Some(at), Some(last)) = (at, self.last.as_mut()) {
                    last.offset = at;
                }
                Some(unwrap_value::<R>(&object).map_err(StreamCallError::Decode))
            }
            CallEvent::Position(position, recovered) => {
                let resumed = std::mem::take(&mut self.resumed);
                if !resumed || !recovered {
                    // Where the call (or, unrecovered, its new start) begins.
                    self.last = position;
                }
                (resumed && !recovered).then_some(Err(StreamCallError::NotRecovered))
            }
            CallEvent::Overflow(limit) => {
                self.ended = true;
                Some(Err(StreamCallError::Overflow { limit }))
            }
            CallEvent::Exception(object) => {
                self.ended = true;
                let wrapped = match Wrapped::parse(&object) {
                    Ok(wrapped) => wrapped,
                    Err(error) => return Some(Err(StreamCallError::Decode(error))),
                };
                let data = wrapped.data();
                if wrapped.class_name == E::CLASS_NAME {
                    return Some(match serde_json::from_str::<E>(data) {
                        Ok(exception) => Err(StreamCallError::Exception(exception)),
                        Err(error) => Err(StreamCallError::Decode(error)),
                    });
                }
                Some(Err(StreamCallError::OtherException {
                    class_name: wrapped.class_name,
                    data: data.to_owned(),
                }))
            }
            CallEvent::Closed(reason) => {
                self.ended = true;
                (reason == CloseReason::Error).then_some(Err(StreamCallError::Failed))
            }
            CallEvent::Lost => match (&self.reopen, &self.last) {
                (Some(reopen), Some(last)) => {
                    tracing::debug!(target: "streampod::client", offset = last.offset, "socket lost; resuming the call");
                    self.resuming = Some(Box::pin(reopen.clone().resume(last.clone())));
                    None
                }
                _ => {
                    self.ended = true;
                    Some(Err(StreamCallError::ConnectionLost))
                }
            },
        }
    }
}

impl<R: WireValue, E: SerializableModel> Stream for StreamCall<R, E> {
    type Item = Result<R, StreamCallError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            if let Some(resuming) = self.resuming.as_mut() {
                match resuming.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(opened)) => {
                        self.resuming = None;
                        self.shared = opened.shared;
                        self.events = opened.events;
                        self.queued = opened.queued;
                        self.resumed = true;
                        self.resumes += 1;
                    }
                    Poll::Ready(Err(error)) => {
                        self.resuming = None;
                        self.ended = true;
                        return Poll::Ready(Some(Err(error)));
                    }
                }
            }
            match self.events.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(StreamCallError::ConnectionLost)));
                }
                Poll::Ready(Some(event)) => {
                    if let Some(item) = self.event(event) {
                        return Poll::Ready(Some(item));
                    }
                }
            }
        }
    }
}

/// Sends values on one input stream of a call. Cheap to clone.
pub struct InputSink<T> {
    shared: Arc<CallShared>,
    parameter: String,
    _item: PhantomData<fn(T)>,
}

impl<T> Clone for InputSink<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            parameter: self.parameter.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for InputSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputSink")
            .field("method", &self.shared.call.method)
            .field("parameter", &self.parameter)
            .finish()
    }
}

impl<T: WireValue> InputSink<T> {
    /// Sends `value`. Never waits.
    ///
    /// # Errors
    ///
    /// [`StreamCallError::ConnectionLost`] when the socket is gone (the value was not
    /// sent); [`StreamCallError::Arguments`] when the value cannot be encoded.
    pub fn send<E>(&self, value: &T) -> Result<(), StreamCallError<E>> {
        let object = wrap_value(value).map_err(|e| StreamCallError::Arguments(Box::new(e)))?;
        let frame = MethodStreamFrame::Message {
            call: self.shared.call.clone(),
            parameter: Some(self.parameter.clone()),
            object,
            at: None,
        };
        if self.shared.connection.send(&frame) {
            Ok(())
        } else {
            Err(StreamCallError::ConnectionLost)
        }
    }

    /// Ends the input stream (the method sees its end).
    pub fn close(&self) {
        self.shared.connection.send(&MethodStreamFrame::Close {
            call: self.shared.call.clone(),
            parameter: Some(self.parameter.clone()),
            reason: CloseReason::Done,
        });
    }
}

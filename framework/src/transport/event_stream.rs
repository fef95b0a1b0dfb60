//! The HTTP fallback for endpoint streams, for networks where WebSockets do not pass
//! (proxies that refuse `Upgrade`): the server's frames go out as Server-Sent Events on
//! one long response, the client's frames come in as POSTs bound to the session by an
//! unguessable token.
//!
//! The session is the one a `streampod.v1` WebSocket gets — `endpoint_socket::run`,
//! over an in-memory pipe instead of a TCP socket — so identity, limits, history
//! recovery and metrics are the same by construction. This module only translates: the
//! session's frames, read from the pipe, become events; POSTed frames are written into
//! the pipe as client frames. Keepalive pings are answered only once the event stream
//! took what came before them, so a client that stopped reading is closed as on a
//! socket; a full event stream stops the pipe, and the session's own outbound queue and
//! slow-consumer policy take it from there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::context::SocketContext;
use super::endpoint_socket;
use crate::protocol::ModelSet;
use crate::ws::header::{FrameHeader, OpCode};

/// Bytes the pipe between the session and the event stream buffers each way.
const PIPE_BYTES: usize = 64 << 10;

/// Bytes of the pipe read at once: a fallback session holds this much while it lives,
/// besides what a frame not yet whole keeps.
const READ_CHUNK: usize = 8 << 10;

/// Event-stream chunks waiting for the HTTP connection to take them. Each holds
/// whatever frames one read of the pipe found, so this bounds the bytes held to a few
/// pipe reads.
const PENDING_CHUNKS: usize = 4;

/// The live fallback sessions, by token: where a POST finds its session.
#[derive(Debug, Default)]
pub(crate) struct EventStreams {
    sessions: Mutex<HashMap<String, Arc<Inbox>>>,
}

/// The client's side of a session's pipe, where POSTed frames go.
#[derive(Debug)]
struct Inbox {
    pipe: tokio::sync::Mutex<WriteHalf<DuplexStream>>,
}

/// Why POSTed frames did not reach their session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostError {
    /// No session has this token (it ended, or never was).
    #[error("no fallback session has this token; open a new one")]
    UnknownSession,
    /// The session ended while the frames were written; `accepted` of them reached it.
    #[error("the session ended after taking {accepted} of the frames")]
    Ended {
        /// Frames the session took before it ended.
        accepted: usize,
    },
    /// The session did not take the frames within the time allowed, so it was closed
    /// (a frame cut short cannot be taken back); `accepted` of them reached it.
    #[error("the session did not take the frames in time and was closed after taking {accepted} of them")]
    Stalled {
        /// Frames the session took in time.
        accepted: usize,
    },
}

impl EventStreams {
    /// Opens a fallback session for the client at `peer` (signed in with `auth_key` if
    /// given): the session runs as a task of `tasks`; the returned receiver yields the
    /// event stream, starting with the `session` event that names the token POSTs use,
    /// and ends when the session does.
    pub(crate) fn open<P: ModelSet>(
        self: &Arc<Self>,
        streams: &Arc<SocketContext<P>>,
        tasks: &TaskTracker,
        peer: SocketAddr,
        auth_key: Option<String>,
    ) -> mpsc::Receiver<Bytes> {
        let (server_side, client_side) = tokio::io::duplex(PIPE_BYTES);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let (read, write) = tokio::io::split(client_side);
        let inbox = Arc::new(Inbox {
            pipe: tokio::sync::Mutex::new(write),
        });
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), inbox.clone());
        let (events, stream) = mpsc::channel(PENDING_CHUNKS);
        // A fresh channel has room: the first event cannot fail.
        let _ = events.try_send(Bytes::from(format!(
            "retry: 86400000\nevent: session\ndata: {{\"session\":\"{token}\"}}\n\n"
        )));
        tasks.spawn(endpoint_socket::run(
            streams.clone(),
            server_side,
            peer,
            auth_key,
            true,
            None,
        ));
        let span = tracing::debug_span!(target: "streampod::event_stream", "event_stream", %peer);
        tasks.spawn(
            translate(read, inbox, events, self.clone(), token).instrument(span),
        );
        stream
    }

    /// Writes `frames` (each one client frame's text) into the session of `token`, in
    /// order, within `timeout`; how many it took.
    pub(crate) async fn post(
        &self,
        token: &str,
        frames: &[&RawValue],
        timeout: std::time::Duration,
    ) -> Result<usize, PostError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let inbox = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
            .ok_or(PostError::UnknownSession)?;
        let mut pipe = inbox.pipe.lock().await;
        for (accepted, frame) in frames.iter().enumerate() {
            let frame = client_frame(OpCode::Text, frame.get().as_bytes());
            match tokio::time::timeout_at(deadline, pipe.write_all(&frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(PostError::Ended { accepted }),
                Err(_) => {
                    let _ = pipe.shutdown().await;
                    return Err(PostError::Stalled { accepted });
                }
            }
        }
        Ok(frames.len())
    }

    fn remove(&self, token: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }
}

/// A client frame as the session's reader takes it: final, masked (with a zero key,
/// which leaves the payload as it is).
fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        fin: true,
        compressed: false,
        opcode,
        mask: Some([0; 4]),
        payload_len: payload.len() as u64,
    }
    .format();
    [header.as_slice(), payload].concat()
}

/// Appends the event that carries one text frame: its lines as `data:` lines.
fn append_event(out: &mut Vec<u8>, text: &[u8]) {
    for line in text.split(|&byte| byte == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// What one read of the pipe asks of the translator besides sending events.
#[derive(Default)]
struct Owed {
    /// Pongs to send once the events before them were taken.
    pongs: Vec<Vec<u8>>,
    /// The session closed: reply and end.
    closed: bool,
}

/// Reads the session's frames from the pipe and sends them as events until the session
/// or the event stream ends; then closes the pipe and forgets the token.
async fn translate(
    mut read: ReadHalf<DuplexStream>,
    inbox: Arc<Inbox>,
    events: mpsc::Sender<Bytes>,
    streams: Arc<EventStreams>,
    token: String,
) {
    let mut pending = Vec::new();
    let mut chunk = vec![0; READ_CHUNK];
    // Until the session's end (or the pipe's failure) is read.
    while let Ok(read_len @ 1..) = read.read(&mut chunk).await {
        pending.extend_from_slice(&chunk[..read_len]);
        let mut out = Vec::new();
        let mut owed = Owed::default();
        let consumed = parse_frames(&pending, &mut out, &mut owed);
        pending.drain(..consumed);
        if !out.is_empty() && events.send(Bytes::from(out)).await.is_err() {
            tracing::debug!(target: "streampod::event_stream", "the client left the event stream");
            break;
        }
        let mut pipe = inbox.pipe.lock().await;
        for pong in owed.pongs {
            if pipe.write_all(&client_frame(OpCode::Pong, &pong)).await.is_err() {
                break;
            }
        }
        if owed.closed {
            // The close handshake's answer: the session then ends.
            let _ = pipe.write_all(&client_frame(OpCode::Close, &[])).await;
            break;
        }
    }
    streams.remove(&token);
    // The session reads the end of its input: the client is gone (or answered).
    let _ = inbox.pipe.lock().await.shutdown().await;
}

/// Translates the whole server frames at the start of `bytes` into events (appended to
/// `out`) and what is owed for them; how many bytes they took.
fn parse_frames(bytes: &[u8], out: &mut Vec<u8>, owed: &mut Owed) -> usize {
    let mut at = 0;
    while let Ok(Some((header, len))) = FrameHeader::parse(&bytes[at..]) {
        let Ok(payload_len) = usize::try_from(header.payload_len) else {
            break;
        };
        let end = at + len + payload_len;
        let Some(payload) = bytes.get(at + len..end) else {
            break;
        };
        match header.opcode {
            OpCode::Text => append_event(out, payload),
            OpCode::Ping => {
                // A comment: it keeps proxies from timing the stream out.
                out.extend_from_slice(b": ping\n\n");
                owed.pongs.push(payload.to_vec());
            }
            OpCode::Close => {
                let code = payload
                    .get(..2)
                    .map_or(1005, |code| u16::from_be_bytes([code[0], code[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                let close = serde_json::json!({ "code": code, "reason": reason });
                out.extend_from_slice(format!("event: close\ndata: {close}\n\n").as_bytes());
                owed.closed = true;
                return end;
            }
            _ => {}
        }
        at = end;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::TextFrame;

    #[test]
    fn server_frames_become_events_and_pings_and_closes_are_owed() {
        let mut wire = Vec::new();
        let no_call = || uuid::Uuid::nil().into();
        TextFrame::from_text(r#"{"a":1}"#).append_wire(&mut wire, no_call, None);
        TextFrame::from_text("two\nlines").append_wire(&mut wire, no_call, None);
        wire.extend_from_slice(&crate::ws::control::PING);
        wire.extend_from_slice(&crate::ws::control::close_frame(Some((1001, "bye"))));
        wire.extend_from_slice(b"after the close");
        // Cut inside the second frame: only the first goes.
        let (mut out, mut owed) = (Vec::new(), Owed::default());
        assert_eq!(parse_frames(&wire[..12], &mut out, &mut owed), 9);
        assert_eq!(out, b"data: {\"a\":1}\n\n");
        let (mut out, mut owed) = (Vec::new(), Owed::default());
        let taken = parse_frames(&wire, &mut out, &mut owed);
        assert_eq!(&wire[taken..], b"after the close");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"a\":1}\n\ndata: two\ndata: lines\n\n: ping\n\nevent: close\ndata: {\"code\":1001,\"reason\":\"bye\"}\n\n"
        );
        assert_eq!(owed.pongs, vec![Vec::<u8>::new()]);
        assert!(owed.closed);
    }
}

//! The writer task every socket runs: drain the session's outbound queue, write each
//! batch in a few large writes and flush once, then the close frame.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use tokio::io::{AsyncWriteExt, WriteHalf};

use super::context::Io;
use crate::session::outbound::Batch;
use crate::session::state::SessionShared;
use crate::ws::control::{close_frame, holds_close, PING};
use crate::ws::deflate::Deflate;
use crate::ws::writer::{rest_of_cut_frame, write_frames};

/// Takes everything queued, writes it (compressed where it pays, if the socket
/// negotiated `deflate`), flushes once; repeats until the session closes.
pub(crate) async fn write_loop(
    mut io: WriteHalf<impl Io>,
    shared: Arc<SessionShared>,
    deflate: Option<Deflate>,
    close_timeout: Duration,
    batch_frames: Histogram,
) {
    let mut batch = Batch::default();
    // Every close (graceful or not) closes the queue first, which wakes this loop.
    while shared.outbound.next(&mut batch).await {
        // Precision does not matter here: a count of frames as a histogram value.
        #[allow(clippy::cast_precision_loss)]
        batch_frames.observe(batch.frames.len() as f64);
        // Boxed for the same reason as dispatching: one allocation per write, and the
        // idle writer stays small.
        match Box::pin(write_batch(&mut io, &shared, deflate, &mut batch)).await {
            Written::All => {}
            // The peer's close frame was answered: nothing may follow it.
            Written::Closed => return,
            Written::Aborted(rest) => {
                // Finish the frame the abort cut, so the close frame is read as one.
                let _ = Box::pin(tokio::time::timeout(close_timeout, io.write_all(&rest))).await;
                break;
            }
            Written::Failed => {
                // The peer is gone: there is nobody to send a close frame to.
                shared.peer_closed();
                return;
            }
        }
    }
    // Boxed: it runs once, at the end, and its timers would otherwise sit in the state
    // of every idle session.
    Box::pin(write_last(io, &shared, deflate, &mut batch, close_timeout)).await;
}

/// After the queue closed: what was queued still goes out (unless aborted), then the
/// close frame, each within `close_timeout`.
async fn write_last(
    mut io: WriteHalf<impl Io>,
    shared: &SessionShared,
    deflate: Option<Deflate>,
    batch: &mut Batch,
    close_timeout: Duration,
) {
    if !shared.abort.is_raised() {
        let written = tokio::time::timeout(close_timeout, write_batch(&mut io, shared, deflate, batch)).await;
        if matches!(written, Ok(Written::Closed | Written::Failed)) {
            return;
        }
    }
    let close = shared.take_close_frame();
    let frame = close_frame(close.as_ref().map(|c| (u16::from(c.code), c.reason.as_str())));
    let _ = tokio::time::timeout(close_timeout, async {
        io.write_all(&frame).await?;
        io.flush().await
    })
    .await;
}

/// How writing a batch ended.
enum Written {
    All,
    /// The batch ended with the answer to the peer's close frame.
    Closed,
    /// The session was aborted mid-write; what was left is dropped but for the rest of
    /// the frame the abort cut.
    Aborted(Vec<u8>),
    /// The socket failed.
    Failed,
}

/// Writes one batch (taken from the queue): its frames, then the reader's answers and
/// a ping, in chunks of up to 64 KiB; flushes once.
async fn write_batch(
    io: &mut WriteHalf<impl Io>,
    shared: &SessionShared,
    deflate: Option<Deflate>,
    batch: &mut Batch,
) -> Written {
    if batch.frames.is_empty() && batch.control.is_empty() && !batch.ping {
        return Written::All;
    }
    let closes = holds_close(&batch.control);
    let mut tail = std::mem::take(&mut batch.control);
    if std::mem::take(&mut batch.ping) && !closes {
        tail.extend_from_slice(&PING);
    }
    // The write goes first: most batches complete without waiting, and then the abort
    // token is never polled (polling it registers a waker under its lock).
    let mut took = 0;
    let written = tokio::select! {
        biased;
        result = write_frames(io, &batch.frames, |queued| batch.call_id(queued), deflate, &tail, &mut took) => match result {
            Ok(()) if closes => Written::Closed,
            Ok(()) => Written::All,
            Err(error) => {
                tracing::debug!(target: "streampod::connection", %error, "write failed");
                Written::Failed
            }
        },
        // Cut short; when the cut batch held the answer to the peer's close, no second
        // close frame follows.
        () = shared.abort.raised() => if closes {
            Written::Closed
        } else {
            Written::Aborted(rest_of_cut_frame(&batch.frames, |queued| batch.call_id(queued), deflate, &tail, took))
        },
    };
    batch.frames.clear();
    written
}


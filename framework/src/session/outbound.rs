//! A session's bounded outbound queue: senders never wait; the writer task takes
//! everything queued at once and flushes once per batch. Each queued frame remembers the
//! channel it came from, so per-channel slow-consumer policies act on that channel only.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use uuid::Uuid;

use crate::ws::frame::{CallIdText, TextFrame};

use crate::config::SlowConsumerPolicy;

/// The channel a frame came from; [`DIRECT`] for frames sent to the session itself.
pub(crate) type ChannelKey = u64;

/// The key of frames that did not come through a channel.
pub(crate) const DIRECT: ChannelKey = 0;

/// What happened to a frame offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued for the writer.
    Queued,
    /// Queued after dropping this many older frames (`DropOldest`), or replacing the
    /// channel's pending frame (`LatestValue`, counted as one).
    QueuedDropping(usize),
    /// Not queued: the queue is full and the channel's older frames could not make
    /// enough room. Counts every frame dropped, this one and older ones of the
    /// channel that went trying.
    Dropped(usize),
    /// The queue is full and the policy is `Disconnect`: the caller closes the session.
    Overflow,
    /// The session is closing; the frame was not queued.
    Closed,
    /// Not queued: the frame alone is larger than the queue's byte cap, so no reader
    /// could ever take it. The session is not at fault and stays open.
    TooLarge,
}

/// Limits of one queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
}

/// The bytes every session's queue holds, server-wide, for the memory guard. Queues
/// report in steps of [`TotalHeld::STEP`], so a queue holding less (any healthy one)
/// never touches this shared counter.
#[derive(Debug, Default)]
pub(crate) struct TotalHeld(AtomicUsize);

impl TotalHeld {
    /// The reporting step: 16 KiB.
    pub(crate) const STEP: usize = 16 << 10;

    /// Bytes held, rounded down per queue to a multiple of [`TotalHeld::STEP`].
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A frame waiting to be written.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) channel: ChannelKey,
    pub(crate) frame: TextFrame,
}

impl AsRef<TextFrame> for Queued {
    fn as_ref(&self) -> &TextFrame {
        &self.frame
    }
}

impl Batch {
    /// The id of the call `queued` (a call frame) goes to; the nil id if it has none
    /// (never: a call is named before its first frame, and forgotten after its last).
    pub(crate) fn call_id(&self, queued: &Queued) -> CallIdText {
        self.calls
            .iter()
            .flat_map(|calls| calls.iter())
            .find(|call| call.key == queued.channel)
            .map_or_else(|| Uuid::nil().into(), |call| call.id)
    }
}

/// The id of the call whose frames carry a queue key, as the writer puts it into
/// them (a call frame is shared by every call; see `ws::frame`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallName {
    key: ChannelKey,
    id: CallIdText,
    /// The call ended: the name goes once no frame of it is left.
    ended: bool,
}

/// What the writer takes in one go.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) frames: VecDeque<Queued>,
    /// The names of the calls whose frames are among `frames` (shared with the queue
    /// until a call is named or forgotten); `None` on a socket without calls.
    calls: Option<Arc<Vec<CallName>>>,
    /// The reader's answers (pongs, the reply to a close frame), sent after `frames`.
    pub(crate) control: Vec<u8>,
    /// Send a WebSocket ping after the frames.
    pub(crate) ping: bool,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Queued>,
    bytes: usize,
    /// Bytes of the batch the writer took and is still writing: they are still held, so
    /// they count against the byte limit until the writer asks for the next batch.
    in_flight: usize,
    /// Bytes that came in and wait for the socket's methods (streaming-method inputs):
    /// at most the byte limit too, and counted in the server-wide total.
    input: usize,
    /// Whole frames the reader queued as answers; see [`Batch::control`].
    control: Vec<u8>,
    /// The calls this socket's call frames go to (a streaming-method socket's; `None`
    /// until one is named).
    calls: Option<Arc<Vec<CallName>>>,
    ping: bool,
    closed: bool,
    /// The writer task, parked because there was nothing to write. A push takes it out
    /// and wakes it; a push to a queue whose writer is busy costs no wake-up at all.
    writer: Option<Waker>,
    /// What this queue last added to the server-wide [`TotalHeld`].
    reported: usize,
}

impl State {
    fn is_full(&self, limits: Limits, len: usize) -> bool {
        self.frames.len() >= limits.frames || self.bytes + self.in_flight + len > limits.bytes
    }

    /// Removes the oldest frame of `channel`; `false` when there is none.
    fn drop_oldest_of(&mut self, channel: ChannelKey) -> bool {
        match self.frames.iter().position(|q| q.channel == channel) {
            Some(index) => {
                if let Some(old) = self.frames.remove(index) {
                    self.bytes -= old.frame.len();
                }
                true
            }
            None => false,
        }
    }
}

/// Bytes of the reader's answers (pongs) that may wait for the writer: about seven
/// pongs of the largest ping.
pub(crate) const CONTROL_LIMIT: usize = 1024;

/// Deques up to this capacity are released whenever the queue goes idle.
const SMALL_DEQUE: usize = 16;

/// Frees an empty deque's buffer.
fn release(frames: &mut VecDeque<Queued>) {
    if frames.is_empty() && frames.capacity() > 0 {
        *frames = VecDeque::new();
    }
}

/// The queue between senders (any task) and the connection's writer task.
#[derive(Debug)]
pub(crate) struct Outbound {
    state: Mutex<State>,
    limits: Limits,
    total: Arc<TotalHeld>,
}

impl Outbound {
    pub(crate) fn new(limits: Limits, total: Arc<TotalHeld>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            limits,
            total,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only plain data behind; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Brings the server-wide total up to date with `state`, in whole steps.
    fn report(&self, state: &mut State) {
        let held =
            (state.bytes + state.in_flight + state.input) / TotalHeld::STEP * TotalHeld::STEP;
        if held != state.reported {
            if held > state.reported {
                self.total
                    .0
                    .fetch_add(held - state.reported, Ordering::Relaxed);
            } else {
                self.total
                    .0
                    .fetch_sub(state.reported - held, Ordering::Relaxed);
            }
            state.reported = held;
        }
    }

    /// The queue's byte cap: no single frame larger than it is taken.
    pub(crate) fn byte_limit(&self) -> usize {
        self.limits.bytes
    }

    /// Offers a frame from `channel` under `policy`. Never waits.
    pub(crate) fn push(
        &self,
        frame: TextFrame,
        channel: ChannelKey,
        policy: SlowConsumerPolicy,
    ) -> Push {
        let len = frame.len();
        if len > self.limits.bytes {
            return Push::TooLarge;
        }
        let mut state = self.lock();
        if state.closed {
            return Push::Closed;
        }
        let mut dropped = 0;
        if policy == SlowConsumerPolicy::LatestValue && channel != DIRECT {
            if let Some(index) = state.frames.iter().position(|q| q.channel == channel) {
                // Behind on this channel: the newest value takes the old one's place.
                let old_len = state.frames[index].frame.len();
                state.bytes = state.bytes - old_len + len;
                state.frames[index].frame = frame;
                self.report(&mut state);
                return Push::QueuedDropping(1);
            }
        }
        while state.is_full(self.limits, len) {
            match policy {
                SlowConsumerPolicy::Disconnect => return Push::Overflow,
                SlowConsumerPolicy::DropOldest | SlowConsumerPolicy::LatestValue => {
                    if !state.drop_oldest_of(channel) {
                        // Room cannot be made: the new frame is dropped (older ones of
                        // its channel may have gone already).
                        self.report(&mut state);
                        return Push::Dropped(dropped + 1);
                    }
                    dropped += 1;
                }
            }
        }
        state.bytes += len;
        state.frames.push_back(Queued { channel, frame });
        self.report(&mut state);
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
        if dropped == 0 {
            Push::Queued
        } else {
            Push::QueuedDropping(dropped)
        }
    }

    /// Asks the writer to send a WebSocket ping. The keepalive asks after a quiet
    /// while: an empty queue gives its deque's memory back then, whatever its size.
    pub(crate) fn ping(&self) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.ping = true;
        if state.frames.is_empty() {
            release(&mut state.frames);
        }
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// Queues the reader's answers (pongs, the reply to a close frame), to go
    /// out after the data frames queued so far. Ignored once the queue is closed. Pongs
    /// (`essential` false) are dropped while [`CONTROL_LIMIT`] bytes wait: a peer that
    /// pings without reading must not grow the queue, and RFC 6455 §5.5.3 lets a pong
    /// answer only the latest ping. Returns whether the bytes were queued.
    pub(crate) fn push_control(&self, bytes: &[u8], essential: bool) -> bool {
        let mut state = self.lock();
        if state.closed || (!essential && state.control.len() + bytes.len() > CONTROL_LIMIT) {
            return false;
        }
        state.control.extend_from_slice(bytes);
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
        true
    }

    /// Stops accepting frames. With `discard`, frames already queued are dropped too
    /// (the reader's answers are kept: a reply to the peer's close frame goes out).
    pub(crate) fn close(&self, discard: bool) {
        let mut state = self.lock();
        state.closed = true;
        if discard {
            state.frames.clear();
            state.bytes = 0;
            state.ping = false;
        }
        self.report(&mut state);
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// Waits until something is queued or the queue is closed, then moves everything
    /// queued into `batch` (whose deque is empty and is swapped in, so the two buffers'
    /// capacity is reused). Returns `false` once the queue is closed: `batch` then holds
    /// the last frames. Only one task (the writer) may wait at a time.
    pub(crate) async fn next(&self, batch: &mut Batch) -> bool {
        poll_fn(|cx| {
            let mut state = self.lock();
            // Asking again means the previous batch has been written.
            state.in_flight = 0;
            if state.frames.is_empty()
                && state.control.is_empty()
                && !state.ping
                && !state.closed
            {
                self.report(&mut state);
                state.writer = Some(cx.waker().clone());
                // Idle with small deques: they give their memory back. Grown ones are
                // kept (their connection is busy, and regrowing per batch costs) until
                // a keepalive ping finds the queue idle.
                if state.frames.capacity() <= SMALL_DEQUE {
                    release(&mut state.frames);
                    release(&mut batch.frames);
                }
                return Poll::Pending;
            }
            std::mem::swap(&mut state.frames, &mut batch.frames);
            state.in_flight = std::mem::take(&mut state.bytes);
            if let Some(calls) = state.calls.as_mut() {
                if calls.iter().any(|call| call.ended) {
                    // Ended calls whose last frames were written (everything queued is
                    // in the batch now) are forgotten.
                    let frames = &batch.frames;
                    Arc::make_mut(calls).retain(|call| {
                        !call.ended || frames.iter().any(|q| q.channel == call.key)
                    });
                }
                // The names the batch's frames need.
                if !batch.calls.as_ref().is_some_and(|held| Arc::ptr_eq(held, calls)) {
                    batch.calls = Some(calls.clone());
                }
            }
            self.report(&mut state);
            batch.ping = std::mem::take(&mut state.ping);
            if batch.ping && batch.frames.is_empty() {
                // A keepalive ping of an idle queue: the writer's deque goes too.
                release(&mut state.frames);
            }
            // Taken, not swapped: answers are rare, so no buffer is kept for them.
            batch.control = std::mem::take(&mut state.control);
            Poll::Ready(!state.closed)
        })
        .await
    }

    /// Bytes held for this session: queued, and taken by the writer but not yet written.
    pub(crate) fn held_bytes(&self) -> usize {
        let state = self.lock();
        state.bytes + state.in_flight + state.input
    }

    /// Holds `bytes` that came in for the socket's methods, unless that passes the byte
    /// limit; `false` then.
    pub(crate) fn hold_input(&self, bytes: usize) -> bool {
        let mut state = self.lock();
        if state.input + bytes > self.limits.bytes {
            return false;
        }
        state.input += bytes;
        self.report(&mut state);
        true
    }

    /// Gives back `bytes` of [`hold_input`](Self::hold_input).
    pub(crate) fn release_input(&self, bytes: usize) {
        let mut state = self.lock();
        state.input = state.input.saturating_sub(bytes);
        self.report(&mut state);
    }

    /// Names the call whose call frames are queued with `key`: the writer writes `id`
    /// into them.
    pub(crate) fn name_call(&self, key: ChannelKey, id: Uuid) {
        let mut state = self.lock();
        let calls = Arc::make_mut(state.calls.get_or_insert_with(Arc::default));
        calls.retain(|call| call.key != key);
        // Most sockets hold a call or two: no room for four.
        calls.reserve_exact(1);
        calls.push(CallName {
            key,
            id: id.into(),
            ended: false,
        });
    }

    /// The call queued with `key` ended: its name goes once its frames are written.
    pub(crate) fn end_call(&self, key: ChannelKey) {
        let mut state = self.lock();
        let Some(calls) = state.calls.as_mut() else {
            return;
        };
        if let Some(call) = Arc::make_mut(calls).iter_mut().find(|call| call.key == key) {
            call.ended = true;
        }
    }

    /// Frames waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SlowConsumerPolicy::{Disconnect, DropOldest, LatestValue};

    fn queue(frames: usize, bytes: usize) -> Outbound {
        Outbound::new(Limits { frames, bytes }, Arc::default())
    }

    fn frame(text: &str) -> TextFrame {
        TextFrame::from_text(text)
    }

    fn drain(q: &Outbound) -> Vec<(ChannelKey, String)> {
        let mut batch = Batch::default();
        // Ready at once when something is queued; pending (nothing taken) otherwise.
        let _ = futures_util::FutureExt::now_or_never(q.next(&mut batch));
        batch
            .frames
            .iter()
            .map(|q| (q.channel, q.frame.text().into_owned()))
            .collect()
    }

    #[test]
    fn disconnect_policy_reports_overflow_by_frames_and_bytes() {
        let q = queue(2, 100);
        assert_eq!(q.push(frame("a"), DIRECT, Disconnect), Push::Queued);
        assert_eq!(q.push(frame("b"), DIRECT, Disconnect), Push::Queued);
        assert_eq!(q.push(frame("c"), DIRECT, Disconnect), Push::Overflow);
        let q = queue(10, 5);
        assert_eq!(q.push(frame("abc"), DIRECT, Disconnect), Push::Queued);
        assert_eq!(q.push(frame("abc"), DIRECT, Disconnect), Push::Overflow);
    }

    #[test]
    fn drop_oldest_drops_only_its_own_channel() {
        let q = queue(3, 100);
        q.push(frame("x1"), 7, Disconnect);
        q.push(frame("a1"), 1, DropOldest);
        q.push(frame("a2"), 1, DropOldest);
        assert_eq!(q.push(frame("a3"), 1, DropOldest), Push::QueuedDropping(1));
        // Channel 2 has nothing queued to give up: its new frame is dropped instead.
        assert_eq!(q.push(frame("b1"), 2, DropOldest), Push::Dropped(1));
        assert_eq!(
            drain(&q),
            [(7, "x1".into()), (1, "a2".into()), (1, "a3".into())]
        );
        assert_eq!(
            q.push(frame("e"), DIRECT, DropOldest),
            Push::Queued,
            "taking the batch freed the space"
        );
    }

    #[test]
    fn the_batch_being_written_counts_against_the_byte_limit() {
        let q = queue(100, 10);
        assert_eq!(q.push(frame("12345678"), DIRECT, Disconnect), Push::Queued);
        let mut batch = Batch::default();
        assert_eq!(
            futures_util::FutureExt::now_or_never(q.next(&mut batch)),
            Some(true)
        );
        assert_eq!(q.held_bytes(), 8, "taken but not yet written");
        assert_eq!(q.push(frame("abc"), DIRECT, Disconnect), Push::Overflow);
        batch.frames.clear();
        // The writer asking again (and parking) releases the written batch.
        assert_eq!(
            futures_util::FutureExt::now_or_never(q.next(&mut batch)),
            None
        );
        assert_eq!(q.held_bytes(), 0);
        assert_eq!(q.push(frame("abc"), DIRECT, Disconnect), Push::Queued);
    }

    #[test]
    fn queues_report_what_they_hold_in_steps() {
        let total = Arc::new(TotalHeld::default());
        let limits = Limits {
            frames: 1000,
            bytes: 1 << 20,
        };
        let (a, b) = (
            Outbound::new(limits, total.clone()),
            Outbound::new(limits, total.clone()),
        );
        let big = TextFrame::from_text(&"x".repeat(TotalHeld::STEP));
        a.push(frame("small"), DIRECT, Disconnect);
        assert_eq!(total.get(), 0, "less than a step is not reported");
        a.push(big.clone(), DIRECT, Disconnect);
        b.push(big.clone(), DIRECT, Disconnect);
        b.push(big, DIRECT, Disconnect);
        assert_eq!(total.get(), 3 * TotalHeld::STEP);
        b.close(true);
        assert_eq!(total.get(), TotalHeld::STEP);
        let mut batch = Batch::default();
        let _ = futures_util::FutureExt::now_or_never(a.next(&mut batch));
        assert_eq!(
            total.get(),
            TotalHeld::STEP,
            "the batch being written still counts"
        );
        let _ = futures_util::FutureExt::now_or_never(a.next(&mut batch));
        assert_eq!(total.get(), 0);
    }

    #[test]
    fn pongs_are_capped_while_the_writer_is_behind_and_a_close_answer_is_not() {
        let q = queue(10, 100);
        let pong = [0x8a, 125].iter().copied().chain([b'p'; 125]).collect::<Vec<u8>>();
        let mut queued = 0;
        for _ in 0..100 {
            queued += usize::from(q.push_control(&pong, false));
        }
        assert_eq!(queued, CONTROL_LIMIT / pong.len(), "pongs beyond the limit dropped");
        assert!(q.push_control(&[0x88, 0], true), "the close answer still goes out");
        let mut batch = Batch::default();
        let _ = futures_util::FutureExt::now_or_never(q.next(&mut batch));
        assert_eq!(batch.control.len(), queued * pong.len() + 2);
        assert!(q.push_control(&pong, false), "taken by the writer: room again");
    }

    #[test]
    fn a_grown_queue_keeps_its_deques_until_a_keepalive_ping_finds_it_idle() {
        let q = queue(1000, 1 << 20);
        let mut batch = Batch::default();
        for _ in 0..100 {
            q.push(frame("x"), DIRECT, Disconnect);
        }
        let _ = futures_util::FutureExt::now_or_never(q.next(&mut batch));
        batch.frames.clear();
        for _ in 0..100 {
            q.push(frame("x"), DIRECT, Disconnect);
        }
        let _ = futures_util::FutureExt::now_or_never(q.next(&mut batch));
        batch.frames.clear();
        // Idle, but grown: kept, so a busy connection does not regrow them per batch.
        assert!(futures_util::FutureExt::now_or_never(q.next(&mut batch)).is_none());
        assert!(batch.frames.capacity() >= 100);
        // The keepalive's ping: the queue's deque goes at once, the writer's with the
        // ping's batch.
        q.ping();
        assert_eq!(q.lock().frames.capacity(), 0);
        assert_eq!(futures_util::FutureExt::now_or_never(q.next(&mut batch)), Some(true));
        assert!(batch.ping);
        assert_eq!(batch.frames.capacity(), 0, "swapped with the released deque");
    }

    #[test]
    fn an_idle_queue_holds_no_memory_and_a_busy_one_keeps_its_capacity() {
        let q = queue(100, 1 << 20);
        let mut batch = Batch::default();
        for _ in 0..10 {
            q.push(frame("x"), DIRECT, Disconnect);
        }
        let _ = futures_util::FutureExt::now_or_never(q.next(&mut batch));
        assert!(batch.frames.capacity() >= 10);
        batch.frames.clear();
        q.push(frame("y"), DIRECT, Disconnect);
        // Busy: frames are waiting, so the batch's deque is reused.
        let _ = futures_util::FutureExt::now_or_never(q.next(&mut batch));
        assert_eq!(batch.frames.len(), 1);
        batch.frames.clear();
        // Idle: nothing waits, both deques are released.
        assert!(futures_util::FutureExt::now_or_never(q.next(&mut batch)).is_none());
        assert_eq!(batch.frames.capacity(), 0);
        assert_eq!(q.lock().frames.capacity(), 0);
    }

    #[test]
    fn a_frame_that_cannot_fit_counts_what_went_trying() {
        let q = queue(10, 10);
        q.push(frame("aaaa"), 1, DropOldest);
        q.push(frame("bbbb"), 2, DropOldest);
        assert_eq!(
            q.push(frame("ccccccccc"), 1, DropOldest),
            Push::Dropped(2),
            "the older frame of channel 1 went, and the new one did not fit"
        );
        assert_eq!(drain(&q), [(2, "bbbb".into())]);
    }

    #[test]
    fn latest_value_replaces_the_pending_frame_in_place() {
        let q = queue(10, 100);
        q.push(frame("t1"), 3, LatestValue);
        q.push(frame("other"), 4, Disconnect);
        assert_eq!(q.push(frame("t2"), 3, LatestValue), Push::QueuedDropping(1));
        assert_eq!(q.push(frame("t3"), 3, LatestValue), Push::QueuedDropping(1));
        assert_eq!(drain(&q), [(3, "t3".into()), (4, "other".into())]);
        // Nothing pending: the next value is simply queued.
        assert_eq!(q.push(frame("t4"), 3, LatestValue), Push::Queued);
    }

    #[test]
    fn closed_queue_refuses_and_discards() {
        let q = queue(8, 100);
        q.push(frame("a"), DIRECT, Disconnect);
        q.close(true);
        assert_eq!(q.len(), 0);
        assert_eq!(q.push(frame("b"), DIRECT, Disconnect), Push::Closed);
    }

    #[tokio::test]
    async fn a_push_wakes_the_writer_and_a_close_ends_it() {
        let q = std::sync::Arc::new(queue(8, 100));
        let writer = tokio::spawn({
            let q = q.clone();
            async move {
                let mut batch = Batch::default();
                let mut seen = Vec::new();
                while q.next(&mut batch).await {
                    seen.extend(batch.frames.drain(..).map(|f| f.frame.text().into_owned()));
                }
                seen.extend(batch.frames.drain(..).map(|f| f.frame.text().into_owned()));
                seen
            }
        });
        q.push(frame("a"), DIRECT, Disconnect);
        tokio::task::yield_now().await;
        q.push(frame("b"), DIRECT, Disconnect);
        q.close(false);
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(seen, ["a", "b"]);
    }
}

//! A session's bounded outbound queue: senders never wait; the writer task takes
//! everything queued at once and flushes once per batch.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::SlowConsumerPolicy;

/// What happened to a frame offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued for the writer.
    Queued,
    /// Queued after dropping this many older frames (`DropOldest`).
    QueuedDroppingOldest(usize),
    /// The queue is full and the policy is `Disconnect`: the caller closes the session.
    Overflow,
    /// The session is closing; the frame was not queued.
    Closed,
}

/// Limits of one queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
    pub(crate) policy: SlowConsumerPolicy,
}

/// What the writer takes in one go.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) frames: VecDeque<Utf8Bytes>,
    /// Send a WebSocket ping after the frames.
    pub(crate) ping: bool,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Utf8Bytes>,
    bytes: usize,
    ping: bool,
    closed: bool,
}

/// The queue between senders (any task) and the connection's writer task.
#[derive(Debug)]
pub(crate) struct Outbound {
    state: Mutex<State>,
    limits: Limits,
    wake: Notify,
}

impl Outbound {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            state: Mutex::new(State::default()),
            limits,
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only plain data behind; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers a frame. Never waits.
    pub(crate) fn push(&self, frame: Utf8Bytes) -> Push {
        let len = frame.len();
        let mut state = self.lock();
        if state.closed {
            return Push::Closed;
        }
        let mut dropped = 0;
        while state.frames.len() + 1 > self.limits.frames || state.bytes + len > self.limits.bytes {
            match self.limits.policy {
                SlowConsumerPolicy::Disconnect => return Push::Overflow,
                SlowConsumerPolicy::DropOldest => match state.frames.pop_front() {
                    Some(old) => {
                        state.bytes -= old.len();
                        dropped += 1;
                    }
                    // A single frame larger than the byte limit cannot be queued at all.
                    None => return Push::QueuedDroppingOldest(1),
                },
            }
        }
        let was_empty = state.frames.is_empty() && !state.ping;
        state.bytes += len;
        state.frames.push_back(frame);
        drop(state);
        if was_empty {
            self.wake.notify_one();
        }
        if dropped == 0 {
            Push::Queued
        } else {
            Push::QueuedDroppingOldest(dropped)
        }
    }

    /// Asks the writer to send a WebSocket ping.
    pub(crate) fn ping(&self) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.ping = true;
        drop(state);
        self.wake.notify_one();
    }

    /// Stops accepting frames. With `discard`, frames already queued are dropped too.
    pub(crate) fn close(&self, discard: bool) {
        let mut state = self.lock();
        state.closed = true;
        if discard {
            state.frames.clear();
            state.bytes = 0;
            state.ping = false;
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Moves everything queued into `batch` (whose deque is empty and is swapped in, so
    /// the two buffers' capacity is reused).
    pub(crate) fn take(&self, batch: &mut Batch) {
        let mut state = self.lock();
        std::mem::swap(&mut state.frames, &mut batch.frames);
        state.bytes = 0;
        batch.ping = std::mem::take(&mut state.ping);
    }

    /// Waits until something may have been queued (or the queue closed).
    pub(crate) async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Frames waiting, for tests and metrics.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(frames: usize, bytes: usize, policy: SlowConsumerPolicy) -> Outbound {
        Outbound::new(Limits {
            frames,
            bytes,
            policy,
        })
    }

    fn frame(text: &str) -> Utf8Bytes {
        Utf8Bytes::from(text.to_owned())
    }

    #[test]
    fn disconnect_policy_reports_overflow_by_frames_and_bytes() {
        let q = queue(2, 100, SlowConsumerPolicy::Disconnect);
        assert_eq!(q.push(frame("a")), Push::Queued);
        assert_eq!(q.push(frame("b")), Push::Queued);
        assert_eq!(q.push(frame("c")), Push::Overflow);
        let q = queue(10, 5, SlowConsumerPolicy::Disconnect);
        assert_eq!(q.push(frame("abc")), Push::Queued);
        assert_eq!(q.push(frame("abc")), Push::Overflow);
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let q = queue(2, 100, SlowConsumerPolicy::DropOldest);
        for text in ["a", "b", "c", "d"] {
            q.push(frame(text));
        }
        let mut batch = Batch::default();
        q.take(&mut batch);
        let texts: Vec<&str> = batch.frames.iter().map(Utf8Bytes::as_str).collect();
        assert_eq!(texts, ["c", "d"]);
        assert_eq!(
            q.push(frame("e")),
            Push::Queued,
            "taking the batch freed the space"
        );
    }

    #[test]
    fn closed_queue_refuses_and_discards() {
        let q = queue(8, 100, SlowConsumerPolicy::Disconnect);
        q.push(frame("a"));
        q.close(true);
        assert_eq!(q.len(), 0);
        assert_eq!(q.push(frame("b")), Push::Closed);
    }

    #[tokio::test]
    async fn a_push_wakes_the_writer() {
        let q = std::sync::Arc::new(queue(8, 100, SlowConsumerPolicy::Disconnect));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait().await }
        });
        q.push(frame("a"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
    }
}

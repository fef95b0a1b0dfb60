//! The bounded queue behind a [`ChannelStream`](super::ChannelStream): the channel's
//! slow-consumer policy applies when it is full.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::config::SlowConsumerPolicy;
use crate::session::outbound::Push;

/// A bounded queue feeding one [`ChannelStream`].
pub(crate) struct StreamQueue<P> {
    state: Mutex<StreamState<P>>,
    wake: Notify,
    capacity: usize,
}

struct StreamState<P> {
    items: VecDeque<Arc<P>>,
    closed: bool,
}

impl<P> StreamQueue<P> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(StreamState {
                items: VecDeque::new(),
                closed: false,
            }),
            wake: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn push(&self, item: Arc<P>, policy: SlowConsumerPolicy) -> Push {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return Push::Closed;
        }
        let mut dropped = 0;
        match policy {
            SlowConsumerPolicy::LatestValue if !state.items.is_empty() => {
                dropped = state.items.len();
                state.items.clear();
            }
            _ if state.items.len() >= self.capacity => match policy {
                SlowConsumerPolicy::Disconnect => {
                    state.closed = true;
                    drop(state);
                    self.wake.notify_one();
                    return Push::Overflow;
                }
                _ => {
                    state.items.pop_front();
                    dropped = 1;
                }
            },
            _ => {}
        }
        state.items.push_back(item);
        drop(state);
        self.wake.notify_one();
        if dropped == 0 {
            Push::Queued
        } else {
            Push::QueuedDropping(dropped)
        }
    }

    /// Ends the stream once what is queued has been read (its listener was removed).
    pub(crate) fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.wake.notify_one();
    }

    pub(crate) async fn recv(self: Arc<Self>) -> Option<Arc<P>> {
        self.recv_ref().await
    }

    /// Takes everything queued now.
    pub(crate) fn take_all(&self) -> Vec<Arc<P>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.items.drain(..).collect()
    }

    /// The next item, or `None` once closed and empty.
    pub(crate) async fn recv_ref(&self) -> Option<Arc<P>> {
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }
}

//! Paced posts to one channel: throttled (at most one per interval, the newest wins)
//! and batched (collected over a window, sent as one batch frame).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::central::MessageCentral;
use super::delivery::{DeliveryReport, PostError};
use crate::protocol::ModelSet;

/// Posts to one channel at most once per interval: a post inside the interval replaces
/// any waiting one, and the newest waiting post goes out when the interval ends (never
/// later). Clones share the same schedule.
///
/// ```no_run
/// # streampod::__doc_models!();
/// # fn demo(messages: streampod::messages::MessageCentral<Protocol>) {
/// let scores = messages.throttled("scores", std::time::Duration::from_millis(100));
/// for i in 0..1000 {
///     scores.post(ChatMessage { content: i.to_string() }); // about ten per second go out
/// }
/// # }
/// ```
pub struct Throttled<P> {
    central: MessageCentral<P>,
    channel: Arc<str>,
    interval: Duration,
    state: Arc<Mutex<ThrottleState<P>>>,
}

struct ThrottleState<P> {
    last_sent: Option<Instant>,
    waiting: Option<P>,
    timer: bool,
}

impl<P> Clone for Throttled<P> {
    fn clone(&self) -> Self {
        Self {
            central: self.central.clone(),
            channel: self.channel.clone(),
            interval: self.interval,
            state: self.state.clone(),
        }
    }
}

impl<P> fmt::Debug for Throttled<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttled")
            .field("channel", &self.channel)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// What a throttled post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Sent now.
    Sent(DeliveryReport),
    /// Waiting for the interval to end; a newer post replaces it.
    Deferred,
}

impl<P: ModelSet> Throttled<P> {
    pub(crate) fn new(central: MessageCentral<P>, channel: &str, interval: Duration) -> Self {
        Self {
            central,
            channel: Arc::from(channel),
            interval,
            state: Arc::new(Mutex::new(ThrottleState {
                last_sent: None,
                waiting: None,
                timer: false,
            })),
        }
    }

    /// Posts now if the interval since the last post has passed, else defers.
    ///
    /// # Errors
    ///
    /// [`PostError::Encode`] when a message sent now cannot be encoded.
    pub fn post(&self, message: impl Into<P>) -> Result<Throttle, PostError> {
        let message = message.into();
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = state.last_sent.map_or(now, |last| last + self.interval);
        if !state.timer && due <= now {
            state.last_sent = Some(now);
            drop(state);
            return self
                .central
                .deliver(&self.channel, &[Arc::new(message)], |_| true)
                .map(Throttle::Sent);
        }
        state.waiting = Some(message);
        if !state.timer {
            state.timer = true;
            let this = self.clone();
            self.central.runtime().spawn(async move {
                tokio::time::sleep_until(due).await;
                this.send_waiting();
            });
        }
        Ok(Throttle::Deferred)
    }

    fn send_waiting(&self) {
        let waiting = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.timer = false;
            let waiting = state.waiting.take();
            if waiting.is_some() {
                state.last_sent = Some(Instant::now());
            }
            waiting
        };
        if let Some(message) = waiting {
            if let Err(error) = self
                .central
                .deliver(&self.channel, &[Arc::new(message)], |_| true)
            {
                tracing::error!(target: "streampod::messages", channel = %self.channel, %error, "throttled post failed");
            }
        }
    }
}

/// Collects posts to one channel and sends them as one batch frame when `window` has
/// passed since the first of them, or at once when `max_messages` are waiting. Sessions
/// receive one `{"endpoint":…,"batch":[…]}` frame (the Rust client unpacks it);
/// callback and stream listeners receive each message. Clones share the same batch.
pub struct Batched<P> {
    central: MessageCentral<P>,
    channel: Arc<str>,
    window: Duration,
    max_messages: usize,
    state: Arc<Mutex<BatchState<P>>>,
}

struct BatchState<P> {
    waiting: Vec<Arc<P>>,
    timer: bool,
}

impl<P> Clone for Batched<P> {
    fn clone(&self) -> Self {
        Self {
            central: self.central.clone(),
            channel: self.channel.clone(),
            window: self.window,
            max_messages: self.max_messages,
            state: self.state.clone(),
        }
    }
}

impl<P> fmt::Debug for Batched<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batched")
            .field("channel", &self.channel)
            .field("window", &self.window)
            .field("max_messages", &self.max_messages)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> Batched<P> {
    pub(crate) fn new(
        central: MessageCentral<P>,
        channel: &str,
        window: Duration,
        max_messages: usize,
    ) -> Self {
        Self {
            central,
            channel: Arc::from(channel),
            window,
            max_messages: max_messages.max(1),
            state: Arc::new(Mutex::new(BatchState {
                waiting: Vec::new(),
                timer: false,
            })),
        }
    }

    /// Adds a message to the current batch; sends the batch now when it is full.
    ///
    /// # Errors
    ///
    /// [`PostError::Encode`] when a batch sent now cannot be encoded.
    pub fn post(&self, message: impl Into<P>) -> Result<Option<DeliveryReport>, PostError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.waiting.push(Arc::new(message.into()));
        if state.waiting.len() >= self.max_messages {
            let batch = std::mem::take(&mut state.waiting);
            drop(state);
            return self
                .central
                .deliver(&self.channel, &batch, |_| true)
                .map(Some);
        }
        if !state.timer {
            state.timer = true;
            let this = self.clone();
            let due = Instant::now() + self.window;
            self.central.runtime().spawn(async move {
                tokio::time::sleep_until(due).await;
                this.flush_on_timer();
            });
        }
        Ok(None)
    }

    /// Sends whatever is waiting now.
    ///
    /// # Errors
    ///
    /// [`PostError::Encode`] when the batch cannot be encoded.
    pub fn flush(&self) -> Result<DeliveryReport, PostError> {
        let batch = std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .waiting,
        );
        if batch.is_empty() {
            return Ok(DeliveryReport::default());
        }
        self.central.deliver(&self.channel, &batch, |_| true)
    }

    fn flush_on_timer(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .timer = false;
        if let Err(error) = self.flush() {
            tracing::error!(target: "streampod::messages", channel = %self.channel, %error, "batched post failed");
        }
    }
}

impl<P: ModelSet> MessageCentral<P> {
    /// A throttled poster for `channel`: at most one post per `interval`, newest wins.
    pub fn throttled(&self, channel: &str, interval: Duration) -> Throttled<P> {
        Throttled::new(self.clone(), channel, interval)
    }

    /// A batching poster for `channel`: posts within `window` (or up to `max_messages`)
    /// go out as one frame.
    pub fn batched(&self, channel: &str, window: Duration, max_messages: usize) -> Batched<P> {
        Batched::new(self.clone(), channel, window, max_messages)
    }
}

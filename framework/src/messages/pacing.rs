//! Paced posts to one channel: throttled (at most one per interval, the newest wins)
//! and batched (collected over a window, sent as one batch frame).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::central::MessageCentral;
use super::delivery::{DeliveryReport, PostError};
use crate::protocol::ModelSet;
use crate::util::peer_text::PeerText;

/// Posts to one channel at most once per interval: a post inside the interval replaces
/// any waiting one, and the newest waiting post goes out when the interval ends (never
/// later). Clones share the same schedule.
///
/// With [`Throttled::with_delivery_budget`] the interval also stretches with the
/// channel's size, so a member count or typing indicator costs the server (and every
/// member's bandwidth) the same per second in a room of 10,000 as in a room of 10.
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
    /// Most deliveries a second, if set: see [`Throttled::with_delivery_budget`].
    deliveries_per_second: Option<NonZeroU32>,
    state: Arc<Mutex<ThrottleState<P>>>,
}

struct ThrottleState<P> {
    /// When the next post may go out at once; `None` before the first.
    next_due: Option<Instant>,
    waiting: Option<P>,
    timer: bool,
}

impl<P> Clone for Throttled<P> {
    fn clone(&self) -> Self {
        Self {
            central: self.central.clone(),
            channel: self.channel.clone(),
            interval: self.interval,
            deliveries_per_second: self.deliveries_per_second,
            state: self.state.clone(),
        }
    }
}

impl<P> fmt::Debug for Throttled<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttled")
            .field("channel", &self.channel)
            .field("interval", &self.interval)
            .field("deliveries_per_second", &self.deliveries_per_second)
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
            deliveries_per_second: None,
            state: Arc::new(Mutex::new(ThrottleState {
                next_due: None,
                waiting: None,
                timer: false,
            })),
        }
    }

    /// Spends at most `per_second` deliveries a second on this channel: after a post
    /// that reached `n` listeners, the next waits `n / per_second` seconds when that is
    /// longer than the interval. With 4,000 a second and a 250 ms interval, a room of
    /// 1,000 hears every 250 ms and a room of 10,000 every 2.5 s.
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # fn demo(messages: streampod::messages::MessageCentral<Protocol>) {
    /// use std::num::NonZeroU32;
    /// use std::time::Duration;
    ///
    /// let budget = NonZeroU32::new(4_000).unwrap();
    /// let counts = messages
    ///     .throttled("room-lobby", Duration::from_millis(250))
    ///     .with_delivery_budget(budget);
    /// # }
    /// ```
    #[must_use]
    pub fn with_delivery_budget(mut self, per_second: NonZeroU32) -> Self {
        self.deliveries_per_second = Some(per_second);
        self
    }

    /// How long after a post that reached `delivered` listeners the next may go.
    fn spacing(&self, delivered: usize) -> Duration {
        let Some(per_second) = self.deliveries_per_second else {
            return self.interval;
        };
        let spent = Duration::from_secs_f64(delivered as f64 / f64::from(per_second.get()));
        spent.max(self.interval)
    }

    /// Delivers `message` now and schedules when the next may go.
    fn send(&self, message: P, now: Instant) -> Result<DeliveryReport, PostError> {
        let report = self
            .central
            .deliver(&self.channel, &[Arc::new(message)], |_| true);
        // A post that failed to encode reached nobody: only the interval applies.
        let delivered = report.as_ref().map_or(0, |report| report.delivered);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.next_due = Some(now + self.spacing(delivered));
        report
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
        let due = state.next_due.unwrap_or(now);
        if !state.timer && due <= now {
            // Until the delivery tells how many it reached, the interval holds.
            state.next_due = Some(now + self.interval);
            drop(state);
            return self.send(message, now).map(Throttle::Sent);
        }
        state.waiting = Some(message);
        if !state.timer {
            state.timer = true;
            self.wake_at(due);
        }
        Ok(Throttle::Deferred)
    }

    /// Sends the waiting post at `due` (the timer is marked set by the caller).
    fn wake_at(&self, due: Instant) {
        let this = self.clone();
        self.central.runtime().spawn(async move {
            tokio::time::sleep_until(due).await;
            this.send_waiting();
        });
    }

    fn send_waiting(&self) {
        let now = Instant::now();
        let waiting = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            // A delivery that finished after this timer was set may have pushed the
            // schedule back (it reached more listeners than the interval allows for).
            if let Some(due) = state.next_due.filter(|due| *due > now) {
                self.wake_at(due);
                return;
            }
            state.timer = false;
            let waiting = state.waiting.take();
            if waiting.is_some() {
                state.next_due = Some(now + self.interval);
            }
            waiting
        };
        if let Some(message) = waiting {
            if let Err(error) = self.send(message, now) {
                tracing::error!(target: "streampod::messages", channel = %PeerText(&self.channel), %error, "throttled post failed");
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
            tracing::error!(target: "streampod::messages", channel = %PeerText(&self.channel), %error, "batched post failed");
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

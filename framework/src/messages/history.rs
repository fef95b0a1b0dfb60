//! Channel history: a channel's newest messages, numbered in one order, kept so that a
//! subscriber coming back after a reconnect gets what it missed (see
//! [`crate::protocol::history`] for the wire).
//!
//! Without a cluster, one node keeps each history in memory: its epoch is new every
//! time the server starts, so a client that recovers across a restart is told
//! `recovered: false` instead of getting a silent gap. Posts and recovering joins take
//! the history's lock, so a join sees every post either in what it replays or live
//! after it, never both and never neither. In a cluster the history is in Redis
//! (`crate::cluster`'s `history` module) and joins go through a gate (`super::gate`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::delivery::Payload;
use crate::protocol::history::Position;
use crate::protocol::{frame, EncodeError, ModelSet};

/// How much of a channel's past is kept for recovery.
///
/// ```
/// use std::time::Duration;
/// use streampod::messages::{ChannelConfig, HistoryConfig};
/// let config = ChannelConfig::default().with_history(HistoryConfig::new(1000, Duration::from_secs(300)));
/// assert_eq!(config.history.unwrap().size, 1000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryConfig {
    /// Most messages kept; older ones are forgotten first (in a cluster as well: the
    /// append script trims Redis' stream exactly, by count and by bytes).
    pub size: usize,
    /// How long a message is kept.
    pub ttl: Duration,
    /// Most bytes of messages kept (their encoded objects): past it the oldest are
    /// forgotten first, so a channel's history holds at most this much however large
    /// its posts (the newest stays even when it alone is larger; a post never exceeds
    /// a session's outbound cap). Default [`DEFAULT_HISTORY_BYTES`].
    pub max_bytes: usize,
}

/// How many bytes of messages a channel's history keeps by default: 4 MiB, a thousand
/// posts of 4 KiB.
pub const DEFAULT_HISTORY_BYTES: usize = 4 << 20;

impl HistoryConfig {
    /// Keep at most `size` messages, each for at most `ttl`, and at most
    /// [`DEFAULT_HISTORY_BYTES`] of them.
    pub fn new(size: usize, ttl: Duration) -> Self {
        Self {
            size,
            ttl,
            max_bytes: DEFAULT_HISTORY_BYTES,
        }
    }

    /// Keeps at most `bytes` of messages (see [`max_bytes`](Self::max_bytes)).
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }
}

/// What a replayed message's frame adds to its object (the endpoint, the channel and
/// offset, the frame's keys), as counted against what a session can take at once.
pub(crate) const REPLAY_FRAME_OVERHEAD: usize = 128;

/// A kept message: its frame object `{"className":…,"data":…}`, encoded once, and the
/// model itself when it was posted here (callbacks and streams get it without a decode).
pub(crate) struct Kept<P> {
    pub(crate) object: Arc<str>,
    model: Option<Arc<P>>,
}

impl<P> Clone for Kept<P> {
    fn clone(&self) -> Self {
        Self {
            object: self.object.clone(),
            model: self.model.clone(),
        }
    }
}

impl<P> Kept<P> {
    /// A message that arrived encoded (a frame object), with no model.
    pub(crate) fn encoded(object: Arc<str>) -> Self {
        Self {
            object,
            model: None,
        }
    }
}

impl<P: ModelSet> Kept<P> {
    /// The messages of a post, each encoded once.
    pub(crate) fn of(payload: &Payload<'_, P>) -> Result<Vec<Self>, EncodeError> {
        match payload {
            Payload::Models(models) => models
                .iter()
                .map(|model| {
                    let mut object = Vec::with_capacity(128);
                    frame::encode_object(&**model, &mut object)?;
                    Ok(Self {
                        object: Arc::from(String::from_utf8_lossy(&object)),
                        model: Some(model.clone()),
                    })
                })
                .collect(),
            Payload::Object(object) => Ok(vec![Self::encoded(Arc::from(*object))]),
        }
    }

    /// Appends the message frame from `endpoint`, with its channel and offset when `at`
    /// is given (for a `streampod.v1` session).
    pub(crate) fn encode(&self, endpoint: &str, at: Option<(&str, u64)>, out: &mut Vec<u8>) {
        frame::encode_message_with_object(endpoint, &self.object, out);
        if let Some((channel, offset)) = at {
            frame::append_offset(out, channel, offset);
        }
    }

    /// The message as a post's payload.
    pub(crate) fn payload(&self) -> Payload<'_, P> {
        match &self.model {
            Some(model) => Payload::Models(std::slice::from_ref(model)),
            None => Payload::Object(&self.object),
        }
    }
}

pub(crate) struct Entry<P> {
    pub(crate) offset: u64,
    kept_at: Instant,
    pub(crate) message: Kept<P>,
}

/// One channel's history.
pub(crate) struct History<P> {
    ring: Mutex<Ring<P>>,
}

/// The kept messages, oldest first, and the newest offset given out.
pub(crate) struct Ring<P> {
    epoch: Arc<str>,
    newest: u64,
    entries: VecDeque<Entry<P>>,
    /// The bytes of the kept messages' objects.
    bytes: usize,
    config: HistoryConfig,
}

/// What a recovering join gets from history.
pub(crate) enum Since<'a, P> {
    /// Every message after the position, oldest first (possibly none).
    Recovered(Vec<&'a Entry<P>>),
    /// The position is from another epoch, or older than what is kept.
    Lost,
}

impl<P> History<P> {
    pub(crate) fn new(epoch: Arc<str>, config: HistoryConfig) -> Self {
        Self {
            ring: Mutex::new(Ring {
                epoch,
                newest: 0,
                entries: VecDeque::new(),
                bytes: 0,
                config,
            }),
        }
    }

    /// Forgets what has expired; whether nothing is left.
    pub(crate) fn expire(&self) -> bool {
        let mut ring = self.lock();
        ring.forget(Instant::now());
        ring.entries.is_empty()
    }

    /// Changes how much is kept, from the next post on.
    pub(crate) fn reconfigure(&self, config: HistoryConfig) {
        self.lock().config = config;
    }

    /// The history, locked: posts append and deliver under it, joins replay under it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Ring<P>> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P> Ring<P> {
    /// Keeps `message` as the next offset and forgets what the size and age limits no
    /// longer allow; the new offset.
    pub(crate) fn append(&mut self, message: Kept<P>) -> u64 {
        self.newest += 1;
        let now = Instant::now();
        self.bytes += message.object.len();
        self.entries.push_back(Entry {
            offset: self.newest,
            kept_at: now,
            message,
        });
        self.forget(now);
        self.newest
    }

    fn forget(&mut self, now: Instant) {
        let ttl = self.config.ttl;
        while self.entries.len() > self.config.size
            || (self.bytes > self.config.max_bytes && self.entries.len() > 1)
            || self
                .entries
                .front()
                .is_some_and(|entry| now.duration_since(entry.kept_at) > ttl)
        {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= oldest.message.object.len();
        }
    }

    /// A position in this history.
    pub(crate) fn position(&self, offset: u64) -> Position {
        Position::new(&*self.epoch, offset)
    }

    /// The newest position given out (offset 0 before the first post).
    pub(crate) fn newest(&self) -> Position {
        self.position(self.newest)
    }

    /// The unexpired messages after `offset` (each offset and object), oldest first.
    pub(crate) fn kept_after(&self, offset: u64) -> Vec<(u64, Arc<str>)> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|entry| {
                entry.offset > offset && now.duration_since(entry.kept_at) <= self.config.ttl
            })
            .map(|entry| (entry.offset, entry.message.object.clone()))
            .collect()
    }

    /// The history's epoch.
    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The messages after `since`, if history still holds all of them.
    pub(crate) fn since(&self, since: &Position) -> Since<'_, P> {
        let offset = since.offset;
        if *since.epoch != *self.epoch || offset > self.newest {
            return Since::Lost;
        }
        // Entries past their TTL count as gone, whether or not a post has dropped them.
        let now = Instant::now();
        let kept = self
            .entries
            .iter()
            .skip_while(|entry| now.duration_since(entry.kept_at) > self.config.ttl);
        let mut replay = Vec::new();
        for entry in kept.filter(|entry| entry.offset > offset) {
            // The first message needed is offset + 1: kept, or it is lost.
            if replay.is_empty() && entry.offset != offset + 1 {
                return Since::Lost;
            }
            replay.push(entry);
        }
        if replay.is_empty() && offset < self.newest {
            return Since::Lost;
        }
        Since::Recovered(replay)
    }
}

/// A fresh epoch: unique per start of a server (and per history, within one).
pub(crate) fn new_epoch() -> Arc<str> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Arc::from(&id[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(n: u32) -> Kept<u32> {
        Kept::encoded(Arc::from(n.to_string()))
    }

    fn ring(size: usize, ttl: Duration) -> History<u32> {
        History::new(Arc::from("e1"), HistoryConfig::new(size, ttl))
    }

    fn offsets(since: Since<'_, u32>) -> Option<Vec<u64>> {
        match since {
            Since::Recovered(entries) => Some(entries.iter().map(|e| e.offset).collect()),
            Since::Lost => None,
        }
    }

    #[test]
    fn offsets_count_up_and_recovery_returns_what_came_after() {
        let history = ring(10, Duration::from_secs(60));
        let mut ring = history.lock();
        for n in 1..=5 {
            assert_eq!(ring.append(kept(n)), u64::from(n));
        }
        assert_eq!(offsets(ring.since(&Position::new("e1", 2))), Some(vec![3, 4, 5]));
        assert_eq!(offsets(ring.since(&Position::new("e1", 5))), Some(vec![]));
        assert_eq!(offsets(ring.since(&Position::new("e1", 0))), Some(vec![1, 2, 3, 4, 5]));
    }

    #[test]
    fn past_its_bytes_the_oldest_go_and_the_newest_stays() {
        let config = HistoryConfig::new(100, Duration::from_secs(60)).with_max_bytes(10);
        let history = History::new(Arc::from("e1"), config);
        let mut ring = history.lock();
        for n in 100..=104 {
            // Three bytes each: three fit in ten.
            ring.append(kept(n));
        }
        assert_eq!(ring.bytes, 9);
        assert_eq!(offsets(ring.since(&Position::new("e1", 2))), Some(vec![3, 4, 5]));
        assert_eq!(offsets(ring.since(&Position::new("e1", 1))), None, "2 went");
        ring.append(Kept::encoded(Arc::from("x".repeat(50))));
        assert_eq!(ring.entries.len(), 1, "the newest alone stays");
        assert_eq!(ring.bytes, 50);
    }

    #[test]
    fn another_epoch_a_future_offset_or_a_forgotten_one_is_lost() {
        let history = ring(3, Duration::from_secs(60));
        let mut ring = history.lock();
        for n in 1..=5 {
            ring.append(kept(n));
        }
        assert_eq!(offsets(ring.since(&Position::new("e0", 4))), None, "other epoch");
        assert_eq!(offsets(ring.since(&Position::new("e1", 9))), None, "ahead of history");
        // Kept: 3, 4, 5. From 2 on everything is there; from 1, offset 2 is gone.
        assert_eq!(offsets(ring.since(&Position::new("e1", 2))), Some(vec![3, 4, 5]));
        assert_eq!(offsets(ring.since(&Position::new("e1", 1))), None, "2 was forgotten");
    }

    #[test]
    fn messages_older_than_the_ttl_are_forgotten() {
        let history = ring(100, Duration::from_millis(30));
        let mut ring = history.lock();
        ring.append(kept(1));
        std::thread::sleep(Duration::from_millis(60));
        ring.append(kept(2));
        assert_eq!(offsets(ring.since(&Position::new("e1", 1))), Some(vec![2]));
        assert_eq!(offsets(ring.since(&Position::new("e1", 0))), None, "1 expired");
    }

    #[test]
    fn an_empty_history_recovers_from_its_start() {
        let history = ring(10, Duration::from_secs(60));
        let ring = history.lock();
        assert_eq!(ring.newest(), Position::new("e1", 0));
        assert_eq!(offsets(ring.since(&Position::new("e1", 0))), Some(vec![]));
    }
}

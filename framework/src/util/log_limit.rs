//! Rate-limited logging for events a peer can trigger: at most one line per interval,
//! which says how many were left out since the last one.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One kind of repeated log line, logged at most once per interval: for events a peer
/// can cause (bad frames, failed writes), where one line per event would let a peer
/// flood the log.
///
/// ```
/// use std::time::Duration;
/// use streampod::RateLimitedLog;
///
/// static NOT_STORED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
///
/// if let Some(left_out) = NOT_STORED.ready() {
///     eprintln!("a message was not stored ({left_out} more since the last line)");
/// }
/// ```
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(left out since the last line)` when a line may be logged now; `None`
    /// (counted) when one was logged less than an interval ago.
    pub fn ready(&self) -> Option<u64> {
        self.ready_at(Instant::now())
    }

    fn ready_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            state.suppressed += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let log = RateLimitedLog::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(log.ready_at(start), Some(0));
        for second in 1..5 {
            assert_eq!(log.ready_at(start + Duration::from_secs(second)), None);
        }
        assert_eq!(log.ready_at(start + Duration::from_secs(5)), Some(4));
        assert_eq!(log.ready_at(start + Duration::from_secs(6)), None);
    }
}

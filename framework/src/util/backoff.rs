//! Reconnect delays with jitter, shared by the client and the cluster connection.

use std::time::Duration;

/// Reconnect delays (the client's and the cluster's): exponential from `initial` by `multiplier`, capped at `max`, with
/// full jitter (each delay is uniformly random between zero and the capped value), so a
/// restarted server is not hit by every client at once.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The cap of the first retry's delay. Default 100 ms.
    pub initial: Duration,
    /// The largest cap. Default 10 s.
    pub max: Duration,
    /// Growth per attempt. Default 2.
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// A backoff with these bounds and a multiplier of 2.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2.0,
        }
    }

    /// The cap for `attempt` (1-based): `initial × multiplier^(attempt−1)`, at most `max`.
    pub fn cap(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let cap = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        Duration::from_secs_f64(cap.min(self.max.as_secs_f64()))
    }

    /// The delay for `attempt` given a uniform random `unit` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.cap(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A random number in `[0, 1)` (jitter needs spread, not cryptographic quality).
fn random_unit() -> f64 {
    (super::random::random_u64() >> 11) as f64 / (1_u64 << 53) as f64
}

impl Backoff {
    /// A jittered delay for `attempt` (1-based).
    pub fn jittered(&self, attempt: u32) -> Duration {
        self.delay(attempt, random_unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_caps_grow_then_stop() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let caps: Vec<u128> = (1..=7).map(|a| backoff.cap(a).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.cap(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn delays_are_jittered_within_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..500).map(|_| backoff.delay(4, random_unit())).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(800)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 400,
            "jitter spreads the delays: {} distinct",
            distinct.len()
        );
        let mean = delays.iter().sum::<Duration>() / 500;
        assert!(
            mean > Duration::from_millis(300) && mean < Duration::from_millis(500),
            "full jitter averages half the cap: {mean:?}"
        );
    }
}

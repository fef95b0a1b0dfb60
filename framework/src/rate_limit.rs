//! Inbound rate limits: a token bucket per session (and per endpoint that sets its own
//! limit). A frame over the limit is refused; a client that keeps sending past it is
//! abusive and gets closed.

use tokio::time::Instant;

/// How many frames a client may send: `per_second` sustained, up to `burst` at once.
///
/// ```
/// use streampod::RateLimit;
/// let limit = RateLimit::new(50, 500);
/// assert_eq!((limit.per_second, limit.burst), (50, 500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Frames per second, sustained.
    pub per_second: u32,
    /// Frames that may arrive at once after a quiet period (the bucket's size).
    pub burst: u32,
}

impl RateLimit {
    /// A limit of `per_second` sustained with bursts of `burst` (at least 1).
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst: if burst == 0 { 1 } else { burst },
        }
    }
}

impl Default for RateLimit {
    /// 200 frames per second with bursts of 2,000: far above what a person typing or
    /// a game client at 60 updates per second sends, far below a flood.
    fn default() -> Self {
        Self::new(200, 2000)
    }
}

/// What a frame offered to a [`Bucket`] gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit.
    Allowed,
    /// Over the limit: refuse this frame.
    Refused,
    /// Over the limit for so long that the client counts as abusive: close it.
    Abusive,
}

/// One token bucket with a count of the frames it refused since it last recovered.
#[derive(Debug)]
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
    /// Frames refused since the bucket was last full; past `burst` of them the client
    /// has ignored `burst` error frames in a row and is closed.
    refused: u32,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            updated: now,
            refused: 0,
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Whether the bucket would be full at `now` (it has been idle long enough).
    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated);
        self.tokens + elapsed.as_secs_f64() * f64::from(self.limit.per_second)
            >= f64::from(self.limit.burst)
    }

    /// Whether a token would be there at `now` (without taking it).
    fn has_token(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated);
        self.tokens + elapsed.as_secs_f64() * f64::from(self.limit.per_second) >= 1.0
    }

    /// Takes `count` tokens at `now` for frames counted elsewhere, down to one burst of
    /// debt (so a flood elsewhere holds the key back for at most two refill times).
    fn debit(&mut self, now: Instant, count: u32) {
        let elapsed = now.saturating_duration_since(self.updated);
        self.updated = now;
        let burst = f64::from(self.limit.burst);
        self.tokens = ((self.tokens + elapsed.as_secs_f64() * f64::from(self.limit.per_second))
            .min(burst)
            - f64::from(count))
        .max(-burst);
    }

    /// Takes a token for one frame arriving at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.updated);
        self.updated = now;
        let burst = f64::from(self.limit.burst);
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() * f64::from(self.limit.per_second)).min(burst);
        if self.tokens >= burst {
            self.refused = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allowed;
        }
        self.refused = self.refused.saturating_add(1);
        if self.refused > self.limit.burst {
            Verdict::Abusive
        } else {
            Verdict::Refused
        }
    }
}

/// The buckets of one session: the server's, and one per endpoint with its own limit.
#[derive(Debug)]
pub(crate) struct InboundLimiter {
    server: Option<Bucket>,
    /// By endpoint index; `None` where the endpoint uses the server's bucket.
    endpoints: Box<[Option<Bucket>]>,
}

impl InboundLimiter {
    pub(crate) fn new(
        server: Option<RateLimit>,
        endpoints: impl Iterator<Item = Option<RateLimit>>,
    ) -> Self {
        let now = Instant::now();
        Self {
            server: server.map(|limit| Bucket::new(limit, now)),
            endpoints: endpoints
                .map(|limit| limit.map(|limit| Bucket::new(limit, now)))
                .collect(),
        }
    }

    /// Takes a token for a frame to the endpoint with index `endpoint` (or to the
    /// session itself), from the bucket that frame counts against: its verdict and
    /// that bucket's limit (`None`: unlimited).
    pub(crate) fn take(&mut self, endpoint: Option<usize>) -> (Verdict, Option<RateLimit>) {
        let own = endpoint.and_then(|index| self.endpoints.get_mut(index)?.as_mut());
        match own.or(self.server.as_mut()) {
            Some(bucket) => (bucket.take(Instant::now()), Some(bucket.limit())),
            None => (Verdict::Allowed, None),
        }
    }
}

/// Most keys (client addresses, users) a [`PerKey`] tracks before it forgets the idle
/// ones.
const TRACKED_ADDRESSES: usize = 16_384;

/// One bucket per key (a client address for HTTP method calls and refused keys, a user
/// for [`ServerConfig::user_rate_limit`](crate::ServerConfig::user_rate_limit)), bounded
/// in memory: once [`TRACKED_ADDRESSES`] are tracked, buckets that have refilled are
/// forgotten (a forgotten one would start full anyway), and if all are busy, all start
/// afresh.
#[derive(Debug)]
pub(crate) struct PerKey<K> {
    limit: RateLimit,
    buckets: std::sync::Mutex<std::collections::HashMap<K, Bucket>>,
}

/// One bucket per client address.
pub(crate) type PerAddress = PerKey<std::net::IpAddr>;

impl<K: std::hash::Hash + Eq + Clone> PerKey<K> {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: std::sync::Mutex::default(),
        }
    }

    /// Whether `address` is within the limit now (`Err` with the seconds to wait when
    /// not), without taking a token.
    pub(crate) fn check(&self, address: &K) -> Result<(), u32> {
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match buckets.get(address) {
            Some(bucket) if !bucket.has_token(Instant::now()) => Err(self.wait()),
            _ => Ok(()),
        }
    }

    /// Seconds until a token comes back (one every 1 / per_second seconds).
    fn wait(&self) -> u32 {
        let wait = 1.0 / f64::from(self.limit.per_second.max(1));
        wait.ceil().max(1.0) as u32
    }

    /// Takes a token for one call from `address`: `Err` with the seconds to wait when
    /// it is over the limit.
    pub(crate) fn take(&self, address: K) -> Result<(), u32> {
        let now = Instant::now();
        self.with_bucket(address, now, |bucket| match bucket.take(now) {
            Verdict::Allowed => Ok(()),
            Verdict::Refused | Verdict::Abusive => Err(self.wait()),
        })
    }

    /// Takes `count` tokens from `key`'s bucket for frames counted elsewhere (another
    /// server of the cluster); it may go into debt down to one burst.
    pub(crate) fn debit(&self, key: K, count: u32) {
        let now = Instant::now();
        self.with_bucket(key, now, |bucket| bucket.debit(now, count));
    }

    fn with_bucket<T>(&self, key: K, now: Instant, use_it: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= TRACKED_ADDRESSES && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| !bucket.is_full(now));
            if buckets.len() >= TRACKED_ADDRESSES {
                // That many keys busy at once: start every bucket afresh rather than
                // grow (each gets one more burst).
                buckets.clear();
            }
        }
        let bucket = buckets
            .entry(key)
            .or_insert_with(|| Bucket::new(self.limit, now));
        use_it(bucket)
    }
}

/// What each signed-in user may post ([`ServerConfig::user_rate_limit`](crate::ServerConfig::user_rate_limit)):
/// a bucket per user, and what this server's users spent since it last told the other
/// servers (the message central shares and applies it).
pub(crate) struct UserBudget {
    pub(crate) limit: RateLimit,
    pub(crate) buckets: PerKey<String>,
    pub(crate) spent: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Whether spending is counted for other servers (a cluster).
    pub(crate) shared: bool,
}

impl UserBudget {
    pub(crate) fn new(limit: RateLimit, shared: bool) -> Self {
        Self {
            limit,
            buckets: PerKey::new(limit),
            spent: std::sync::Mutex::default(),
            shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_address_has_its_bucket_and_idle_ones_are_forgotten() {
        let limiter = PerAddress::new(RateLimit::new(1, 2));
        let (a, b) = (
            std::net::IpAddr::from([10, 0, 0, 1]),
            std::net::IpAddr::from([10, 0, 0, 2]),
        );
        assert_eq!(limiter.take(a), Ok(()));
        assert_eq!(limiter.take(a), Ok(()));
        assert_eq!(limiter.take(a), Err(1));
        assert_eq!(limiter.take(b), Ok(()), "another address is not held back");
        // Many addresses: the idle (full) buckets go, the map stays bounded.
        for n in 0..u32::try_from(TRACKED_ADDRESSES * 2).unwrap() {
            let _ = limiter.take(std::net::IpAddr::from((n + (1 << 24)).to_be_bytes()));
        }
        assert!(limiter.buckets.lock().unwrap().len() <= TRACKED_ADDRESSES + 1);
    }

    #[test]
    fn tokens_counted_elsewhere_are_debited_down_to_one_burst_of_debt() {
        let limiter = PerKey::new(RateLimit::new(1_000, 10));
        limiter.debit("42".to_owned(), 8);
        assert_eq!(limiter.take("42".to_owned()), Ok(()));
        assert_eq!(limiter.take("42".to_owned()), Ok(()));
        assert!(limiter.take("42".to_owned()).is_err());
        assert_eq!(limiter.take("7".to_owned()), Ok(()), "another user is not held back");
        let start = Instant::now();
        let mut bucket = Bucket::new(RateLimit::new(10, 5), start);
        bucket.debit(start, 1_000);
        // Five in debt at ten a second: the next token is there after 0.6 s.
        assert_eq!(bucket.take(start + Duration::from_millis(500)), Verdict::Refused);
        assert_eq!(bucket.take(start + Duration::from_millis(700)), Verdict::Allowed);
    }

    /// How long a bucket at `limit` takes to refill completely.
    fn refill_time(limit: RateLimit) -> Duration {
        Duration::from_secs_f64(f64::from(limit.burst) / f64::from(limit.per_second.max(1)))
    }

    #[test]
    fn endpoints_with_their_own_limit_have_their_own_bucket() {
        let mut limiter = InboundLimiter::new(
            Some(RateLimit::new(1, 1)),
            [None, Some(RateLimit::new(1, 3))].into_iter(),
        );
        assert_eq!(limiter.take(Some(0)).0, Verdict::Allowed);
        assert_eq!(
            limiter.take(None).0,
            Verdict::Refused,
            "shares the server's"
        );
        for _ in 0..3 {
            assert_eq!(limiter.take(Some(1)).0, Verdict::Allowed);
        }
        assert_eq!(limiter.take(Some(1)).0, Verdict::Refused);
        let mut unlimited = InboundLimiter::new(None, [None].into_iter());
        assert!((0..10_000).all(|_| unlimited.take(Some(0)) == (Verdict::Allowed, None)));
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::now();
        let mut bucket = Bucket::new(RateLimit::new(10, 5), start);
        for _ in 0..5 {
            assert_eq!(bucket.take(start), Verdict::Allowed);
        }
        assert_eq!(bucket.take(start), Verdict::Refused);
        // A tenth of a second later one more token is there.
        let later = start + Duration::from_millis(100);
        assert_eq!(bucket.take(later), Verdict::Allowed);
        assert_eq!(bucket.take(later), Verdict::Refused);
    }

    #[test]
    fn ignoring_refusals_is_abuse_until_the_bucket_recovers() {
        let start = Instant::now();
        let limit = RateLimit::new(10, 3);
        let mut bucket = Bucket::new(limit, start);
        let verdicts: Vec<Verdict> = (0..8).map(|_| bucket.take(start)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Allowed,
                Verdict::Allowed,
                Verdict::Allowed,
                Verdict::Refused,
                Verdict::Refused,
                Verdict::Refused,
                Verdict::Abusive,
                Verdict::Abusive,
            ]
        );
        // A client that calms down starts afresh.
        let calm = start + refill_time(limit);
        assert_eq!(bucket.take(calm), Verdict::Allowed);
        for _ in 0..2 {
            bucket.take(calm);
        }
        assert_eq!(bucket.take(calm), Verdict::Refused);
    }
}

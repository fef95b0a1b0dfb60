//! Leaf helpers every other folder may use and that use nothing of the crate: retry
//! backoff, random numbers, rate-limited logging and peer text made safe to log, a one-way flag, the text
//! of a caught panic, a budget of bytes held, the W3C trace context of the current span.

#[cfg(any(feature = "client", feature = "redis"))]
pub(crate) mod backoff;
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) mod byte_budget;
#[cfg(feature = "server")]
pub(crate) mod flag;
#[cfg(feature = "server")]
pub(crate) mod log_limit;
#[cfg(feature = "server")]
pub(crate) mod panic_text;
#[cfg(feature = "server")]
pub(crate) mod peer_text;
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) mod random;
#[cfg(feature = "server")]
pub(crate) mod trace_context;

//! How a socket closes on the peer's account: bad input, abuse of the inbound rate, and
//! the answer to the peer's own close frame. Shared by every socket kind.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::rate_limit::RateLimit;
use crate::session::state::SessionShared;
use crate::util::log_limit::RateLimitedLog;
use crate::ws::reader::{Incoming, ReadError};
use crate::ws::control::{close_frame, pong_frame};

/// Closes with the RFC 6455 code matching a protocol violation, or just ends when the
/// peer vanished.
pub(crate) fn close_on_read_error(shared: &SessionShared, error: &ReadError) {
    let Some(code) = error.close_code().map(CloseCode::from) else {
        tracing::debug!(target: "streampod::connection", %error, "peer went away");
        return;
    };
    let reason = error.to_string();
    // A peer can trigger this at will: one line per interval, with a count.
    static BAD_INPUT: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(5));
    if let Some(suppressed) = BAD_INPUT.ready() {
        tracing::info!(target: "streampod::connection", code = u16::from(code), %reason, suppressed, "closing on bad input");
    } else {
        tracing::debug!(target: "streampod::connection", code = u16::from(code), %reason, "closing on bad input");
    }
    shared.close(code, &reason);
}

/// Closes a client that kept sending past its inbound rate `limit` (1008).
pub(crate) fn close_abusive(shared: &SessionShared, limit: RateLimit) {
    static ABUSE: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(5));
    if let Some(suppressed) = ABUSE.ready() {
        tracing::info!(target: "streampod::connection", per_second = limit.per_second, burst = limit.burst, suppressed, "closing a client that kept sending past its rate limit");
    }
    shared.close(CloseCode::Policy, "inbound rate limit exceeded");
}

/// A client's frame as a socket's protocol sees it, once what every socket does the same
/// is done: a close frame is answered and a broken stream closed (both [`Read::Stop`]).
pub(crate) enum Read {
    /// A text message, for the protocol.
    Text(String),
    /// A binary message (the protocols take none).
    Binary,
    /// A ping: the protocol admits it (it counts against the inbound rate) and
    /// answers it with [`pong`].
    Ping(Vec<u8>),
    /// Nothing to do (a pong).
    Nothing,
    /// The socket is done reading.
    Stop,
}

/// Sorts what the reader returned; see [`Read`].
pub(crate) fn triage(shared: &SessionShared, incoming: Result<Incoming, ReadError>) -> Read {
    match incoming {
        Ok(Incoming::Text(text)) => Read::Text(text),
        Ok(Incoming::Binary(_)) => Read::Binary,
        Ok(Incoming::Ping(payload)) => Read::Ping(payload),
        Ok(Incoming::Pong) => Read::Nothing,
        Ok(Incoming::Close(close)) => {
            answer_close(shared, close.as_ref());
            Read::Stop
        }
        Err(error) => {
            close_on_read_error(shared, &error);
            Read::Stop
        }
    }
}

/// Queues the pong for a ping that carried `payload`. A pong past the cap on waiting
/// pongs is dropped: RFC 6455 lets a pong answer only the latest ping.
pub(crate) fn pong(shared: &SessionShared, payload: &[u8]) {
    shared.outbound.push_control(&pong_frame(payload), false);
}

/// Answers the peer's close frame: the answer echoes its code (RFC 6455 §5.5.1), and
/// nothing follows it.
pub(crate) fn answer_close(shared: &SessionShared, close: Option<&(u16, String)>) {
    let reply = close_frame(close.map(|(code, reason)| (*code, reason.as_str())));
    shared.outbound.push_control(&reply, true);
}


//! `permessage-deflate` (RFC 7692): the offer a client makes in its handshake, the
//! answer, and the two directions of compression.
//!
//! The server always sends with no context takeover: each message is compressed on its
//! own, so a broadcast is compressed once and the same bytes go to every socket that
//! negotiated the extension (see `frame`). It asks the same of the client
//! (`client_no_context_takeover`), so a socket keeps no compression state between
//! messages: both directions use one compressor and one decompressor per worker
//! thread, reset for each message, and an idle socket holds nothing for compression.

use std::cell::RefCell;
use std::num::NonZeroU8;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// What a sync flush ends with; a message's compressed bytes go without it (§7.2.1).
const SYNC_TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// The largest window (2^15 bytes): what a server that was not asked for less may use.
const MAX_WINDOW_BITS: u8 = 15;

/// The extension as one socket negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deflate {
    /// The client's `server_max_window_bits` (15 if it asked for nothing): a message
    /// longer than its window goes uncompressed to this socket, since back references
    /// within a message reach no further back than its length.
    window_bits: NonZeroU8,
    /// Messages shorter than this go uncompressed (the server's setting).
    min_size: u32,
}

impl Deflate {
    /// The first acceptable `permessage-deflate` offer among the values of the
    /// client's `Sec-WebSocket-Extensions` headers; `None` if it made none (or only
    /// offers with unknown, repeated or invalid parameters, which the RFC says to
    /// decline).
    pub(crate) fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        headers
            .into_iter()
            .flat_map(|value| value.split(','))
            .find_map(accept_offer)
    }

    /// The `Sec-WebSocket-Extensions` value that accepts the offer.
    pub(crate) fn response(self) -> String {
        let mut answer =
            format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
        if self.window_bits.get() < MAX_WINDOW_BITS {
            answer.push_str(&format!("; server_max_window_bits={}", self.window_bits));
        }
        answer
    }

    /// The same, sending messages shorter than `min_size` bytes uncompressed.
    pub(crate) fn sending_from(mut self, min_size: usize) -> Self {
        self.min_size = u32::try_from(min_size).unwrap_or(u32::MAX);
        self
    }

    /// Whether a message of `len` bytes goes compressed to this socket: it is long
    /// enough to be worth it, and within the client's window (the compressor's own
    /// window is the largest, so any length fits that).
    pub(crate) fn takes(self, len: usize) -> bool {
        len >= self.min_size as usize
            && (self.window_bits.get() == MAX_WINDOW_BITS || len <= 1 << self.window_bits.get())
    }

    /// The extension negotiated with `window_bits`, compressing from `min_size` bytes.
    #[cfg(test)]
    pub(crate) fn for_tests(window_bits: u8, min_size: u32) -> Self {
        Self {
            window_bits: NonZeroU8::new(window_bits).unwrap_or(NonZeroU8::MIN),
            min_size,
        }
    }
}

/// One offer (`permessage-deflate; param; param=value`) if acceptable.
fn accept_offer(offer: &str) -> Option<Deflate> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen = Vec::new();
    let mut window_bits = NonZeroU8::new(MAX_WINDOW_BITS)?;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            // No context takeover is what this side does anyway; the client's own
            // window may be anything (this side inflates with the largest).
            (
                "server_no_context_takeover"
                | "client_no_context_takeover"
                | "client_max_window_bits",
                None,
            ) => {}
            ("server_max_window_bits", Some(value)) => window_bits = window(value)?,
            ("client_max_window_bits", Some(value)) => {
                window(value)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(Deflate {
        window_bits,
        min_size: 0,
    })
}

/// A window size parameter: 8 to 15, digits only.
fn window(value: &str) -> Option<NonZeroU8> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 2 {
        return None;
    }
    value
        .parse()
        .ok()
        .filter(|bits: &NonZeroU8| (8..=MAX_WINDOW_BITS).contains(&bits.get()))
}

thread_local! {
    /// This worker's compressor, reset for each message. zlib's default level: a
    /// broadcast is compressed once for all its recipients, so bytes saved on every
    /// socket outweigh the compressor's time (a 2 KB JSON update measured here: level 1
    /// 694 bytes in 5 µs, level 6 491 bytes in 21 µs).
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
    /// This worker's decompressor, reset for each message.
    static DECOMPRESSOR: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// Appends the compressed form of `parts` (one message's payload, in order) to `out`,
/// ending on a byte boundary without the sync flush's tail: a message's compressed
/// payload, or the end of one after a stored block.
pub(crate) fn compress(parts: &[&[u8]], out: &mut Vec<u8>) {
    const ROOM: usize = 64;
    COMPRESSOR.with_borrow_mut(|compressor| {
        compressor.reset();
        let total: usize = parts.iter().map(|part| part.len()).sum();
        out.reserve(total / 2 + ROOM);
        // An empty message is still one (empty) flushed block.
        let nothing: [&[u8]; 1] = [b""];
        let parts = if parts.is_empty() { &nothing[..] } else { parts };
        let last = parts.len() - 1;
        for (n, part) in parts.iter().enumerate() {
            let flush = if n == last {
                FlushCompress::Sync
            } else {
                FlushCompress::None
            };
            let mut input = *part;
            loop {
                if out.capacity() - out.len() < ROOM {
                    out.reserve(out.capacity().max(256));
                }
                let before = compressor.total_in();
                // Compressing into a buffer with room cannot fail; should it, what is
                // left out makes the message fail to inflate, never overrun.
                if compressor.compress_vec(input, out, flush).is_err() {
                    return;
                }
                let took = usize::try_from(compressor.total_in() - before).unwrap_or(input.len());
                input = input.get(took..).unwrap_or_default();
                // The part is all in, and (at the end) the flush is all out: it left
                // room behind.
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
            }
        }
    });
    if out.ends_with(&SYNC_TAIL) {
        out.truncate(out.len() - SYNC_TAIL.len());
    }
}

/// Why a compressed message could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates to more than the limit (a deflate bomb among them).
    TooLarge,
    /// It is not valid deflate data.
    Corrupt,
}

/// The payload of a compressed message (`compressed`, without the sync flush's tail),
/// at most `max` bytes of it: more is [`InflateError::TooLarge`], found by inflating
/// at most one byte past the limit.
pub(crate) fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    DECOMPRESSOR.with_borrow_mut(|decompressor| {
        decompressor.reset(false);
        let mut out = Vec::with_capacity(
            compressed
                .len()
                .saturating_mul(4)
                .max(64)
                .min(max.saturating_add(1)),
        );
        for input in [compressed, &SYNC_TAIL[..]] {
            let mut input = input;
            loop {
                if out.len() > max {
                    return Err(InflateError::TooLarge);
                }
                if out.len() == out.capacity() {
                    let room = out.capacity().max(64).min(max.saturating_add(1) - out.len());
                    out.reserve_exact(room);
                }
                let before = decompressor.total_in();
                let status = decompressor
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                let took = usize::try_from(decompressor.total_in() - before).unwrap_or(input.len());
                input = input.get(took..).unwrap_or_default();
                match status {
                    // A final block ends the stream: whatever follows is not deflate.
                    Status::StreamEnd if !input.is_empty() => return Err(InflateError::Corrupt),
                    Status::StreamEnd => break,
                    // All taken and no room used up: this input is done.
                    _ if input.is_empty() && out.len() < out.capacity() => break,
                    Status::BufError if !input.is_empty() && out.len() < out.capacity() => {
                        return Err(InflateError::Corrupt)
                    }
                    _ => {}
                }
            }
        }
        if out.len() > max {
            return Err(InflateError::TooLarge);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(value: &str) -> Option<Deflate> {
        Deflate::negotiate([value])
    }

    #[test]
    fn offers_are_accepted_or_declined_as_the_rfc_says() {
        let full = Deflate::for_tests(15, 0);
        assert_eq!(negotiate("permessage-deflate"), Some(full));
        // Chromium's and Dart's offers.
        assert_eq!(negotiate("permessage-deflate; client_max_window_bits"), Some(full));
        assert_eq!(
            negotiate("permessage-deflate; client_max_window_bits=15"),
            Some(full)
        );
        assert_eq!(
            negotiate("permessage-deflate; server_max_window_bits=10; server_no_context_takeover"),
            Some(Deflate::for_tests(10, 0))
        );
        assert_eq!(
            negotiate("permessage-deflate; server_max_window_bits=\"9\""),
            Some(Deflate::for_tests(9, 0))
        );
        // Declined: unknown, repeated or out-of-range parameters; another extension.
        assert_eq!(negotiate("permessage-deflate; x_param"), None);
        assert_eq!(negotiate("permessage-deflate; server_max_window_bits"), None);
        assert_eq!(negotiate("permessage-deflate; server_max_window_bits=7"), None);
        assert_eq!(negotiate("permessage-deflate; server_max_window_bits=16"), None);
        assert_eq!(negotiate("permessage-deflate; client_no_context_takeover; client_no_context_takeover"), None);
        assert_eq!(negotiate("permessage-deflate; client_no_context_takeover=1"), None);
        assert_eq!(negotiate("x-webkit-deflate-frame"), None);
        // The first acceptable offer wins.
        assert_eq!(
            Deflate::negotiate(["permessage-deflate; bogus, permessage-deflate; server_max_window_bits=12"]),
            Some(Deflate::for_tests(12, 0))
        );
    }

    #[test]
    fn the_answer_asks_for_no_context_takeover_and_names_a_smaller_window() {
        assert_eq!(
            Deflate::for_tests(15, 0).response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let narrow = Deflate::for_tests(9, 0);
        assert!(narrow.response().ends_with("; server_max_window_bits=9"));
        assert!(narrow.takes(512));
        assert!(!narrow.takes(513));
        assert!(!narrow.sending_from(100).takes(99));
    }

    #[test]
    fn compressed_parts_inflate_to_their_concatenation() {
        let json = r#"{"sender":"ann","text":"hello, hello, hello","room":"lobby"}"#.repeat(40);
        let mut out = Vec::new();
        compress(&[b"[", json.as_bytes(), b"]"], &mut out);
        assert!(out.len() < json.len() / 4, "{} bytes", out.len());
        assert!(!out.ends_with(&SYNC_TAIL));
        let back = inflate(&out, 1 << 20).expect("inflated");
        assert_eq!(back, format!("[{json}]").into_bytes());
        // And again: the thread's compressor and decompressor are reset between messages.
        let mut again = Vec::new();
        compress(&[b"short"], &mut again);
        assert_eq!(inflate(&again, 100).expect("inflated"), b"short");
        let mut empty = Vec::new();
        compress(&[], &mut empty);
        assert_eq!(inflate(&empty, 0).expect("inflated"), b"");
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit_and_garbage_as_corrupt() {
        let zeros = vec![0_u8; 10 << 20];
        let mut bomb = Vec::new();
        compress(&[&zeros], &mut bomb);
        assert!(bomb.len() < 20 << 10, "{} bytes", bomb.len());
        assert_eq!(inflate(&bomb, 64 << 10), Err(InflateError::TooLarge));
        assert_eq!(inflate(&bomb, 10 << 20).map(|v| v.len()), Ok(10 << 20));
        assert_eq!(inflate(&[0xff, 0xff, 0xff, 0x00], 1 << 10), Err(InflateError::Corrupt));
    }
}

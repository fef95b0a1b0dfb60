//! The control frames the server sends (ping, pong, close) and how a queued run of
//! frames is searched for a close.

use super::header::{FrameHeader, OpCode};

/// Whether `bytes` (whole server frames, as queued for the writer) hold a close frame.
pub(crate) fn holds_close(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Ok(Some((header, len))) = FrameHeader::parse(rest) {
        if header.opcode == OpCode::Close {
            return true;
        }
        let payload = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        rest = rest.get(len.saturating_add(payload)..).unwrap_or_default();
    }
    false
}

/// A ping frame with no payload.
pub(crate) const PING: [u8; 2] = [0x80 | OpCode::Ping.bits(), 0];

/// The pong answering a ping that carried `payload` (at most 125 bytes).
pub(crate) fn pong_frame(payload: &[u8]) -> Vec<u8> {
    [FrameHeader::server(OpCode::Pong, payload.len()).format().as_slice(), payload].concat()
}

/// A close frame: `code` and `reason` (at most 123 bytes), or no payload.
pub(crate) fn close_frame(close: Option<(u16, &str)>) -> Vec<u8> {
    let Some((code, reason)) = close else {
        return vec![0x80 | OpCode::Close.bits(), 0];
    };
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.extend_from_slice(
        FrameHeader::server(OpCode::Close, 2 + reason.len())
            .format()
            .as_slice(),
    );
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason.as_bytes());
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_frame_is_found_among_whole_frames() {
        let pong = [0x8a, 2, b'h', b'i'];
        assert!(!holds_close(&pong));
        assert!(holds_close(&[&pong[..], &close_frame(None)].concat()));
        assert!(holds_close(&close_frame(Some((1001, "away")))));
        assert!(!holds_close(&[0x8a]), "a cut header is not a close frame");
    }
}

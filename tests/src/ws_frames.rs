//! WebSocket frames at the byte level, for clients that bypass tungstenite: the load
//! generator's subscribers and the wire tests.

// Test helpers: a panic is the test failing with a location.
#![allow(clippy::expect_used, clippy::missing_panics_doc)]

use std::ops::Range;

/// Any fixed key is valid; the server only has to unmask.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A final, masked client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// A final, masked, compressed (`permessage-deflate`, RSV1) client frame carrying
/// `payload`.
pub fn compressed_client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = client_frame(opcode, &deflate(payload));
    frame[0] |= 0x40;
    frame
}

/// `payload` compressed as one `permessage-deflate` message: raw deflate, sync
/// flushed, without the flush's 4-byte tail (RFC 7692 §7.2.1).
pub fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    let mut input = payload;
    loop {
        let before = compressor.total_in();
        compressor
            .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
            .expect("compressed");
        input = &input[(compressor.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A compressed message's payload, inflated (RFC 7692 §7.2.2), with a window of its
/// own.
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut decompressor = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    for mut input in [payload, &[0, 0, 0xff, 0xff][..]] {
        loop {
            let before = decompressor.total_in();
            decompressor
                .decompress_vec(input, &mut out, flate2::FlushDecompress::Sync)
                .expect("valid deflate data");
            input = &input[(decompressor.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
    }
    out
}

/// The first complete unmasked (server) frame in `bytes`: its opcode, where its payload
/// is and where the next frame starts; `None` when the frame is not complete yet.
pub fn frame_at(bytes: &[u8]) -> Option<(u8, Range<usize>, usize)> {
    let opcode = bytes.first()? & 0x0f;
    let short = bytes.get(1)? & 0x7f;
    let (header, len) = match short {
        126 => (
            4,
            usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
        ),
        127 => {
            let raw: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            (10, usize::try_from(u64::from_be_bytes(raw)).ok()?)
        }
        n => (2, usize::from(n)),
    };
    let end = header + len;
    (bytes.len() >= end).then_some((opcode, header..end, end))
}

#[cfg(test)]
mod tests {
    use super::frame_at;

    #[test]
    fn frames_are_found_whole_or_not_at_all() {
        let mut bytes = vec![0x81, 3, b'a', b'b', b'c', 0x81, 126, 0, 200];
        assert_eq!(frame_at(&bytes), Some((1, 2..5, 5)));
        assert_eq!(
            frame_at(&bytes[5..]),
            None,
            "a 200-byte payload not here yet"
        );
        bytes.extend(std::iter::repeat_n(b'x', 200));
        assert_eq!(frame_at(&bytes[5..]), Some((1, 4..204, 204)));
    }
}

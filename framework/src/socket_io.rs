//! The socket's writing side. The writer frames outgoing messages itself and gathers
//! each frame's header and its shared payload into vectored writes, so a broadcast frame
//! is never copied into a per-connection write buffer and an idle connection holds no
//! write buffer at all. The reader's answers (pongs, the reply to a close frame) reach
//! the writer already framed, as the queue's control bytes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::outbound::Queued;

/// Opcodes of the frames the writer sends (RFC 6455 §5.2).
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xa;

/// Frames gathered into one write: two slices each, within Linux's `IOV_MAX` (1,024).
const FRAMES_PER_WRITE: usize = 511;

/// Bytes copied per write when the stream has no vectored writes.
const COPY_CHUNK: usize = 64 << 10;

/// Whether `bytes` (whole server frames, as queued for the writer) hold a close frame.
pub(crate) fn holds_close(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let [first, second, ..] = rest {
        if first & 0x0f == OPCODE_CLOSE {
            return true;
        }
        // Server frames are unmasked: the header is 2, 4 or 10 bytes.
        let (header, len): (usize, usize) = match second & 0x7f {
            126 => match rest.get(2..4) {
                Some(n) => (4, usize::from(u16::from_be_bytes([n[0], n[1]]))),
                None => return false,
            },
            127 => match rest.get(2..10).and_then(|n| <[u8; 8]>::try_from(n).ok()) {
                Some(n) => (10, usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX)),
                None => return false,
            },
            n => (2, usize::from(n)),
        };
        rest = rest.get(header.saturating_add(len)..).unwrap_or_default();
    }
    false
}

/// The header of a final, unmasked frame.
#[derive(Debug, Clone, Copy)]
struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    fn new(opcode: u8, payload: usize) -> Self {
        let mut bytes = [0; 10];
        bytes[0] = 0x80 | opcode;
        let len = match payload {
            n if n < 126 => {
                bytes[1] = n as u8;
                2
            }
            n if n <= usize::from(u16::MAX) => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(n as u64).to_be_bytes());
                10
            }
        };
        Self { bytes, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A ping frame with no payload.
pub(crate) const PING: [u8; 2] = [0x80 | OPCODE_PING, 0];

/// The pong answering a ping that carried `payload` (at most 125 bytes).
pub(crate) fn pong_frame(payload: &[u8]) -> Vec<u8> {
    [Header::new(OPCODE_PONG, payload.len()).as_slice(), payload].concat()
}

/// A close frame: `code` and `reason` (at most 123 bytes), or no payload.
pub(crate) fn close_frame(close: Option<(u16, &str)>) -> Vec<u8> {
    let Some((code, reason)) = close else {
        return vec![0x80 | OPCODE_CLOSE, 0];
    };
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.extend_from_slice(Header::new(OPCODE_CLOSE, 2 + reason.len()).as_slice());
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason.as_bytes());
    frame
}

/// Writes `frames` as text frames, then `tail` (already framed bytes), then flushes.
/// `written` counts the bytes the socket took, so that a caller that stops waiting
/// mid-write can finish the frame it cut ([`rest_of_cut_frame`]).
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &VecDeque<Queued>,
    tail: &[u8],
    written: &mut usize,
) -> io::Result<()> {
    if io.is_write_vectored() {
        write_gathered(io, frames, tail, written).await?;
    } else {
        write_copied(io, frames, tail, written).await?;
    }
    io.flush().await
}

/// The bytes that complete the frame a write of `frames` then `tail` stopped inside
/// after `written` bytes; empty when it stopped between frames.
pub(crate) fn rest_of_cut_frame(frames: &VecDeque<Queued>, tail: &[u8], written: usize) -> Vec<u8> {
    let mut start = 0;
    for queued in frames {
        let header = Header::new(OPCODE_TEXT, queued.frame.len());
        let end = start + header.as_slice().len() + queued.frame.len();
        if written < end {
            if written == start {
                return Vec::new();
            }
            let whole = [header.as_slice(), queued.frame.as_bytes()].concat();
            return whole[written - start..].to_vec();
        }
        start = end;
    }
    // Within the tail (whole control frames): the rest of it.
    match written.checked_sub(start) {
        Some(0) | None => Vec::new(),
        Some(into_tail) => tail.get(into_tail..).unwrap_or_default().to_vec(),
    }
}

async fn write_gathered<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &VecDeque<Queued>,
    tail: &[u8],
    written: &mut usize,
) -> io::Result<()> {
    let mut headers = Vec::with_capacity(frames.len().min(FRAMES_PER_WRITE));
    let mut start = 0;
    loop {
        let end = (start + FRAMES_PER_WRITE).min(frames.len());
        headers.clear();
        headers.extend(
            frames
                .range(start..end)
                .map(|q| Header::new(OPCODE_TEXT, q.frame.len())),
        );
        let last = end == frames.len();
        let mut parts = Vec::with_capacity((end - start) * 2 + 1);
        for (header, queued) in headers.iter().zip(frames.range(start..end)) {
            parts.push(IoSlice::new(header.as_slice()));
            parts.push(IoSlice::new(queued.frame.as_bytes()));
        }
        if last && !tail.is_empty() {
            parts.push(IoSlice::new(tail));
        }
        write_all_vectored(io, &mut parts, written).await?;
        if last {
            return Ok(());
        }
        start = end;
    }
}

/// For streams without vectored writes: frames copied into chunks of [`COPY_CHUNK`].
async fn write_copied<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &VecDeque<Queued>,
    tail: &[u8],
    written: &mut usize,
) -> io::Result<()> {
    let total: usize = frames.iter().map(|q| q.frame.len() + 10).sum::<usize>() + tail.len();
    let mut chunk = Vec::with_capacity(total.min(COPY_CHUNK));
    let mut frames = frames.iter().peekable();
    loop {
        while let Some(queued) = frames.next_if(|_| chunk.len() < COPY_CHUNK) {
            chunk.extend_from_slice(Header::new(OPCODE_TEXT, queued.frame.len()).as_slice());
            chunk.extend_from_slice(queued.frame.as_bytes());
        }
        let last = frames.peek().is_none();
        if last {
            chunk.extend_from_slice(tail);
        }
        write_all_vectored(io, &mut [IoSlice::new(&chunk)], written).await?;
        if last {
            return Ok(());
        }
        chunk.clear();
    }
}

/// Writes every byte of `parts`, counting them into `written` as the socket takes them.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    mut parts: &mut [IoSlice<'_>],
    written: &mut usize,
) -> io::Result<()> {
    while !parts.is_empty() {
        let took = io.write_vectored(parts).await?;
        if took == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *written += took;
        IoSlice::advance_slices(&mut parts, took);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::DIRECT;
    use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

    fn queued(texts: &[String]) -> VecDeque<Queued> {
        texts
            .iter()
            .map(|t| Queued {
                channel: DIRECT,
                frame: Utf8Bytes::from(t.clone()),
            })
            .collect()
    }

    /// What a real WebSocket client reads from the bytes the writer wrote.
    async fn read_back(bytes: Vec<u8>) -> Vec<Message> {
        use futures_util::StreamExt;
        let client = tokio_tungstenite::WebSocketStream::from_raw_socket(
            std::io::Cursor::new(bytes),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        client
            .take_while(|m| std::future::ready(m.is_ok()))
            .filter_map(|m| std::future::ready(m.ok()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn frames_of_every_length_class_are_read_back_by_tungstenite() {
        // 2-, 4- and 10-byte headers, and more frames than one gathered write holds.
        let mut texts: Vec<String> = vec!["a".repeat(125), "b".repeat(126), "c".repeat(70_000)];
        texts.extend((0..1_200).map(|i| format!("frame {i}")));
        let frames = queued(&texts);
        for vectored in [true, false] {
            let mut out = Vec::new();
            let tail = [PING.to_vec(), close_frame(Some((1000, "bye")))].concat();
            let mut written = 0;
            if vectored {
                write_frames(&mut out, &frames, &tail, &mut written).await.expect("written");
            } else {
                write_copied(&mut out, &frames, &tail, &mut written).await.expect("written");
            }
            assert_eq!(written, out.len());
            let messages = read_back(out).await;
            let read: Vec<String> = messages
                .iter()
                .filter_map(|m| m.to_text().ok().filter(|_| m.is_text()).map(str::to_owned))
                .collect();
            assert_eq!(read, texts, "vectored: {vectored}");
            assert!(messages.iter().any(Message::is_ping));
            assert!(
                matches!(messages.last(), Some(Message::Close(Some(frame))) if frame.reason == "bye" && u16::from(frame.code) == 1000)
            );
        }
    }

    #[tokio::test]
    async fn a_write_cut_anywhere_is_completed_to_a_frame_boundary() {
        let texts: Vec<String> = vec!["first".into(), "x".repeat(300), "third".into()];
        let frames = queued(&texts);
        let mut whole = Vec::new();
        write_frames(&mut whole, &frames, &PING, &mut 0).await.expect("written");
        // Frame boundaries: 2 + 5, then 4 + 300, then 2 + 5, then the 2-byte ping.
        let boundaries = [0, 7, 311, 318, 320];
        for cut in 0..=whole.len() {
            let rest = rest_of_cut_frame(&frames, &PING, cut);
            let end = cut + rest.len();
            assert!(boundaries.contains(&end), "a cut at {cut} is completed to {end}");
            assert_eq!(rest, whole[cut..end], "the rest is the frame's own bytes");
            if boundaries.contains(&cut) {
                assert!(rest.is_empty(), "nothing to finish at a boundary ({cut})");
            }
        }
    }

    #[test]
    fn a_close_frame_is_found_among_whole_frames() {
        let pong = [0x8a, 2, b'h', b'i'];
        assert!(!holds_close(&pong));
        assert!(holds_close(&[&pong[..], &close_frame(None)].concat()));
        assert!(holds_close(&close_frame(Some((1001, "away")))));
        assert!(!holds_close(&[0x8a]), "a cut header is not a close frame");
    }
}

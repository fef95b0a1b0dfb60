//! The socket's writing side. Frames arrive framed (a broadcast's header is written once,
//! beside its payload, see `frame`); the writer copies what is queued into chunks and
//! writes each at once, so an idle connection holds no write buffer at all. The
//! reader's answers (pongs, the reply to a close frame) reach the writer already framed
//! (`control`).

use std::collections::VecDeque;
use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::deflate::Deflate;
use super::frame::{CallIdText, TextFrame};


/// Bytes of frames copied into one write. A write holds this much (and at most one frame
/// more) while the socket takes it, and nothing once it is done.
const WRITE_CHUNK: usize = 64 << 10;

/// Writes `frames` (already framed), then `tail` (control frames), then flushes. Frames
/// are copied into chunks of [`WRITE_CHUNK`] bytes, one write each: measured at 1,000
/// subscribers, gathering each frame as its own slice (`writev` of up to 1,024 slices)
/// cost the kernel about three times as much copying as one contiguous buffer, more than
/// the copy saves. `written` counts the bytes the socket took, so that a caller that
/// stops waiting mid-write can finish the frame it cut ([`rest_of_cut_frame`]). On a
/// socket that negotiated `deflate`, frames go compressed where that pays (see
/// `frame`).
pub(crate) async fn write_frames<W: AsyncWrite + Unpin, F: AsRef<TextFrame>>(
    io: &mut W,
    frames: &VecDeque<F>,
    call_id: impl Fn(&F) -> CallIdText,
    deflate: Option<Deflate>,
    tail: &[u8],
    written: &mut usize,
) -> io::Result<()> {
    let total: usize = frames
        .iter()
        .map(|f| f.as_ref().wire_len(deflate))
        .sum::<usize>()
        + tail.len();
    let mut chunk = Vec::with_capacity(total.min(WRITE_CHUNK));
    let mut frames = frames.iter().peekable();
    loop {
        while let Some(queued) = frames.next_if(|_| chunk.len() < WRITE_CHUNK) {
            queued
                .as_ref()
                .append_wire(&mut chunk, || call_id(queued), deflate);
        }
        let last = frames.peek().is_none();
        if last {
            chunk.extend_from_slice(tail);
        }
        write_counted(io, &chunk, written).await?;
        if last {
            return io.flush().await;
        }
        chunk.clear();
    }
}

/// The bytes that complete the frame a write of `frames` then `tail` (to a socket that
/// negotiated `deflate`, if any) stopped inside after `written` bytes; empty when it
/// stopped between frames.
pub(crate) fn rest_of_cut_frame<F: AsRef<TextFrame>>(
    frames: &VecDeque<F>,
    call_id: impl Fn(&F) -> CallIdText,
    deflate: Option<Deflate>,
    tail: &[u8],
    written: usize,
) -> Vec<u8> {
    let mut start = 0;
    for queued in frames {
        let frame = queued.as_ref();
        let end = start + frame.wire_len(deflate);
        if written < end {
            // Cut inside this frame, or (at its start) between frames.
            return match written.checked_sub(start) {
                Some(into) if into > 0 => {
                    let mut wire = Vec::with_capacity(frame.wire_len(deflate));
                    frame.append_wire(&mut wire, || call_id(queued), deflate);
                    wire.split_off(into)
                }
                _ => Vec::new(),
            };
        }
        start = end;
    }
    // Within the tail (whole control frames): the rest of it.
    match written.checked_sub(start) {
        Some(0) | None => Vec::new(),
        Some(into_tail) => tail.get(into_tail..).unwrap_or_default().to_vec(),
    }
}

/// Writes every byte of `bytes`, counting them into `written` as the socket takes them.
async fn write_counted<W: AsyncWrite + Unpin>(
    io: &mut W,
    mut bytes: &[u8],
    written: &mut usize,
) -> io::Result<()> {
    while !bytes.is_empty() {
        let took = io.write(bytes).await?;
        if took == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *written += took;
        bytes = bytes.get(took..).unwrap_or_default();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::control::{close_frame, PING};
    use crate::ws::frame::CallFrameShape;
    use tokio_tungstenite::tungstenite::Message;

    /// `texts` as frames: whole ones, and every other one a call frame.
    fn queued(texts: &[String]) -> VecDeque<TextFrame> {
        texts
            .iter()
            .enumerate()
            .map(|(n, text)| match n % 2 {
                0 => TextFrame::from_text(text),
                _ => call_frame(text),
            })
            .collect()
    }

    /// `{"cid":"<a call id>"}` then `text`, as a call frame.
    fn call_frame(text: &str) -> TextFrame {
        let shape = CallFrameShape::around(r#"{"cid":"ID"}"#, "ID").expect("split");
        shape.frame(&[text.as_bytes()])
    }

    /// The id of every call frame here.
    fn call_id(_: &TextFrame) -> CallIdText {
        uuid::Uuid::from_u128(7).into()
    }

    /// What [`queued`] made of `texts`, as text.
    fn sent(texts: &[String]) -> Vec<String> {
        let nil = uuid::Uuid::nil().to_string();
        let id = uuid::Uuid::from_u128(7).to_string();
        queued(texts)
            .iter()
            .map(|f| f.text().replace(&nil, &id))
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
        // 2-, 4- and 10-byte headers, and more frames than one chunk holds.
        let mut texts: Vec<String> = vec!["a".repeat(125), "b".repeat(126), "c".repeat(70_000)];
        texts.extend((0..1_200).map(|i| format!("frame {i}")));
        let frames = queued(&texts);
        {
            let mut out = Vec::new();
            let tail = [PING.to_vec(), close_frame(Some((1000, "bye")))].concat();
            let mut written = 0;
            write_frames(&mut out, &frames, call_id, None, &tail, &mut written).await.expect("written");
            assert_eq!(written, out.len());
            let messages = read_back(out).await;
            let read: Vec<String> = messages
                .iter()
                .filter_map(|m| m.to_text().ok().filter(|_| m.is_text()).map(str::to_owned))
                .collect();
            assert_eq!(read, sent(&texts));
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
        write_frames(&mut whole, &frames, call_id, None, &PING, &mut 0).await.expect("written");
        // Frame boundaries: 2 + 5, then 4 + 346 (a call frame: 46 bytes more), then
        // 2 + 5, then the 2-byte ping.
        let boundaries = [0, 7, 357, 364, 366];
        for cut in 0..=whole.len() {
            let rest = rest_of_cut_frame(&frames, call_id, None, &PING, cut);
            let end = cut + rest.len();
            assert!(boundaries.contains(&end), "a cut at {cut} is completed to {end}");
            assert_eq!(rest, whole[cut..end], "the rest is the frame's own bytes");
            if boundaries.contains(&cut) {
                assert!(rest.is_empty(), "nothing to finish at a boundary ({cut})");
            }
        }
    }
}

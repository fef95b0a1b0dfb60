//! The codec's conformance target: a socket that echoes every message back, read with
//! [`FrameReader`] and written with the writer's framing, answering pings and closes as
//! the server's sockets do. The Autobahn test suite's fuzzing client runs against it
//! (`tests/autobahn.sh`); nothing else uses it.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::control::{close_frame, pong_frame};
use super::frame::{CallIdText, TextFrame};
use super::header::{FrameHeader, OpCode};
use super::reader::{FrameReader, Incoming, ReadError};
use super::writer::write_frames;

/// Echoes the messages of one upgraded connection until it closes; frames and messages
/// up to `max_size` bytes.
///
/// # Errors
///
/// When writing to the connection fails.
pub async fn echo<I: AsyncRead + AsyncWrite + Unpin>(
    mut io: I,
    max_size: usize,
) -> std::io::Result<()> {
    let mut reader = FrameReader::new(max_size);
    // Echoed frames are no call frames: the id is never asked for.
    let no_call = |_: &TextFrame| CallIdText::from(uuid::Uuid::nil());
    loop {
        let reply = match reader.next(&mut io).await {
            Ok(Incoming::Text(text)) => {
                let frames = VecDeque::from([TextFrame::from_text(&text)]);
                let mut written = 0;
                write_frames(&mut io, &frames, no_call, &[], &mut written).await?;
                continue;
            }
            Ok(Incoming::Binary(payload)) => {
                let header = FrameHeader::server(OpCode::Binary, payload.len()).format();
                [header.as_slice(), &payload].concat()
            }
            Ok(Incoming::Ping(payload)) => pong_frame(&payload),
            Ok(Incoming::Pong) => continue,
            Ok(Incoming::Close(close)) => {
                let code = close.as_ref().map(|(code, _)| (*code, ""));
                io.write_all(&close_frame(code)).await?;
                return io.shutdown().await;
            }
            Err(error) => {
                let code = match error {
                    ReadError::Protocol(_) => 1002,
                    ReadError::Utf8 => 1007,
                    ReadError::TooLarge { .. } => 1009,
                    ReadError::Ended | ReadError::Io(_) => return Ok(()),
                };
                io.write_all(&close_frame(Some((code, "")))).await?;
                return io.shutdown().await;
            }
        };
        io.write_all(&reply).await?;
        io.flush().await?;
    }
}

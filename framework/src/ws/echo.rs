//! The codec's conformance target: a socket that echoes every message back, read with
//! [`FrameReader`] and written with the writer's framing, answering pings and closes as
//! the server's sockets do. The Autobahn test suite's fuzzing client runs against it
//! (`tests/autobahn.sh`); nothing else uses it.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::control::{close_frame, pong_frame};
use super::deflate::Deflate;
use super::frame::{CallIdText, TextFrame};
use super::header::{FrameHeader, OpCode};
use super::reader::{FrameReader, Incoming};
use super::writer::write_frames;

/// The extensions the echo target accepts from a handshake: `permessage-deflate` as
/// the server's sockets accept it, sending every text message it can shorten
/// compressed.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoExtensions(Option<Deflate>);

impl EchoExtensions {
    /// What the client's `Sec-WebSocket-Extensions` value (if any) gets.
    pub fn from_offer(offer: Option<&str>) -> Self {
        Self(offer.and_then(|offer| Deflate::negotiate([offer])))
    }

    /// The answer's `Sec-WebSocket-Extensions` value, if anything was accepted.
    pub fn response(&self) -> Option<String> {
        self.0.map(Deflate::response)
    }
}

/// Echoes the messages of one upgraded connection until it closes; frames and messages
/// up to `max_size` bytes, with the `extensions` its handshake accepted.
///
/// # Errors
///
/// When writing to the connection fails.
pub async fn echo<I: AsyncRead + AsyncWrite + Unpin>(
    mut io: I,
    max_size: usize,
    extensions: EchoExtensions,
) -> std::io::Result<()> {
    let deflate = extensions.0;
    let mut reader = FrameReader::new(max_size).inflating(deflate);
    // Echoed frames are no call frames: the id is never asked for.
    let no_call = |_: &TextFrame| CallIdText::from(uuid::Uuid::nil());
    loop {
        let reply = match reader.next(&mut io).await {
            Ok(Incoming::Text(text)) => {
                let frames = VecDeque::from([TextFrame::from_text(&text)]);
                let mut written = 0;
                write_frames(&mut io, &frames, no_call, deflate, &[], &mut written).await?;
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
                let Some(code) = error.close_code() else {
                    return Ok(());
                };
                io.write_all(&close_frame(Some((code, "")))).await?;
                return io.shutdown().await;
            }
        };
        io.write_all(&reply).await?;
        io.flush().await?;
    }
}

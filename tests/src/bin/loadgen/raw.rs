//! The subscribers' side of a WebSocket, kept as cheap as it can be so the generator
//! saturates later than the server: an HTTP upgrade written by hand, one masked text
//! frame out (the join), then server frames parsed straight out of one read buffer with
//! no per-frame allocation. Pings are answered; a close frame ends the socket. With
//! `--deflate` the upgrade offers `permessage-deflate` and compressed frames are
//! inflated (into one buffer per socket, reused) before they are counted.

use std::io;
use std::net::SocketAddr;

use flate2::{Decompress, FlushDecompress};
use streampod_tests::ws_frames::{client_frame, frame_at};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A subscriber's socket after the upgrade.
#[derive(Debug)]
pub(crate) struct RawSocket {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` not yet parsed: `buffer[start..end]`.
    start: usize,
    end: usize,
    /// The server accepted `permessage-deflate`.
    deflate: bool,
    /// A compressed frame's payload, inflated.
    inflated: Vec<u8>,
}

/// Why a socket stopped.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The server sent a close frame (code, reason).
    Closed(u16, String),
    /// The connection ended without one.
    Eof,
}

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

impl RawSocket {
    /// Upgrades `stream` (connected to `addr`) to a WebSocket at `path`, asking for
    /// the `streampod.v1` subprotocol when `extended`, and offering `permessage-deflate`
    /// as browsers do when `deflate` (the server must accept it).
    pub(crate) async fn upgrade(
        mut stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        extended: bool,
        deflate: bool,
    ) -> io::Result<Self> {
        let subprotocol = if extended {
            "Sec-WebSocket-Protocol: streampod.v1\r\n"
        } else {
            ""
        };
        let extensions = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{subprotocol}{extensions}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buffer = vec![0; 16 << 10];
        let mut end = 0;
        let head_len = loop {
            let read = stream.read(&mut buffer[end..]).await?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the upgrade",
                ));
            }
            end += read;
            if let Some(at) = buffer[..end].windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if end == buffer.len() {
                return Err(io::Error::other("an upgrade response of over 16 KiB"));
            }
        };
        let status = String::from_utf8_lossy(&buffer[..head_len.min(64)]).into_owned();
        if !status.starts_with("HTTP/1.1 101") {
            return Err(io::Error::other(format!(
                "not upgraded: {}",
                status.lines().next().unwrap_or_default()
            )));
        }
        let head = String::from_utf8_lossy(&buffer[..head_len]).to_ascii_lowercase();
        if deflate && !head.contains("sec-websocket-extensions: permessage-deflate") {
            return Err(io::Error::other(
                "the server did not accept permessage-deflate",
            ));
        }
        Ok(Self {
            stream,
            buffer,
            start: head_len,
            end,
            deflate,
            inflated: Vec::new(),
        })
    }

    /// Sends one masked frame.
    async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&client_frame(opcode, payload)).await
    }

    /// Sends a text frame.
    pub(crate) async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(OPCODE_TEXT, text.as_bytes()).await
    }

    /// Reads what has arrived and hands every complete text frame's payload (inflated
    /// if it came compressed) and its bytes on the wire to `on_text`, which returns
    /// `false` to stop early. Returns `Ok(None)` to be called
    /// again, or why the socket ended.
    pub(crate) async fn read_frames(
        &mut self,
        mut on_text: impl FnMut(&[u8], usize) -> bool,
    ) -> io::Result<Option<Ended>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buffer.len() {
            // Move the partial frame to the front; grow only for a frame that needs it.
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buffer.len() {
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
        }
        let read = self.stream.read(&mut self.buffer[self.end..]).await?;
        if read == 0 {
            return Ok(Some(Ended::Eof));
        }
        self.end += read;
        let mut pong = None;
        while let Some((opcode, payload, next)) = frame_at(&self.buffer[self.start..self.end]) {
            let compressed = self.buffer[self.start] & 0x40 != 0;
            let payload = self.start + payload.start..self.start + payload.end;
            self.start += next;
            match opcode {
                OPCODE_TEXT if compressed => {
                    if !self.deflate {
                        return Err(io::Error::other(
                            "a compressed frame without permessage-deflate",
                        ));
                    }
                    inflate(&self.buffer[payload.clone()], &mut self.inflated)?;
                    if !on_text(&self.inflated, next) {
                        return Ok(None);
                    }
                }
                OPCODE_TEXT if !on_text(&self.buffer[payload.clone()], next) => return Ok(None),
                OPCODE_PING => pong = Some(self.buffer[payload].to_vec()),
                OPCODE_CLOSE => {
                    let body = &self.buffer[payload];
                    let code = body
                        .get(..2)
                        .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                    let reason = String::from_utf8_lossy(body.get(2..).unwrap_or_default());
                    return Ok(Some(Ended::Closed(code, reason.into_owned())));
                }
                _ => {}
            }
        }
        if let Some(payload) = pong {
            self.send(OPCODE_PONG, &payload).await?;
        }
        Ok(None)
    }
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Decompress> = std::cell::RefCell::new(Decompress::new(false));
}

/// Inflates one compressed message's payload into `out` (RFC 7692 §7.2.2: the payload
/// and the sync flush's tail, with a fresh window: the server takes no context over).
fn inflate(payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    DECOMPRESSOR.with_borrow_mut(|decompressor| {
        decompressor.reset(false);
        for mut input in [payload, &[0, 0, 0xff, 0xff][..]] {
            loop {
                out.reserve(input.len().max(1024));
                let before = decompressor.total_in();
                decompressor
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(io::Error::other)?;
                let took = (decompressor.total_in() - before) as usize;
                input = &input[took..];
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
            }
        }
        Ok(())
    })
}

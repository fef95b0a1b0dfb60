//! The client's WebSocket frames (RFC 6455 §5), read without a buffer per socket: each
//! read goes into a buffer on the reading worker's stack, and only bytes that do not
//! make up a whole frame yet (or a fragmented message's first parts) are kept, in a
//! buffer of their own that is freed as soon as the frame is complete. An idle socket
//! holds none.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::deflate::{inflate, Deflate, InflateError};
use super::header::{FrameHeader, OpCode};

/// Bytes read at once into the stack buffer.
const READ_CHUNK: usize = 4096;

/// A message (or control frame) the client sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole text message, UTF-8 checked.
    Text(String),
    /// A whole binary message (the server refuses them; the conformance echo echoes
    /// them).
    Binary(Vec<u8>),
    /// A ping, with the payload its pong must carry.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame: its code and reason, if it had a payload. A code the RFC does not
    /// allow on the wire is [`ReadError::Protocol`] instead.
    Close(Option<(u16, String)>),
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The client broke RFC 6455: close with 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message (or close reason) is not UTF-8: close with 1007.
    #[error("invalid UTF-8 in a text frame")]
    Utf8,
    /// A frame or message is over the limit: close with 1009.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The frame's (or the fragmented message's) size so far.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A compressed message inflates to more than the limit: close with 1009.
    #[error("a compressed message inflates past the limit of {max} bytes")]
    InflatedTooLarge {
        /// The limit.
        max: usize,
    },
    /// A compressed message is not valid deflate data: close with 1007.
    #[error("a compressed message is not valid deflate data")]
    Corrupt,
    /// The connection ended without a close frame.
    #[error("connection closed without a close frame")]
    Ended,
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// The close code (RFC 6455 §7.4.1) this error closes the socket with; `None` when
    /// the peer is gone and nothing can be sent.
    pub(crate) fn close_code(&self) -> Option<u16> {
        match self {
            Self::Protocol(_) => Some(1002),
            Self::Utf8 | Self::Corrupt => Some(1007),
            Self::TooLarge { .. } | Self::InflatedTooLarge { .. } => Some(1009),
            Self::Ended | Self::Io(_) => None,
        }
    }
}

/// A fragmented message's parts so far.
#[derive(Debug)]
struct Fragments {
    text: bool,
    /// The message is compressed: its text is checked once inflated.
    compressed: bool,
    payload: Vec<u8>,
    /// How much of a text message's payload is known to be valid UTF-8: each fragment
    /// is checked as it comes, so invalid text fails at once (1007), not at the end.
    valid: usize,
}

impl Fragments {
    /// Checks what arrived since the last check; an incomplete character at the end
    /// waits for the next fragment.
    fn check_utf8(&mut self) -> Result<(), ReadError> {
        if !self.text || self.compressed {
            return Ok(());
        }
        let rest = self.payload.get(self.valid..).unwrap_or_default();
        match std::str::from_utf8(rest) {
            Ok(_) => self.valid = self.payload.len(),
            Err(error) if error.error_len().is_some() => return Err(ReadError::Utf8),
            Err(error) => self.valid += error.valid_up_to(),
        }
        Ok(())
    }
}

/// Parses a client's frames; see the module docs.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// Bytes read and not parsed yet (empty, without allocation, between frames).
    pending: Vec<u8>,
    /// The message whose first frame had no FIN bit, until its last frame.
    fragments: Option<Box<Fragments>>,
    /// The largest frame and message accepted, compressed or inflated.
    max_size: usize,
    /// What the socket negotiated of `permessage-deflate`, if anything: a message's
    /// first frame may have RSV1 set.
    deflate: Option<Deflate>,
}

/// A client frame's header, checked, with the bytes it takes.
struct Header {
    fin: bool,
    compressed: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Header bytes (6 to 14).
    len: usize,
    payload: u64,
}

impl FrameReader {
    /// A reader that accepts frames and messages of at most `max_size` bytes.
    pub(crate) fn new(max_size: usize) -> Self {
        Self {
            pending: Vec::new(),
            fragments: None,
            max_size,
            deflate: None,
        }
    }

    /// The same reader, for a socket that negotiated `deflate` (if anything):
    /// compressed messages are inflated, to at most the same limit.
    pub(crate) fn inflating(mut self, deflate: Option<Deflate>) -> Self {
        self.deflate = deflate;
        self
    }

    /// What the socket negotiated of `permessage-deflate` (the writer sends with it).
    pub(crate) fn deflate(&self) -> Option<Deflate> {
        self.deflate
    }

    /// The next message or control frame. Cancel-safe: bytes read stay in the reader.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
    ) -> Result<Incoming, ReadError> {
        loop {
            if let Some(incoming) = self.parse()? {
                return Ok(incoming);
            }
            let read = poll_fn(|cx| {
                let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
                let mut buf = ReadBuf::uninit(&mut stack);
                ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
                self.pending.extend_from_slice(buf.filled());
                Poll::Ready(Ok::<_, io::Error>(buf.filled().len()))
            })
            .await?;
            if read == 0 {
                return Err(ReadError::Ended);
            }
        }
    }

    /// Takes the next message out of the bytes read so far, if they hold one.
    fn parse(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            let Some(header) = self.header()? else {
                return Ok(None);
            };
            // `header` checked the size against the limit, which fits in memory.
            let payload_len = usize::try_from(header.payload).unwrap_or(usize::MAX);
            let end = header.len.saturating_add(payload_len);
            if self.pending.len() < end {
                // Not reserved from the header: a peer could declare large frames and
                // send nothing, on many sockets.
                return Ok(None);
            }
            let payload = &mut self.pending[header.len..end];
            unmask(payload, header.mask);
            let incoming = self.frame(&header, end)?;
            self.consume(end);
            if incoming.is_some() {
                return Ok(incoming);
            }
        }
    }

    /// The header at the start of `pending`, once it is all there; fails on a violation
    /// as soon as the bytes that show it have arrived.
    fn header(&self) -> Result<Option<Header>, ReadError> {
        let Some((header, len)) = FrameHeader::parse(&self.pending).map_err(ReadError::Protocol)?
        else {
            return Ok(None);
        };
        let Some(mask) = header.mask else {
            return Err(ReadError::Protocol("a client frame is not masked"));
        };
        let (opcode, payload) = (header.opcode, header.payload_len);
        if header.compressed && self.deflate.is_none() {
            return Err(ReadError::Protocol("reserved bits are set"));
        }
        if header.compressed && opcode == OpCode::Continuation {
            return Err(ReadError::Protocol("a continuation frame has RSV1 set"));
        }
        let so_far = self
            .fragments
            .as_ref()
            .filter(|_| opcode == OpCode::Continuation)
            .map_or(0, |f| f.payload.len() as u64);
        let size = so_far.saturating_add(payload);
        if size > self.max_size as u64 {
            return Err(ReadError::TooLarge {
                size,
                max: self.max_size,
            });
        }
        Ok(Some(Header {
            fin: header.fin,
            compressed: header.compressed,
            opcode,
            mask,
            len,
            payload,
        }))
    }

    /// Handles the whole, unmasked frame `pending[header.len..end]`.
    fn frame(&mut self, header: &Header, end: usize) -> Result<Option<Incoming>, ReadError> {
        let payload = &self.pending[header.len..end];
        match header.opcode {
            OpCode::Ping => Ok(Some(Incoming::Ping(payload.to_vec()))),
            OpCode::Pong => Ok(Some(Incoming::Pong)),
            OpCode::Close => close(payload).map(Some),
            OpCode::Continuation => {
                let Some(fragments) = self.fragments.as_mut() else {
                    return Err(ReadError::Protocol("a continuation frame without a message"));
                };
                fragments.payload.extend_from_slice(payload);
                if !header.fin {
                    fragments.check_utf8()?;
                    return Ok(None);
                }
                let Some(done) = self.fragments.take() else {
                    return Ok(None);
                };
                let payload = if done.compressed {
                    self.inflate(&done.payload)?
                } else {
                    done.payload
                };
                message(done.text, payload).map(Some)
            }
            opcode => {
                if self.fragments.is_some() {
                    return Err(ReadError::Protocol(
                        "a new message began before the fragmented one ended",
                    ));
                }
                let text = opcode == OpCode::Text;
                if header.fin {
                    let payload = if header.compressed {
                        self.inflate(payload)?
                    } else {
                        payload.to_vec()
                    };
                    return message(text, payload).map(Some);
                }
                let mut fragments = Box::new(Fragments {
                    text,
                    compressed: header.compressed,
                    payload: payload.to_vec(),
                    valid: 0,
                });
                fragments.check_utf8()?;
                self.fragments = Some(fragments);
                Ok(None)
            }
        }
    }

    /// A compressed message's payload, inflated within the size limit.
    fn inflate(&self, compressed: &[u8]) -> Result<Vec<u8>, ReadError> {
        inflate(compressed, self.max_size).map_err(|error| match error {
            InflateError::TooLarge => ReadError::InflatedTooLarge { max: self.max_size },
            InflateError::Corrupt => ReadError::Corrupt,
        })
    }

    /// Drops the first `end` bytes; frees the buffer when nothing is left in it.
    fn consume(&mut self, end: usize) {
        if end >= self.pending.len() {
            self.pending = Vec::new();
        } else {
            self.pending.drain(..end);
        }
    }
}

/// A whole data message.
fn message(text: bool, payload: Vec<u8>) -> Result<Incoming, ReadError> {
    if !text {
        return Ok(Incoming::Binary(payload));
    }
    String::from_utf8(payload)
        .map(Incoming::Text)
        .map_err(|_| ReadError::Utf8)
}

/// A close frame's payload: nothing, or a code the RFC allows and a UTF-8 reason.
fn close(payload: &[u8]) -> Result<Incoming, ReadError> {
    let (code, reason) = match payload {
        [] => return Ok(Incoming::Close(None)),
        [_] => return Err(ReadError::Protocol("a close frame has a one-byte payload")),
        [high, low, reason @ ..] => (u16::from_be_bytes([*high, *low]), reason),
    };
    // RFC 6455 §7.4: 1005, 1006 and 1015 never go on the wire; 1004 and 1016-2999 are
    // reserved, below 1000 and from 5000 unused.
    let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !allowed {
        return Err(ReadError::Protocol("a close frame has a code not allowed on the wire"));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| ReadError::Utf8)?;
    Ok(Incoming::Close(Some((code, reason.to_owned()))))
}

/// Applies (or removes) a frame's mask.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: masked with [`KEY`].
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&KEY);
        let mut body = payload.to_vec();
        unmask(&mut body, KEY);
        out.extend_from_slice(&body);
        out
    }

    /// Everything `bytes` hold, read in pieces of `piece` bytes, until the first error.
    async fn read_all(bytes: &[u8], piece: usize, max: usize) -> (Vec<Incoming>, Option<ReadError>) {
        read_all_with(bytes, piece, FrameReader::new(max)).await
    }

    /// Everything `bytes` hold, read by `reader` in pieces of `piece` bytes, until the
    /// first error.
    async fn read_all_with(
        bytes: &[u8],
        piece: usize,
        mut reader: FrameReader,
    ) -> (Vec<Incoming>, Option<ReadError>) {
        let (mut client, mut server) = tokio::io::duplex(piece.max(1));
        let bytes = bytes.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in bytes.chunks(piece.max(1)) {
                if client.write_all(part).await.is_err() {
                    return;
                }
            }
        });
        let mut read = Vec::new();
        let error = loop {
            match reader.next(&mut server).await {
                Ok(incoming) => read.push(incoming),
                Err(error) => break error,
            }
        };
        writer.abort();
        let error = (!matches!(error, ReadError::Ended)).then_some(error);
        (read, error)
    }

    /// `text`, compressed as a message's payload.
    fn compressed(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::deflate::compress(&[text], &mut out);
        out
    }

    fn inflating(max: usize) -> FrameReader {
        FrameReader::new(max).inflating(Some(Deflate::for_tests(15, 0)))
    }

    #[tokio::test]
    async fn compressed_messages_are_inflated_whole_or_fragmented() {
        let text = r#"{"say":"hello hello hello hello"}"#.repeat(50);
        let packed = compressed(text.as_bytes());
        let mut bytes = frame(0xc1, &packed);
        bytes.extend(frame(0x81, b"plain"));
        let (first, rest) = packed.split_at(packed.len() / 2);
        bytes.extend(frame(0x41, first));
        bytes.extend(frame(0x89, b""));
        bytes.extend(frame(0x80, rest));
        bytes.extend(frame(0xc2, &compressed(&[7; 300])));
        for piece in [1, 5, bytes.len()] {
            let (read, error) = read_all_with(&bytes, piece, inflating(1 << 20)).await;
            assert!(error.is_none(), "piece {piece}: {error:?}");
            assert_eq!(
                read,
                vec![
                    Incoming::Text(text.clone()),
                    Incoming::Text("plain".into()),
                    Incoming::Ping(Vec::new()),
                    Incoming::Text(text.clone()),
                    Incoming::Binary(vec![7; 300]),
                ]
            );
        }
    }

    #[tokio::test]
    async fn compression_is_refused_where_it_was_not_agreed_and_bounded_where_it_was() {
        let packed = compressed(b"hello");
        // Not negotiated: RSV1 is a reserved bit.
        let (_, error) = read_all(&frame(0xc1, &packed), 64, 1 << 10).await;
        assert!(matches!(error, Some(ReadError::Protocol("reserved bits are set"))), "{error:?}");
        // RSV1 belongs on a message's first frame only.
        let mut bytes = frame(0x41, &packed);
        bytes.extend(frame(0xc0, b""));
        let (_, error) = read_all_with(&bytes, 64, inflating(1 << 10)).await;
        assert!(matches!(error, Some(ReadError::Protocol(_))), "{error:?}");
        // A bomb: 8 MiB of zeros in a few KiB, against a 64 KiB limit.
        let bomb = compressed(&vec![0; 8 << 20]);
        assert!(bomb.len() < 16 << 10);
        let (_, error) = read_all_with(&frame(0xc2, &bomb), 4096, inflating(64 << 10)).await;
        let error = error.expect("refused");
        assert!(matches!(error, ReadError::InflatedTooLarge { max } if max == 64 << 10), "{error:?}");
        assert_eq!(error.close_code(), Some(1009));
        // Not deflate data, or deflate data that is not UTF-8 in a text message.
        let (_, error) = read_all_with(&frame(0xc1, &[0xff; 8]), 64, inflating(1 << 10)).await;
        assert_eq!(error.map(|e| e.close_code()), Some(Some(1007)));
        let (_, error) = read_all_with(&frame(0xc1, &compressed(b"a\xffb")), 64, inflating(1 << 10)).await;
        assert!(matches!(error, Some(ReadError::Utf8)), "{error:?}");
    }

    #[tokio::test]
    async fn messages_of_every_length_class_are_read_whole_however_the_bytes_arrive() {
        let long = "y".repeat(70_000);
        let mut bytes = Vec::new();
        for text in ["", "hi", &"x".repeat(125), &"z".repeat(126), &long] {
            bytes.extend(frame(0x81, text.as_bytes()));
        }
        bytes.extend(frame(0x82, &[1, 2, 3]));
        bytes.extend(frame(0x89, b"ping"));
        bytes.extend(frame(0x8a, b""));
        // "héllo" in three fragments, a ping between two of them.
        let hello = "héllo".as_bytes();
        bytes.extend(frame(0x01, &hello[..2]));
        bytes.extend(frame(0x89, b""));
        bytes.extend(frame(0x00, &hello[2..4]));
        bytes.extend(frame(0x80, &hello[4..]));
        bytes.extend(frame(0x88, &[0x03, 0xe8, b'o', b'k']));
        for piece in [1, 3, 7, 100, 5000, bytes.len()] {
            let (read, error) = read_all(&bytes, piece, 1 << 20).await;
            assert!(error.is_none(), "piece {piece}: {error:?}");
            let expected = vec![
                Incoming::Text(String::new()),
                Incoming::Text("hi".into()),
                Incoming::Text("x".repeat(125)),
                Incoming::Text("z".repeat(126)),
                Incoming::Text(long.clone()),
                Incoming::Binary(vec![1, 2, 3]),
                Incoming::Ping(b"ping".to_vec()),
                Incoming::Pong,
                Incoming::Ping(Vec::new()),
                Incoming::Text("héllo".into()),
                Incoming::Close(Some((1000, "ok".into()))),
            ];
            assert_eq!(read, expected, "piece {piece}");
        }
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer() {
        let bytes = [frame(0x81, b"one"), frame(0x81, b"two")].concat();
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &bytes).await.expect("written");
        let mut reader = FrameReader::new(1024);
        assert_eq!(reader.next(&mut server).await.expect("read"), Incoming::Text("one".into()));
        assert!(reader.pending.capacity() > 0, "the second frame waits in the buffer");
        assert_eq!(reader.next(&mut server).await.expect("read"), Incoming::Text("two".into()));
        assert_eq!(reader.pending.capacity(), 0);
        // Half a frame is kept until the rest arrives, then freed.
        let third = frame(0x81, b"three");
        tokio::io::AsyncWriteExt::write_all(&mut client, &third[..4]).await.expect("written");
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), reader.next(&mut server)).await;
        assert!(next.is_err(), "no whole frame yet");
        tokio::io::AsyncWriteExt::write_all(&mut client, &third[4..]).await.expect("written");
        assert_eq!(reader.next(&mut server).await.expect("read"), Incoming::Text("three".into()));
        assert_eq!(reader.pending.capacity(), 0);
    }

    async fn violation(bytes: &[u8], max: usize) -> ReadError {
        let (read, error) = read_all(bytes, bytes.len(), max).await;
        assert!(read.is_empty(), "{read:?}");
        error.expect("a violation")
    }

    #[tokio::test]
    async fn violations_are_refused_with_their_reason() {
        let protocol = |bytes: Vec<u8>, expected: &'static str| async move {
            match violation(&bytes, 1024).await {
                ReadError::Protocol(reason) => assert_eq!(reason, expected),
                other => panic!("{expected}: {other:?}"),
            }
        };
        protocol(frame(0xc1, b"x"), "reserved bits are set").await;
        protocol(frame(0x83, b"x"), "unknown opcode").await;
        protocol(frame(0x8b, b"x"), "unknown opcode").await;
        protocol(vec![0x81, 0x01, b'x'], "a client frame is not masked").await;
        protocol(frame(0x09, b""), "a control frame is fragmented").await;
        protocol(frame(0x89, &[0; 126]), "a control frame is longer than 125 bytes").await;
        protocol(frame(0x80, b"x"), "a continuation frame without a message").await;
        protocol(
            [frame(0x01, b"a"), frame(0x81, b"b")].concat(),
            "a new message began before the fragmented one ended",
        )
        .await;
        protocol(frame(0x88, &[3]), "a close frame has a one-byte payload").await;
        for code in [999u16, 1004, 1005, 1006, 1015, 2999, 5000] {
            protocol(
                frame(0x88, &code.to_be_bytes()),
                "a close frame has a code not allowed on the wire",
            )
            .await;
        }
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&KEY);
        protocol(huge, "the payload length's top bit is set").await;
        assert!(matches!(violation(&frame(0x81, &[0xff, 0xfe]), 1024).await, ReadError::Utf8));
        assert!(matches!(
            violation(&frame(0x88, &[0x03, 0xe8, 0xff]), 1024).await,
            ReadError::Utf8
        ));
    }

    #[tokio::test]
    async fn invalid_text_fails_at_its_fragment_and_a_character_may_span_two() {
        // "é" is 0xc3 0xa9: split across fragments it is fine.
        let mut split = frame(0x01, b"caf\xc3");
        split.extend(frame(0x80, b"\xa9"));
        let (read, error) = read_all(&split, 3, 1024).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(read, [Incoming::Text("café".into())]);
        // An invalid byte fails as soon as its fragment is in, before the message ends
        // (the next fragment never comes).
        let invalid = frame(0x01, b"ok \xff then more");
        let (read, error) = read_all(&invalid, 5, 1024).await;
        assert!(read.is_empty());
        assert!(matches!(error, Some(ReadError::Utf8)), "{error:?}");
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused_from_its_header_alone() {
        // The header declares 2,000 bytes; none of them is sent.
        let header = &frame(0x81, &[b'a'; 2000])[..8];
        match violation(header, 1024).await {
            ReadError::TooLarge { size, max } => assert_eq!((size, max), (2000, 1024)),
            other => panic!("{other:?}"),
        }
        // A fragmented message counts all its parts.
        let parts = [frame(0x01, &[b'a'; 600]), frame(0x80, &[b'b'; 600])].concat();
        match violation(&parts, 1024).await {
            ReadError::TooLarge { size, .. } => assert_eq!(size, 1200),
            other => panic!("{other:?}"),
        }
    }
}

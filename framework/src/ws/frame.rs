//! Server frames as they go on the wire (RFC 6455 §5.2: final, unmasked). A text frame
//! is framed where it is encoded: the header sits in the same shared buffer, right
//! before the payload, so a broadcast is framed once for all its recipients and each
//! recipient's writer sends it as one contiguous slice. A frame whose payload starts
//! differently per recipient (a streaming-method call's head) is joined instead: its
//! header, the recipient's head and the shared rest, each held, none copied.

use std::borrow::Cow;

use bytes::Bytes;

use super::header::{FrameHeader, OpCode, MAX_SERVER_HEADER};

/// A whole text frame, ready for the wire: cloning it for another recipient is one
/// or two reference counts.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TextFrame(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    /// Header and payload in one shared buffer.
    Whole(Bytes),
    /// The header, then `head` (one recipient's), then `body` (shared by recipients).
    Joined {
        header: [u8; 10],
        header_len: u8,
        head: Bytes,
        body: Bytes,
    },
}

/// A frame's bytes with something that lives as long as they do.
struct Held<O> {
    bytes: Bytes,
    _owner: O,
}

impl<O> AsRef<[u8]> for Held<O> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl TextFrame {
    /// The same frame, keeping `owner` until the last copy is dropped (after the writer
    /// wrote it, or when a queue drops it): a per-stream queue slot rides along.
    pub(crate) fn holding<O: Send + 'static>(self, owner: O) -> Self {
        match self.0 {
            Repr::Whole(bytes) => Self(Repr::Whole(Bytes::from_owner(Held {
                bytes,
                _owner: owner,
            }))),
            Repr::Joined {
                header,
                header_len,
                head,
                body,
            } => Self(Repr::Joined {
                header,
                header_len,
                head,
                body: Bytes::from_owner(Held {
                    bytes: body,
                    _owner: owner,
                }),
            }),
        }
    }

    /// The frame whose payload is `head` then `body`, both valid UTF-8 (whole
    /// characters each), without copying either.
    pub(crate) fn joined(head: &Bytes, body: &Bytes) -> Self {
        let header = FrameHeader::server(OpCode::Text, head.len() + body.len()).format();
        let written = header.as_slice();
        let mut bytes = [0; 10];
        bytes[..written.len()].copy_from_slice(written);
        Self(Repr::Joined {
            header: bytes,
            // At most 10: the longest header of a server frame.
            header_len: written.len() as u8,
            head: head.clone(),
            body: body.clone(),
        })
    }

    /// The frame whose payload `encode` appends to the buffer it is given (with room for
    /// about `capacity` bytes). The payload is encoder output (always UTF-8: serde_json
    /// writes nothing else); a broken one is repaired rather than sent.
    pub(crate) fn encode<E>(
        capacity: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Self, E> {
        // The header goes in front of the payload, once its length is known.
        let mut buffer = Vec::with_capacity(MAX_SERVER_HEADER + capacity);
        buffer.resize(MAX_SERVER_HEADER, 0);
        encode(&mut buffer)?;
        Ok(Self::framed(buffer))
    }

    /// Frames `buffer`: [`MAX_SERVER_HEADER`] bytes of room, then the payload.
    fn framed(mut buffer: Vec<u8>) -> Self {
        let room = MAX_SERVER_HEADER;
        if std::str::from_utf8(&buffer[room..]).is_err() {
            let repaired = String::from_utf8_lossy(&buffer[room..]).into_owned();
            buffer.truncate(room);
            buffer.extend_from_slice(repaired.as_bytes());
        }
        let header = FrameHeader::server(OpCode::Text, buffer.len() - room).format();
        let start = room - header.as_slice().len();
        buffer[start..room].copy_from_slice(header.as_slice());
        Self(Repr::Whole(Bytes::from(buffer).slice(start..)))
    }

    /// A frame carrying `text`.
    pub(crate) fn from_text(text: &str) -> Self {
        Self::encode_infallible(|out| out.extend_from_slice(text.as_bytes()))
    }

    /// The frame whose payload `write` appends, for encoders that cannot fail.
    pub(crate) fn encode_infallible(write: impl FnOnce(&mut Vec<u8>)) -> Self {
        let encoded = Self::encode(128, |out| {
            write(out);
            Ok::<_, std::convert::Infallible>(())
        });
        match encoded {
            Ok(frame) => frame,
            Err(never) => match never {},
        }
    }

    /// The frame as written: its parts in order (empty ones at the end).
    pub(crate) fn wire_parts(&self) -> [&[u8]; 3] {
        match &self.0 {
            Repr::Whole(bytes) => [bytes, &[], &[]],
            Repr::Joined {
                header,
                header_len,
                head,
                body,
            } => [&header[..usize::from(*header_len)], head, body],
        }
    }

    /// The whole frame's length on the wire.
    pub(crate) fn wire_len(&self) -> usize {
        self.wire_parts().iter().map(|part| part.len()).sum()
    }

    /// The payload's length in bytes (what queue limits count).
    pub(crate) fn len(&self) -> usize {
        match &self.0 {
            Repr::Whole(bytes) => bytes.len() - whole_header_len(bytes),
            Repr::Joined { head, body, .. } => head.len() + body.len(),
        }
    }

    /// The payload, as text.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Whole(bytes) => {
                String::from_utf8_lossy(&bytes[whole_header_len(bytes)..])
            }
            Repr::Joined { head, body, .. } => {
                let mut text = String::from_utf8_lossy(head).into_owned();
                text.push_str(&String::from_utf8_lossy(body));
                Cow::Owned(text)
            }
        }
    }
}

impl AsRef<TextFrame> for TextFrame {
    fn as_ref(&self) -> &TextFrame {
        self
    }
}

/// The header's length of a whole frame.
fn whole_header_len(frame: &[u8]) -> usize {
    match frame.get(1).map(|length| length & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    }
}

impl std::fmt::Debug for TextFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TextFrame").field(&self.text()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_frame_holds_its_header_and_payload_for_every_length_class() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text = "x".repeat(len);
            let frame = TextFrame::from_text(&text);
            let header = FrameHeader::server(OpCode::Text, len).format();
            assert_eq!(&frame.wire_parts()[0][..header.as_slice().len()], header.as_slice(), "{len}");
            assert_eq!(frame.len(), len);
            assert_eq!(frame.text(), text);
        }
    }

    #[test]
    fn broken_encoder_output_is_repaired_not_sent() {
        let frame = TextFrame::encode(4, |out| {
            out.extend_from_slice(b"a\xffb");
            Ok::<_, ()>(())
        })
        .expect("encoded");
        assert_eq!(frame.text(), "a\u{fffd}b");
        assert_eq!(frame.wire_parts()[0][1] as usize, frame.len());
    }

    #[test]
    fn a_joined_frame_is_its_header_head_and_body_for_every_length_class() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536] {
            let head = Bytes::from_static(b"{\"head\":");
            let body = Bytes::from("y".repeat(len));
            let frame = TextFrame::joined(&head, &body);
            let whole = TextFrame::from_text(&format!("{{\"head\":{}", "y".repeat(len)));
            assert_eq!(frame.wire_parts().concat(), whole.wire_parts().concat(), "{len}");
            assert_eq!(frame.len(), whole.len());
            assert_eq!(frame.wire_len(), whole.wire_len());
            assert_eq!(frame.text(), whole.text());
        }
    }
}

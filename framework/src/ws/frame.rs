//! Server frames as they go on the wire (RFC 6455 §5.2: final, unmasked). A text frame
//! is framed where it is encoded: the header sits in the same shared buffer, right
//! before the payload, so a broadcast is framed once for all its recipients and each
//! recipient's writer sends it as one contiguous slice. A streaming-method call's frame
//! differs per recipient only in its call id: every call of one method shares one
//! frame, framed once, with the id left out; each socket's writer puts its call's id
//! in as it copies (the id is the socket's to know, by the frame's queue key).

use std::borrow::Cow;

use bytes::Bytes;
use uuid::Uuid;

use super::header::{FrameHeader, OpCode, MAX_SERVER_HEADER};

/// The length of a call id as text (a hyphenated UUID).
const CALL_ID_LEN: usize = 36;

/// The first byte of a call frame's bytes. A whole frame's first byte has FIN set, so
/// it is never 0.
const CALL_FRAME: u8 = 0;

/// What a call frame's bytes hold before the frame: the mark and where the id goes.
const CALL_PREFIX: usize = 3;

/// A call id as a call frame carries it: formatted once per call, not per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallIdText([u8; CALL_ID_LEN]);

impl From<Uuid> for CallIdText {
    fn from(id: Uuid) -> Self {
        let mut text = [0; CALL_ID_LEN];
        id.hyphenated().encode_lower(&mut text);
        Self(text)
    }
}

/// A text frame, ready for the wire (a call frame once given its id): cloning it for
/// another recipient is one reference count, and it is one `Bytes` in size (queues
/// hold many).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TextFrame(Bytes);

/// The text of one method's call frames around the call id and the value: a frame's
/// payload is `before_id`, the call id, `after_id`, then the value's text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CallFrameShape {
    before_id: Box<[u8]>,
    after_id: Box<[u8]>,
}

impl CallFrameShape {
    /// The shape of `text` (valid UTF-8), split where `id` is; `None` without it, or
    /// when what comes before it is longer than a call frame marks (64 KiB).
    pub(crate) fn around(text: &str, id: &str) -> Option<Self> {
        let at = text.find(id)?;
        if at + MAX_SERVER_HEADER > usize::from(u16::MAX) {
            return None;
        }
        Some(Self {
            before_id: text.as_bytes()[..at].into(),
            after_id: text.as_bytes()[at + id.len()..].into(),
        })
    }

    /// The frame of this shape ending in `value`'s parts (valid UTF-8, whole
    /// characters each), framed once for every call of the shape; each socket's writer
    /// puts its call's id in.
    pub(crate) fn frame(&self, value: &[&[u8]]) -> TextFrame {
        let value_len: usize = value.iter().map(|part| part.len()).sum();
        let payload = self.before_id.len() + CALL_ID_LEN + self.after_id.len() + value_len;
        let header = FrameHeader::server(OpCode::Text, payload).format();
        let header = header.as_slice();
        let mut bytes = Vec::with_capacity(CALL_PREFIX + header.len() + payload - CALL_ID_LEN);
        // `around` keeps this within 16 bits.
        let at = u16::try_from(header.len() + self.before_id.len()).unwrap_or(u16::MAX);
        bytes.push(CALL_FRAME);
        bytes.extend_from_slice(&at.to_be_bytes());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&self.before_id);
        bytes.extend_from_slice(&self.after_id);
        for part in value {
            bytes.extend_from_slice(part);
        }
        // Sliced, so it is shared from the start: each recipient's clone is one count.
        TextFrame(Bytes::from(bytes).slice(..))
    }
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
        Self(Bytes::from_owner(Held {
            bytes: self.0,
            _owner: owner,
        }))
    }

    /// Whether this is a call frame, which needs its call's id to be written.
    pub(crate) fn is_call_frame(&self) -> bool {
        self.0.first() == Some(&CALL_FRAME)
    }

    /// A call frame's two sides of the call id; `None` for a whole frame.
    fn call_sides(&self) -> Option<(&[u8], &[u8])> {
        if !self.is_call_frame() {
            return None;
        }
        let (prefix, frame) = self.0.split_at(CALL_PREFIX.min(self.0.len()));
        let at = match prefix {
            [_, high, low] => usize::from(u16::from_be_bytes([*high, *low])),
            _ => 0,
        };
        Some(frame.split_at(at.min(frame.len())))
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
        Self(Bytes::from(buffer).slice(start..))
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

    /// Appends the frame as written to `out`; a call frame with the id `call_id` gives
    /// (asked only for call frames).
    pub(crate) fn append_wire(&self, out: &mut Vec<u8>, call_id: impl FnOnce() -> CallIdText) {
        match self.call_sides() {
            None => out.extend_from_slice(&self.0),
            Some((before, after)) => {
                out.extend_from_slice(before);
                out.extend_from_slice(&call_id().0);
                out.extend_from_slice(after);
            }
        }
    }

    /// The whole frame's length on the wire.
    pub(crate) fn wire_len(&self) -> usize {
        if self.is_call_frame() {
            self.0.len() - CALL_PREFIX + CALL_ID_LEN
        } else {
            self.0.len()
        }
    }

    /// The payload's length in bytes (what queue limits count).
    pub(crate) fn len(&self) -> usize {
        if self.is_call_frame() {
            let frame = self.0.get(CALL_PREFIX..).unwrap_or_default();
            frame.len() - whole_header_len(frame) + CALL_ID_LEN
        } else {
            self.0.len() - whole_header_len(&self.0)
        }
    }

    /// The payload, as text (a call frame's with the nil call id: the id is its
    /// socket's).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        if !self.is_call_frame() {
            return String::from_utf8_lossy(&self.0[whole_header_len(&self.0)..]);
        }
        let mut wire = Vec::with_capacity(self.wire_len());
        self.append_wire(&mut wire, || Uuid::nil().into());
        let payload = wire.get(whole_header_len(&wire)..).unwrap_or_default();
        Cow::Owned(String::from_utf8_lossy(payload).into_owned())
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
            let mut wire = Vec::new();
            frame.append_wire(&mut wire, || Uuid::nil().into());
            assert_eq!(&wire[..header.as_slice().len()], header.as_slice(), "{len}");
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
        let mut wire = Vec::new();
        frame.append_wire(&mut wire, || Uuid::nil().into());
        assert_eq!(wire[1] as usize, frame.len());
    }

    #[test]
    fn a_text_frame_is_one_buffer_in_size() {
        assert_eq!(std::mem::size_of::<TextFrame>(), std::mem::size_of::<Bytes>());
    }

    #[test]
    fn a_call_frame_is_its_shape_with_the_call_id_and_value_for_every_length_class() {
        let call = Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef);
        let shape = CallFrameShape::around(r#"{"cid":"ID","o":"#, "ID").expect("split");
        for len in [0, 1, 70, 71, 72, 65_479, 65_480, 70_000] {
            let value = "y".repeat(len);
            let frame = shape.frame(&[value.as_bytes()]);
            assert!(frame.is_call_frame());
            let whole = TextFrame::from_text(&format!(r#"{{"cid":"{call}","o":{value}"#));
            assert!(!whole.is_call_frame());
            let mut wire = Vec::new();
            frame.append_wire(&mut wire, || call.into());
            let mut expected = Vec::new();
            whole.append_wire(&mut expected, || unreachable!("a whole frame has no call"));
            assert_eq!(wire, expected, "{len}");
            assert_eq!(frame.len(), whole.len());
            assert_eq!(frame.wire_len(), whole.wire_len());
            assert_eq!(
                frame.text(),
                whole.text().replace(&call.to_string(), &Uuid::nil().to_string())
            );
        }
    }
}

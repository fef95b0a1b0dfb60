//! Server frames as they go on the wire (RFC 6455 §5.2: final, unmasked). A text frame
//! is framed where it is encoded: the header sits in the same shared buffer, right
//! before the payload, so a broadcast is framed once for all its recipients and each
//! recipient's writer sends it as one contiguous slice. A streaming-method call's frame
//! differs per recipient only in its call id: every call of one method shares one
//! frame, framed once, with the id left out; each socket's writer puts its call's id
//! in as it copies (the id is the socket's to know, by the frame's queue key).
//!
//! A frame is compressed (`permessage-deflate`) at most once, by the first writer of a
//! socket that negotiated it, and the compressed frame is shared like the plain one: a
//! broadcast costs one compression however many sockets take it. A call frame stays
//! shareable compressed: what comes before the id, and the id, go in a stored (not
//! compressed) deflate block, so the writer still puts the id in as it copies.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use uuid::Uuid;

use super::deflate::{compress, Deflate};
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
/// another recipient is one reference count, and it is one pointer in size (queues
/// hold many).
#[derive(Clone)]
pub(crate) struct TextFrame(Arc<Framed>);

/// A frame's bytes, plain and (once a socket that negotiated compression took it)
/// compressed.
struct Framed {
    /// The frame as sent uncompressed; a call frame's begins with the mark and where
    /// the id goes.
    plain: Bytes,
    /// The compressed frame, in the same layout; `None` when compressing did not make
    /// it shorter.
    deflated: OnceLock<Option<Bytes>>,
    /// Kept as long as the frame is (see [`TextFrame::holding`]).
    _owner: Option<Box<dyn Send + Sync>>,
}

impl PartialEq for TextFrame {
    fn eq(&self, other: &Self) -> bool {
        self.0.plain == other.0.plain
    }
}

impl Eq for TextFrame {}

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
        TextFrame::new(Bytes::from(bytes))
    }
}

/// Whether `wire` (a frame's plain or compressed bytes) is a call frame's.
fn is_call_wire(wire: &[u8]) -> bool {
    wire.first() == Some(&CALL_FRAME)
}

/// A call frame's two sides of the call id; `None` for a whole frame.
fn call_sides(wire: &[u8]) -> Option<(&[u8], &[u8])> {
    if !is_call_wire(wire) {
        return None;
    }
    let (prefix, frame) = wire.split_at(CALL_PREFIX.min(wire.len()));
    let at = match prefix {
        [_, high, low] => usize::from(u16::from_be_bytes([*high, *low])),
        _ => 0,
    };
    Some(frame.split_at(at.min(frame.len())))
}

/// Appends the frame `wire` holds to `out`, with the id `call_id` gives if it is a
/// call frame.
fn append(wire: &[u8], out: &mut Vec<u8>, call_id: impl FnOnce() -> CallIdText) {
    match call_sides(wire) {
        None => out.extend_from_slice(wire),
        Some((before, after)) => {
            out.extend_from_slice(before);
            out.extend_from_slice(&call_id().0);
            out.extend_from_slice(after);
        }
    }
}

/// The length on the wire of the frame `wire` holds.
fn wire_len(wire: &[u8]) -> usize {
    if is_call_wire(wire) {
        wire.len() - CALL_PREFIX + CALL_ID_LEN
    } else {
        wire.len()
    }
}

/// A deflate block that stores `len` bytes as they are (RFC 1951 §3.2.4), not the last:
/// its header, from a byte boundary.
fn stored_block_header(len: u16) -> [u8; 5] {
    let [low, high] = len.to_le_bytes();
    let [not_low, not_high] = (!len).to_le_bytes();
    [0, low, high, not_low, not_high]
}

/// The compressed form of the plain frame `plain`, in the same layout; `None` when it
/// would not be shorter.
fn deflated(plain: &[u8]) -> Option<Bytes> {
    let room = MAX_SERVER_HEADER;
    match call_sides(plain) {
        None => {
            let payload = plain.get(whole_header_len(plain)..)?;
            let mut out = vec![0; room];
            compress(&[payload], &mut out);
            let len = out.len() - room;
            if len >= payload.len() {
                return None;
            }
            let header = compressed_header(len);
            let start = room - header.as_slice().len();
            out[start..room].copy_from_slice(header.as_slice());
            Some(Bytes::from(out).slice(start..))
        }
        Some((before, after)) => {
            // The text before the id, and the id, stored; the rest compressed.
            let before_id = before.get(whole_header_len(before)..)?;
            let stored = u16::try_from(before_id.len() + CALL_ID_LEN).ok()?;
            let mut rest = Vec::new();
            compress(&[after], &mut rest);
            let plain_len = before_id.len() + CALL_ID_LEN + after.len();
            let len = 5 + usize::from(stored) + rest.len();
            if len >= plain_len {
                return None;
            }
            let header = compressed_header(len);
            let header = header.as_slice();
            let at = u16::try_from(header.len() + 5 + before_id.len()).ok()?;
            let mut out = Vec::with_capacity(CALL_PREFIX + header.len() + len - CALL_ID_LEN);
            out.push(CALL_FRAME);
            out.extend_from_slice(&at.to_be_bytes());
            out.extend_from_slice(header);
            out.extend_from_slice(&stored_block_header(stored));
            out.extend_from_slice(before_id);
            out.extend_from_slice(&rest);
            Some(Bytes::from(out))
        }
    }
}

/// The header of a compressed text frame of `len` bytes.
fn compressed_header(len: usize) -> super::header::HeaderBytes {
    FrameHeader {
        compressed: true,
        ..FrameHeader::server(OpCode::Text, len)
    }
    .format()
}

impl TextFrame {
    /// The frame whose plain bytes are `plain`.
    fn new(plain: Bytes) -> Self {
        Self(Arc::new(Framed {
            plain,
            deflated: OnceLock::new(),
            _owner: None,
        }))
    }

    /// The same frame, keeping `owner` until the last copy is dropped (after the writer
    /// wrote it, or when a queue drops it): a per-stream queue slot rides along.
    pub(crate) fn holding<O: Send + Sync + 'static>(self, owner: O) -> Self {
        Self(Arc::new(Framed {
            plain: self.0.plain.clone(),
            deflated: OnceLock::new(),
            _owner: Some(Box::new(owner)),
        }))
    }

    /// Whether this is a call frame, which needs its call's id to be written.
    pub(crate) fn is_call_frame(&self) -> bool {
        is_call_wire(&self.0.plain)
    }

    /// The bytes that go to a socket that negotiated `deflate` (if any): compressed
    /// when that is allowed for this socket and makes the frame shorter, compressing it
    /// the first time a socket asks.
    fn wire(&self, deflate: Option<Deflate>) -> &[u8] {
        let plain = &self.0.plain;
        match deflate {
            Some(deflate) if deflate.takes(self.len()) => self
                .0
                .deflated
                .get_or_init(|| deflated(plain))
                .as_deref()
                .unwrap_or(plain),
            _ => plain,
        }
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
        Self::new(Bytes::from(buffer).slice(start..))
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

    /// Appends the frame as written to a socket that negotiated `deflate` (if any) to
    /// `out`; a call frame with the id `call_id` gives (asked only for call frames).
    pub(crate) fn append_wire(
        &self,
        out: &mut Vec<u8>,
        call_id: impl FnOnce() -> CallIdText,
        deflate: Option<Deflate>,
    ) {
        append(self.wire(deflate), out, call_id);
    }

    /// The whole frame's length on the wire of a socket that negotiated `deflate` (if
    /// any).
    pub(crate) fn wire_len(&self, deflate: Option<Deflate>) -> usize {
        wire_len(self.wire(deflate))
    }

    /// The plain payload's length in bytes (what queue limits count).
    pub(crate) fn len(&self) -> usize {
        let plain = &self.0.plain;
        if self.is_call_frame() {
            let frame = plain.get(CALL_PREFIX..).unwrap_or_default();
            frame.len() - whole_header_len(frame) + CALL_ID_LEN
        } else {
            plain.len() - whole_header_len(plain)
        }
    }

    /// The payload, as text (a call frame's with the nil call id: the id is its
    /// socket's).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        let plain = &self.0.plain;
        if !self.is_call_frame() {
            return String::from_utf8_lossy(&plain[whole_header_len(plain)..]);
        }
        let mut wire = Vec::with_capacity(self.wire_len(None));
        self.append_wire(&mut wire, || Uuid::nil().into(), None);
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
            frame.append_wire(&mut wire, || Uuid::nil().into(), None);
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
        frame.append_wire(&mut wire, || Uuid::nil().into(), None);
        assert_eq!(wire[1] as usize, frame.len());
    }

    #[test]
    fn a_text_frame_is_one_pointer_in_size() {
        assert_eq!(std::mem::size_of::<TextFrame>(), std::mem::size_of::<usize>());
    }

    /// The text a client reads from one compressed frame on the wire.
    fn inflated(wire: &[u8]) -> String {
        let (header, len) = FrameHeader::parse(wire).unwrap().unwrap();
        assert!(header.compressed && header.fin && header.opcode == OpCode::Text);
        assert_eq!(wire.len(), len + header.payload_len as usize);
        let text = super::super::deflate::inflate(&wire[len..], 1 << 20).unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_frame_is_compressed_once_for_every_socket_that_takes_it_compressed() {
        let deflate = Some(Deflate::for_tests(15, 64));
        let text = r#"{"event":"tick","values":[1,2,3,4,5,6,7,8]}"#.repeat(20);
        for len in [64, 200, 900, 70_000] {
            let text = &text.repeat(len / text.len() + 1)[..len];
            let frame = TextFrame::from_text(text);
            let copy = frame.clone();
            let mut first = Vec::new();
            frame.append_wire(&mut first, || unreachable!("no call"), deflate);
            assert_eq!(inflated(&first), text, "{len}");
            assert!(first.len() < frame.wire_len(None), "{len}: {}", first.len());
            assert!(len < 200 || first.len() < frame.wire_len(None) / 3, "{len}: {}", first.len());
            assert_eq!(copy.wire_len(deflate), first.len());
            // The same bytes, compressed once.
            assert!(std::ptr::eq(frame.wire(deflate), copy.wire(deflate)));
            // A socket without compression gets the plain frame.
            let mut plain = Vec::new();
            copy.append_wire(&mut plain, || unreachable!("no call"), None);
            assert_eq!(plain.len(), copy.wire_len(None));
            assert_eq!(plain[0], 0x81);
        }
    }

    #[test]
    fn small_frames_windows_too_narrow_and_incompressible_text_go_plain() {
        let text = "ab".repeat(300);
        let frame = TextFrame::from_text(&text);
        for deflate in [Deflate::for_tests(15, 601), Deflate::for_tests(9, 64)] {
            assert_eq!(frame.wire_len(Some(deflate)), frame.wire_len(None));
        }
        assert!(frame.wire_len(Some(Deflate::for_tests(10, 64))) < frame.wire_len(None));
        // Text that compressing does not shorten is sent plain.
        let frame = TextFrame::from_text("x");
        assert_eq!(frame.wire_len(Some(Deflate::for_tests(15, 1))), frame.wire_len(None));
    }

    #[test]
    fn a_compressed_call_frame_still_takes_each_socket_s_call_id() {
        let deflate = Some(Deflate::for_tests(15, 64));
        let shape = CallFrameShape::around(r#"{"cid":"ID","o":"#, "ID").expect("split");
        let value = r#"{"price":101.5,"symbol":"ACME"}"#.repeat(30);
        let frame = shape.frame(&[value.as_bytes(), b"}"]);
        for n in [1_u128, 2] {
            let call = Uuid::from_u128(n);
            let mut wire = Vec::new();
            frame.append_wire(&mut wire, || call.into(), deflate);
            assert_eq!(wire.len(), frame.wire_len(deflate));
            assert!(wire.len() < frame.wire_len(None) / 3, "{}", wire.len());
            assert_eq!(inflated(&wire), format!(r#"{{"cid":"{call}","o":{value}}}"#));
        }
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
            frame.append_wire(&mut wire, || call.into(), None);
            let mut expected = Vec::new();
            whole.append_wire(&mut expected, || unreachable!("a whole frame has no call"), None);
            assert_eq!(wire, expected, "{len}");
            assert_eq!(frame.len(), whole.len());
            assert_eq!(frame.wire_len(None), whole.wire_len(None));
            assert_eq!(
                frame.text(),
                whole.text().replace(&call.to_string(), &Uuid::nil().to_string())
            );
        }
    }
}

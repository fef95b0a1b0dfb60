//! The one definition of a frame's opcode and header (RFC 6455 §5.2): parsed from the
//! bytes a peer sent, formatted in front of the payloads the server sends.

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    /// The next part of a fragmented message.
    Continuation,
    /// A text message (or its first part).
    Text,
    /// A binary message (or its first part).
    Binary,
    /// Closes the connection.
    Close,
    /// Asks for a pong.
    Ping,
    /// Answers a ping.
    Pong,
}

impl OpCode {
    /// The opcode of the 4 bits `bits`; `None` for the reserved ones.
    pub(crate) const fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            _ => return None,
        })
    }

    /// The 4 bits on the wire.
    pub(crate) const fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
        }
    }

    /// Whether frames of this opcode are control frames (§5.5).
    pub(crate) const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// The longest header: 2 bytes, a 64-bit length and a mask.
pub(crate) const MAX_HEADER: usize = 14;

/// The longest header of an unmasked (server) frame.
pub(crate) const MAX_SERVER_HEADER: usize = 10;

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// The last frame of its message.
    pub(crate) fin: bool,
    /// RSV1: the message this frame begins is compressed (`permessage-deflate`).
    pub(crate) compressed: bool,
    pub(crate) opcode: OpCode,
    /// The masking key: every client frame has one, no server frame does.
    pub(crate) mask: Option<[u8; 4]>,
    /// The payload's length in bytes.
    pub(crate) payload_len: u64,
}

/// A header as bytes, ready to write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderBytes {
    bytes: [u8; MAX_HEADER],
    len: u8,
}

impl HeaderBytes {
    /// The header's bytes (2 to 14).
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl FrameHeader {
    /// The header of a final, unmasked frame: what the server sends.
    pub(crate) fn server(opcode: OpCode, payload_len: usize) -> Self {
        Self {
            fin: true,
            compressed: false,
            opcode,
            mask: None,
            payload_len: payload_len as u64,
        }
    }

    /// The header's bytes.
    pub(crate) fn format(&self) -> HeaderBytes {
        let mut bytes = [0; MAX_HEADER];
        bytes[0] = if self.fin { 0x80 } else { 0 }
            | if self.compressed { 0x40 } else { 0 }
            | self.opcode.bits();
        let masked = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            n if n < 126 => {
                bytes[1] = masked | n as u8;
                2
            }
            n if n <= u64::from(u16::MAX) => {
                bytes[1] = masked | 126;
                bytes[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                bytes[1] = masked | 127;
                bytes[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(mask) = self.mask {
            bytes[len..len + 4].copy_from_slice(&mask);
            len += 4;
        }
        HeaderBytes {
            bytes,
            len: len as u8,
        }
    }

    /// The header at the start of `bytes` and its length in bytes, once all of it is
    /// there (`Ok(None)` before). Fails on what no frame may carry, as soon as the
    /// bytes that show it have arrived: reserved bits (RSV1 is `compressed`, for the
    /// reader to judge) or opcodes, a fragmented, long or compressed control frame, a
    /// length with its top bit set.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Option<(Self, usize)>, &'static str> {
        let (Some(&first), Some(&second)) = (bytes.first(), bytes.get(1)) else {
            return Ok(None);
        };
        if first & 0x30 != 0 {
            return Err("reserved bits are set");
        }
        let fin = first & 0x80 != 0;
        let compressed = first & 0x40 != 0;
        let opcode = OpCode::from_bits(first & 0x0f).ok_or("unknown opcode")?;
        if compressed && opcode.is_control() {
            return Err("a control frame has RSV1 set");
        }
        let (extended, short) = match second & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        if opcode.is_control() && !fin {
            return Err("a control frame is fragmented");
        }
        // A control frame carries at most 125 bytes (§5.5): a 7-bit length.
        if opcode.is_control() && short.is_none() {
            return Err("a control frame is longer than 125 bytes");
        }
        let masked = second & 0x80 != 0;
        let len = 2 + extended + if masked { 4 } else { 0 };
        let Some(rest) = bytes.get(2..len) else {
            return Ok(None);
        };
        let payload_len = match (short, extended) {
            (Some(n), _) => n,
            (None, 2) => u64::from(u16::from_be_bytes([rest[0], rest[1]])),
            (None, _) => {
                let mut wide = [0; 8];
                wide.copy_from_slice(&rest[..8]);
                let n = u64::from_be_bytes(wide);
                if n >> 63 != 0 {
                    return Err("the payload length's top bit is set");
                }
                n
            }
        };
        let mask = masked.then(|| {
            let mut mask = [0; 4];
            mask.copy_from_slice(&rest[extended..extended + 4]);
            mask
        });
        let header = Self {
            fin,
            compressed,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_round_trips_and_reserved_ones_are_refused() {
        for bits in 0..16 {
            match OpCode::from_bits(bits) {
                Some(opcode) => assert_eq!(opcode.bits(), bits),
                None => assert!(matches!(bits, 3..=7 | 0xb..=0xf)),
            }
        }
    }

    #[test]
    fn headers_parse_back_as_formatted_at_every_length_class() {
        for payload_len in [0_u64, 125, 126, 65_535, 65_536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let header = FrameHeader {
                    fin: true,
                    compressed: payload_len % 2 == 0,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len,
                };
                let bytes = header.format();
                let parsed = FrameHeader::parse(bytes.as_slice()).unwrap();
                assert_eq!(parsed, Some((header, bytes.as_slice().len())));
                // One byte short: not there yet.
                let short = &bytes.as_slice()[..bytes.as_slice().len() - 1];
                assert_eq!(FrameHeader::parse(short), Ok(None));
            }
        }
    }

    #[test]
    fn violations_are_named() {
        assert_eq!(FrameHeader::parse(&[0xa1, 0]), Err("reserved bits are set"));
        assert_eq!(FrameHeader::parse(&[0x91, 0]), Err("reserved bits are set"));
        assert_eq!(FrameHeader::parse(&[0xc9, 0]), Err("a control frame has RSV1 set"));
        assert_eq!(FrameHeader::parse(&[0x83, 0]), Err("unknown opcode"));
        assert_eq!(FrameHeader::parse(&[0x09, 0]), Err("a control frame is fragmented"));
        assert_eq!(
            FrameHeader::parse(&[0x89, 126]),
            Err("a control frame is longer than 125 bytes")
        );
        let mut top_bit = vec![0x82, 127];
        top_bit.extend_from_slice(&(1_u64 << 63).to_be_bytes());
        assert_eq!(
            FrameHeader::parse(&top_bit),
            Err("the payload length's top bit is set")
        );
    }
}

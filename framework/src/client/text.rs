//! Encoder output as WebSocket text frames.

use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A text frame from encoder output (always UTF-8: serde_json writes nothing else; a
/// broken buffer is repaired rather than trusted).
pub(crate) fn utf8_frame(buffer: Vec<u8>) -> Utf8Bytes {
    Utf8Bytes::from(
        String::from_utf8(buffer)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

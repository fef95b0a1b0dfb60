//! The RFC 6455 codec the server speaks: frames as they go on the wire, the reader of a
//! client's frames, and the writer that sends queued frames in a few large writes. No
//! knowledge of sessions or protocols.

pub(crate) mod frame;
pub(crate) mod reader;
pub(crate) mod writer;

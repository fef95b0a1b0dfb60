//! The RFC 6455 codec the server speaks: one opcode and one header type (`header`), text
//! frames framed once where they are encoded (`frame`), control frames (`control`), the
//! reader of a client's frames and the writer that sends queued frames in a few large
//! writes, and `permessage-deflate` (`deflate`). It knows nothing of sessions or
//! protocols.

pub(crate) mod control;
pub(crate) mod deflate;
pub(crate) mod echo;
pub(crate) mod frame;
pub(crate) mod header;
pub(crate) mod reader;
pub(crate) mod writer;

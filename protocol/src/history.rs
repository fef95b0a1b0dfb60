//! Channel history on the wire (`streampod.v1` only): positions on messages, the
//! `joined` frame and the `recover` command.
//!
//! A channel configured with history numbers its posts: each gets a [`Position`], an
//! `offset` one higher than the post before it in the channel's single order, and the
//! `epoch` of the history it belongs to. The epoch changes whenever history could have
//! been lost (the server restarted, say); offsets only compare within one epoch.
//!
//! | frame | JSON |
//! |---|---|
//! | message from a history channel (server) | `{"endpoint":"chat","object":{…},"channel":"chat-room-1","offset":17}` |
//! | joined a history channel (server) | `{"command":"joined","args":{"endpoint":"chat","channel":"chat-room-1","position":{"epoch":"5f1c…","offset":17},"recovering":true,"recovered":true,"replayed":3}}` |
//! | recover (client) | `{"command":"recover","args":{"channels":{"chat-room-1":{"epoch":"5f1c…","offset":14}}}}` |
//!
//! A client that reconnects sends `recover` with the last position it saw on each
//! channel, then joins as it always does (its endpoint's own subscription message).
//! When the server joins it to a channel it has a position for, it sends `joined` (in a
//! cluster, once the history has been read: possibly after other frames, such as the
//! endpoint's reply to the join, but before any message of the channel) and then,
//! before any live message, every message after that position that history still
//! holds, each once and in order (`recovered: true`); or, when the position is too old
//! or from another epoch, `recovered: false` and only live messages, so the app reloads
//! its state. `joined.position` is the channel's newest position at the join: replayed
//! messages are at or below it, live ones above. A join without a position (a first
//! join) gets `recovering: false` and the position to start from.
//!
//! Message frames carry the channel and the offset only: the epoch they belong to is the
//! one of the channel's last `joined` frame, so a client keeps `(joined.position.epoch,
//! message offset)` as its position. Should a channel's history be replaced while a
//! session listens (in a cluster, when Redis lost it), the server sends that session a
//! new `joined` frame (`recovering: false`, `recovered: false`) before the first message
//! of the new epoch.
//!
//! A `joined` frame whose `position.epoch` is empty comes from a server that could not
//! read the channel's history (in a cluster, Redis was unreachable): the client has no
//! position on that channel until the next `joined` frame, which precedes the channel's
//! next message.
//!
//! Sockets without the `streampod.v1` subprotocol (Serverpod's clients) get none of
//! this: no `channel` or `position` keys, no `joined` frames.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::frame::write_str;

/// Where a message stands in its channel's history.
///
/// ```
/// use streampod_protocol::history::Position;
/// let at: Position = serde_json::from_str(r#"{"epoch":"5f1c","offset":17}"#).unwrap();
/// assert_eq!(at.offset, 17);
/// assert!(at.is_before(&Position::new("5f1c", 18)));
/// assert!(!at.is_before(&Position::new("a000", 18)), "another epoch: not comparable");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Names one continuous history; a new epoch means messages may have been lost.
    pub epoch: String,
    /// The message's number in the channel, one more than the message before it.
    pub offset: u64,
}

impl Position {
    /// A position in `epoch` at `offset`.
    pub fn new(epoch: impl Into<String>, offset: u64) -> Self {
        Self {
            epoch: epoch.into(),
            offset,
        }
    }

    /// Whether `self` comes before `other` in the same history.
    pub fn is_before(&self, other: &Position) -> bool {
        self.epoch == other.epoch && self.offset < other.offset
    }

    /// Appends `{"epoch":…,"offset":…}`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"epoch\":");
        write_str(out, &self.epoch);
        out.extend_from_slice(b",\"offset\":");
        write_u64(out, self.offset);
        out.push(b'}');
    }
}

/// The channel and offset a message frame from a history channel carries; the epoch is
/// the one of that channel's last [`JoinedFrame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOffset<'a> {
    /// The channel the message was posted to.
    pub channel: Cow<'a, str>,
    /// Its offset there.
    pub offset: u64,
}

/// The server joined the session to a history channel: `{"command":"joined","args":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedFrame {
    /// The endpoint whose stream joined.
    pub endpoint: String,
    /// The channel joined.
    pub channel: String,
    /// The channel's newest position at the join (offset 0 before its first post).
    pub position: Position,
    /// Whether the client gave a position to recover from.
    pub recovering: bool,
    /// Whether every message after that position follows (`replayed` of them) before
    /// any live one; `false` when the position was too old or from another epoch, or
    /// when the client gave none: the app reloads its state.
    pub recovered: bool,
    /// Messages replayed after this frame.
    pub replayed: u64,
}

impl JoinedFrame {
    /// Appends the frame's JSON text to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"command\":\"joined\",\"args\":{\"endpoint\":");
        write_str(out, &self.endpoint);
        out.extend_from_slice(b",\"channel\":");
        write_str(out, &self.channel);
        out.extend_from_slice(b",\"position\":");
        self.position.encode(out);
        out.extend_from_slice(b",\"recovering\":");
        out.extend_from_slice(bool_text(self.recovering));
        out.extend_from_slice(b",\"recovered\":");
        out.extend_from_slice(bool_text(self.recovered));
        out.extend_from_slice(b",\"replayed\":");
        write_u64(out, self.replayed);
        out.extend_from_slice(b"}}");
    }
}

pub(crate) fn write_u64(out: &mut Vec<u8>, value: u64) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{value}");
}

fn bool_text(value: bool) -> &'static [u8] {
    if value {
        b"true"
    } else {
        b"false"
    }
}

/// Most channels one `recover` command may name (a server may allow fewer: no more
/// than a session may join).
pub const MAX_RECOVER_CHANNELS: usize = 1024;

/// Longest epoch a position may carry, in bytes (servers make 16-character ones).
pub const MAX_EPOCH_LEN: usize = 64;

/// The client's last positions: `{"command":"recover","args":{"channels":{name: position}}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverFrame {
    /// Channel names and the last position seen on each.
    pub channels: Vec<(String, Position)>,
}

impl RecoverFrame {
    /// Appends the frame's JSON text to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"command\":\"recover\",\"args\":{\"channels\":{");
        for (index, (channel, position)) in self.channels.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_str(out, channel);
            out.push(b':');
            position.encode(out);
        }
        out.extend_from_slice(b"}}}");
    }

    /// Reads the command's `args`.
    pub(crate) fn parse_args(args: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Args {
            channels: std::collections::BTreeMap<String, Position>,
        }
        let args: Args = serde_json::from_str(args).map_err(|e| {
            format!("recover args: {e}; expected {{\"channels\":{{name: {{\"epoch\":…,\"offset\":…}}}}}}")
        })?;
        if args.channels.len() > MAX_RECOVER_CHANNELS {
            return Err(format!(
                "recover names {} channels; at most {MAX_RECOVER_CHANNELS}",
                args.channels.len()
            ));
        }
        if let Some((channel, _)) = args
            .channels
            .iter()
            .find(|(_, position)| position.epoch.len() > MAX_EPOCH_LEN)
        {
            return Err(format!(
                "recover: the epoch for '{channel}' is longer than {MAX_EPOCH_LEN} bytes"
            ));
        }
        Ok(Self {
            channels: args.channels.into_iter().collect(),
        })
    }
}

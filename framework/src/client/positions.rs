//! The client's last position on each history channel: what it sends with `recover`
//! when it reconnects, and what tells a message it has seen from a new one.

use std::collections::HashMap;

use crate::protocol::history::{JoinedFrame, Position, RecoverFrame};

/// Most channels the client remembers a position for: a server refuses a `recover`
/// naming more channels than a session may join (128 by default), so the least
/// recently heard channels are forgotten first.
pub(crate) const MAX_POSITIONS: usize = 128;

/// Last positions by channel, with when each was last heard (a counter).
#[derive(Debug, Default)]
pub(crate) struct Positions {
    by_channel: HashMap<String, (Position, u64)>,
    heard: u64,
}

impl Positions {
    /// Records a message at `offset` on `channel`, in the epoch of the channel's last
    /// `joined` frame; `false` when the client has seen it already (at or before the last
    /// offset). A channel without a `joined` frame has no epoch: its messages pass and
    /// nothing is remembered.
    pub(crate) fn advance(&mut self, channel: &str, offset: u64) -> bool {
        self.heard += 1;
        let heard = self.heard;
        match self.by_channel.get_mut(channel) {
            Some((last, _)) if offset <= last.offset => false,
            Some((last, last_heard)) => {
                last.offset = offset;
                *last_heard = heard;
                true
            }
            None => true,
        }
    }

    /// Takes in a `joined` frame: a channel joined without recovery starts at the
    /// server's newest position; a recovered one keeps its own, and the replay moves it.
    pub(crate) fn joined(&mut self, joined: &JoinedFrame) {
        if joined.position.epoch.is_empty() {
            // The server could not read the history: no position until the next one.
            self.by_channel.remove(&joined.channel);
        } else if !joined.recovered {
            self.set(&joined.channel, joined.position.clone());
        }
    }

    fn set(&mut self, channel: &str, position: Position) {
        self.heard += 1;
        let heard = self.heard;
        match self.by_channel.get_mut(channel) {
            Some(entry) => *entry = (position, heard),
            None => {
                if self.by_channel.len() >= MAX_POSITIONS {
                    self.forget_oldest();
                }
                self.by_channel
                    .insert(channel.to_owned(), (position, heard));
            }
        }
    }

    fn forget_oldest(&mut self) {
        let oldest = self
            .by_channel
            .iter()
            .min_by_key(|(_, (_, heard))| *heard)
            .map(|(channel, _)| channel.clone());
        if let Some(channel) = oldest {
            self.by_channel.remove(&channel);
        }
    }

    /// The `recover` frame's text for every remembered channel; `None` when there is
    /// none.
    pub(crate) fn recover_frame(&self) -> Option<String> {
        if self.by_channel.is_empty() {
            return None;
        }
        let mut channels: Vec<(String, Position)> = self
            .by_channel
            .iter()
            .map(|(channel, (position, _))| (channel.clone(), position.clone()))
            .collect();
        channels.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        RecoverFrame { channels }.encode(&mut out);
        String::from_utf8(out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(channel: &str, epoch: &str, offset: u64, recovered: bool) -> JoinedFrame {
        JoinedFrame {
            endpoint: "chat".into(),
            channel: channel.into(),
            position: Position::new(epoch, offset),
            recovering: recovered,
            recovered,
            replayed: 0,
        }
    }

    #[test]
    fn messages_at_or_before_the_last_offset_are_seen_already() {
        let mut positions = Positions::default();
        positions.joined(&joined("a", "e1", 2, false));
        assert!(positions.advance("a", 3));
        assert!(!positions.advance("a", 3));
        assert!(!positions.advance("a", 2));
        assert!(positions.advance("a", 4));
        assert!(positions.advance("b", 1), "a channel never joined passes");
        assert!(positions.advance("b", 1), "and is not remembered");
    }

    #[test]
    fn a_join_without_recovery_starts_at_the_servers_position() {
        let mut positions = Positions::default();
        positions.joined(&joined("a", "e1", 0, false));
        positions.advance("a", 3);
        positions.joined(&joined("a", "e1", 9, true));
        assert!(positions.advance("a", 4), "the replay follows");
        positions.joined(&joined("a", "e2", 20, false));
        assert!(!positions.advance("a", 20));
        assert!(positions.advance("a", 21));
        let frame = positions.recover_frame().unwrap();
        assert!(
            frame.contains(r#""a":{"epoch":"e2","offset":21}"#),
            "{frame}"
        );
    }

    #[test]
    fn the_recover_frame_names_every_channel_and_stays_within_the_limit() {
        let mut positions = Positions::default();
        assert_eq!(positions.recover_frame(), None);
        for n in 0..=MAX_POSITIONS {
            positions.joined(&joined(&format!("c{n}"), "e1", 0, false));
            positions.advance(&format!("c{n}"), 1);
        }
        let frame = positions.recover_frame().unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&frame).unwrap();
        let channels = parsed["args"]["channels"].as_object().unwrap();
        assert_eq!(channels.len(), MAX_POSITIONS);
        assert!(
            !channels.contains_key("c0"),
            "the least recently heard is forgotten"
        );
        assert_eq!(channels["c1"]["offset"], 1);
    }
}

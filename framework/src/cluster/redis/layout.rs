//! Where a node's data lives in Redis: the names of the pub/sub channels and keys of
//! every streampod channel, of the node list and of each node's memberships.
//!
//! On one Redis a channel's names carry its name as given (`<prefix>:channel:<name>`,
//! `<prefix>:history:<name>`, …). On a Redis Cluster every name of a channel carries
//! the same hash tag, `{<escaped name>}`, so its pub/sub channel, history and presence
//! live on one shard and one script can number, keep and publish a post there. The
//! name is escaped first (`%`, `{`, `}` written as `%25`, `%7B`, `%7D`): Redis Cluster
//! hashes only the first `{…}` of a name, so unescaped a client could name its rooms
//! `{x}-1`, `{x}-2`, … and steer every one of them to one shard. Escaped, the server
//! decides the slot: the hash of the whole channel name.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use redis::cluster_routing::Slot;

/// The names of one app's data (one prefix) on one Redis or one Redis Cluster.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    prefix: String,
    sharded: bool,
}

impl Layout {
    /// The layout under `prefix`; `sharded` on a Redis Cluster.
    pub(super) fn new(prefix: &str, sharded: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            sharded,
        }
    }

    /// The command that publishes on a channel: `PUBLISH`, or `SPUBLISH` on a cluster.
    pub(super) fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// How streampod channel `name` appears in its Redis names.
    fn part<'a>(&self, name: &'a str) -> Cow<'a, str> {
        if self.sharded {
            Cow::Owned(format!("{{{}}}", escape_hash_tags(name)))
        } else {
            Cow::Borrowed(name)
        }
    }

    /// The pub/sub channel of streampod channel `name`.
    pub(super) fn channel(&self, name: &str) -> String {
        format!("{}:channel:{}", self.prefix, self.part(name))
    }

    /// The pub/sub channel of `to_all`/`to_user` broadcasts.
    pub(super) fn broadcast(&self) -> String {
        format!("{}:broadcast", self.prefix)
    }

    /// The streampod channel a pub/sub channel of [`channel`](Self::channel) is for;
    /// `None` for any other Redis channel.
    pub(super) fn channel_of<'a>(&self, redis_channel: &'a str) -> Option<Cow<'a, str>> {
        let part = redis_channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":channel:")?;
        if !self.sharded {
            return Some(Cow::Borrowed(part));
        }
        let escaped = part.strip_prefix('{')?.strip_suffix('}')?;
        unescape_hash_tags(escaped)
    }

    /// A key of streampod channel `name`: `<prefix>:<kind>:<name>`.
    pub(super) fn channel_key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{}", self.prefix, self.part(name))
    }

    /// The key naming what the Redis holding channel `name`'s history holds (see the
    /// history's read script): one per prefix on one Redis, one per slot on a cluster
    /// (so it lives beside the channel, and a shard that lost its data has a new one).
    pub(super) fn generation(&self, name: &str) -> String {
        if !self.sharded {
            return format!("{}:history-generation", self.prefix);
        }
        let slot = Slot::for_key(self.part(name).as_bytes());
        let tag = slot_tags().get(&slot).map_or("", String::as_str);
        format!("{}:history-generation:{{{tag}}}", self.prefix)
    }

    /// A key shared by every node (`nodes`, `sweeping`): on a cluster they share a
    /// slot, as one script touches both.
    pub(super) fn shared_key(&self, kind: &str) -> String {
        if self.sharded {
            format!("{}:{kind}:{{{}}}", self.prefix, escape_hash_tags(&self.prefix))
        } else {
            format!("{}:{kind}", self.prefix)
        }
    }

    /// A key of node `node` (`memberships`, …): on a cluster a node's keys share a
    /// slot, as set operations combine them.
    pub(super) fn node_key(&self, kind: &str, node: &str) -> String {
        if self.sharded {
            format!("{}:{kind}:{{{node}}}", self.prefix)
        } else {
            format!("{}:{kind}:{node}", self.prefix)
        }
    }
}

/// A short hash tag for each of Redis Cluster's 16,384 slots, found once by trying
/// `0`, `1`, … in hex (about 170,000 hashes, a few milliseconds).
fn slot_tags() -> &'static HashMap<Slot, String> {
    static TAGS: OnceLock<HashMap<Slot, String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        const SLOTS: usize = 16_384;
        let mut tags = HashMap::with_capacity(SLOTS);
        let mut next: u32 = 0;
        while tags.len() < SLOTS {
            let tag = format!("{next:x}");
            tags.entry(Slot::for_key(tag.as_bytes())).or_insert(tag);
            next += 1;
        }
        tags
    })
}

/// `name` with `%`, `{` and `}` written as `%25`, `%7B` and `%7D`; the empty name as
/// `%` (which no other name escapes to), so a hash tag is never empty.
fn escape_hash_tags(name: &str) -> Cow<'_, str> {
    if name.is_empty() {
        return Cow::Borrowed("%");
    }
    if !name.contains(['%', '{', '}']) {
        return Cow::Borrowed(name);
    }
    let mut escaped = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// The name [`escape_hash_tags`] made `escaped` from; `None` for a string it cannot
/// have made.
fn unescape_hash_tags(escaped: &str) -> Option<Cow<'_, str>> {
    if escaped == "%" {
        return Some(Cow::Borrowed(""));
    }
    if !escaped.contains('%') {
        return Some(Cow::Borrowed(escaped));
    }
    let mut name = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        name.push_str(&rest[..at]);
        let c = match rest.get(at..at + 3)? {
            "%25" => '%',
            "%7B" => '{',
            "%7D" => '}',
            _ => return None,
        };
        name.push(c);
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    Some(Cow::Owned(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_in_names_are_escaped_and_come_back() {
        for name in ["room-1", "{x}-1", "100%", "%7B", "a{b}c}{", "é{}%", ""] {
            let escaped = escape_hash_tags(name);
            assert!(!escaped.contains(['{', '}']), "{escaped}");
            assert!(!escaped.is_empty());
            assert_eq!(unescape_hash_tags(&escaped).unwrap(), name);
        }
        assert_eq!(escape_hash_tags("{x}-1"), "%7Bx%7D-1");
        assert_eq!(unescape_hash_tags("%zz"), None);
        assert_eq!(unescape_hash_tags("50%"), None);
    }

    #[test]
    fn one_redis_names_carry_the_prefix_and_the_name() {
        let layout = Layout::new("app", false);
        assert_eq!(layout.channel("room-1"), "app:channel:room-1");
        assert_eq!(layout.broadcast(), "app:broadcast");
        assert_eq!(layout.channel_key("history", "room-1"), "app:history:room-1");
        assert_eq!(layout.generation("room-1"), "app:history-generation");
        assert_eq!(layout.shared_key("nodes"), "app:nodes");
        assert_eq!(layout.node_key("memberships", "ab"), "app:memberships:ab");
        assert_eq!(layout.channel_of("app:channel:room-1").unwrap(), "room-1");
        assert_eq!(layout.channel_of("app:broadcast"), None);
        assert_eq!(layout.channel_of("other:channel:room-1"), None);
        assert_eq!(layout.publish_command(), "PUBLISH");
    }

    #[test]
    fn a_clusters_channel_keeps_every_name_on_the_slot_of_its_whole_name() {
        let layout = Layout::new("app", true);
        for name in ["room-1", "{x}-1", "{x}-2", "", "100%"] {
            let channel = layout.channel(name);
            assert_eq!(layout.channel_of(&channel).unwrap(), name, "{channel}");
            let slot = Slot::for_key(channel.as_bytes());
            for key in [
                layout.channel_key("history", name),
                layout.channel_key("history-meta", name),
                layout.channel_key("presence", name),
                layout.generation(name),
            ] {
                assert_eq!(Slot::for_key(key.as_bytes()), slot, "{key} beside {channel}");
            }
        }
        // Names sharing a would-be tag still land where their whole names hash.
        assert_ne!(
            Slot::for_key(layout.channel("{x}-1").as_bytes()),
            Slot::for_key(layout.channel("{x}-2").as_bytes())
        );
        assert_eq!(layout.channel("{x}-1"), "app:channel:{%7Bx%7D-1}");
        assert_eq!(
            Slot::for_key(layout.shared_key("nodes").as_bytes()),
            Slot::for_key(layout.shared_key("sweeping").as_bytes())
        );
        assert_eq!(
            Slot::for_key(layout.node_key("memberships", "ab").as_bytes()),
            Slot::for_key(layout.node_key("memberships-stale", "ab").as_bytes())
        );
        assert_eq!(layout.publish_command(), "SPUBLISH");
        assert_eq!(slot_tags().len(), 16_384);
    }
}

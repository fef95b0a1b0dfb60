//! The envelope of a global message on the backplane: who posted it, whom it leaves out,
//! where a broadcast goes, and the frame object encoded once by the poster.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::protocol::{frame, EncodeError, ModelSet};

/// A global message on the wire (JSON): the posting node, the session it leaves out,
/// for `to_all` / `to_user` the endpoint (and user) to frame it for, and the frame's
/// object `{"className":…,"data":…}`, encoded once by the poster and framed once per
/// endpoint by each receiving node.
#[derive(serde::Deserialize)]
// Decoded only by a backplane implementation.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Envelope<'a> {
    /// The epoch of the channel's history, when the post was kept in it (added by
    /// Redis as it numbers the post).
    #[serde(borrow, default)]
    pub(crate) epoch: Option<Cow<'a, str>>,
    /// The post's offset in that history.
    #[serde(default)]
    pub(crate) offset: Option<u64>,
    pub(crate) node: u64,
    /// When the posting node encoded it, in milliseconds since the Unix epoch by its
    /// clock: receivers drop messages older than the cluster's `max_global_age`.
    #[serde(default)]
    pub(crate) sent: Option<u64>,
    #[serde(default)]
    pub(crate) except: Option<u64>,
    #[serde(borrow, default)]
    pub(crate) endpoint: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) user: Option<Cow<'a, str>>,
    /// The W3C `traceparent` of the post's span on the posting node (feature `otel`).
    #[serde(borrow, default)]
    pub(crate) traceparent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) object: &'a RawValue,
}

/// Where a broadcast envelope goes: every session, or one user's, framed from `endpoint`.
pub(crate) struct BroadcastTarget<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) user: Option<&'a str>,
}

impl Envelope<'_> {
    /// Encodes `message` into an envelope.
    pub(crate) fn encode<P: ModelSet>(
        node: u64,
        except: Option<u64>,
        broadcast: Option<BroadcastTarget<'_>>,
        message: &P,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"{\"node\":");
        out.extend_from_slice(node.to_string().as_bytes());
        out.extend_from_slice(b",\"sent\":");
        out.extend_from_slice(now_millis().to_string().as_bytes());
        if let Some(except) = except {
            out.extend_from_slice(b",\"except\":");
            out.extend_from_slice(except.to_string().as_bytes());
        }
        if let Some(target) = broadcast {
            out.extend_from_slice(b",\"endpoint\":");
            write_str(&mut out, target.endpoint);
            if let Some(user) = target.user {
                out.extend_from_slice(b",\"user\":");
                write_str(&mut out, user);
            }
        }
        if let Some(traceparent) = crate::util::trace_context::current() {
            out.extend_from_slice(b",\"traceparent\":");
            write_str(&mut out, &traceparent);
        }
        out.extend_from_slice(b",\"object\":");
        frame::encode_object(message, &mut out)?;
        out.push(b'}');
        Ok(out)
    }
}

/// This node's clock, in milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

impl Envelope<'_> {
    /// How old the message is by this node's clock; zero when it carries no send time
    /// or comes from a clock ahead of this one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn age(&self) -> std::time::Duration {
        let sent = self.sent.unwrap_or(u64::MAX);
        std::time::Duration::from_millis(now_millis().saturating_sub(sent))
    }
}

fn write_str(out: &mut Vec<u8>, value: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DecodeError;

    struct Note(String);

    impl ModelSet for Note {
        fn class_name(&self) -> &'static str {
            "Note"
        }
        fn decode(_: &str, data: &RawValue) -> Result<Self, DecodeError> {
            Ok(Note(data.get().to_owned()))
        }
        fn encode_data(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            write_str(out, &self.0);
            Ok(())
        }
        fn class_names() -> &'static [&'static str] {
            &["Note"]
        }
        fn model(&self) -> &(dyn std::any::Any + Send + Sync) {
            self
        }
    }

    #[test]
    fn envelopes_round_trip_every_field() {
        let target = BroadcastTarget {
            endpoint: "chat \"main\"",
            user: Some("42"),
        };
        let bytes = Envelope::encode(7, Some(3), Some(target), &Note("hi\n".into())).unwrap();
        let envelope: Envelope<'_> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(envelope.node, 7);
        assert!(envelope.age() < std::time::Duration::from_secs(5), "just sent");
        assert_eq!(envelope.except, Some(3));
        assert_eq!(envelope.endpoint.as_deref(), Some("chat \"main\""));
        assert_eq!(envelope.user.as_deref(), Some("42"));
        assert_eq!(
            envelope.object.get(),
            r#"{"className":"Note","data":"hi\n"}"#
        );

        let bytes = Envelope::encode(1, None, None, &Note(String::new())).unwrap();
        let envelope: Envelope<'_> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (envelope.except, envelope.endpoint, envelope.user),
            (None, None, None)
        );
        // From a node without send times (an older version): never counted as stale.
        let old: Envelope<'_> = serde_json::from_str(r#"{"node":1,"object":{}}"#).unwrap();
        assert_eq!(old.age(), std::time::Duration::ZERO);
        let stale: Envelope<'_> =
            serde_json::from_str(r#"{"node":1,"sent":1000,"object":{}}"#).unwrap();
        assert!(stale.age() > std::time::Duration::from_secs(3600));
    }
}

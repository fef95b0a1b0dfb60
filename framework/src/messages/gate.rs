//! A `streampod.v1` session's place in a cluster channel with history: the channel's
//! one order comes from Redis, so a join reads the history there (after this node's
//! subscription is in place) while live posts already arrive. The gate holds those
//! until the read is back, then sends `joined`, the replay, and what it held, dropping
//! by offset what the replay already had: subscribe first, read, de-duplicate.
//!
//! Once open, the gate keeps the last offset the session got: a post at or before it
//! is not sent again, and one that skips offsets (this node lost its Redis connection
//! for a while) or comes from a new epoch (Redis lost the history) is preceded by a new
//! `joined` frame with `recovered: false`, so the client knows to reload instead of
//! silently missing messages.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::util::peer_text::PeerText;
use crate::cluster::{is_provisional, ClusterError, Envelope, HistoryRead};
use crate::config::SlowConsumerPolicy;
use crate::util::log_limit::RateLimitedLog;
use crate::session::outbound::{ChannelKey, Push};
use crate::protocol::frame;
use crate::protocol::history::{JoinedFrame, Position};
use crate::session::state::SessionShared;
use crate::ws::frame::TextFrame;

use super::history::REPLAY_FRAME_OVERHEAD;

/// Most live frames a gate holds while its read is out; past that it drops them and
/// the client is told `recovered: false` with the next post.
const MAX_HELD: usize = 4096;

/// One session's gate on one channel.
///
/// An open gate passes the next post in order without its lock (a post goes through
/// every gate of the channel: a lock per delivery cost more than the delivery). That
/// fast path reads and writes `after` as a plain load and store: posts with positions
/// reach a gate from one task only, the cluster ingress, in the channel's order; every
/// other case (closed, another epoch, a gap, a repeat) takes the lock.
pub(crate) struct Gate {
    /// Set once [`Gate::open`] is done (under the lock); never unset.
    open: AtomicBool,
    /// The last offset the session got.
    after: AtomicU64,
    /// The address of `state.epoch`'s `Arc` (0 for none): a post in the same epoch
    /// carries the same `Arc` (the channel shares one per epoch), so the fast path
    /// compares addresses, not strings. The gate holds that `Arc`, so the address
    /// cannot be reused meanwhile.
    epoch_id: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    /// The epoch of the offsets the session has; `None` when it has none yet (the read
    /// failed, or held frames were dropped): the next post says `recovered: false`.
    epoch: Option<Arc<str>>,
    held: Vec<Held>,
    overflowed: bool,
}

/// The address `Gate::epoch_id` compares.
fn epoch_id(epoch: &Arc<str>) -> usize {
    Arc::as_ptr(epoch).cast::<u8>() as usize
}

/// A live post that came while the gate was closed.
struct Held {
    epoch: Arc<str>,
    offset: u64,
    frame: Option<TextFrame>,
}

/// A post as the gate sees it: where it stands and its frame for this session (`None`
/// for a post that leaves the session out: the gate only moves past it).
pub(crate) struct Positioned<'a> {
    pub(crate) epoch: &'a Arc<str>,
    pub(crate) offset: u64,
    pub(crate) frame: Option<TextFrame>,
    pub(crate) key: ChannelKey,
    pub(crate) policy: SlowConsumerPolicy,
}

/// Who the gate sends to.
pub(crate) struct Target<'a> {
    pub(crate) session: &'a SessionShared,
    pub(crate) endpoint: &'a str,
    pub(crate) channel: &'a str,
}

impl Gate {
    /// A closed gate: live posts are held until [`Gate::open`].
    pub(crate) fn closed() -> Arc<Self> {
        Arc::new(Self {
            open: AtomicBool::new(false),
            after: AtomicU64::new(0),
            epoch_id: AtomicUsize::new(0),
            state: Mutex::new(State {
                epoch: None,
                held: Vec::new(),
                overflowed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a live post to the session, holds it while the gate is closed, or drops it
    /// when the session had it already; `None` unless it was pushed now.
    pub(crate) fn pass(&self, to: &Target<'_>, post: Positioned<'_>) -> Option<Push> {
        if self.open.load(Ordering::Acquire)
            && self.epoch_id.load(Ordering::Relaxed) == epoch_id(post.epoch)
            && self.after.load(Ordering::Relaxed).checked_add(1) == Some(post.offset)
        {
            self.after.store(post.offset, Ordering::Relaxed);
            return post
                .frame
                .map(|frame| to.session.push_from(frame, post.key, post.policy));
        }
        let mut state = self.lock();
        if !self.open.load(Ordering::Relaxed) {
            if state.held.len() >= MAX_HELD {
                state.held.clear();
                state.overflowed = true;
            }
            if !state.overflowed {
                state.held.push(Held {
                    epoch: post.epoch.clone(),
                    offset: post.offset,
                    frame: post.frame,
                });
            }
            return None;
        }
        self.forward(&mut state, to, post.epoch, post.offset, |session, frame| {
            session.push_from(frame, post.key, post.policy)
        }, post.frame)
    }

    /// Opens the gate with what the history read gave: sends `joined`, the replay if
    /// the session recovers, then the held posts it does not have yet.
    pub(crate) fn open(
        &self,
        to: &Target<'_>,
        since: Option<&Position>,
        read: Result<HistoryRead, ClusterError>,
    ) {
        let mut state = self.lock();
        match read {
            Ok(read) => {
                let newest = state.replay(to, since, read);
                self.after.store(newest, Ordering::Relaxed);
            }
            Err(error) => {
                static FAILED: RateLimitedLog =
                    RateLimitedLog::new(std::time::Duration::from_secs(10));
                if let Some(left_out) = FAILED.ready() {
                    tracing::warn!(target: "streampod::cluster", channel = %PeerText(to.channel), %error, left_out, "could not read a channel's history from Redis; the client is told it did not recover");
                }
                // No position to give: an empty epoch, replaced by the next post's.
                let joined = JoinedFrame {
                    endpoint: to.endpoint.to_owned(),
                    channel: to.channel.to_owned(),
                    position: Position::new("", 0),
                    recovering: since.is_some(),
                    recovered: false,
                    replayed: 0,
                };
                to.session
                    .push(TextFrame::encode_infallible(|out| joined.encode(out)));
                state.epoch = None;
            }
        }
        if state.overflowed {
            state.epoch = None;
        }
        self.epoch_id
            .store(state.epoch.as_ref().map_or(0, epoch_id), Ordering::Relaxed);
        for held in std::mem::take(&mut state.held) {
            self.forward(&mut state, to, &held.epoch, held.offset, SessionShared::push, held.frame);
        }
        self.open.store(true, Ordering::Release);
    }

    /// Pushes a post the session has not had, after a `joined` frame saying it did not
    /// recover when offsets were skipped or the epoch changed.
    fn forward(
        &self,
        state: &mut State,
        to: &Target<'_>,
        epoch: &Arc<str>,
        offset: u64,
        push: impl FnOnce(&SessionShared, TextFrame) -> Push,
        frame: Option<TextFrame>,
    ) -> Option<Push> {
        let after = self.after.load(Ordering::Relaxed);
        let same_epoch = state.epoch.as_deref() == Some(&**epoch);
        if same_epoch && offset <= after {
            return None;
        }
        // The first post of a channel that had no history when the session joined.
        let first_post = after == 0
            && offset == 1
            && state.epoch.as_deref().is_some_and(is_provisional);
        if !first_post && (!same_epoch || offset > after + 1) {
            let joined = JoinedFrame {
                endpoint: to.endpoint.to_owned(),
                channel: to.channel.to_owned(),
                position: Position::new(&**epoch, offset.saturating_sub(1)),
                recovering: false,
                recovered: false,
                replayed: 0,
            };
            to.session
                .push(TextFrame::encode_infallible(|out| joined.encode(out)));
        }
        if !state.epoch.as_ref().is_some_and(|kept| Arc::ptr_eq(kept, epoch)) {
            // The channel's own `Arc` from now on, so the next posts take the fast path.
            state.epoch = Some(epoch.clone());
            self.epoch_id.store(epoch_id(epoch), Ordering::Relaxed);
        }
        self.after.store(offset, Ordering::Relaxed);
        frame.map(|frame| push(to.session, frame))
    }
}

impl State {
    /// Sends `joined` and, when `since` is recovered, every post after it; answers the
    /// newest offset the session now has.
    fn replay(&mut self, to: &Target<'_>, since: Option<&Position>, read: HistoryRead) -> u64 {
        let recovery = Recovered::of(since, read, |bytes| to.session.can_take_replay(bytes));
        let joined = JoinedFrame {
            endpoint: to.endpoint.to_owned(),
            channel: to.channel.to_owned(),
            position: Position::new(&*recovery.epoch, recovery.newest),
            recovering: since.is_some(),
            recovered: recovery.replay.is_some(),
            replayed: recovery.replay.as_ref().map_or(0, |entries| entries.len() as u64),
        };
        to.session
            .push(TextFrame::encode_infallible(|out| joined.encode(out)));
        for (offset, object) in recovery.objects() {
            to.session.push(TextFrame::encode_infallible(|out| {
                frame::encode_message_with_object(to.endpoint, object, out);
                frame::append_offset(out, to.channel, offset);
            }));
        }
        self.epoch = Some(recovery.epoch);
        recovery.newest
    }
}

/// What a history read from the cluster recovers for a client that had `since`.
pub(crate) struct Recovered {
    pub(crate) epoch: Arc<str>,
    pub(crate) newest: u64,
    /// Every post after `since`, oldest first, as published (envelopes); `None` when
    /// they are not all there (another epoch, expired, or too much to replay at once).
    pub(crate) replay: Option<Vec<(u64, Vec<u8>)>>,
}

impl Recovered {
    /// What `read` recovers after `since`; `fits` says whether a replay of that many
    /// bytes may be sent at once.
    pub(crate) fn of(
        since: Option<&Position>,
        read: HistoryRead,
        fits: impl FnOnce(usize) -> bool,
    ) -> Self {
        let epoch: Arc<str> = Arc::from(read.epoch);
        let continues = read.continues;
        let replay = since
            .filter(|since| (*since.epoch == *epoch || continues) && since.offset <= read.newest)
            .filter(|since| {
                let wanted = read.newest - since.offset;
                read.entries.len() as u64 == wanted
                    && read
                        .entries
                        .first()
                        .is_none_or(|(offset, _)| *offset == since.offset + 1)
            })
            .map(|_| read.entries)
            // Too much to replay at once: not recovered, rather than a reader cut for
            // what the server chose to send.
            .filter(|entries| {
                fits(
                    entries
                        .iter()
                        .map(|(_, envelope)| envelope.len() + REPLAY_FRAME_OVERHEAD)
                        .sum(),
                )
            });
        Self {
            epoch,
            newest: read.newest,
            replay,
        }
    }

    /// The replay's frame objects, with their offsets (an envelope that does not read
    /// is left out).
    pub(crate) fn objects(&self) -> impl Iterator<Item = (u64, &str)> {
        self.replay.iter().flatten().filter_map(|(offset, envelope)| {
            let envelope = serde_json::from_slice::<Envelope<'_>>(envelope).ok()?;
            Some((*offset, envelope.object.get()))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use futures_util::FutureExt;

    use super::*;
    use crate::session::outbound::{Batch, Limits, TotalHeld};

    fn session() -> SessionShared {
        SessionShared::new(
            1,
            SocketAddr::from(([127, 0, 0, 1], 4000)),
            Limits {
                frames: 10_000,
                bytes: 1 << 24,
            },
            Arc::new(TotalHeld::default()),
            SlowConsumerPolicy::Disconnect,
            true,
            tracing::Span::none(),
        )
    }

    /// The frames queued for `session`, each as `joined:<recovered>@<offset>` or
    /// `m<offset>`.
    fn drain(session: &SessionShared) -> Vec<String> {
        let mut batch = Batch::default();
        let _ = session.outbound.next(&mut batch).now_or_never();
        batch
            .frames
            .into_iter()
            .map(|queued| {
                let value: serde_json::Value = serde_json::from_str(&queued.frame.text()).unwrap();
                match value["command"].as_str() {
                    Some("joined") => format!(
                        "joined:{}@{}",
                        value["args"]["recovered"], value["args"]["position"]["offset"]
                    ),
                    _ => format!("m{}", value["offset"]),
                }
            })
            .collect()
    }

    fn post(gate: &Gate, to: &Target<'_>, epoch: &Arc<str>, offset: u64, included: bool) {
        let frame = included.then(|| {
            TextFrame::encode_infallible(|out| {
                frame::encode_message_with_object("rooms", r#"{"className":"N","data":{}}"#, out);
                frame::append_offset(out, "room", offset);
            })
        });
        gate.pass(
            to,
            Positioned {
                epoch,
                offset,
                frame,
                key: 7,
                policy: SlowConsumerPolicy::Disconnect,
            },
        );
    }

    fn read(epoch: &str, newest: u64, entries: impl Iterator<Item = u64>) -> HistoryRead {
        HistoryRead {
            epoch: epoch.to_owned(),
            newest,
            entries: entries
                .map(|offset| (offset, br#"{"node":1,"object":{"className":"N","data":{}}}"#.to_vec()))
                .collect(),
            continues: false,
        }
    }

    #[test]
    fn held_posts_follow_the_replay_without_duplicates() {
        let session = session();
        let to = Target {
            session: &session,
            endpoint: "rooms",
            channel: "room",
        };
        let epoch: Arc<str> = Arc::from("e1");
        let gate = Gate::closed();
        // Live posts 5 and 6 arrive while the read (which saw up to 5) is out.
        post(&gate, &to, &epoch, 5, true);
        post(&gate, &to, &epoch, 6, true);
        assert!(drain(&session).is_empty(), "held while closed");
        gate.open(&to, Some(&Position::new("e1", 2)), Ok(read("e1", 5, 3..=5)));
        assert_eq!(drain(&session), ["joined:true@5", "m3", "m4", "m5", "m6"]);
        post(&gate, &to, &epoch, 7, true);
        post(&gate, &to, &epoch, 7, true);
        assert_eq!(drain(&session), ["m7"], "a post seen already is not sent again");
    }

    #[test]
    fn a_position_history_no_longer_holds_is_not_recovered() {
        let session = session();
        let to = Target {
            session: &session,
            endpoint: "rooms",
            channel: "room",
        };
        let gate = Gate::closed();
        // Asked from 2, but 3 expired: only 4..=5 are there.
        gate.open(&to, Some(&Position::new("e1", 2)), Ok(read("e1", 5, 4..=5)));
        assert_eq!(drain(&session), ["joined:false@5"]);
        let other = Gate::closed();
        other.open(&to, Some(&Position::new("e0", 2)), Ok(read("e1", 5, 3..=5)));
        assert_eq!(drain(&session), ["joined:false@5"], "another epoch");
    }

    #[test]
    fn skipped_offsets_and_new_epochs_say_recovered_false_first() {
        let session = session();
        let to = Target {
            session: &session,
            endpoint: "rooms",
            channel: "room",
        };
        let gate = Gate::closed();
        gate.open(&to, None, Ok(read("e1", 3, std::iter::empty())));
        let e1: Arc<str> = Arc::from("e1");
        post(&gate, &to, &e1, 4, false);
        post(&gate, &to, &e1, 5, true);
        assert_eq!(
            drain(&session),
            ["joined:false@3", "m5"],
            "a post leaving the session out moves the gate on: no gap"
        );
        post(&gate, &to, &e1, 8, true);
        let e2: Arc<str> = Arc::from("e2");
        post(&gate, &to, &e2, 1, true);
        assert_eq!(
            drain(&session),
            ["joined:false@7", "m8", "joined:false@0", "m1"]
        );
    }

    #[test]
    fn a_failed_read_opens_the_gate_and_the_next_post_says_not_recovered() {
        let session = session();
        let to = Target {
            session: &session,
            endpoint: "rooms",
            channel: "room",
        };
        let gate = Gate::closed();
        let e1: Arc<str> = Arc::from("e1");
        post(&gate, &to, &e1, 9, true);
        gate.open(
            &to,
            Some(&Position::new("e1", 2)),
            Err(ClusterError::Unavailable("down".into())),
        );
        assert_eq!(
            drain(&session),
            ["joined:false@0", "joined:false@8", "m9"],
            "at once without a position, then the post's"
        );
    }

    #[test]
    fn the_first_post_continues_a_provisional_epoch_and_a_gap_still_shows() {
        let session = session();
        let to = Target {
            session: &session,
            endpoint: "rooms",
            channel: "room",
        };
        let e1: Arc<str> = Arc::from("e1");
        let gate = Gate::closed();
        gate.open(&to, None, Ok(read("~g:100", 0, std::iter::empty())));
        post(&gate, &to, &e1, 1, true);
        post(&gate, &to, &e1, 2, true);
        assert_eq!(
            drain(&session),
            ["joined:false@0", "m1", "m2"],
            "no second joined: nothing was missed"
        );
        let late = Gate::closed();
        late.open(&to, None, Ok(read("~g:100", 0, std::iter::empty())));
        post(&late, &to, &e1, 3, true);
        assert_eq!(drain(&session), ["joined:false@0", "joined:false@2", "m3"]);
    }

    #[test]
    fn a_provisional_position_recovers_when_the_backend_says_the_epoch_continues_it() {
        let session = session();
        let to = Target {
            session: &session,
            endpoint: "rooms",
            channel: "room",
        };
        let since = Position::new("~g:100", 0);
        let gate = Gate::closed();
        let continued = HistoryRead {
            continues: true,
            ..read("e1", 2, 1..=2)
        };
        gate.open(&to, Some(&since), Ok(continued));
        assert_eq!(drain(&session), ["joined:true@2", "m1", "m2"]);
        let other = Gate::closed();
        other.open(&to, Some(&since), Ok(read("e1", 2, 1..=2)));
        assert_eq!(drain(&session), ["joined:false@2"], "not continued");
    }
}

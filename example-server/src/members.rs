//! Room member lists from presence: every join or leave anywhere in the cluster makes
//! each server with members in the room count the room again (across servers, at most
//! once per [`MEMBER_UPDATE_INTERVAL`]) and tell its own members the count, and the
//! names while there are at most [`LISTED_NAMES`], throttled, so lists are right on every
//! node and only a room's members hear who is in it. A larger room's updates carry the
//! count alone: a hundred names to ten thousand members on every change would cost 30 MB
//! an update.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use streampod::cluster::ClusterError;
use streampod::messages::{MessageCentral, Throttled};
use streampod::PeerText;
use tokio::sync::Notify;

use crate::models::{Protocol, RoomUpdate};

/// How often a room's member count goes out at most. Without a limit, N sessions
/// joining one room would send N² updates.
const MEMBER_UPDATE_INTERVAL: Duration = Duration::from_millis(250);

/// Most member-count frames a room sends a second, all members together: a room of up
/// to 1,000 hears its count every [`MEMBER_UPDATE_INTERVAL`], a room of 10,000 every
/// 2.5 s (at 4 a second it would cost 40,000 frames a second, and as much again
/// while 10,000 clients join at once after a deploy).
const MEMBER_UPDATE_BUDGET: NonZeroU32 = NonZeroU32::new(4_000).unwrap();

/// Most names a member list holds (`RoomUpdate.names`, `chat.members`): what a client
/// shows, and a bound on what one list costs to read and send, whatever the room's size.
pub(crate) const LISTED_NAMES: usize = 100;

/// How often a room's counter looks whether the room still has members here even when
/// no change woke it: a last leave this node never heard of (Redis was away when it was
/// announced) must not keep the counter forever. A local lookup, cheap at any number of
/// rooms.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The first [`LISTED_NAMES`] names of the sessions in `channel` (sorted) and how many
/// sessions it has in all, on every server.
pub(crate) async fn list(
    central: &MessageCentral<Protocol>,
    channel: &str,
) -> Result<(Vec<String>, usize), ClusterError> {
    let listed = central.presence(channel, LISTED_NAMES).await?;
    let count = central.presence_count(channel).await?;
    let mut names: Vec<String> = listed
        .into_iter()
        .map(|member| member.info.unwrap_or_else(|| "anonymous".to_owned()))
        .collect();
    names.sort_unstable();
    let count = count.max(names.len());
    Ok((names, count))
}

/// One counting task per room with members here, woken by presence changes.
#[derive(Debug, Default)]
pub(crate) struct MemberCounts {
    rooms: Mutex<HashMap<String, Arc<Notify>>>,
}

impl MemberCounts {
    /// Rooms counted now (a task each).
    pub(crate) fn rooms(&self) -> usize {
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// `room` (its channel `channel`) changed: count it again soon. Changes that come
    /// while a count is under way make one more count, not one each.
    pub(crate) fn changed(
        self: &Arc<Self>,
        central: &MessageCentral<Protocol>,
        room: &str,
        channel: &str,
    ) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = rooms.get(room) {
            notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        notify.notify_one();
        rooms.insert(room.to_owned(), notify.clone());
        drop(rooms);
        let counter = RoomCounter {
            counts: self.clone(),
            central: central.clone(),
            room: room.to_owned(),
            channel: channel.to_owned(),
            notify,
        };
        tokio::spawn(counter.run());
    }
}

/// Counts one room whenever woken, until it has no members here.
struct RoomCounter {
    counts: Arc<MemberCounts>,
    central: MessageCentral<Protocol>,
    room: String,
    channel: String,
    notify: Arc<Notify>,
}

impl RoomCounter {
    async fn run(self) {
        let poster: Throttled<Protocol> = self
            .central
            .throttled(&self.channel, MEMBER_UPDATE_INTERVAL)
            .with_delivery_budget(MEMBER_UPDATE_BUDGET);
        loop {
            let woken = tokio::time::timeout(IDLE_CHECK, self.notify.notified()).await;
            if woken.is_ok() {
                self.post_count(&poster).await;
                // Counting is a read (in a cluster, two Redis scripts over the room's
                // members): at most once an interval, however fast members come and
                // go. Changes meanwhile leave a wake-up behind, so the newest count
                // still goes out.
                tokio::time::sleep(MEMBER_UPDATE_INTERVAL).await;
            }
            // No members here: nobody to tell. Checked under the map's lock, so a join
            // after it finds no counter and starts a new one.
            let mut rooms = self
                .counts
                .rooms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.central.listener_count(&self.channel) == 0 {
                if rooms
                    .get(&self.room)
                    .is_some_and(|notify| Arc::ptr_eq(notify, &self.notify))
                {
                    rooms.remove(&self.room);
                }
                return;
            }
        }
    }

    /// Tells the room's members here how many are in it, and who while they are few
    /// enough to list to everyone on every change.
    async fn post_count(&self, poster: &Throttled<Protocol>) {
        // Across the cluster; this server's own count while Redis cannot say.
        let members = match self.central.presence_count(&self.channel).await {
            Ok(members) => members,
            Err(_) => self.central.listener_count(&self.channel),
        };
        let names = if members <= LISTED_NAMES {
            list(&self.central, &self.channel)
                .await
                .map(|(names, _)| names)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let update = RoomUpdate {
            channel_id: self.room.clone(),
            members: i64::try_from(members).unwrap_or(i64::MAX),
            names,
        };
        if let Err(error) = poster.post(update) {
            tracing::warn!(room = %PeerText(&self.room), %error, "could not post the member count");
        }
    }
}

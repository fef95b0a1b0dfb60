//! The `chat` endpoint: join and leave rooms with `ChannelSubscription`; a `ChatMessage`
//! goes to everyone in its room (or everyone but the sender), stamped with the server's
//! time. Each room is the message-central channel `chat-room-<id>`.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use streampod::cluster::ClusterState;
use streampod::messages::{ChannelConfig, HistoryConfig, Reach, SessionMessages, Throttled};
use streampod::protocol::types::DateTime;
use streampod::{Endpoint, EndpointError, ModelSet, StreamingSession};

use crate::models::{InvalidRequest, Protocol, RoomUpdate};

/// The channel behind a chat room.
pub fn room_channel(room: &str) -> String {
    format!("chat-room-{room}")
}

/// The rooms a session has joined, kept in its session state.
#[derive(Debug, Default)]
struct Joined(Mutex<HashSet<String>>);

impl Joined {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How often a room's member count goes out at most. Without a limit, N sessions
/// joining one room would send N² updates.
const MEMBER_UPDATE_INTERVAL: Duration = Duration::from_millis(250);

/// Most member-count frames a room sends a second, all members together: a room of up
/// to 1,000 hears its count every [`MEMBER_UPDATE_INTERVAL`], a room of 10,000 every
/// 2.5 s (at 4 a second it would cost 40,000 frames a second, and as much again
/// while 10,000 clients join at once after a deploy).
const MEMBER_UPDATE_BUDGET: NonZeroU32 = NonZeroU32::new(4_000).unwrap();

/// Chat rooms over the message central.
#[derive(Debug, Default)]
pub struct ChatEndpoint {
    /// One throttled poster of member counts per room.
    member_updates: Mutex<HashMap<String, Throttled<Protocol>>>,
    /// The history each room keeps for clients that reconnect, if any.
    room_history: Option<HistoryConfig>,
    /// Set once the rooms' namespace is configured with that history.
    history_configured: std::sync::OnceLock<()>,
}

impl ChatEndpoint {
    /// Rooms keep `history` for clients that reconnect (`streampod.v1` clients recover
    /// what they missed). A room's history lasts while it has members or messages
    /// younger than the history's TTL.
    pub fn with_room_history(history: HistoryConfig) -> Self {
        Self {
            room_history: Some(history),
            ..Self::default()
        }
    }

    /// Configures every room's history before the first join.
    fn keep_history(&self, messages: &SessionMessages<Protocol>) {
        let Some(history) = self.room_history else {
            return;
        };
        self.history_configured.get_or_init(|| {
            messages.central_handle().configure_namespace(
                &room_channel(""),
                ChannelConfig::default().with_history(history),
            );
        });
    }

    /// Tells everyone in `room` how many members it has now: at once, or, when an update
    /// went out less than [`MEMBER_UPDATE_INTERVAL`] ago (longer in rooms over 1,000:
    /// [`MEMBER_UPDATE_BUDGET`]), with the newest count when that time ends.
    fn announce_members(
        &self,
        messages: &SessionMessages<Protocol>,
        room: &str,
    ) -> Result<(), EndpointError> {
        let channel = room_channel(room);
        let central = messages.central_handle();
        let members = central.listener_count(&channel);
        let poster = {
            let mut posters = self
                .member_updates
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let poster = posters
                .entry(room.to_owned())
                .or_insert_with(|| {
                    central
                        .throttled(&channel, MEMBER_UPDATE_INTERVAL)
                        .with_delivery_budget(MEMBER_UPDATE_BUDGET)
                })
                .clone();
            if members == 0 {
                posters.remove(room);
            }
            poster
        };
        let update = RoomUpdate {
            channel_id: room.to_owned(),
            members: i64::try_from(members).unwrap_or(i64::MAX),
        };
        poster.post(update)?;
        Ok(())
    }
}

/// Longest nickname kept, in characters.
const NICKNAME_LIMIT: usize = 32;

/// Room posts that reached only this server's members because the cluster was down:
/// logged once per interval with their count, never once per post.
static LOCAL_FALLBACKS: Fallbacks = Fallbacks {
    since_log: AtomicU64::new(0),
    last_log: Mutex::new(None),
};

struct Fallbacks {
    since_log: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl Fallbacks {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn note(&self, state: &ClusterState) {
        let posts = self.since_log.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_log.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < Self::INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        self.since_log.fetch_sub(posts, Ordering::Relaxed);
        tracing::warn!(%state, posts, "cluster unavailable: room posts since the last line reached this server's members only");
    }
}

/// Who wrote a message, as the server vouches for it: the client's nickname marked
/// with the signed-in user (`"ann (user 1)"`, and the user id) or, for an anonymous
/// session, with a guest number unique to the socket (`"ann (guest 7)"`). A client
/// cannot pass for someone else: the mark comes from the session, and parentheses are
/// taken out of nicknames so no nickname can carry a mark of its own.
fn author(session: &StreamingSession<Protocol>, nickname: &str) -> (String, Option<String>) {
    let nickname: String = nickname
        .chars()
        .filter(|c| !matches!(c, '(' | ')') && !c.is_control())
        .take(NICKNAME_LIMIT)
        .collect();
    let nickname = match nickname.trim() {
        "" => "anonymous",
        trimmed => trimmed,
    };
    match session.authenticated_user_id() {
        Some(user) => (format!("{nickname} (user {user})"), Some(user)),
        None => (format!("{nickname} (guest {})", session.id()), None),
    }
}

/// A client-chosen name, cut short enough to echo in an error.
fn truncated(name: &str) -> &str {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

fn refuse(
    session: &StreamingSession<Protocol>,
    message: String,
    field: Option<&str>,
) -> Result<(), EndpointError> {
    session.send_stream_message(InvalidRequest {
        message,
        field: field.map(str::to_owned),
    })?;
    Ok(())
}

impl Endpoint<Protocol> for ChatEndpoint {
    async fn stream_opened(
        &self,
        session: &StreamingSession<Protocol>,
    ) -> Result<(), EndpointError> {
        session.handle().insert_state(Joined::default());
        Ok(())
    }

    async fn handle_stream_message(
        &self,
        session: &StreamingSession<Protocol>,
        message: Protocol,
    ) -> Result<(), EndpointError> {
        let joined = session
            .handle()
            .state::<Joined>()
            .ok_or_else(|| EndpointError::msg("chat state missing"))?;
        let messages = session.messages();
        match message {
            Protocol::ChannelSubscription(subscription) => {
                let room = subscription.channel_id;
                if room.is_empty() {
                    return refuse(
                        session,
                        "channelId cannot be empty".into(),
                        Some("channelId"),
                    );
                }
                let changed = if subscription.subscribe {
                    self.keep_history(&messages);
                    match messages.join(&room_channel(&room)) {
                        Ok(joined_now) => joined_now && joined.rooms().insert(room.clone()),
                        Err(error) => {
                            return refuse(
                                session,
                                format!("cannot join room '{}': {error}", truncated(&room)),
                                Some("channelId"),
                            )
                        }
                    }
                } else {
                    messages.leave(&room_channel(&room)) && joined.rooms().remove(&room)
                };
                if changed {
                    self.announce_members(&messages, &room)?;
                }
                Ok(())
            }
            Protocol::ChatMessage(mut chat) => {
                if !joined.rooms().contains(&chat.channel_id) {
                    return refuse(
                        session,
                        format!("join room '{}' before posting to it", chat.channel_id),
                        Some("channelId"),
                    );
                }
                chat.timestamp = DateTime::from(std::time::SystemTime::now());
                let (name, id) = author(session, &chat.sender_name);
                chat.sender_name = name;
                chat.sender_id = id;
                let channel = room_channel(&chat.channel_id);
                // Global: with a cluster (`--redis`) the room spans every server;
                // without one it is the same as Local. While Redis is down, rooms keep
                // working within each server.
                let reach = match messages.central_handle().cluster_state() {
                    Some(ClusterState::Connected) | None => Reach::Global,
                    Some(state) => {
                        LOCAL_FALLBACKS.note(&state);
                        Reach::Local
                    }
                };
                if chat.exclude_sender {
                    messages.to_others(&channel).reach(reach).post(chat)?;
                } else {
                    messages.post_message(&channel, chat, reach)?;
                }
                Ok(())
            }
            other => refuse(
                session,
                format!("the chat endpoint does not handle {}", other.class_name()),
                None,
            ),
        }
    }

    async fn stream_closed(&self, session: &StreamingSession<Protocol>) {
        let Some(joined) = session.handle().state::<Joined>() else {
            return;
        };
        let rooms: Vec<String> = joined.rooms().drain().collect();
        let messages = session.messages();
        for (index, room) in rooms.iter().enumerate() {
            messages.leave(&room_channel(room));
            let _ = self.announce_members(&messages, room);
            if index % 64 == 63 {
                // A session may hold many rooms: let other tasks run meanwhile.
                tokio::task::yield_now().await;
            }
        }
    }
}

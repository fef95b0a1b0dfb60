//! The `chat` endpoint: join and leave rooms with `ChannelSubscription`; a `ChatMessage`
//! goes to everyone in its room (or everyone but the sender), stamped with the server's
//! time. Each room is the message-central channel `chat-room-<id>`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use streampod::cluster::ClusterState;
use streampod::messages::{
    ChannelConfig, ChannelFeed, HistoryConfig, JoinError, MessageCentral, Reach,
};
use streampod::protocol::types::DateTime;
use streampod::{
    endpoint, Endpoint, EndpointError, ModelSet, RateLimitedLog, ServerHandle, Session,
    StreamingSession,
};

use crate::chat_store::{ChatStore, MAX_PAGE};
use crate::members::{self, MemberCounts};
use crate::models::{ChatHistory, ChatMessage, InvalidRequest, Protocol, RoomMembers};

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

/// Chat rooms over the message central.
#[derive(Debug, Default)]
pub struct ChatEndpoint {
    /// Member counts from presence, per room.
    member_counts: Arc<MemberCounts>,
    /// The history each room keeps for clients that reconnect, if any.
    room_history: Option<HistoryConfig>,
    /// Where messages are kept for late joiners and scrollback, if anywhere.
    store: Option<ChatStore>,
    /// The longest message content taken, in bytes; `None`: [`MAX_MESSAGE_BYTES`].
    max_message_bytes: Option<usize>,
}

/// The longest message content a room takes by default: 4 KiB.
pub const MAX_MESSAGE_BYTES: usize = 4 << 10;

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

    /// How many rooms this endpoint counts members of on this server now (a small task
    /// each, for rooms with members here): for monitoring, and to see that rooms
    /// nobody is in are let go. Works after the endpoint moved into a server.
    pub fn counted_rooms(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let counts = self.member_counts.clone();
        move || counts.rooms()
    }

    /// Takes message contents of at most `bytes` (default [`MAX_MESSAGE_BYTES`]); a
    /// longer one is refused to its sender with an `InvalidRequest`, and neither
    /// stored nor posted.
    #[must_use]
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// Keeps every room's messages in `store`: a session joining a room gets the newest
    /// [`JOIN_HISTORY`] as a `ChatHistory`, and `chat.history` pages older ones.
    #[must_use]
    pub fn with_store(mut self, store: ChatStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Sends `session` the newest stored messages of `room`, if any are kept.
    async fn send_stored(
        &self,
        session: &StreamingSession<Protocol>,
        room: &str,
    ) -> Result<(), EndpointError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        match store.page(room, None, JOIN_HISTORY).await {
            Ok((messages, has_more)) => {
                session.send_stream_message(ChatHistory {
                    channel_id: room.to_owned(),
                    messages,
                    has_more,
                })?;
            }
            Err(error) => {
                if let Some(left_out) = NOT_READ.ready() {
                    tracing::warn!(%error, left_out, "a joining session got no room history");
                }
            }
        }
        Ok(())
    }

    /// Stores `chat` and sets its id, when messages are kept; a message the database
    /// refuses still goes out, without an id.
    /// Makes `chat` the room's: its author, the server's time, and its stored id.
    async fn stamp(&self, chat: &mut ChatMessage, name: String, user: Option<String>) {
        chat.timestamp = DateTime::from(std::time::SystemTime::now());
        chat.sender_name = name;
        chat.sender_id = user;
        chat.id = None;
        self.store(chat).await;
    }

    /// The refusal of a message longer than this room takes.
    fn too_long(&self, content: &str) -> Option<String> {
        let limit = self.max_message_bytes.unwrap_or(MAX_MESSAGE_BYTES);
        (content.len() > limit).then(|| {
            format!(
                "a message of {} bytes exceeds the limit of {limit} bytes",
                content.len()
            )
        })
    }

    async fn store(&self, chat: &mut ChatMessage) {
        let Some(store) = &self.store else {
            return;
        };
        match store.save(chat).await {
            Ok(id) => chat.id = Some(id),
            Err(error) => {
                if let Some(left_out) = NOT_STORED.ready() {
                    tracing::warn!(%error, left_out, "a chat message was not stored");
                }
            }
        }
    }

    /// At startup: every room has presence (its member counts come from it, right
    /// across servers) and, if asked, history.
    fn configure_rooms(&self, central: &MessageCentral<Protocol>) {
        let mut config = ChannelConfig::default().with_presence();
        if let Some(history) = self.room_history {
            config = config.with_history(history);
        }
        let prefix = room_channel("");
        central.configure_namespace(&prefix, config);
        let counts = self.member_counts.clone();
        let strip = prefix.clone();
        central.on_presence(&prefix, move |central, change| {
            if let Some(room) = change.channel.strip_prefix(&strip) {
                counts.changed(central, room, &change.channel);
            }
        });
    }
}

/// Longest nickname kept, in characters.
const NICKNAME_LIMIT: usize = 32;

/// Room posts that reached only this server's members because the cluster was down:
/// logged once per interval with their count, never once per post.
static LOCAL_FALLBACKS: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));

/// Chat messages the database did not take (they still went out live).
static NOT_STORED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));

/// Room histories the database could not read (for a joining session or a page).
static NOT_READ: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));

/// How many stored messages a session gets when it joins a room.
pub const JOIN_HISTORY: u32 = 50;

/// Who wrote a message, as the server vouches for it: the client's nickname marked
/// with the signed-in user (`"ann (user 1)"`, and the user id) or, for an anonymous
/// session, with a guest number unique to the socket (`"ann (guest 7)"`). A client
/// cannot pass for someone else: the mark comes from the session, and parentheses are
/// taken out of nicknames so no nickname can carry a mark of its own.
fn author(session: &StreamingSession<Protocol>, nickname: &str) -> (String, Option<String>) {
    let guest = session.id().to_string();
    named(nickname, session.authenticated_user_id(), &guest)
}

/// `nickname` (cleaned and cut short) with who posted it: `name (user 7)` for a
/// signed-in user, `name (guest <guest>)` otherwise.
fn named(nickname: &str, user: Option<String>, guest: &str) -> (String, Option<String>) {
    let nickname: String = nickname
        .chars()
        .filter(|c| !matches!(c, '(' | ')') && !c.is_control())
        .take(NICKNAME_LIMIT)
        .collect();
    let nickname = match nickname.trim() {
        "" => "anonymous",
        trimmed => trimmed,
    };
    match user {
        Some(user) => (format!("{nickname} (user {user})"), Some(user)),
        None => (format!("{nickname} (guest {guest})"), None),
    }
}

/// How far a room's posts go: every server of a cluster (`--redis`) while it is
/// connected, this server's members alone while it is not (rooms keep working within
/// each server), and without a cluster the same as local.
fn room_reach(central: &MessageCentral<Protocol>) -> Reach {
    match central.cluster_state() {
        Some(ClusterState::Connected) | None => Reach::Global,
        Some(state) => {
            if let Some(left_out) = LOCAL_FALLBACKS.ready() {
                tracing::warn!(%state, posts = left_out + 1, "cluster unavailable: room posts since the last line reached this server's members only");
            }
            Reach::Local
        }
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

/// Why a join of `room` (a stream's, or a streaming call's) was refused: the same
/// answer on both sockets.
fn join_refused(room: &str, error: &JoinError) -> InvalidRequest {
    InvalidRequest {
        message: format!("cannot join room '{}': {error}", truncated(room)),
        field: Some("channelId".to_owned()),
    }
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
    fn on_start(&self, server: &ServerHandle<Protocol>) {
        self.configure_rooms(&server.messages());
    }

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
                // Members are counted from presence (see `members`).
                if subscription.subscribe {
                    let nickname = subscription.nickname.as_deref().unwrap_or_default();
                    let (listed_as, _) = author(session, nickname);
                    match messages.join_with_info(&room_channel(&room), &listed_as) {
                        Ok(joined_now) => {
                            if joined_now && joined.rooms().insert(room.clone()) {
                                self.send_stored(session, &room).await?;
                            }
                        }
                        Err(error) => {
                            session.send_stream_message(join_refused(&room, &error))?;
                            return Ok(());
                        }
                    }
                } else if messages.leave(&room_channel(&room)) {
                    joined.rooms().remove(&room);
                }
                Ok(())
            }
            Protocol::ChatMessage(mut chat) => {
                if let Some(why) = self.too_long(&chat.content) {
                    return refuse(session, why, Some("content"));
                }
                if !joined.rooms().contains(&chat.channel_id) {
                    return refuse(
                        session,
                        format!("join room '{}' before posting to it", chat.channel_id),
                        Some("channelId"),
                    );
                }
                let (name, id) = author(session, &chat.sender_name);
                self.stamp(&mut chat, name, id).await;
                let channel = room_channel(&chat.channel_id);
                let reach = room_reach(&messages.central_handle());
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
            if index % 64 == 63 {
                // A session may hold many rooms: let other tasks run meanwhile.
                tokio::task::yield_now().await;
            }
        }
    }
}

#[endpoint]
impl ChatEndpoint {
    /// The messages posted to room `channelId` from now on, as a streaming method
    /// (Serverpod 2.1+ clients, `/v1/websocket`): the call listens to the room through
    /// the message central (each message is encoded once for every call) and stops
    /// when the client closes the call. Posting stays on the `/websocket` stream (or any
    /// method that posts to the room).
    pub async fn messages(
        &self,
        session: &Session<Protocol>,
        channel_id: String,
    ) -> Result<ChannelFeed<ChatMessage>, InvalidRequest> {
        if channel_id.is_empty() {
            return Err(InvalidRequest {
                message: "channelId cannot be empty".into(),
                field: Some("channelId".into()),
            });
        }
        // Counted against this socket's channel budget, as a join is; the same refusal.
        session
            .messages()
            .channel_stream::<ChatMessage>(&room_channel(&channel_id))
            .map_err(|error| join_refused(&channel_id, &error))
    }

    /// Posts `content` to room `channelId` as `senderName`, over HTTP: what a client
    /// that follows the room through `messages` alone (no `/websocket` stream) sends
    /// with. Answers the message as posted (stored id, time, author).
    pub async fn post(
        &self,
        session: &Session<Protocol>,
        channel_id: String,
        sender_name: String,
        content: String,
    ) -> Result<ChatMessage, InvalidRequest> {
        let refused = |message: String, field: &str| InvalidRequest {
            message,
            field: Some(field.to_owned()),
        };
        if channel_id.is_empty() {
            return Err(refused("channelId cannot be empty".into(), "channelId"));
        }
        if let Some(why) = self.too_long(&content) {
            return Err(refused(why, "content"));
        }
        let user = session.authenticated_user_id().map(str::to_owned);
        let (name, user) = named(&sender_name, user, "http");
        let mut chat = ChatMessage {
            sender_name: String::new(),
            content,
            timestamp: DateTime::from(std::time::SystemTime::now()),
            channel_id,
            exclude_sender: false,
            sender_id: None,
            id: None,
        };
        self.stamp(&mut chat, name, user).await;
        let central = session.messages();
        let channel = room_channel(&chat.channel_id);
        central
            .post_message(&channel, chat.clone(), room_reach(&central))
            .map_err(|error| InvalidRequest {
                message: format!("not posted: {error}"),
                field: None,
            })?;
        Ok(chat)
    }

    /// Who is in `channelId`, on every server: the first 100 names (sorted) and how
    /// many there are. Signed-in users only: the list names users (with their ids), and
    /// an HTTP call cannot show it comes from a member of the room. Guests in a room
    /// get the names on their socket with every `RoomUpdate` while it has at most 100
    /// members.
    #[method(require_login)]
    pub async fn members(
        &self,
        session: &Session<Protocol>,
        channel_id: String,
    ) -> Result<RoomMembers, InvalidRequest> {
        let (members, count) = members::list(&session.messages(), &room_channel(&channel_id))
            .await
            .map_err(|error| InvalidRequest {
                message: format!("the member list cannot be read now ({error}); try again"),
                field: None,
            })?;
        Ok(RoomMembers {
            channel_id,
            members,
            count: i64::try_from(count).unwrap_or(i64::MAX),
        })
    }

    /// Up to `limit` (default 50, at most 200) of `channelId`'s stored messages before
    /// message id `before` (the newest when absent), oldest first.
    pub async fn history(
        &self,
        _session: &Session<Protocol>,
        channel_id: String,
        before: Option<i64>,
        limit: Option<i64>,
    ) -> Result<ChatHistory, InvalidRequest> {
        let invalid = |message: String, field: &str| InvalidRequest {
            message,
            field: Some(field.to_owned()),
        };
        let Some(store) = &self.store else {
            return Err(invalid(
                "this server keeps no chat history (see --database-url)".into(),
                "channelId",
            ));
        };
        let limit = match limit {
            None => JOIN_HISTORY,
            Some(limit) => u32::try_from(limit)
                .ok()
                .filter(|limit| (1..=MAX_PAGE).contains(limit))
                .ok_or_else(|| {
                    invalid(
                        format!("limit must be 1 to {MAX_PAGE}, not {limit}"),
                        "limit",
                    )
                })?,
        };
        let (messages, has_more) =
            store
                .page(&channel_id, before, limit)
                .await
                .map_err(|error| {
                    if let Some(left_out) = NOT_READ.ready() {
                        tracing::warn!(%error, left_out, "a chat history page was not read");
                    }
                    InvalidRequest {
                        message: "the chat history cannot be read now; try again".into(),
                        field: None,
                    }
                })?;
        Ok(ChatHistory {
            channel_id,
            messages,
            has_more,
        })
    }
}

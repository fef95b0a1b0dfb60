//! A streampod server: chat rooms over one WebSocket, sign-in with scopes, and an HTTP
//! method only admins may call. `src/main.rs` runs it, `src/bin/client.rs` talks to it
//! with the typed Rust client, `web/` with the generated TypeScript one.

use streampod::auth::{self, AuthInfo, Scope};
use streampod::messages::Reach;
use streampod::protocol::types::DateTime;
use streampod::{
    endpoint, Endpoint, EndpointError, Server, ServerBuilder, Session, StreamingSession,
};

/// The types `build.rs` generates from `models/*.yaml` (and the typed calls of the
/// methods in `methods.json`).
pub mod models {
    streampod::include_models!(); // $OUT_DIR/protocol.rs: the models and `Protocol`
}

use models::{ChannelSubscription, ChatMessage, Protocol};

/// Joins rooms and relays messages to everyone in the room.
pub struct Rooms;

impl Endpoint<Protocol> for Rooms {
    async fn handle_stream_message(
        &self,
        session: &StreamingSession<Protocol>,
        message: Protocol,
    ) -> Result<(), EndpointError> {
        let messages = session.messages();
        match message {
            Protocol::ChannelSubscription(ChannelSubscription {
                channel_id,
                subscribe,
            }) => {
                let room = format!("room-{channel_id}");
                if subscribe {
                    messages.join(&room)?; // at most 128 rooms per session
                    let welcome = ChatMessage {
                        sender_name: "server".into(),
                        content: format!("welcome to {channel_id}"),
                        channel_id,
                        exclude_sender: false,
                        timestamp: DateTime::from(std::time::SystemTime::now()),
                    };
                    session.send_stream_message(welcome)?; // to the joiner alone
                } else {
                    messages.leave(&room);
                }
            }
            Protocol::ChatMessage(mut chat) => {
                chat.timestamp = DateTime::from(std::time::SystemTime::now());
                let room = format!("room-{}", chat.channel_id);
                if chat.exclude_sender {
                    messages.to_others(&room).post(chat)?;
                } else {
                    messages.post_message(&room, chat, Reach::Local)?;
                }
            }
        }
        Ok(())
    }
}

/// Announcements to a room, over HTTP.
pub struct Announcements;

#[endpoint]
impl Announcements {
    /// Posts `text` to everyone in `room` as the announcer; answers how many got it.
    #[method(scopes("admin"))]
    pub async fn announce(
        &self,
        session: &Session<Protocol>,
        room: String,
        text: String,
    ) -> Result<i64, EndpointError> {
        let chat = ChatMessage {
            sender_name: "announcer".into(),
            content: text,
            channel_id: room.clone(),
            exclude_sender: false,
            timestamp: DateTime::from(std::time::SystemTime::now()),
        };
        let delivery =
            session
                .messages()
                .post_message(&format!("room-{room}"), chat, Reach::Local)?;
        Ok(delivery.delivered().map_or(0, |members| members as i64))
    }
}

/// Who a key signs in as. A real server asks its user store; these two are for trying.
async fn sign_in(key: String) -> Option<AuthInfo> {
    match key.as_str() {
        "ann-key" => Some(AuthInfo::new("1")),
        "root-key" => Some(AuthInfo::new("2").with_scopes([Scope::from_static("admin")])),
        _ => None,
    }
}

/// The server: its endpoints, methods and sign-in, ready to bind.
pub fn server() -> ServerBuilder<Protocol> {
    Server::<Protocol>::builder()
        .endpoint("chat", Rooms)
        .methods("announcements", Announcements)
        .authentication(auth::from_fn(sign_in))
}

//! The README's walkthrough, whole: chat rooms over one WebSocket, sign-in with scopes,
//! and an HTTP method only admins may call.
//!
//! ```text
//! cargo run -p streampod-walkthrough      # then: websocat ws://127.0.0.1:8080/websocket
//! ```

use streampod::auth::{self, AuthInfo, Scope};
use streampod::messages::Reach;
use streampod::protocol::types::DateTime;
use streampod::{endpoint, Endpoint, EndpointError, Server, Session, StreamingSession};

mod models {
    streampod::include_models!(); // $OUT_DIR/protocol.rs: the models and `Protocol`
}

use models::{ChannelSubscription, ChatMessage, Protocol};

/// Joins rooms and relays messages to everyone in the room.
struct Rooms;

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
struct Announcements;

#[endpoint]
impl Announcements {
    /// `POST /announcements/announce` with `{"room":"lobby","text":"hi"}`: admins only.
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

#[tokio::main]
async fn main() -> Result<(), streampod::StartError> {
    // streampod logs through `tracing`: without a subscriber you see nothing.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let server = Server::<Protocol>::builder()
        .endpoint("chat", Rooms)
        .methods("announcements", Announcements)
        .authentication(auth::from_fn(sign_in))
        .bind("127.0.0.1:8080")
        .await?;
    println!("listening on {}", server.local_addr());
    // Ctrl-C: stop accepting, close every socket with 1001, run stream_closed.
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}

//! A test endpoint over the message central, driven by `ChatMessage.content`:
//! `join`/`leave` the message's channel, `listen` (a session-owned callback),
//! `tag:<t>`, `others` (post to the channel but not the sender); anything else is posted
//! to the channel. Each command is acknowledged with `ack:<command>`. And [`RoomFeeds`],
//! a channel as a streaming method.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use streampod::messages::Reach;
use streampod::{Endpoint, EndpointError, StreamingSession};

use crate::fixtures::{ChatMessage, Protocol};

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Rooms {
    /// Messages seen by `listen` callbacks.
    pub heard: Arc<AtomicUsize>,
}

fn ack(
    session: &StreamingSession<Protocol>,
    chat: &ChatMessage,
    what: &str,
) -> Result<(), EndpointError> {
    session.send_stream_message(ChatMessage {
        content: format!("ack:{what}"),
        ..chat.clone()
    })?;
    Ok(())
}

impl Endpoint<Protocol> for Rooms {
    async fn handle_stream_message(
        &self,
        session: &StreamingSession<Protocol>,
        message: Protocol,
    ) -> Result<(), EndpointError> {
        let Protocol::ChatMessage(chat) = message else {
            return Err(EndpointError::msg("rooms only take ChatMessage"));
        };
        let messages = session.messages();
        match chat.content.as_str() {
            "join" => {
                messages.join(&chat.channel_id)?;
                ack(session, &chat, "join")
            }
            "leave" => {
                messages.leave(&chat.channel_id);
                ack(session, &chat, "leave")
            }
            "listen" => {
                let heard = self.heard.clone();
                let _ = messages.add_listener(&chat.channel_id, move |_| {
                    heard.fetch_add(1, Ordering::Relaxed);
                });
                ack(session, &chat, "listen")
            }
            "others" => {
                messages.to_others(&chat.channel_id).post(chat)?;
                Ok(())
            }
            tag if tag.starts_with("tag:") => {
                session.handle().add_tag(&tag["tag:".len()..]);
                ack(session, &chat, "tag")
            }
            _ => {
                messages.post_message(&chat.channel_id.clone(), chat, Reach::Local)?;
                Ok(())
            }
        }
    }
}

/// Sends a rooms command and waits for its acknowledgement.
///
/// # Panics
///
/// When the next frame is not the acknowledgement.
pub async fn command(client: &mut crate::client::TestClient, content: &str, channel: &str) {
    client
        .send_model(
            "rooms",
            "ChatMessage",
            serde_json::json!({"senderName": "t", "content": content, "channelId": channel}),
        )
        .await;
    let frame = client.next_json().await;
    let what = content.split(':').next().unwrap_or(content);
    assert_eq!(
        frame["object"]["data"]["content"],
        format!("ack:{what}"),
        "{frame}"
    );
}

/// The `content` of a message frame.
pub fn content(frame: &serde_json::Value) -> &str {
    frame["object"]["data"]["content"]
        .as_str()
        .unwrap_or_default()
}

/// A channel as a streaming method: `room(room)` streams the channel's chat messages.
#[derive(Debug)]
pub struct RoomFeeds;

#[streampod::endpoint]
impl RoomFeeds {
    /// The chat messages of channel `room`.
    pub async fn room(
        &self,
        session: &streampod::Session<Protocol>,
        room: String,
    ) -> Result<streampod::messages::ChannelFeed<ChatMessage>, streampod::MethodError> {
        Ok(session.messages().channel_stream::<ChatMessage>(&room)?)
    }
}

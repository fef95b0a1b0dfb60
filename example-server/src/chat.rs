//! The `chat` endpoint: join and leave rooms with `ChannelSubscription`; a `ChatMessage`
//! goes to everyone in its room, stamped with the server's time.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use streampod::protocol::types::DateTime;
use streampod::{async_trait, Endpoint, EndpointError, SessionId, StreamingSession};

use crate::models::{ChatMessage, InvalidRequest, Protocol};

/// Rooms and their members, as in Serverpod's streaming-endpoint example.
#[derive(Debug, Default)]
pub struct ChatEndpoint {
    rooms: Mutex<HashMap<String, HashMap<SessionId, StreamingSession<Protocol>>>>,
}

impl ChatEndpoint {
    fn rooms(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<SessionId, StreamingSession<Protocol>>>>
    {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn broadcast(&self, message: &ChatMessage) {
        let members: Vec<StreamingSession<Protocol>> = self
            .rooms()
            .get(&message.channel_id)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default();
        for member in members {
            // A member that is closing or too slow is dropped by the runtime; skip it.
            let _ = member.send_stream_message(message.clone());
        }
    }
}

#[async_trait]
impl Endpoint<Protocol> for ChatEndpoint {
    async fn handle_stream_message(
        &self,
        session: &StreamingSession<Protocol>,
        message: Protocol,
    ) -> Result<(), EndpointError> {
        match message {
            Protocol::ChannelSubscription(subscription) => {
                let mut rooms = self.rooms();
                if subscription.subscribe {
                    rooms
                        .entry(subscription.channel_id)
                        .or_default()
                        .insert(session.id(), session.clone());
                } else if let Some(members) = rooms.get_mut(&subscription.channel_id) {
                    members.remove(&session.id());
                    if members.is_empty() {
                        rooms.remove(&subscription.channel_id);
                    }
                }
            }
            Protocol::ChatMessage(mut chat) => {
                let joined = self
                    .rooms()
                    .get(&chat.channel_id)
                    .is_some_and(|members| members.contains_key(&session.id()));
                if !joined {
                    session.send_stream_message(InvalidRequest {
                        message: format!("join room '{}' before posting to it", chat.channel_id),
                        field: Some("channelId".into()),
                    })?;
                    return Ok(());
                }
                chat.timestamp = DateTime::from(std::time::SystemTime::now());
                self.broadcast(&chat);
            }
            other => {
                session.send_stream_message(InvalidRequest {
                    message: format!(
                        "the chat endpoint does not handle {}",
                        streampod::ModelSet::class_name(&other)
                    ),
                    field: None,
                })?;
            }
        }
        Ok(())
    }

    async fn stream_closed(&self, session: &StreamingSession<Protocol>) {
        self.rooms().retain(|_, members| {
            members.remove(&session.id());
            !members.is_empty()
        });
    }
}

//! The `notification` endpoint (Serverpod's broadcasting examples): every signed-in
//! session listens on `user-<id>`, so all of a user's devices get their notifications,
//! and on `global` for announcements. Its HTTP methods post to those channels.

use futures_util::{Stream, StreamExt};
use streampod::messages::Reach;
use streampod::protocol::types::DateTime;
use streampod::{endpoint, Endpoint, EndpointError, Session, StreamingSession};

use crate::models::{
    AnnouncementMessage, InvalidRequest, NotificationMessage, Protocol, SystemNotification,
    UserNotification,
};

/// The channel of one user's notifications.
pub fn user_channel(user_id: &str) -> String {
    format!("user-{user_id}")
}

/// The channel of announcements for everyone.
pub const GLOBAL_CHANNEL: &str = "global";

/// The endpoint name, as registered and as framed.
pub const NAME: &str = "notification";

/// Per-user and global notifications. The stream requires a signed-in session.
#[derive(Debug, Default)]
pub struct NotificationEndpoint;

impl Endpoint<Protocol> for NotificationEndpoint {
    async fn stream_opened(
        &self,
        session: &StreamingSession<Protocol>,
    ) -> Result<(), EndpointError> {
        let user = session
            .authenticated_user_id()
            .ok_or_else(|| EndpointError::msg("notification stream opened without a user"))?;
        let messages = session.messages();
        messages.join(&user_channel(&user))?;
        messages.join(GLOBAL_CHANNEL)?;
        Ok(())
    }

    fn require_login(&self) -> bool {
        true
    }
}

fn now() -> DateTime {
    DateTime::from(std::time::SystemTime::now())
}

/// Counts fit an `int` on the wire.
fn count(delivered: usize) -> i64 {
    i64::try_from(delivered).unwrap_or(i64::MAX)
}

/// Posts to `channel`: on a single server, the sessions that got it; in a cluster,
/// through the backplane to every server, answering how many servers listen there (-1
/// on NATS, which does not count them).
async fn post(
    session: &Session<Protocol>,
    channel: &str,
    message: impl Into<Protocol>,
) -> Result<i64, EndpointError> {
    let messages = session.messages();
    if messages.cluster_state().is_some() {
        let servers = messages.post_global(channel, message).await?;
        return Ok(servers.map_or(-1, count));
    }
    Ok(count(
        messages
            .post_message(channel, message, Reach::Local)?
            .delivered()
            .unwrap_or(0),
    ))
}

#[endpoint(require_login)]
impl NotificationEndpoint {
    /// The signed-in user's notifications from now on, as a streaming method (Serverpod
    /// 2.1+ clients, `/v1/websocket`): what `sendNotification` sends to this user.
    pub async fn notifications(
        &self,
        session: &Session<Protocol>,
    ) -> Result<impl Stream<Item = NotificationMessage> + Send + 'static, EndpointError> {
        let user = session
            .authenticated_user_id()
            .ok_or_else(|| EndpointError::msg("notifications opened without a user"))?;
        let notes = session.messages().create_stream(&user_channel(user))?;
        Ok(notes.filter_map(|message| {
            std::future::ready(match &*message {
                Protocol::NotificationMessage(note) => Some(note.clone()),
                _ => None,
            })
        }))
    }

    /// Sends `message` to every device of `targetUserId`; answers how many devices got it
    /// (in a cluster: how many servers have a device of that user).
    pub async fn send_notification(
        &self,
        session: &Session<Protocol>,
        target_user_id: i64,
        message: String,
    ) -> Result<i64, EndpointError> {
        let note = NotificationMessage {
            text: message,
            timestamp: now(),
        };
        post(session, &user_channel(&target_user_id.to_string()), note).await
    }

    /// Announces `message` to every signed-in session (admins only).
    #[method(scopes("admin"))]
    pub async fn broadcast_announcement(
        &self,
        session: &Session<Protocol>,
        message: String,
    ) -> Result<i64, EndpointError> {
        let announcement = AnnouncementMessage {
            text: message,
            timestamp: now(),
        };
        post(session, GLOBAL_CHANNEL, announcement).await
    }

    /// Sends a system notice to every connected session, signed in or not (admins only);
    /// answers how many got it here (in a cluster: 0, delivery goes through Redis).
    #[method(scopes("admin"))]
    pub async fn notify_all_users(
        &self,
        session: &Session<Protocol>,
        notification: SystemNotification,
    ) -> Result<i64, EndpointError> {
        let report = session
            .messages()
            .to_all(NAME)
            .reach(Reach::Global)
            .post(notification)?;
        // A Global broadcast on a cluster is counted by no one here: 0.
        Ok(count(report.delivered().unwrap_or(0)))
    }

    /// Sends `notification` to every device of `userId`; the notification must name the
    /// same user.
    pub async fn notify_user(
        &self,
        session: &Session<Protocol>,
        user_id: i64,
        notification: UserNotification,
    ) -> Result<i64, InvalidRequest> {
        if notification.user_id != user_id {
            return Err(InvalidRequest {
                message: format!(
                    "notification.userId is {} but userId is {user_id}",
                    notification.user_id
                ),
                field: Some("notification.userId".into()),
            });
        }
        let report = session
            .messages()
            .to_user(&user_id.to_string(), NAME)
            .reach(Reach::Global)
            .post(notification)
            .map_err(|error| InvalidRequest {
                message: format!("the notification cannot be sent: {error}"),
                field: None,
            })?;
        // A Global broadcast on a cluster is counted by no one here: 0.
        Ok(count(report.delivered().unwrap_or(0)))
    }
}

//! The `notification` endpoint (Serverpod's broadcasting example): every signed-in
//! session listens on `user-<id>`, so all of a user's devices get their notifications,
//! and on `global` for announcements.

use streampod::{async_trait, Endpoint, EndpointError, StreamingSession};

use crate::models::Protocol;

/// The channel of one user's notifications.
pub fn user_channel(user_id: &str) -> String {
    format!("user-{user_id}")
}

/// The channel of announcements for everyone.
pub const GLOBAL_CHANNEL: &str = "global";

/// Per-user and global notifications. Requires a signed-in session.
#[derive(Debug, Default)]
pub struct NotificationEndpoint;

#[async_trait]
impl Endpoint<Protocol> for NotificationEndpoint {
    async fn stream_opened(
        &self,
        session: &StreamingSession<Protocol>,
    ) -> Result<(), EndpointError> {
        let user = session
            .authenticated_user_id()
            .ok_or_else(|| EndpointError::msg("notification stream opened without a user"))?;
        let messages = session.messages();
        messages.join(&user_channel(&user));
        messages.join(GLOBAL_CHANNEL);
        Ok(())
    }

    fn require_login(&self) -> bool {
        true
    }
}

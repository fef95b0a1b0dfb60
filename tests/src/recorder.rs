//! A test endpoint that records its lifecycle, echoes messages and stores session state.

use std::sync::{Arc, Mutex};

use streampod::auth::Scope;
use streampod::{Endpoint, EndpointError, StreamingSession};

use crate::fixtures::{ChatMessage, Protocol};

/// A lifecycle event seen by a [`Recorder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `stream_opened` ran for this session id.
    Opened(u64),
    /// `stream_closed` ran for this session id.
    Closed(u64),
}

/// The events of one endpoint, shared with the test.
pub type Events = Arc<Mutex<Vec<Event>>>;

/// Records opens and closes; echoes every message back; on a `ChatMessage` whose content
/// is `"panic"` or `"fail"` it panics or returns an error.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// What happened, in order.
    pub events: Events,
    /// Whether the endpoint requires a signed-in session.
    pub login: bool,
    /// Scopes the endpoint requires.
    pub scopes: Vec<Scope>,
}

/// The per-session state the recorder stores in `stream_opened`.
#[derive(Debug)]
pub struct Greeting(pub String);

impl Recorder {
    /// Events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many times `stream_closed` ran for session `id`.
    pub fn closed_count(&self, id: u64) -> usize {
        self.events()
            .iter()
            .filter(|e| **e == Event::Closed(id))
            .count()
    }

    /// Whether `stream_opened` ran for session `id`.
    pub fn opened(&self, id: u64) -> bool {
        self.events().contains(&Event::Opened(id))
    }

    fn record(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
    }
}

impl Endpoint<Protocol> for Recorder {
    async fn stream_opened(
        &self,
        session: &StreamingSession<Protocol>,
    ) -> Result<(), EndpointError> {
        session
            .handle()
            .insert_state(Greeting(format!("hello #{}", session.id())));
        self.record(Event::Opened(session.id()));
        Ok(())
    }

    async fn handle_stream_message(
        &self,
        session: &StreamingSession<Protocol>,
        message: Protocol,
    ) -> Result<(), EndpointError> {
        if let Protocol::ChatMessage(chat) = &message {
            match chat.content.as_str() {
                "panic" => panic!("the handler panicked on purpose"),
                "fail" => return Err(EndpointError::msg("the handler failed on purpose")),
                "greeting" => {
                    let greeting = session
                        .handle()
                        .state::<Greeting>()
                        .map(|g| g.0.clone())
                        .unwrap_or_default();
                    session.send_stream_message(ChatMessage {
                        content: greeting,
                        ..chat.clone()
                    })?;
                    return Ok(());
                }
                "whoami" => {
                    let user = session
                        .authenticated_user_id()
                        .unwrap_or_else(|| "-".into());
                    session.send_stream_message(ChatMessage {
                        content: format!("{user} {} {}", session.id(), session.remote_addr().ip()),
                        ..chat.clone()
                    })?;
                    return Ok(());
                }
                "close" => {
                    session.handle().close(4001, "closed by the endpoint");
                    return Ok(());
                }
                _ => {}
            }
        }
        session.send_stream_message(message)?;
        Ok(())
    }

    async fn stream_closed(&self, session: &StreamingSession<Protocol>) {
        self.record(Event::Closed(session.id()));
    }

    fn require_login(&self) -> bool {
        self.login
    }

    fn required_scopes(&self) -> &[Scope] {
        &self.scopes
    }
}

/// Asks a [`Recorder`] endpoint who this client is: `(user id or "-", session id)`.
///
/// # Panics
///
/// When the answer is not the recorder's `whoami` reply.
pub async fn whoami(client: &mut crate::client::TestClient, endpoint: &str) -> (String, u64) {
    client
        .send_model(endpoint, "ChatMessage", crate::chat_json("whoami"))
        .await;
    let frame = client.next_json().await;
    let content = frame["object"]["data"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut parts = content.split(' ');
    let user = parts.next().unwrap_or_default().to_owned();
    let id = parts
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a whoami reply: {frame}"));
    (user, id)
}

/// This client's session id, from a [`Recorder`] registered as `chat`.
pub async fn session_id(client: &mut crate::client::TestClient) -> u64 {
    whoami(client, "chat").await.1
}

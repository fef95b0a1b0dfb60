//! The streampod example: chat rooms and notifications, after Serverpod's documentation.
//!
//! [`server`] registers the endpoints; the `example-server` binary binds it and shuts it
//! down gracefully on Ctrl-C or SIGTERM.

pub mod axum_app;
pub mod chat;
pub mod chat_store;
pub mod demo_auth;
mod members;
pub mod notification;

/// The models generated from `models/*.yaml`.
pub mod models {
    streampod::include_models!();
}

use streampod::{Server, ServerBuilder};

pub use models::Protocol;

/// The browser chat page served at `/`.
pub const PAGE: &[u8] = include_bytes!("../static/index.html");

/// A server builder with the example's endpoints and page registered.
pub fn server() -> ServerBuilder<Protocol> {
    server_with_chat(chat::ChatEndpoint::default())
}

/// The same, with `chat` as the chat endpoint (e.g. one whose rooms keep history).
pub fn server_with_chat(chat: chat::ChatEndpoint) -> ServerBuilder<Protocol> {
    Server::builder()
        .static_file("/", "text/html; charset=utf-8", PAGE)
        .endpoint_with_methods("chat", chat)
        .endpoint_with_methods(notification::NAME, notification::NotificationEndpoint)
}

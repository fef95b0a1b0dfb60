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
pub mod telemetry;

/// The models generated from `models/*.yaml`.
pub mod models {
    streampod::include_models!();
}

use streampod::{Server, ServerBuilder};

pub use models::Protocol;

/// The browser chat page served at `/`.
pub const PAGE: &[u8] = include_bytes!("../static/index.html");

/// The page's scripts, served beside it: `web/src` compiled by `tsc` (see `web/README.md`),
/// committed so running the example needs no Node.
pub const PAGE_SCRIPTS: [(&str, &[u8]); 3] = [
    ("/js/main.js", include_bytes!("../static/js/main.js")),
    (
        "/js/generated/protocol.js",
        include_bytes!("../static/js/generated/protocol.js"),
    ),
    (
        "/js/generated/streampod.js",
        include_bytes!("../static/js/generated/streampod.js"),
    ),
];

/// A server builder with the example's endpoints and page registered.
pub fn server() -> ServerBuilder<Protocol> {
    server_with_chat(chat::ChatEndpoint::default())
}

/// The same, with `chat` as the chat endpoint (e.g. one whose rooms keep history).
pub fn server_with_chat(chat: chat::ChatEndpoint) -> ServerBuilder<Protocol> {
    let mut builder = Server::builder().static_file("/", "text/html; charset=utf-8", PAGE);
    for (path, script) in PAGE_SCRIPTS {
        builder = builder.static_file(path, "text/javascript; charset=utf-8", script);
    }
    builder
        .endpoint_with_methods("chat", chat)
        .endpoint_with_methods(notification::NAME, notification::NotificationEndpoint)
}

//! Endpoint streams: the [`Endpoint`](definition::Endpoint) trait and the registry of
//! named endpoints, a session as one endpoint sees it
//! ([`StreamingSession`](streaming_session::StreamingSession)), and the handle
//! background tasks use to reach the server.

pub(crate) mod definition;
pub(crate) mod server_handle;
pub(crate) mod streaming_session;

//! The sockets: what every socket shares (the server context, the writer task,
//! keepalive, close answers) and one module per protocol: `/websocket` (endpoint streams)
//! and `/v1/websocket` (streaming methods); and the HTTP fallback (`event_stream`), which
//! serves an endpoint-stream session over Server-Sent Events and POSTs. A transport translates frames into
//! operations on the core (session and message central) and back; it owns no limit.

pub(crate) mod close;
pub(crate) mod context;
pub(crate) mod endpoint_socket;
pub(crate) mod event_stream;
pub(crate) mod keepalive;
pub(crate) mod method_socket;
pub(crate) mod write_task;

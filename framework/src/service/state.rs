//! What the service serves from: the streaming context, the method endpoints, static
//! files, the path prefix, the handle, and (under the convenience server) the
//! connection counts.

use std::sync::Arc;

use crate::rate_limit::PerAddress;
use crate::service::api_key::PublishApi;
use crate::transport::context::SocketContext;
use crate::transport::event_stream::EventStreams;
use crate::service::admission::Connections;
use crate::endpoint::server_handle::ServerHandle;
use crate::transport::method_socket::MethodSocketContext;
use crate::methods::registry::MethodEndpoints;
use crate::protocol::ModelSet;

/// A file served at a fixed path.
pub(crate) struct StaticFile {
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

/// Everything one [`StreampodService`](super::StreampodService) answers from.
pub(crate) struct ServiceState<P: ModelSet> {
    pub(crate) streams: Arc<SocketContext<P>>,
    pub(crate) methods: Arc<MethodEndpoints<P>>,
    /// What `/v1/websocket` sockets (streaming methods) serve from.
    pub(crate) method_sockets: Arc<MethodSocketContext<P>>,
    pub(crate) files: Vec<StaticFile>,
    /// Where the service's routes start (`None`: at the root).
    pub(crate) path_prefix: Option<Arc<str>>,
    pub(crate) handle: ServerHandle<P>,
    /// Open TCP connections and their caps, under the convenience server.
    pub(crate) connections: Option<Arc<Connections>>,
    /// The CORS answer for browsers on other origins; `None` leaves it to the host app.
    pub(crate) cors: Option<tower_http::cors::CorsLayer>,
    /// HTTP method calls per client address ([`ServerConfig::http_call_rate_limit`](crate::ServerConfig::http_call_rate_limit)).
    pub(crate) call_limiter: Option<PerAddress>,
    /// The publish API for other backends, when the server has an API key.
    pub(crate) publish_api: Option<PublishApi>,
    /// The HTTP fallback's sessions (`/websocket/events`).
    pub(crate) event_streams: Arc<EventStreams>,
}

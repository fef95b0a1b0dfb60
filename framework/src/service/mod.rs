//! streampod as a tower [`Service`](tower_service::Service): the WebSocket upgrade, the
//! HTTP fallback for endpoint streams (`/websocket/events`: Server-Sent Events and
//! POSTs), HTTP method calls, `/health` and `/metrics` for any `http::Request`, so it
//! mounts in axum, hyper or any tower stack.
//!
//! ```no_run
//! # streampod::__doc_models!();
//! # struct Chat;
//! # impl streampod::Endpoint<Protocol> for Chat {}
//! use streampod::Server;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let service = Server::<Protocol>::builder().endpoint("chat", Chat).into_service()?;
//! let handle = service.handle(); // messages, sessions, shutdown
//! // axum: Router::new().nest_service("/rt", service)  (clients then open /rt/websocket)
//! # let _ = (service, handle);
//! # Ok(())
//! # }
//! ```

pub(crate) mod admission;
mod api_key;
mod call;
mod event_stream;
pub(crate) mod publish_api;
pub(crate) mod cors;
mod response;
mod state;
mod upgrade;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response, StatusCode};

pub use response::ResponseBody;
pub(crate) use api_key::PublishApi;
pub(crate) use state::{ServiceState, StaticFile};
pub(crate) use upgrade::HeldConnection;

use crate::endpoint::server_handle::ServerHandle;
use crate::protocol::ModelSet;

/// The client's address, as a request extension. The convenience server sets it; when
/// mounting the service elsewhere, insert it (or, with the `axum` feature, serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`) so sessions, logs and
/// per-address limits see the real peer. Without either, the address is `0.0.0.0:0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Serves streampod over HTTP: `GET /websocket` (the upgrade), `POST /<endpoint>/<method>`
/// (method calls), `GET /health`, the metrics path and static files, under the
/// builder's [`path_prefix`](crate::ServerBuilder::path_prefix). Cheap to clone; made by
/// [`ServerBuilder::into_service`](crate::ServerBuilder::into_service).
///
/// The upgrade needs a server that supports HTTP/1.1 upgrades (`axum::serve`,
/// hyper's `http1` with `with_upgrades`, hyper-util's auto builder); WebSockets over
/// HTTP/2 (RFC 8441) are refused with 400.
pub struct StreampodService<P: ModelSet> {
    state: Arc<ServiceState<P>>,
}

impl<P: ModelSet> Clone for StreampodService<P> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<P: ModelSet> std::fmt::Debug for StreampodService<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreampodService")
            .field("path_prefix", &self.state.path_prefix)
            .finish_non_exhaustive()
    }
}

impl<P: ModelSet> StreampodService<P> {
    pub(crate) fn new(state: ServiceState<P>) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    /// What the service answers from, for the convenience server.
    pub(crate) fn state(&self) -> &ServiceState<P> {
        &self.state
    }

    /// A handle for background tasks: the message central, sessions, shutdown.
    pub fn handle(&self) -> ServerHandle<P> {
        self.state.handle.clone()
    }

    /// An axum `Router` serving everything this service serves, to `merge` or `nest`
    /// into an app (`Router::new().nest("/rt", service.into_router())`).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> axum::Router<S> {
        axum::Router::new().fallback_service(self)
    }

    /// The accepted handshake when `request` is a WebSocket upgrade on this service's
    /// websocket path that passes every check; `None` for anything else, which
    /// [`respond`](Self::respond) answers (errors included).
    pub(crate) fn accept_websocket<B>(&self, request: &Request<B>) -> Option<upgrade::Accepted> {
        let path = strip_prefix(self.state.path_prefix.as_deref(), request.uri().path())?;
        let kind = upgrade::SocketKind::at(path)?;
        upgrade::check(&self.state, request, kind).ok()
    }

    /// The session of a socket [`accept_websocket`](Self::accept_websocket) accepted: it
    /// serves `io` until the socket closes.
    pub(crate) fn session(
        &self,
        accepted: upgrade::Accepted,
        io: impl crate::transport::context::Io,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        upgrade::session(&self.state, accepted, io, peer)
    }

    /// Answers one request, with CORS headers when configured.
    pub(crate) async fn respond<B: call::RequestBody>(
        &self,
        request: Request<B>,
    ) -> Response<ResponseBody> {
        let Some(cors) = &self.state.cors else {
            return self.respond_without_cors(request).await;
        };
        let mut service = tower_layer::Layer::layer(cors, WithoutCors(self.clone()));
        match tower_service::Service::call(&mut service, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Answers one request.
    async fn respond_without_cors<B: call::RequestBody>(
        &self,
        request: Request<B>,
    ) -> Response<ResponseBody> {
        let server = &self.state;
        let Some(path) = strip_prefix(server.path_prefix.as_deref(), request.uri().path()) else {
            return response::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {} {}", request.method(), request.uri().path()),
            );
        };
        let path = path.to_owned();
        let remote_addr = remote_addr(&request);
        if request.method() == Method::GET {
            if let Some(file) = server.files.iter().find(|f| f.path == path) {
                return response::with_type(
                    StatusCode::OK,
                    file.content_type,
                    bytes::Bytes::from_static(file.body),
                );
            }
            if server.streams.config.metrics_path.as_deref() == Some(path.as_str()) {
                return response::with_type(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    server.streams.metrics.render(),
                );
            }
        }
        if let Some(kind) = upgrade::SocketKind::at(&path) {
            return upgrade::upgrade(server, request, remote_addr, kind);
        }
        if let Some(route) = event_stream::Route::at(&path) {
            return event_stream::handle(server, request, route, remote_addr).await;
        }
        match path.as_str() {
            "/health" if request.method() == Method::GET => {
                // Draining: load balancers take the server out of rotation.
                let status = if server.handle.is_draining() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                response::json(status, health(server))
            }
            "/health" => response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET /health",
            ),
            _ => match &server.publish_api {
                Some(api) if publish_api::is_api_path(&path) => {
                    publish_api::handle(server, api, request, &path, remote_addr).await
                }
                _ => call::handle(server, request, &path, remote_addr).await,
            },
        }
    }
}

/// The path below `prefix`, or `None` when the request is outside it.
fn strip_prefix<'a>(prefix: Option<&str>, path: &'a str) -> Option<&'a str> {
    let Some(prefix) = prefix else {
        return Some(path);
    };
    match path.strip_prefix(prefix)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// The peer: [`RemoteAddr`], else axum's `ConnectInfo`, else `0.0.0.0:0`.
fn remote_addr<B>(request: &Request<B>) -> SocketAddr {
    let extensions = request.extensions();
    let found = extensions.get::<RemoteAddr>().map(|found| found.0);
    #[cfg(feature = "axum")]
    let found = found.or_else(|| {
        extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
    });
    found.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// `{"status":"ok","sessions":N}`, plus `"connections":N` under the convenience server
/// and `"cluster":"<state>"` on a cluster node (the node still serves its own users
/// while Redis is away, so the status stays ok).
fn health<P: ModelSet>(server: &ServiceState<P>) -> Vec<u8> {
    let mut body = serde_json::json!({
        "status": if server.handle.is_draining() { "draining" } else { "ok" },
        "sessions": server.handle.session_count(),
    });
    if let Some(connections) = server.connections.as_ref() {
        body["connections"] = serde_json::Value::from(connections.open());
    }
    if let Some(state) = server.streams.messages.cluster_state() {
        body["cluster"] = serde_json::Value::from(state.to_string());
    }
    body.to_string().into_bytes()
}

/// The future of one [`StreampodService`] call.
pub struct ResponseFuture(
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>,
);

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<P, B> tower_service::Service<Request<B>> for StreampodService<P>
where
    P: ModelSet,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let service = self.clone();
        ResponseFuture(Box::pin(async move { Ok(service.respond(request).await) }))
    }
}

/// The service under its CORS layer: what `tower_http`'s `Cors` wraps.
struct WithoutCors<P: ModelSet>(StreampodService<P>);

impl<P: ModelSet, B: call::RequestBody> tower_service::Service<Request<B>> for WithoutCors<P> {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let service = self.0.clone();
        ResponseFuture(Box::pin(async move {
            Ok(service.respond_without_cors(request).await)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_keeps_only_paths_below_it() {
        assert_eq!(strip_prefix(None, "/websocket"), Some("/websocket"));
        assert_eq!(
            strip_prefix(Some("/rt"), "/rt/websocket"),
            Some("/websocket")
        );
        assert_eq!(strip_prefix(Some("/rt"), "/rt"), Some("/"));
        assert_eq!(strip_prefix(Some("/rt"), "/rtx/websocket"), None);
        assert_eq!(strip_prefix(Some("/rt"), "/websocket"), None);
    }

    #[test]
    fn the_remote_address_comes_from_the_extension() {
        let mut request = Request::new(());
        assert_eq!(remote_addr(&request), SocketAddr::from(([0, 0, 0, 0], 0)));
        let peer = SocketAddr::from(([127, 0, 0, 9], 4000));
        request.extensions_mut().insert(RemoteAddr(peer));
        assert_eq!(remote_addr(&request), peer);
    }
}

//! The example mounted in an existing axum app: the app keeps its own routes and tower
//! layers (CORS, request tracing), and streampod serves everything under `/rt` —
//! `GET /rt/websocket` for streams, `POST /rt/<endpoint>/<method>` for method calls,
//! `GET /rt/health`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let service = example_server::server().into_service()?;
//! let app = example_server::axum_app::app(service);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(
//!     listener,
//!     app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
//! )
//! .await?;
//! # Ok(())
//! # }
//! ```

use axum::routing::get;
use axum::{Json, Router};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::Method;
use streampod::StreampodService;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::Protocol;

/// Where streampod is mounted in the app.
pub const MOUNT: &str = "/rt";

/// The app: `GET /api/hello` of its own, streampod under [`MOUNT`], CORS for browser
/// pages on other origins, and a tracing span per request.
pub fn app(streampod: StreampodService<Protocol>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([CONTENT_TYPE, AUTHORIZATION]);
    Router::new()
        .route("/api/hello", get(hello))
        // nest_service strips the prefix: streampod sees `/websocket`, `/notification/…`.
        .nest_service(MOUNT, streampod)
        .layer(TraceLayer::new_for_http())
        .layer(cors)
}

/// The app's own route.
async fn hello() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "hello": "from axum", "streampod": MOUNT }))
}

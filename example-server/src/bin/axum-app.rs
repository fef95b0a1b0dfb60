//! The example chat and notifications mounted under `/rt` in an axum app with its own
//! routes, CORS and request tracing (see `example_server::axum_app`).
//!
//! ```text
//! axum-app [ADDR]        (default 127.0.0.1:8080; STREAMPOD_LOG sets the log filter)
//! ```

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = std::env::var("STREAMPOD_LOG").unwrap_or_else(|_| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let service = match example_server::server().into_service() {
        Ok(service) => service,
        Err(error) => {
            eprintln!("cannot start streampod: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let handle = service.handle();
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {addr}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Ok(local) = listener.local_addr() {
        println!("listening on {local}");
        tracing::info!("chat page: http://{local}/rt/ — API: http://{local}/api/hello");
    }
    let app = example_server::axum_app::app(service);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        // Close the streams first (1001, stream_closed runs), then let axum drain.
        handle.shutdown().await;
    })
    .await;
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

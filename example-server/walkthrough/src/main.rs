//! Runs the server: `cargo run` (on 127.0.0.1:8080), or `cargo run -- 127.0.0.1:9000`.

#[tokio::main]
async fn main() -> Result<(), streampod::StartError> {
    // streampod logs through `tracing`: without a subscriber you see nothing.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let bind = std::env::args().nth(1);
    let server = streampod_walkthrough::server()
        .bind(bind.as_deref().unwrap_or("127.0.0.1:8080"))
        .await?;
    println!("listening on {}", server.local_addr());
    // Ctrl-C: stop accepting, close every socket with 1001, run stream_closed.
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}

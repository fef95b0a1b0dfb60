//! `example-server [--bind ADDR] [--token TOKEN=USER[:scope,…]]…`: serves the chat and
//! notification example (default 127.0.0.1:8080). Tokens sign sessions and method calls
//! in (`?auth=TOKEN` or `Authorization: Bearer TOKEN`); there are none by default. Logs
//! go to stderr; set `RUST_LOG` (default `info`) to change the level.

use std::net::SocketAddr;

use example_server::demo_auth::DemoTokens;

const DEFAULT_BIND: &str = "127.0.0.1:8080";
const USAGE: &str = "usage: example-server [--bind ADDR] [--token TOKEN=USER[:scope,scope]]...";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let (bind, tokens) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    if tokens.is_empty() {
        tracing::info!("no --token given: every session is anonymous");
    }
    let server = match example_server::server()
        .authentication(tokens)
        .bind(bind)
        .await
    {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot listen on {bind}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Tests and scripts read the address from this line.
    println!("listening on {}", server.local_addr());
    server.run_until(shutdown_signal()).await;
    std::process::ExitCode::SUCCESS
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, DemoTokens), String> {
    let mut bind = DEFAULT_BIND.to_owned();
    let mut tokens = DemoTokens::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--token" => tokens.add(&args.next().ok_or("--token needs TOKEN=USER")?)?,
            "--bind" => {
                bind = args
                    .next()
                    .ok_or("--bind needs an address like 127.0.0.1:8080")?;
            }
            "-h" | "--help" => return Err("serves the streampod chat example".into()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let bind = bind
        .parse()
        .map_err(|e| format!("invalid --bind address '{bind}': {e}"))?;
    Ok((bind, tokens))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

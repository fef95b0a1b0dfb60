//! The example server: chat rooms and notifications over streampod.
//!
//! ```text
//! example-server [--bind ADDR] [--log FILTER] [--token TOKEN=USER[:scope+…]]… [--tokens-file PATH]
//!                [--redis URL | --redis-cluster URL,… | --nats URL] [--redis-prefix PREFIX]
//!                [--database-url URL] [--room-history N] [--max-frames-per-second N]
//!                [--max-connections-per-ip N] [--api-key KEY] [--jwt-secret SECRET]
//! example-server --print-method-schema    # the methods' JSON for streampod-codegen, then exit
//! ```
//!
//! Every flag also reads an environment variable (see `--help`). Tokens sign sessions and
//! method calls in (`Authorization: Bearer TOKEN`, the `auth` command, or `?auth=TOKEN`
//! where a client cannot set headers); there are none by
//! default, so nobody can act as a user unless you say so. With `--redis` (or
//! `--redis-cluster`, or `--nats`), several servers form one cluster: chat rooms and
//! notifications reach users on every server.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use example_server::chat::ChatEndpoint;
use example_server::chat_store::ChatStore;
use example_server::demo_auth::DemoTokens;
use example_server::telemetry::Traces;
use streampod::cluster::{ClusterConfig, NatsConfig};
use streampod::messages::HistoryConfig;
use streampod::{RateLimit, ServerConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Serves the streampod chat and notification example.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "STREAMPOD_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Log filter, e.g. `info` or `streampod=debug,info`.
    #[arg(long, env = "STREAMPOD_LOG", default_value = "info")]
    log: String,
    /// Send traces to this OpenTelemetry collector over OTLP/HTTP
    /// (`http://127.0.0.1:4318`; `/v1/traces` is added): sessions, frames, method calls
    /// and posts, joined across nodes by the W3C `traceparent`.
    #[arg(long, env = "STREAMPOD_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// A demo token, `TOKEN=USER` or `TOKEN=USER:scope+scope` (`,` works too);
    /// repeatable, and separated by spaces in the environment variable.
    #[arg(long = "token", env = "STREAMPOD_TOKENS", value_delimiter = ' ')]
    tokens: Vec<String>,
    /// Also sign in with JSON Web Tokens (HS256) signed with this secret: `sub` is the
    /// user, `scope` the scopes, `exp` the expiry (sessions are told a minute before
    /// and signed out at it unless they send a fresh token). Never logged.
    #[arg(long, env = "STREAMPOD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// A file of demo tokens, one `TOKEN=USER[:scopes]` per line.
    #[arg(long, env = "STREAMPOD_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// Join a cluster through this Redis (`redis://127.0.0.1:6379/`): chat rooms and
    /// notifications then reach every server started with the same URL and prefix.
    #[arg(long, env = "STREAMPOD_REDIS", conflicts_with_all = ["redis_cluster", "nats"])]
    redis: Option<String>,
    /// Join a cluster through this Redis Cluster (seed nodes, comma-separated; Redis ≥ 7):
    /// rooms use sharded pub/sub and spread over its shards.
    #[arg(
        long,
        env = "STREAMPOD_REDIS_CLUSTER",
        value_delimiter = ',',
        conflicts_with = "nats"
    )]
    redis_cluster: Vec<String>,
    /// Join a cluster through NATS (`nats://127.0.0.1:4222`, several comma-separated;
    /// the server needs JetStream, `nats-server -js`): chat and notifications reach every
    /// server on the same NATS and prefix, room history and members are kept in
    /// JetStream.
    #[arg(long, env = "STREAMPOD_NATS")]
    nats: Option<String>,
    /// Prefix of the Redis channel names (NATS subjects), so several apps can share one
    /// Redis (NATS).
    #[arg(
        long,
        env = "STREAMPOD_REDIS_PREFIX",
        default_value = "streampod-example"
    )]
    redis_prefix: String,
    /// Frames per second one socket may send, sustained (bursts of ten times as many);
    /// past it frames get a `rate_limited` error, and a client that keeps going is
    /// closed. `0` switches the limit off (e.g. for a load generator's publisher).
    #[arg(long, env = "STREAMPOD_MAX_FRAMES_PER_SECOND", default_value_t = 200)]
    max_frames_per_second: u32,
    /// Most connections from one client address (off by default: offices behind NAT
    /// and reverse proxies share one address).
    #[arg(long, env = "STREAMPOD_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Where chat messages are kept, so a session joining a room sees the last 50 and can
    /// page back (`chat.history`): `sqlite:PATH` (created when missing) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (servers of a cluster share it);
    /// `none` keeps nothing. Never logged: it may carry a password.
    #[arg(
        long,
        env = "STREAMPOD_DATABASE_URL",
        default_value = "sqlite:streampod-example.db",
        hide_env_values = true
    )]
    database_url: String,
    /// Messages each chat room keeps (for 5 minutes) so that `streampod.v1` clients
    /// recover what they missed while disconnected; `0` (the default) keeps none.
    #[arg(long, env = "STREAMPOD_ROOM_HISTORY", default_value_t = 0)]
    room_history: usize,
    /// The longest chat message content a room takes, in bytes; a longer one is refused
    /// to its sender.
    #[arg(long, env = "STREAMPOD_MAX_MESSAGE_BYTES", default_value_t = example_server::chat::MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// WebSocket compression (`permessage-deflate`): messages of at least this many
    /// bytes go compressed to clients that offer it (browsers do); `0` compresses
    /// everything, `off` declines every offer.
    #[arg(long, env = "STREAMPOD_COMPRESS_FROM", default_value = "512", value_parser = parse_compress_from)]
    compress_from: CompressFrom,
    /// On SIGTERM or Ctrl-C, drain over this many seconds before stopping: `/health`
    /// answers 503 at once, and the sockets are closed in waves with 1012 so their
    /// clients move to other servers spread over the window. `0` stops at once (1001).
    #[arg(long, env = "STREAMPOD_DRAIN_SECONDS", default_value_t = 0)]
    drain_seconds: u64,
    /// Open the publish API (`POST /api/publish`, `/api/broadcast`, `/api/history`,
    /// `/api/presence`; `GET /api/openapi.json`) to other backends that send this key
    /// (`Authorization: Bearer KEY` or `X-API-Key: KEY`). Off by default. Never logged.
    #[arg(long, env = "STREAMPOD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print what the HTTP methods take and answer (the JSON `streampod-codegen
    /// typescript … --methods` reads) and exit, serving nothing.
    #[arg(long)]
    print_method_schema: bool,
}

/// `--compress-from`: the shortest message sent compressed, or `None` (`off`).
#[derive(Debug, Clone, Copy)]
struct CompressFrom(Option<usize>);

fn parse_compress_from(value: &str) -> Result<CompressFrom, String> {
    match value {
        "off" => Ok(CompressFrom(None)),
        bytes => bytes
            .parse()
            .map(|bytes| CompressFrom(Some(bytes)))
            .map_err(|_| format!("expected a size in bytes or `off`, not {bytes:?}")),
    }
}

/// How long a room keeps a message for clients that reconnect (`--room-history`).
const ROOM_HISTORY_TTL: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.print_method_schema {
        return match serde_json::to_string_pretty(&example_server::server().method_schema()) {
            Ok(json) => {
                println!("{json}");
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cannot encode the method schema: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let filter = match log_filter(&args.log) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("invalid --log filter '{}': {error}", args.log);
            return std::process::ExitCode::from(2);
        }
    };
    let traces = match args
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| Traces::otlp(endpoint, "streampod-example"))
    {
        None => None,
        Some(Ok(traces)) => Some(traces),
        Some(Err(error)) => {
            eprintln!("invalid --otlp-endpoint: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        // Spans at info (sessions, method calls, posts, deliveries) and streampod's at
        // debug (each frame handled), whatever `--log` shows.
        .with(traces.as_ref().map(|traces| {
            traces
                .layer()
                .with_filter(tracing_subscriber::EnvFilter::new(
                    "info,streampod=debug,tungstenite=off,tokio_tungstenite=off",
                ))
        }))
        .init();

    let mut tokens = DemoTokens::default();
    let loaded = args
        .tokens
        .iter()
        .try_for_each(|spec| tokens.add(spec))
        .and_then(|()| {
            args.tokens_file
                .as_deref()
                .map_or(Ok(()), |path| tokens.add_file(path))
        });
    if let Err(message) = loaded {
        eprintln!("{message}");
        return std::process::ExitCode::from(2);
    }
    if let Some(secret) = &args.jwt_secret {
        if secret.len() < 32 {
            eprintln!("--jwt-secret must be at least 32 bytes (HS256 keys shorter than the hash are weak)");
            return std::process::ExitCode::from(2);
        }
        tokens.accept_jwt(streampod::auth::Jwt::hs256(secret.as_bytes()));
        tracing::info!("JSON Web Tokens signed with the --jwt-secret are accepted");
    }
    if tokens.is_empty() && args.jwt_secret.is_none() {
        tracing::info!("no demo tokens: every session is anonymous (see --token)");
    } else {
        tracing::info!(tokens = tokens.len(), "demo tokens loaded");
    }

    let inbound_rate_limit = (args.max_frames_per_second > 0).then(|| {
        let burst = args.max_frames_per_second.saturating_mul(10);
        RateLimit::new(args.max_frames_per_second, burst)
    });
    let config = ServerConfig::default()
        .inbound_rate_limit(inbound_rate_limit)
        .max_connections_per_ip(args.max_connections_per_ip)
        .websocket_compression(args.compress_from.0);
    let chat = match args.room_history {
        0 => ChatEndpoint::default(),
        size => ChatEndpoint::with_room_history(HistoryConfig::new(size, ROOM_HISTORY_TTL)),
    }
    .with_max_message_bytes(args.max_message_bytes);
    let chat = match args.database_url.as_str() {
        "none" => {
            tracing::info!("chat messages are not stored (--database-url none)");
            chat
        }
        url => match ChatStore::open(url).await {
            Ok(store) => {
                tracing::info!(database = store.kind(), "chat messages are stored");
                chat.with_store(store)
            }
            Err(error) => {
                eprintln!("{error}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let mut builder = example_server::server_with_chat(chat)
        .authentication(tokens)
        .config(config);
    if let Some(key) = &args.api_key {
        tracing::info!("the publish API is open at /api/ to callers with the API key");
        builder = builder.publish_api(key);
    }
    // The URL itself is not logged: it may carry a password. The cluster logs its
    // host and port once connected.
    if let Some(url) = &args.redis {
        tracing::info!(prefix = %args.redis_prefix, "joining a cluster through Redis");
        builder = builder.cluster(ClusterConfig::redis(url).prefix(&args.redis_prefix));
    } else if !args.redis_cluster.is_empty() {
        tracing::info!(prefix = %args.redis_prefix, seeds = args.redis_cluster.len(), "joining a cluster through a Redis Cluster");
        builder = builder.cluster(
            ClusterConfig::redis_cluster(args.redis_cluster.clone()).prefix(&args.redis_prefix),
        );
    } else if let Some(url) = &args.nats {
        tracing::info!(prefix = %args.redis_prefix, "joining a cluster through NATS");
        builder = builder.nats(NatsConfig::new(url).prefix(&args.redis_prefix));
    }
    let server = match builder.bind(args.bind).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot start on {}: {error}", args.bind);
            return std::process::ExitCode::FAILURE;
        }
    };
    // Tests and scripts read the address from this line.
    println!("listening on {}", server.local_addr());
    tracing::info!("chat page: http://{}/", server.local_addr());
    let handle = server.handle();
    let drain = Duration::from_secs(args.drain_seconds);
    server
        .run_until(async move {
            shutdown_signal().await;
            if !drain.is_zero() {
                tracing::info!(seconds = drain.as_secs(), "draining before the stop");
                handle.drain(drain).await;
            }
        })
        .await;
    if let Some(traces) = traces {
        traces.shutdown();
    }
    std::process::ExitCode::SUCCESS
}

/// The `--log` filter, with WebSocket frame tracing always off: tungstenite traces
/// every frame's payload, and frames carry auth keys.
fn log_filter(
    spec: &str,
) -> Result<tracing_subscriber::EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut filter = tracing_subscriber::EnvFilter::try_new(spec)?;
    for target in ["tungstenite=debug", "tokio_tungstenite=debug"] {
        filter = filter.add_directive(target.parse()?);
    }
    Ok(filter)
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

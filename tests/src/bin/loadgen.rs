//! The load generator: opens N subscriber WebSockets, has them join a channel, publishes
//! from one more socket, and prints one JSON line of results.
//!
//! ```text
//! loadgen --url ws://127.0.0.1:8080/websocket --subscribers 1000 burst --messages 2000
//! loadgen --url … --subscribers 1000 rate --per-second 100 --seconds 10
//! loadgen table results.jsonl      # markdown table of result lines
//! ```
//!
//! Every message carries its sequence number and send time (microseconds since the
//! generator started) in `content`; subscribers find them without decoding JSON, so the
//! generator stays cheap. It reports its own per-core CPU (from /proc/stat, softirq
//! included) so a saturated generator is not mistaken for a slow server.

// A benchmark tool: failing loudly on a broken setup is the right behaviour.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(about = "streampod load generator")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// M messages as fast as a window of in-flight messages allows; reports deliveries/s.
    Burst {
        #[command(flatten)]
        common: Common,
        /// Messages to publish.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// At most this many messages ahead of the slowest subscriber.
        #[arg(long, default_value_t = 500)]
        window: u64,
    },
    /// R messages per second for S seconds; reports latency percentiles.
    Rate {
        #[command(flatten)]
        common: Common,
        /// Messages per second.
        #[arg(long, default_value_t = 10)]
        per_second: u64,
        /// Seconds to publish for.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Prints result lines (JSON, one per line) as markdown tables, with streampod as a
    /// ratio of the floor for each scenario.
    Table {
        /// The file of result lines.
        file: std::path::PathBuf,
    },
    /// Prints the median line (by deliveries/s, or p99 for rate runs) of a file.
    Median {
        /// The file of result lines of one scenario.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The server's WebSocket URL (ws://127.0.0.1:PORT/websocket).
    #[arg(long)]
    url: String,
    /// A label for the result line (e.g. streampod, floor).
    #[arg(long, default_value = "server")]
    target: String,
    /// Subscriber connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 64)]
    connect_parallelism: usize,
    /// The chat room subscribers join and the publisher posts to.
    #[arg(long, default_value = "bench")]
    room: String,
    /// Frame each subscriber sends after connecting, instead of joining `--room`.
    #[arg(long)]
    join: Option<String>,
    /// The server's PID, to report its memory before and after connecting.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Bytes of padding per message (about 100-byte messages by default).
    #[arg(long, default_value_t = 40)]
    padding: usize,
    /// Loopback source addresses to spread connections over (127.0.0.1 and up).
    #[arg(long, default_value_t = 250)]
    source_addresses: u8,
    /// Gives up after this many seconds and reports what was delivered by then.
    #[arg(long, default_value_t = 120)]
    deadline: u64,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn ws_config() -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = 4096;
    config.write_buffer_size = 0;
    config
}

/// Opens connection `index`, from 127.0.0.(1 + index % spread) so ports do not run out.
async fn open(url: &str, addr: SocketAddr, index: usize, spread: u8) -> Socket {
    let socket = TcpSocket::new_v4().expect("socket");
    let source = Ipv4Addr::new(127, 0, 0, 1 + (index % usize::from(spread.max(1))) as u8);
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind a loopback source");
    let stream = socket.connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (socket, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .expect("WebSocket handshake");
    socket
}

fn server_addr(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("ws://").expect("a ws:// URL");
    let host = rest.split('/').next().unwrap_or(rest);
    host.parse().expect("the URL's host is ip:port")
}

/// `(sequence, sent_micros)` from a frame, found by substring.
fn parse(text: &str) -> Option<(u64, u64)> {
    let start = text.find("\"content\":\"")? + "\"content\":\"".len();
    let mut parts = text[start..].splitn(3, ':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A process's CPU time (utime + stime) in clock ticks (1/100 s: Linux's USER_HZ).
fn process_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `)`.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Microseconds of one clock tick.
const TICK_MICROS: f64 = 10_000.0;

/// Per-core (busy, total) jiffies; busy includes irq and softirq.
fn cpu_times() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            let total: u64 = v.iter().take(8).sum();
            (total - idle, total)
        })
        .collect()
}

fn cpu_busy(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let total = a.1.saturating_sub(b.1).max(1);
            (a.0.saturating_sub(b.0) as f64 * 100.0 / total as f64 * 10.0).round() / 10.0
        })
        .collect()
}

struct Subscribers {
    received: Arc<Vec<AtomicU64>>,
    /// Set once a subscriber has seen a warm-up message: its join took effect.
    ready: Arc<Vec<AtomicBool>>,
    latencies: Vec<tokio::task::JoinHandle<Vec<u32>>>,
}

/// Connects everyone and starts their readers; each reader records latencies (µs) when
/// `record` is set and stops after `expected` messages.
async fn subscribe(
    common: &Common,
    start: Instant,
    expected: u64,
    record: bool,
) -> (Subscribers, f64) {
    let addr = server_addr(&common.url);
    let received: Arc<Vec<AtomicU64>> =
        Arc::new((0..common.subscribers).map(|_| AtomicU64::new(0)).collect());
    let ready: Arc<Vec<AtomicBool>> = Arc::new(
        (0..common.subscribers)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let connect_started = Instant::now();
    let mut sockets = Vec::with_capacity(common.subscribers);
    for chunk_start in (0..common.subscribers).step_by(common.connect_parallelism.max(1)) {
        let end = (chunk_start + common.connect_parallelism).min(common.subscribers);
        let opened = futures_util::future::join_all(
            (chunk_start..end).map(|i| open(&common.url, addr, i, common.source_addresses)),
        )
        .await;
        sockets.extend(opened);
    }
    for socket in &mut sockets {
        socket.send(join_frame(common)).await.expect("join");
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(sockets.len());
    for (index, mut socket) in sockets.into_iter().enumerate() {
        let received = received.clone();
        let ready = ready.clone();
        latencies.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut count = 0;
            while count < expected {
                let message = match socket.next().await {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        // A subscriber that fails is a finding, not noise: say why.
                        eprintln!("subscriber {index}: {error}");
                        break;
                    }
                    None => break,
                };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Close(frame) => {
                        eprintln!("subscriber {index}: closed by the server: {frame:?}");
                        break;
                    }
                    _ => continue,
                };
                let Some((_, sent)) = parse(&text) else {
                    if text.contains(WARM_UP) {
                        ready[index].store(true, Ordering::Relaxed);
                    }
                    continue;
                };
                count += 1;
                received[index].store(count, Ordering::Relaxed);
                if record {
                    let now = start.elapsed().as_micros() as u64;
                    samples.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                }
            }
            samples
        }));
    }
    (
        Subscribers {
            received,
            ready,
            latencies,
        },
        connect_seconds,
    )
}

/// The content of warm-up messages (not counted, not timed).
const WARM_UP: &str = "warm-up";

fn message(common: &Common, sequence: u64, sent: u64) -> Message {
    chat_frame(
        &common.room,
        &format!("{sequence}:{sent}:{}", "x".repeat(common.padding)),
    )
}

fn chat_frame(room: &str, content: &str) -> Message {
    let frame = json!({"endpoint": "chat", "object": {"className": "ChatMessage", "data": {
        "senderName": "p", "content": content, "channelId": room, "excludeSender": true
    }}});
    Message::text(frame.to_string())
}

/// The frame that joins `--room` (or `--join` as given).
fn join_frame(common: &Common) -> Message {
    let frame = common.join.clone().unwrap_or_else(|| {
        json!({"endpoint": "chat", "object": {"className": "ChannelSubscription",
            "data": {"channelId": common.room, "subscribe": true}}})
        .to_string()
    });
    Message::text(frame)
}

fn min_received(received: &[AtomicU64]) -> u64 {
    received
        .iter()
        .map(|r| r.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0)
}

async fn publisher(common: &Common) -> Socket {
    let mut socket = open(
        &common.url,
        server_addr(&common.url),
        0,
        common.source_addresses,
    )
    .await;
    socket
        .send(join_frame(common))
        .await
        .expect("publisher joins");
    socket
}

/// Reads and drops whatever the server sends the publisher (pongs, updates).
fn drain(socket: Socket) -> futures_util::stream::SplitSink<Socket, Message> {
    let (sink, mut stream) = socket.split();
    tokio::spawn(async move { while stream.next().await.is_some() {} });
    sink
}

/// Publishes warm-up messages until every subscriber has seen one, so no measured
/// message is posted before a join took effect; the seconds that took, or `None` when
/// `deadline` passed first.
async fn warm_up(
    room: &str,
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    ready: &[AtomicBool],
    deadline: Instant,
) -> Option<f64> {
    let started = Instant::now();
    loop {
        sink.send(chat_frame(room, WARM_UP)).await.expect("publish");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if ready.iter().all(|r| r.load(Ordering::Relaxed)) {
            return Some(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            let missing = ready.iter().filter(|r| !r.load(Ordering::Relaxed)).count();
            eprintln!("warm-up: {missing} subscribers never saw a message (joins not applied?)");
            return None;
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

async fn run(mode: Mode) -> Value {
    let start = Instant::now();
    let cpu_before = cpu_times();
    let (common, result) = match mode {
        Mode::Burst {
            common,
            messages,
            window,
        } => {
            let rss_before = common.server_pid.and_then(rss_kib);
            let (subs, connect_seconds) = subscribe(&common, start, messages, false).await;
            let deadline = start + Duration::from_secs(common.deadline);
            let mut sink = drain(publisher(&common).await);
            let warm_up_seconds = warm_up(&common.room, &mut sink, &subs.ready, deadline).await;
            let rss_after = common.server_pid.and_then(rss_kib);
            let started = Instant::now();
            let server_cpu_before = common.server_pid.and_then(process_cpu_ticks);
            let own_cpu_before = process_cpu_ticks(std::process::id());
            'publish: for sequence in 0..messages {
                while sequence >= min_received(&subs.received) + window {
                    if Instant::now() > deadline {
                        break 'publish;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                sink.feed(message(
                    &common,
                    sequence,
                    start.elapsed().as_micros() as u64,
                ))
                .await
                .expect("publish");
                if sequence % 32 == 31 {
                    sink.flush().await.expect("publish");
                }
            }
            sink.flush().await.expect("publish");
            for handle in subs.latencies {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = tokio::time::timeout(left, handle).await;
            }
            let seconds = started.elapsed().as_secs_f64();
            let server_cpu_after = common.server_pid.and_then(process_cpu_ticks);
            let own_cpu_after = process_cpu_ticks(std::process::id());
            // The generator's own share of one core over the measured phase.
            let own_busy = match (own_cpu_before, own_cpu_after) {
                (Some(b), Some(a)) if seconds > 0.0 => {
                    json!(
                        (a.saturating_sub(b) as f64 * TICK_MICROS / 1e6 / seconds * 100.0).round()
                    )
                }
                _ => Value::Null,
            };
            let deliveries: u64 = subs
                .received
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .sum();
            // The server's CPU over the measured phase only (after connects and warm-up).
            let server_cpu_per_delivery = match (server_cpu_before, server_cpu_after) {
                (Some(b), Some(a)) if deliveries > 0 => {
                    json!(a.saturating_sub(b) as f64 * TICK_MICROS / deliveries as f64)
                }
                _ => Value::Null,
            };
            let per_connection = match (rss_before, rss_after) {
                (Some(b), Some(a)) => {
                    json!((a.saturating_sub(b)) as f64 / common.subscribers as f64)
                }
                _ => Value::Null,
            };
            let result = json!({
                "mode": "burst", "messages": messages, "deliveries": deliveries,
                "expected": messages * common.subscribers as u64, "seconds": seconds,
                "deliveries_per_s": deliveries as f64 / seconds, "connect_s": connect_seconds,
                "warm_up_s": warm_up_seconds,
                "server_rss_before_kib": rss_before, "server_rss_after_kib": rss_after,
                "rss_per_connection_kib": per_connection,
                "server_cpu_us_per_delivery": server_cpu_per_delivery,
                "loadgen_process_busy_percent": own_busy,
            });
            (common, result)
        }
        Mode::Rate {
            common,
            per_second,
            seconds,
        } => {
            let total = per_second * seconds;
            let (subs, connect_seconds) = subscribe(&common, start, total, true).await;
            let deadline = start + Duration::from_secs(common.deadline);
            let mut sink = drain(publisher(&common).await);
            let warm_up_seconds = warm_up(&common.room, &mut sink, &subs.ready, deadline).await;
            let mut ticker =
                tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for sequence in 0..total {
                ticker.tick().await;
                sink.send(message(
                    &common,
                    sequence,
                    start.elapsed().as_micros() as u64,
                ))
                .await
                .expect("publish");
            }
            let mut samples = Vec::new();
            for handle in subs.latencies {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Ok(Ok(mut part)) = tokio::time::timeout(left, handle).await {
                    samples.append(&mut part);
                }
            }
            samples.sort_unstable();
            let result = json!({
                "mode": "rate", "per_second": per_second, "seconds": seconds,
                "deliveries": samples.len(), "expected": total * common.subscribers as u64,
                "connect_s": connect_seconds, "warm_up_s": warm_up_seconds,
                "p50_ms": percentile(&samples, 0.50), "p99_ms": percentile(&samples, 0.99),
                "max_ms": percentile(&samples, 1.0),
            });
            (common, result)
        }
        Mode::Table { .. } | Mode::Median { .. } => unreachable!("handled in main"),
    };
    let mut result = result;
    result["target"] = json!(common.target);
    result["subscribers"] = json!(common.subscribers);
    result["loadgen_cpu_busy_percent"] = json!(cpu_busy(&cpu_before, &cpu_times()));
    result
}

fn table(file: &std::path::Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut out = String::from("| target | mode | subscribers | load | deliveries/s | server µs/delivery | p50 ms | p99 ms | max ms | KiB/conn | complete | loadgen CPU % |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let num = |k: &str, digits: usize| {
            r[k].as_f64()
                .map_or("–".to_owned(), |v| format!("{v:.digits$}"))
        };
        let load = match r["mode"].as_str() {
            Some("burst") => format!("{} msgs", r["messages"]),
            _ => format!("{}/s × {} s", r["per_second"], r["seconds"]),
        };
        // A generator core at 95 % or more measures the generator, not the server.
        let busiest = r["loadgen_cpu_busy_percent"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .fold(0.0_f64, f64::max);
        let bound = if busiest >= 95.0 {
            " generator-bound"
        } else {
            ""
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {}{bound} |\n",
            r["target"].as_str().unwrap_or("?"),
            r["mode"].as_str().unwrap_or("?"),
            r["subscribers"],
            load,
            num("deliveries_per_s", 0),
            num("server_cpu_us_per_delivery", 3),
            num("p50_ms", 1),
            num("p99_ms", 1),
            num("max_ms", 1),
            num("rss_per_connection_kib", 1),
            r["deliveries"],
            r["expected"],
            r["loadgen_cpu_busy_percent"],
        ));
    }
    out
}

fn scenario(r: &Value) -> String {
    match r["mode"].as_str() {
        Some("burst") => format!("fan-out, {} subscribers", r["subscribers"]),
        _ => format!(
            "latency, {} subscribers × {} msg/s",
            r["subscribers"], r["per_second"]
        ),
    }
}

/// streampod against the floor, scenario by scenario.
fn ratios(rows: &[Value]) -> String {
    let mut out = String::from(
        "| scenario | streampod | floor | streampod / floor | target |\n|---|---|---|---|---|\n",
    );
    for ours in rows.iter().filter(|r| r["target"] == "streampod") {
        let Some(floor) = rows
            .iter()
            .find(|r| r["target"] == "floor" && scenario(r) == scenario(ours))
        else {
            continue;
        };
        let line = if ours["mode"] == "burst" {
            let (a, b) = (
                ours["deliveries_per_s"].as_f64().unwrap_or(0.0),
                floor["deliveries_per_s"].as_f64().unwrap_or(1.0),
            );
            format!(
                "{:.0}/s | {:.0}/s | {:.2} | ≥ 0.80 {}",
                a,
                b,
                a / b,
                if a / b >= 0.8 { "✓" } else { "✗" }
            )
        } else {
            let (a, b) = (
                ours["p99_ms"].as_f64().unwrap_or(f64::NAN),
                floor["p99_ms"].as_f64().unwrap_or(f64::NAN),
            );
            format!(
                "p99 {a:.1} ms | p99 {b:.1} ms | {:.2} | ≤ 1.25 {}",
                a / b,
                if a / b <= 1.25 { "✓" } else { "✗" }
            )
        };
        out.push_str(&format!("| {} | {line} |\n", scenario(ours)));
        let cpu = |r: &Value| r["server_cpu_us_per_delivery"].as_f64();
        if let (Some(a), Some(b)) = (cpu(ours), cpu(floor)) {
            out.push_str(&format!(
                "| server CPU per delivery, {} subscribers | {a:.3} µs | {b:.3} µs | {:.2} | ≤ 1.15 {} |\n",
                ours["subscribers"],
                a / b,
                if a / b <= 1.15 { "✓" } else { "✗" }
            ));
        }
    }
    out
}

fn median(file: &std::path::Path) -> Option<Value> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut rows: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let key = |r: &Value| {
        r["deliveries_per_s"]
            .as_f64()
            .or_else(|| r["p99_ms"].as_f64())
            .unwrap_or(0.0)
    };
    rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = rows.len() / 2;
    let mut chosen = rows.get(middle)?.clone();
    chosen["runs"] = json!(rows.len());
    Some(chosen)
}

fn main() {
    let args = Args::parse();
    match &args.mode {
        Mode::Table { file } => {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let rows: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            print!("{}\n{}", ratios(&rows), table(file));
            return;
        }
        Mode::Median { file } => {
            if let Some(line) = median(file) {
                println!("{line}");
            }
            return;
        }
        _ => {}
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(run(args.mode));
    println!("{result}");
}

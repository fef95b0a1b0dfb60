//! The load generator: opens N subscriber WebSockets, has them join a channel, publishes
//! from one more socket, and prints one JSON line of results.
//!
//! ```text
//! loadgen burst --url ws://127.0.0.1:8080/websocket --subscribers 1000 --messages 2000
//! loadgen rate --url … --subscribers 1000 --per-second 100 --seconds 10
//! loadgen storm --url … --subscribers 10000 --connect-parallelism 10000
//! loadgen recovery --url … --subscribers 1000 --missed 100   # a room with history
//! loadgen presence --url … --subscribers 10000 --redis redis://…  # a cluster node
//! loadgen table results.jsonl      # markdown tables of result lines
//! ```
//!
//! Every message carries its sequence number and send time (microseconds since the
//! generator started) in `content`. Subscribers are raw sockets (see `raw`): they find
//! the two numbers by substring, check that sequence numbers arrive in order, and only
//! one in `--latency-every` reads the clock, so the generator stays cheap. It reports its
//! own per-core CPU (from /proc/stat, softirq included) and its process's busy share, so
//! a saturated generator is not mistaken for a slow server, and the server's CPU per
//! delivery, which measures the server whatever the generator manages.

// A benchmark tool: failing loudly on a broken setup is the right behaviour.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod presence;
mod raw;
mod recovery;
mod report;

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

use raw::{Ended, RawSocket};

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
    /// Every subscriber connects and joins at once (`--connect-parallelism` at a time),
    /// then pings; reports the time until every pong (so every join) came back, failed
    /// handshakes, the server's CPU and its memory per connection.
    Storm {
        #[command(flatten)]
        common: Common,
    },
    /// Subscribers (`streampod.v1`) join a room with history, all drop at once, messages
    /// are posted, all come back at once with `recover`; reports the time until every
    /// one has its missed messages (see `recovery`).
    Recovery {
        #[command(flatten)]
        common: Common,
        /// Messages posted while the subscribers are away.
        #[arg(long, default_value_t = 100)]
        missed: u64,
    },
    /// Subscribers join a room of a cluster node at once, then all leave at once;
    /// reports the time until the room's presence in Redis lists all, then none (see
    /// `presence`).
    Presence {
        #[command(flatten)]
        common: Common,
        /// The Redis the node keeps presence in.
        #[arg(long)]
        redis: String,
        /// The node's Redis key prefix (`--redis-prefix`).
        #[arg(long, default_value = "streampod-example")]
        prefix: String,
    },
    /// Prints result lines (JSON, one per line) as markdown tables, with streampod as a
    /// ratio of the floor for each scenario.
    Table {
        /// The file of result lines.
        file: std::path::PathBuf,
    },
    /// Prints the median line (by deliveries/s, p99 or time to join) of a file.
    Median {
        /// The file of result lines of one scenario.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
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
    /// The server's PID, to report its memory and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Bytes of padding per message (about 100-byte messages by default).
    #[arg(long, default_value_t = 40)]
    padding: usize,
    /// One subscriber in this many records latencies (rate runs).
    #[arg(long, default_value_t = 10)]
    latency_every: usize,
    /// Publish frames shaped like the `frame_template` of this file's first result line
    /// (a streampod run's): the floor then forwards exactly the bytes streampod sends.
    #[arg(long)]
    publish_template: Option<std::path::PathBuf>,
    /// Loopback source addresses to spread connections over (127.0.0.1 and up).
    #[arg(long, default_value_t = 250)]
    source_addresses: u8,
    /// Subscribers ask for the `streampod.v1` subprotocol, as streampod's clients do
    /// (frames from a history channel then carry their channel and position).
    #[arg(long)]
    extended: bool,
    /// Gives up after this many seconds and reports what was delivered by then.
    #[arg(long, default_value_t = 120)]
    deadline: u64,
    /// Subscribers offer `permessage-deflate` (as browsers do) and inflate what comes
    /// compressed; the report's `wire_bytes` is what a delivery took on the wire.
    #[arg(long)]
    deflate: bool,
    /// The padding is JSON text shaped like a dashboard update (numbers that vary,
    /// keys that repeat) instead of one repeated letter, so compression sees realistic
    /// text.
    #[arg(long)]
    json_padding: bool,
    /// Subscribers follow the room through the streaming method `chat.messages` on
    /// `/v1/websocket` (one call per socket) instead of joining it on `--url`; the
    /// publisher still posts on `--url`.
    #[arg(long)]
    method_stream: bool,
    /// The publisher posts through this server (another node of a cluster) instead of
    /// `--url`, so every delivery crosses the backplane.
    #[arg(long)]
    publish_url: Option<String>,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;
type Sink = futures_util::stream::SplitSink<Socket, Message>;

/// A TCP connection for connection `index`, from 127.0.0.(1 + index % spread) so ports do
/// not run out.
async fn connect(
    addr: SocketAddr,
    index: usize,
    spread: u8,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let source = Ipv4Addr::new(127, 0, 0, 1 + (index % usize::from(spread.max(1))) as u8);
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn server_addr(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("ws://").expect("a ws:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (
        host.parse().expect("the URL's host is ip:port"),
        format!("/{path}"),
    )
}

const CONTENT: &[u8] = b"\"content\":\"";
/// Where a template's content goes.
const CONTENT_SLOT: &str = "{content}";

/// `(sequence, sent_micros)` from a frame, found by substring.
fn parse(payload: &[u8]) -> Option<(u64, u64)> {
    let start = memchr::memmem::find(payload, CONTENT)? + CONTENT.len();
    let mut numbers = payload[start..].splitn(3, |b| *b == b':');
    let mut number = || -> Option<u64> {
        let digits = numbers.next()?;
        if digits.is_empty() || digits.len() > 19 {
            return None;
        }
        digits.iter().try_fold(0u64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    Some((number()?, number()?))
}

/// `payload` with its content string replaced by [`CONTENT_SLOT`].
fn template_of(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let start = memchr::memmem::find(payload, CONTENT)? + CONTENT.len();
    let end = start + text[start..].find('"')?;
    Some(format!("{}{CONTENT_SLOT}{}", &text[..start], &text[end..]))
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

/// CPU microseconds a process used between two readings.
fn cpu_micros(before: Option<u64>, after: Option<u64>) -> Option<f64> {
    Some(after?.saturating_sub(before?) as f64 * TICK_MICROS)
}

/// The generator's own share of one core (percent) over `seconds` between two readings.
fn busy_percent(before: Option<u64>, after: Option<u64>, seconds: f64) -> Option<f64> {
    cpu_micros(before, after)
        .filter(|_| seconds > 0.0)
        .map(|c| (c / 1e6 / seconds * 100.0).round())
}

/// The kernel's count of connections dropped because a listener's accept queue was full
/// (`TcpExt: ListenOverflows` in /proc/net/netstat), machine-wide.
fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

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

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Tally {
    /// Latencies in µs, when this subscriber records them.
    samples: Vec<u32>,
    /// Messages whose sequence number was not the next one expected.
    out_of_order: u64,
    /// Payload bytes of the counted messages.
    bytes: u64,
    /// Bytes on the wire of the counted messages (headers included).
    wire_bytes: u64,
    /// The first counted message as a template (subscriber 0 only).
    template: Option<String>,
}

struct Subscribers {
    received: Arc<Vec<AtomicU64>>,
    /// Set once a subscriber has seen a warm-up message: its join took effect.
    ready: Arc<Vec<AtomicBool>>,
    /// Each reader gives back its socket, so a connection stays open until its
    /// subscriber is dropped, not when its reader is done.
    readers: Vec<tokio::task::JoinHandle<(Tally, RawSocket)>>,
    /// Connections whose TCP connect, upgrade or join failed.
    failed: usize,
    /// Seconds until every connection was upgraded and had sent its join.
    connect_seconds: f64,
}

impl Subscribers {
    fn joined(&self) -> usize {
        self.ready
            .iter()
            .filter(|r| r.load(Ordering::Relaxed))
            .count()
    }

    /// Waits until the subscribers' readers end (or `deadline`) and sums what they saw.
    async fn finish(self, deadline: Instant) -> Tally {
        let mut all = Tally::default();
        for handle in self.readers {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(Ok((mut tally, _socket))) = tokio::time::timeout(left, handle).await {
                all.samples.append(&mut tally.samples);
                all.out_of_order += tally.out_of_order;
                all.bytes += tally.bytes;
                all.wire_bytes += tally.wire_bytes;
                all.template = all.template.or(tally.template);
            }
        }
        all
    }
}

/// Serverpod's ping command; the answer (a pong) comes after the join was handled.
const PING: &str = r#"{"command":"ping","args":{}}"#;
const PONG: &[u8] = br#""command":"pong""#;

/// Opens connection `index` and sends its join, and with `ping` a ping after it.
async fn open_subscriber(common: &Common, index: usize, ping: bool) -> std::io::Result<RawSocket> {
    let (addr, path) = server_addr(&common.url);
    let stream = connect(addr, index, common.source_addresses).await?;
    if common.method_stream {
        let path = path.replace("/websocket", "/v1/websocket");
        let mut socket = RawSocket::upgrade(stream, addr, &path, false, common.deflate).await?;
        socket.send_text(&method_stream_open(common)).await?;
        return Ok(socket);
    }
    let mut socket =
        RawSocket::upgrade(stream, addr, &path, common.extended, common.deflate).await?;
    socket.send_text(&join_frame(common)).await?;
    if ping {
        socket.send_text(PING).await?;
    }
    Ok(socket)
}

/// How subscribers connect and what they record.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Messages each reader waits for.
    expected: u64,
    /// Record latencies (one subscriber in `--latency-every`).
    record: bool,
    /// A storm: a ping follows each join, its pong marks the subscriber joined, and a
    /// connection that fails is counted instead of ending the run.
    storm: bool,
}

/// Connects everyone and starts their readers; each reader is ready once it has seen a
/// warm-up message (or, in a storm, its pong) and stops after `plan.expected` messages.
/// Every subscriber connects and joins at once, pinging after its join (see [`Plan`]).
async fn storm(common: &Common, start: Instant) -> Subscribers {
    let plan = Plan {
        expected: 0,
        record: false,
        storm: true,
    };
    subscribe(common, start, plan).await
}

async fn subscribe(common: &Common, start: Instant, plan: Plan) -> Subscribers {
    let received: Arc<Vec<AtomicU64>> =
        Arc::new((0..common.subscribers).map(|_| AtomicU64::new(0)).collect());
    let ready: Arc<Vec<AtomicBool>> = Arc::new(
        (0..common.subscribers)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let connect_started = Instant::now();
    let mut readers = Vec::with_capacity(common.subscribers);
    let mut failed = 0;
    let step = common.connect_parallelism.max(1);
    for chunk_start in (0..common.subscribers).step_by(step) {
        let end = (chunk_start + step).min(common.subscribers);
        let opened =
            futures_util::future::join_all((chunk_start..end).map(|index| async move {
                (index, open_subscriber(common, index, plan.storm).await)
            }))
            .await;
        for (index, socket) in opened {
            let socket = match socket {
                Ok(socket) => socket,
                Err(error) if plan.storm => {
                    if failed < 5 {
                        eprintln!("subscriber {index}: {error}");
                    }
                    failed += 1;
                    continue;
                }
                Err(error) => panic!("subscriber {index} could not connect and join: {error}"),
            };
            let sample = plan.record && index % common.latency_every.max(1) == 0;
            let marker = if plan.storm { PONG } else { WARM_UP.as_bytes() };
            readers.push(tokio::spawn(read_subscriber(
                socket,
                (index, plan.expected, sample, marker),
                start,
                (received.clone(), ready.clone()),
            )));
        }
    }
    Subscribers {
        received,
        ready,
        readers,
        failed,
        connect_seconds: connect_started.elapsed().as_secs_f64(),
    }
}

/// Reads one subscriber's frames until it has seen `ready_marker` (in a frame that is
/// not a measured message) and `expected` messages; returns what it saw and the socket,
/// still open.
async fn read_subscriber(
    mut socket: RawSocket,
    (index, expected, sample, ready_marker): (usize, u64, bool, &'static [u8]),
    start: Instant,
    (received, ready): (Arc<Vec<AtomicU64>>, Arc<Vec<AtomicBool>>),
) -> (Tally, RawSocket) {
    let mut tally = Tally::default();
    let mut count = 0;
    let mut is_ready = false;
    while !(is_ready && count >= expected) {
        let read = socket
            .read_frames(|payload, wire_len| {
                match parse(payload) {
                    Some((sequence, sent)) => {
                        if sequence != count {
                            tally.out_of_order += 1;
                        }
                        if index == 0 && tally.template.is_none() {
                            tally.template = template_of(payload);
                        }
                        count += 1;
                        tally.bytes += payload.len() as u64;
                        tally.wire_bytes += wire_len as u64;
                        if sample {
                            let now = start.elapsed().as_micros() as u64;
                            tally
                                .samples
                                .push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                        }
                    }
                    None => {
                        if !is_ready && memchr::memmem::find(payload, ready_marker).is_some() {
                            is_ready = true;
                            ready[index].store(true, Ordering::Relaxed);
                        }
                    }
                }
                !(is_ready && count >= expected)
            })
            .await;
        received[index].store(count, Ordering::Relaxed);
        match read {
            Ok(None) => {}
            // A subscriber that fails is a finding, not noise: say why.
            Ok(Some(Ended::Closed(code, reason))) => {
                eprintln!("subscriber {index}: closed by the server: {code} {reason}");
                break;
            }
            Ok(Some(Ended::Eof)) => {
                eprintln!("subscriber {index}: the connection ended without a close frame");
                break;
            }
            Err(error) => {
                eprintln!("subscriber {index}: {error}");
                break;
            }
        }
    }
    (tally, socket)
}

/// The content of warm-up messages (not counted, not timed).
const WARM_UP: &str = "warm-up";

/// What the publisher sends: chat messages, or the floor's template filled in.
#[derive(Debug, Clone)]
struct Publish {
    room: String,
    padding: String,
    template: Option<String>,
}

impl Publish {
    fn new(common: &Common) -> Self {
        let template = common.publish_template.as_ref().map(|file| {
            report::rows(file)
                .iter()
                .find_map(|r| r["frame_template"].as_str().map(str::to_owned))
                .unwrap_or_else(|| panic!("{} has no frame_template", file.display()))
        });
        Self {
            room: common.room.clone(),
            padding: if common.json_padding {
                dashboard_text(common.padding)
            } else {
                "x".repeat(common.padding)
            },
            template,
        }
    }

    fn frame(&self, content: &str) -> Message {
        match &self.template {
            Some(template) => Message::text(template.replacen(CONTENT_SLOT, content, 1)),
            None => chat_frame(&self.room, content),
        }
    }

    fn message(&self, sequence: u64, sent: u64) -> Message {
        self.frame(&format!("{sequence}:{sent}:{}", self.padding))
    }

    fn warm_up(&self) -> Message {
        self.frame(WARM_UP)
    }
}

/// About `len` bytes of JSON text like a dashboard's update: widgets with a title, a
/// status and a series of timestamped values (varying numbers, repeating keys). Fixed
/// for a run (the same seed), so every message is the same size.
fn dashboard_text(len: usize) -> String {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut text = String::from(r#"{"type":"dashboard","widgets":["#);
    let mut widget = 0;
    while text.len() < len {
        let status = ["ok", "warn", "critical"][(next() % 3) as usize];
        text.push_str(&format!(
            r#"{{"id":"w{widget}","title":"Requests per second","status":"{status}","series":["#
        ));
        for point in 0..8 {
            let value = next() % 100_000;
            text.push_str(&format!(
                r#"{{"t":{},"v":{}.{:02}}},"#,
                1_765_000_000 + point * 10,
                value / 100,
                value % 100
            ));
        }
        text.pop();
        text.push_str("]},");
        widget += 1;
    }
    text.truncate(len);
    text
}

fn chat_frame(room: &str, content: &str) -> Message {
    let frame = json!({"endpoint": "chat", "object": {"className": "ChatMessage", "data": {
        "senderName": "p", "content": content, "channelId": room, "excludeSender": true
    }}});
    Message::text(frame.to_string())
}

/// The frame that joins `--room` (or `--join` as given).
fn join_frame(common: &Common) -> String {
    common.join.clone().unwrap_or_else(|| {
        json!({"endpoint": "chat", "object": {"className": "ChannelSubscription",
            "data": {"channelId": common.room, "subscribe": true}}})
        .to_string()
    })
}

/// The open command of a `chat.messages` call on the room (one call per socket, so one
/// connection id serves every socket).
fn method_stream_open(common: &Common) -> String {
    json!({"type": "omsc", "data": {"en": "chat", "m": "messages",
        "cid": "00000000-0000-4000-8000-000000000001",
        "args": json!({"channelId": common.room}).to_string(), "is": []}})
    .to_string()
}

fn min_received(received: &[AtomicU64]) -> u64 {
    received
        .iter()
        .map(|r| r.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0)
}

/// The publisher: a tungstenite socket (one socket; its cost does not matter) that has
/// joined, with whatever the server sends it read and dropped.
async fn publisher(common: &Common) -> Sink {
    let mut config = WebSocketConfig::default();
    config.write_buffer_size = 0;
    let url = common.publish_url.as_ref().unwrap_or(&common.url);
    let (addr, _) = server_addr(url);
    let stream = connect(addr, 0, common.source_addresses)
        .await
        .expect("publisher connects");
    let (mut socket, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .expect("publisher's WebSocket handshake");
    socket
        .send(Message::text(join_frame(common)))
        .await
        .expect("publisher joins");
    let (sink, mut stream) = socket.split();
    tokio::spawn(async move { while stream.next().await.is_some() {} });
    sink
}

/// Publishes warm-up messages every `interval` until every subscriber has seen one, so
/// no measured message is posted before a join took effect; the seconds that took, or
/// `None` when `deadline` passed first.
async fn warm_up(
    publish: &Publish,
    sink: &mut Sink,
    subscribers: &Subscribers,
    interval: Duration,
    deadline: Instant,
) -> Option<f64> {
    let started = Instant::now();
    let expected = subscribers.ready.len() - subscribers.failed;
    let mut next_send = Instant::now();
    loop {
        if Instant::now() >= next_send {
            sink.send(publish.warm_up()).await.expect("publish");
            next_send += interval;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        if subscribers.joined() >= expected {
            return Some(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            let missing = expected - subscribers.joined();
            eprintln!("warm-up: {missing} subscribers never saw a message (joins not applied?)");
            return None;
        }
    }
}

/// A burst's or a rate run's subscribers, joined and warmed up, and its publisher.
struct Prepared {
    publish: Publish,
    subs: Subscribers,
    sink: Sink,
    warm_up_seconds: Option<f64>,
    deadline: Instant,
}

/// Connects the subscribers (each waiting for `expected` messages, recording latencies
/// when `record`), then the publisher, and warms up.
async fn prepare(common: &Common, start: Instant, expected: u64, record: bool) -> Prepared {
    let publish = Publish::new(common);
    let plan = Plan {
        expected,
        record,
        storm: false,
    };
    let subs = subscribe(common, start, plan).await;
    let deadline = start + Duration::from_secs(common.deadline);
    let mut sink = publisher(common).await;
    let warm_up_seconds = warm_up(
        &publish,
        &mut sink,
        &subs,
        Duration::from_millis(50),
        deadline,
    )
    .await;
    Prepared {
        publish,
        subs,
        sink,
        warm_up_seconds,
        deadline,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

/// The fields every delivery-counting run reports from its subscribers' tallies.
fn tally_fields(tally: &Tally, deliveries: u64) -> Value {
    json!({
        "frame_bytes": (deliveries > 0).then(|| tally.bytes as f64 / deliveries as f64),
        "wire_bytes": (deliveries > 0).then(|| tally.wire_bytes as f64 / deliveries as f64),
        "out_of_order": tally.out_of_order,
        "frame_template": tally.template,
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

async fn run(mode: Mode) -> Value {
    let start = Instant::now();
    let cpu_before = cpu_times();
    let (common, mut result) = match mode {
        Mode::Burst {
            common,
            messages,
            window,
        } => {
            let rss_before = common.server_pid.and_then(rss_kib);
            let Prepared {
                publish,
                subs,
                mut sink,
                warm_up_seconds,
                deadline,
            } = prepare(&common, start, messages, false).await;
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
                sink.feed(publish.message(sequence, start.elapsed().as_micros() as u64))
                    .await
                    .expect("publish");
                if sequence % 32 == 31 {
                    sink.flush().await.expect("publish");
                }
            }
            sink.flush().await.expect("publish");
            let received = subs.received.clone();
            let connect_seconds = subs.connect_seconds;
            let tally = subs.finish(deadline).await;
            let seconds = started.elapsed().as_secs_f64();
            let server_cpu = cpu_micros(
                server_cpu_before,
                common.server_pid.and_then(process_cpu_ticks),
            );
            let own_busy = busy_percent(
                own_cpu_before,
                process_cpu_ticks(std::process::id()),
                seconds,
            );
            let deliveries: u64 = received.iter().map(|r| r.load(Ordering::Relaxed)).sum();
            let per_connection = match (rss_before, rss_after) {
                (Some(b), Some(a)) => {
                    json!((a.saturating_sub(b)) as f64 / common.subscribers as f64)
                }
                _ => Value::Null,
            };
            let mut result = json!({
                "mode": "burst", "messages": messages, "deliveries": deliveries,
                "expected": messages * common.subscribers as u64, "seconds": seconds,
                "deliveries_per_s": deliveries as f64 / seconds, "connect_s": connect_seconds,
                "warm_up_s": warm_up_seconds,
                "server_rss_before_kib": rss_before, "server_rss_after_kib": rss_after,
                "rss_per_connection_kib": per_connection,
                // The server's CPU over the measured phase only (after connects and warm-up).
                "server_cpu_us_per_delivery": server_cpu.filter(|_| deliveries > 0).map(|c| c / deliveries as f64),
                "loadgen_process_busy_percent": own_busy,
            });
            merge(&mut result, tally_fields(&tally, deliveries));
            (common, result)
        }
        Mode::Rate {
            common,
            per_second,
            seconds,
        } => {
            let total = per_second * seconds;
            let Prepared {
                publish,
                subs,
                mut sink,
                warm_up_seconds,
                deadline,
            } = prepare(&common, start, total, true).await;
            let server_cpu_before = common.server_pid.and_then(process_cpu_ticks);
            let own_cpu_before = process_cpu_ticks(std::process::id());
            let started = Instant::now();
            let mut ticker =
                tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for sequence in 0..total {
                ticker.tick().await;
                sink.send(publish.message(sequence, start.elapsed().as_micros() as u64))
                    .await
                    .expect("publish");
            }
            let received = subs.received.clone();
            let connect_seconds = subs.connect_seconds;
            let mut tally = subs.finish(deadline).await;
            let server_cpu = cpu_micros(
                server_cpu_before,
                common.server_pid.and_then(process_cpu_ticks),
            );
            let own_busy = busy_percent(
                own_cpu_before,
                process_cpu_ticks(std::process::id()),
                started.elapsed().as_secs_f64(),
            );
            let deliveries: u64 = received.iter().map(|r| r.load(Ordering::Relaxed)).sum();
            tally.samples.sort_unstable();
            let samples = &tally.samples;
            let mut result = json!({
                "mode": "rate", "per_second": per_second, "seconds": seconds,
                "deliveries": deliveries, "expected": total * common.subscribers as u64,
                "latency_samples": samples.len(),
                "connect_s": connect_seconds, "warm_up_s": warm_up_seconds,
                "p50_ms": percentile(samples, 0.50), "p99_ms": percentile(samples, 0.99),
                "max_ms": percentile(samples, 1.0),
                "server_cpu_us_per_delivery": server_cpu.filter(|_| deliveries > 0).map(|c| c / deliveries as f64),
                "loadgen_process_busy_percent": own_busy,
            });
            merge(&mut result, tally_fields(&tally, deliveries));
            (common, result)
        }
        Mode::Storm { common } => {
            let deadline = start + Duration::from_secs(common.deadline);
            let overflows_before = listen_overflows();
            let rss_before = common.server_pid.and_then(rss_kib);
            let server_cpu_before = common.server_pid.and_then(process_cpu_ticks);
            let own_cpu_before = process_cpu_ticks(std::process::id());
            let started = Instant::now();
            let subs = storm(&common, start).await;
            let connect_seconds = started.elapsed().as_secs_f64();
            let expected = common.subscribers - subs.failed;
            while subs.joined() < expected && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let joined_seconds = started.elapsed().as_secs_f64();
            let overflows = listen_overflows()
                .zip(overflows_before)
                .map(|(after, before)| after.saturating_sub(before));
            let own_busy = busy_percent(
                own_cpu_before,
                process_cpu_ticks(std::process::id()),
                joined_seconds,
            );
            let server_cpu = cpu_micros(
                server_cpu_before,
                common.server_pid.and_then(process_cpu_ticks),
            );
            let rss_after = common.server_pid.and_then(rss_kib);
            let (joined, failed) = (subs.joined(), subs.failed);
            // Only now: the connections stay open until the measurements are taken.
            drop(subs);
            let result = json!({
                "mode": "storm", "deliveries": joined, "expected": common.subscribers,
                // Joined the room (the default), or only sent the `--join` frame given.
                "joins_room": common.join.is_none(),
                "loadgen_process_busy_percent": own_busy,
                "failed": failed, "connect_s": connect_seconds,
                // Connections the kernel dropped at a full accept queue (machine-wide):
                // each costs its client a SYN retransmit, 1 s later.
                "listen_overflows": overflows,
                "joined_s": (joined == expected).then_some(joined_seconds),
                "server_cpu_ms_per_1000": server_cpu.map(|c| c / 1000.0 / (common.subscribers as f64 / 1000.0)),
                "server_rss_before_kib": rss_before, "server_rss_after_kib": rss_after,
                "rss_per_connection_kib": match (rss_before, rss_after) {
                    (Some(b), Some(a)) => json!((a.saturating_sub(b)) as f64 / common.subscribers as f64),
                    _ => Value::Null,
                },
            });
            (common, result)
        }
        Mode::Recovery { common, missed } => recovery::run(common, missed).await,
        Mode::Presence {
            common,
            redis,
            prefix,
        } => {
            let key = format!("{prefix}:presence:chat-room-{}", common.room);
            presence::run(common, redis, key).await
        }
        Mode::Table { .. } | Mode::Median { .. } => unreachable!("handled in main"),
    };
    result["target"] = json!(common.target);
    result["subscribers"] = json!(common.subscribers);
    result["loadgen_cpu_busy_percent"] = json!(cpu_busy(&cpu_before, &cpu_times()));
    result
}

fn main() {
    let args = Args::parse();
    match &args.mode {
        Mode::Table { file } => {
            let rows = report::rows(file);
            print!("{}\n{}", report::ratios(&rows), report::table(&rows));
            return;
        }
        Mode::Median { file } => {
            if let Some(line) = report::median(report::rows(file)) {
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

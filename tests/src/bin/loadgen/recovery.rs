//! Recovery: N `streampod.v1` subscribers join a room that keeps history and note their
//! last position; all lose their connections at once; `missed` messages are posted;
//! all reconnect at once, each sending `recover` with its position and then its join.
//! Reported: the time from the first reconnect until every subscriber has its missed
//! messages back, how many recovered, and the server's CPU per 1,000 recoveries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::raw::RawSocket;
use super::{
    chat_frame, connect, cpu_micros, join_frame, process_cpu_ticks, server_addr, Common, PING,
};

/// The content prefix of the messages posted while everyone is away.
const MISSED: &str = "missed-";

/// A subscriber's place: the epoch of its last `joined` and the last offset it saw.
#[derive(Debug, Default)]
struct Place {
    epoch: std::sync::Mutex<String>,
    offset: AtomicU64,
}

/// Moves `place` to a frame's position, when it has one.
fn note_place(frame: &Value, place: &Place) {
    if frame["command"] == "joined" {
        if let Some(epoch) = frame["args"]["position"]["epoch"].as_str() {
            *place.epoch.lock().unwrap() = epoch.to_owned();
        }
        if let Some(offset) = frame["args"]["position"]["offset"].as_u64() {
            place.offset.store(offset, Ordering::Relaxed);
        }
    } else if let Some(offset) = frame["offset"].as_u64() {
        place.offset.store(offset, Ordering::Relaxed);
    }
}

/// Joins subscriber `index` and keeps its place until the task is aborted.
async fn first_visit(common: Arc<Common>, index: usize, place: Arc<Place>) {
    let (addr, path) = server_addr(&common.url);
    let stream = connect(addr, index, common.source_addresses)
        .await
        .expect("subscriber connects");
    let mut socket = RawSocket::upgrade(stream, addr, &path, true, false)
        .await
        .expect("subscriber upgrades");
    socket
        .send_text(&join_frame(&common))
        .await
        .expect("subscriber joins");
    loop {
        let read = socket
            .read_frames(|payload, _| {
                if let Ok(frame) = serde_json::from_slice::<Value>(payload) {
                    note_place(&frame, &place);
                }
                true
            })
            .await;
        if !matches!(read, Ok(None)) {
            return;
        }
    }
}

/// What one subscriber's return gave: whether it recovered and when it had every
/// missed message back.
struct Return {
    recovered: bool,
    done: Option<Duration>,
}

/// Reconnects subscriber `index` from `place` and reads until `missed` messages.
async fn come_back(
    common: Arc<Common>,
    index: usize,
    place: Arc<Place>,
    missed: u64,
    started: Instant,
) -> Return {
    let channel = format!("chat-room-{}", common.room);
    let epoch = place.epoch.lock().unwrap().clone();
    let since = json!({"epoch": epoch, "offset": place.offset.load(Ordering::Relaxed)});
    let recover = json!({"command": "recover", "args": {"channels": {channel: since}}});
    let (addr, path) = server_addr(&common.url);
    let opened = async {
        let stream = connect(addr, index, common.source_addresses).await?;
        let mut socket = RawSocket::upgrade(stream, addr, &path, true, false).await?;
        socket.send_text(&recover.to_string()).await?;
        socket.send_text(&join_frame(&common)).await?;
        Ok::<_, std::io::Error>(socket)
    };
    let mut socket = match opened.await {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("subscriber {index}: {error}");
            return Return {
                recovered: false,
                done: None,
            };
        }
    };
    let (mut recovered, mut got) = (false, 0);
    while got < missed {
        let read = socket
            .read_frames(|payload, _| {
                if memchr::memmem::find(payload, MISSED.as_bytes()).is_some() {
                    got += 1;
                } else if memchr::memmem::find(payload, b"\"joined\"").is_some() {
                    recovered = memchr::memmem::find(payload, b"\"recovered\":true").is_some();
                }
                got < missed
            })
            .await;
        if !matches!(read, Ok(None)) {
            eprintln!("subscriber {index}: the connection ended after {got} messages");
            break;
        }
    }
    Return {
        recovered,
        done: (got >= missed).then(|| started.elapsed()),
    }
}

/// Joins the room, posts `missed` messages, and waits until the server handled them
/// (the pong to a ping sent after them).
async fn post_missed(common: &Common, missed: u64) {
    let (addr, _) = server_addr(&common.url);
    let stream = connect(addr, 0, common.source_addresses)
        .await
        .expect("publisher connects");
    let (mut socket, _) = tokio_tungstenite::client_async(&common.url, stream)
        .await
        .expect("publisher's WebSocket handshake");
    socket
        .send(Message::text(join_frame(common)))
        .await
        .expect("publisher joins");
    for n in 0..missed {
        socket
            .feed(chat_frame(&common.room, &format!("{MISSED}{n}")))
            .await
            .expect("publish");
    }
    socket.send(Message::text(PING)).await.expect("ping");
    while let Some(Ok(message)) = socket.next().await {
        if message.to_text().is_ok_and(|text| text.contains("pong")) {
            break;
        }
    }
}

/// Runs the scenario; the result line's fields.
pub(crate) async fn run(common: Common, missed: u64) -> (Common, Value) {
    let common = Arc::new(common);
    let places: Vec<Arc<Place>> = (0..common.subscribers)
        .map(|_| Arc::new(Place::default()))
        .collect();
    let visits: Vec<_> = places
        .iter()
        .enumerate()
        .map(|(index, place)| tokio::spawn(first_visit(common.clone(), index, place.clone())))
        .collect();
    // Everyone's `joined` in (an epoch known), and the room's member counts settled.
    let deadline = Instant::now() + Duration::from_secs(common.deadline);
    while places.iter().any(|p| p.epoch.lock().unwrap().is_empty()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Every connection drops at once (no close handshake), as when a node dies.
    for visit in visits {
        visit.abort();
        let _ = visit.await;
    }
    post_missed(&common, missed).await;

    let server_cpu_before = common.server_pid.and_then(process_cpu_ticks);
    let started = Instant::now();
    let returns: Vec<_> = places
        .iter()
        .enumerate()
        .map(|(index, place)| {
            tokio::spawn(come_back(
                common.clone(),
                index,
                place.clone(),
                missed,
                started,
            ))
        })
        .collect();
    let mut recovered = 0;
    let mut complete = 0;
    let mut slowest = Duration::ZERO;
    for handle in returns {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok(back)) = tokio::time::timeout(left, handle).await {
            recovered += usize::from(back.recovered);
            if let Some(done) = back.done {
                complete += 1;
                slowest = slowest.max(done);
            }
        }
    }
    let server_cpu = cpu_micros(
        server_cpu_before,
        common.server_pid.and_then(process_cpu_ticks),
    );
    let n = common.subscribers;
    let result = json!({
        "mode": "recovery", "missed": missed, "recovered": recovered,
        "deliveries": complete, "expected": n,
        "recovered_s": (complete == n).then_some(slowest.as_secs_f64()),
        "server_cpu_ms_per_1000": server_cpu.map(|c| c / 1000.0 / (n as f64 / 1000.0)),
    });
    let common = Arc::try_unwrap(common).unwrap_or_else(|shared| (*shared).clone());
    (common, result)
}

//! Channel history in JetStream: one order for every node.
//!
//! Each channel with history is one stream, `<prefix>-history-<name>` on the subject
//! `<prefix>.history.<name>` (the name escaped as for subjects; a long one shortened and
//! completed by its SHA-256), limited by count, bytes and age as the channel's
//! retention says, the oldest discarded first. JetStream numbers what it stores: the
//! stream's sequence *is* the channel's offset, given out atomically to concurrent
//! posters of every node, and the stream's creation time is its epoch, so a stream that
//! was lost and made again (NATS lost its data, or an operator deleted it) is a new
//! epoch and clients holding older positions are told `recovered: false`. A post is one
//! JetStream publish, confirmed by its acknowledgement.
//!
//! Nodes receive a channel's posts through an ordered consumer of their own, created
//! when a client first reads the channel's history on the node (after the node
//! subscribed to it) and dropped with the node's last listener: the messages come in
//! the stream's order with their sequence, which the node inserts as the position, as
//! Redis' script does. The consumer starts after the newest post the history read can
//! see, so nothing falls between the read and the live posts. When the connection was
//! made again or the consumer lost its heartbeats, the node checks the stream's epoch
//! and continues after the last post it delivered (or from the new epoch's start).
//!
//! Reading a channel nobody has posted to stores nothing: its epoch is provisional
//! (`~<generation>:<milliseconds>`), the generation being the creation time of one
//! marker stream per prefix (a NATS that lost its data has a new one), and the node
//! waits for JetStream's advisory that the stream was created to start its consumer
//! from the first post. Streams outlive their posts (their epoch and last offset
//! stay); NATS before 2.11 has no per-stream expiry, so the streams of rooms gone idle
//! stay until an operator removes them (`nats stream rm`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::escape;
use crate::cluster::{ClusterError, HistoryRead, Received, Retention, Sink, PROVISIONAL_EPOCH};
use crate::util::log_limit::RateLimitedLog;

/// How long after a provisional epoch a stream's creation may continue it (as a
/// Redis history's meta key lives at least this long).
const CONTINUES_WITHIN: Duration = Duration::from_secs(24 * 60 * 60);

/// How far the reader's clock may be ahead of the NATS server's when a provisional
/// epoch is continued.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Longest stream name kept as it is; longer ones are shortened and completed by a
/// hash (file storage keeps a stream in a directory of its name).
const LONGEST_STREAM_NAME: usize = 200;

/// Where streams are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Storage {
    pub(super) memory: bool,
    pub(super) replicas: usize,
}

/// The JetStream names of one app (one prefix).
#[derive(Debug, Clone)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    pub(super) fn new(escaped_prefix: &str) -> Self {
        Self {
            prefix: escaped_prefix.to_owned(),
        }
    }

    /// The subject posts to `channel` are stored from.
    pub(super) fn subject(&self, channel: &str) -> String {
        format!("{}.history.{}", self.prefix, escape(channel))
    }

    /// The stream of `channel`'s history.
    pub(super) fn stream(&self, channel: &str) -> String {
        let name = format!("{}-history-{}", self.prefix, escape(channel));
        if name.len() <= LONGEST_STREAM_NAME {
            return name;
        }
        // Escaped names are ASCII: any byte is a character boundary.
        let digest = Sha256::digest(channel.as_bytes());
        let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
        format!("{}-{hex}", &name[..LONGEST_STREAM_NAME - 33])
    }

    fn generation(&self) -> (String, String) {
        (
            format!("{}-generation", self.prefix),
            format!("{}.generation", self.prefix),
        )
    }
}

/// A post to keep: its stream and how.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    pub(super) stream: String,
    pub(super) subject: String,
    pub(super) retention: Retention,
}

/// What JetStream counts of a stored message beyond its payload and subject (at most;
/// file storage's record header is the larger).
const STORED_OVERHEAD: usize = 64;

/// The bytes a stream of `retention` may hold for a post of `post` bytes on `subject`:
/// the retention's, or the post's own when it alone is larger. JetStream would discard
/// a message larger than the stream's limit right after storing it (before any
/// consumer saw it), where a history keeps its newest post whatever its size; the limit
/// goes back down with the posting node's next post that fits, which then discards it,
/// oldest first (until then the stream may hold up to the large post's size).
fn max_bytes(retention: Retention, subject: &str, post: usize) -> i64 {
    let stored = post + subject.len() + STORED_OVERHEAD;
    i64::try_from(retention.bytes.max(stored)).unwrap_or(i64::MAX)
}

fn stream_config(name: String, subject: String, retention: Retention, storage: Storage) -> stream::Config {
    stream::Config {
        name,
        subjects: vec![subject],
        max_messages: i64::try_from(retention.size.max(1)).unwrap_or(i64::MAX),
        max_bytes: i64::try_from(retention.bytes.max(1)).unwrap_or(i64::MAX),
        max_age: retention.ttl.max(Duration::from_millis(100)),
        discard: stream::DiscardPolicy::Old,
        storage: if storage.memory {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        },
        num_replicas: storage.replicas.max(1),
        ..Default::default()
    }
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(format!(
        "JetStream {what}: {error} (channels with history need JetStream: nats-server -js)"
    ))
}

fn stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(error)
            if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// A stream's epoch: its creation time in nanoseconds, in hex.
fn epoch_of(info: &stream::Info) -> String {
    format!("{:016x}", created_nanos(info))
}

fn created_nanos(info: &stream::Info) -> u64 {
    u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0)
}

/// The streams this node made sure exist with the retention it posts with (and the
/// bytes it set, see [`max_bytes`]); forgotten when a publish finds a stream gone.
#[derive(Debug, Default)]
pub(super) struct Ensured(std::collections::HashMap<String, (Retention, i64)>);

impl Ensured {
    /// Makes sure `kept`'s stream exists with its retention, and holds a post of
    /// `post` bytes (created, or updated when an app changed its retention or the post
    /// alone is larger than its bytes).
    pub(super) async fn ensure(
        &mut self,
        js: &jetstream::Context,
        kept: &Kept,
        post: usize,
        storage: Storage,
    ) -> Result<(), ClusterError> {
        let bytes = max_bytes(kept.retention, &kept.subject, post);
        if self.0.get(&kept.stream) == Some(&(kept.retention, bytes)) {
            return Ok(());
        }
        let config = stream::Config {
            max_bytes: bytes,
            ..stream_config(kept.stream.clone(), kept.subject.clone(), kept.retention, storage)
        };
        let stream = match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => stream,
            // Another node created it at the same moment.
            Err(_) => js
                .get_stream(&kept.stream)
                .await
                .map_err(|error| unavailable("cannot create the channel's history stream", error))?,
        };
        let current = &stream.cached_info().config;
        if (current.max_messages, current.max_bytes, current.max_age)
            != (config.max_messages, config.max_bytes, config.max_age)
        {
            js.update_stream(config)
                .await
                .map_err(|error| unavailable("cannot update the channel's history limits", error))?;
        }
        self.0.insert(kept.stream.clone(), (kept.retention, bytes));
        Ok(())
    }

    /// Forgets every stream (the connection was made again: NATS may have lost them).
    pub(super) fn forget(&mut self, stream: Option<&str>) {
        match stream {
            Some(stream) => {
                self.0.remove(stream);
            }
            None => self.0.clear(),
        }
    }
}

/// The generation of the NATS data: the creation time of the prefix's marker stream.
async fn generation(js: &jetstream::Context, names: &Names, storage: Storage) -> Result<String, ClusterError> {
    let (name, subject) = names.generation();
    let config = stream::Config {
        max_messages: 1,
        ..stream_config(
            name.clone(),
            subject,
            Retention {
                size: 1,
                ttl: Duration::from_secs(1),
                bytes: 1,
            },
            storage,
        )
    };
    let stream = match js.get_or_create_stream(config).await {
        Ok(stream) => stream,
        Err(_) => js
            .get_stream(&name)
            .await
            .map_err(|error| unavailable("cannot read the history generation", error))?,
    };
    Ok(format!("{:x}", created_nanos(stream.cached_info())))
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// The moment (milliseconds) of provisional epoch `epoch` of generation `generation`.
fn provisional_at(epoch: &str, generation: &str) -> Option<u64> {
    let rest = epoch.strip_prefix(PROVISIONAL_EPOCH)?;
    let (given, at) = rest.split_once(':')?;
    (given == generation).then(|| at.parse().ok()).flatten()
}

/// Reads `channel`'s history after `since` (see [`History::read`](crate::cluster::History::read)).
pub(super) async fn read(
    js: &jetstream::Context,
    names: &Names,
    storage: Storage,
    channel: &str,
    since: Option<(&str, u64)>,
    retention: Retention,
) -> Result<HistoryRead, ClusterError> {
    let stream_name = names.stream(channel);
    let mut stream = match js.get_stream(&stream_name).await {
        Ok(stream) => stream,
        Err(error) if stream_not_found(&error) => {
            let generation = generation(js, names, storage).await?;
            let continues = since.is_some_and(|(epoch, offset)| {
                offset == 0 && provisional_at(epoch, &generation).is_some()
            });
            return Ok(HistoryRead {
                epoch: format!("{PROVISIONAL_EPOCH}{generation}:{}", now_millis()),
                newest: 0,
                entries: Vec::new(),
                continues,
            });
        }
        Err(error) => return Err(unavailable("cannot read the channel's history", error)),
    };
    let info = stream.cached_info().clone();
    let epoch = epoch_of(&info);
    let newest = info.state.last_sequence;
    let mut continues = false;
    if let Some((given, _)) = since.filter(|(given, _)| crate::cluster::is_provisional(given)) {
        let generation = generation(js, names, storage).await?;
        if let Some(at) = provisional_at(given, &generation) {
            let created = created_nanos(&info) / 1_000_000;
            let skew = u64::try_from(CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
            let within = u64::try_from(CONTINUES_WITHIN.as_millis()).unwrap_or(u64::MAX);
            continues = created.saturating_add(skew) >= at && created < at.saturating_add(within);
        }
    }
    // Posts of another epoch mean nothing to the reader: none are read for it.
    let entries = match since {
        Some((given, after)) if after < newest && (given == epoch || continues) => {
            read_entries(&mut stream, after, newest, retention.size.max(1)).await?
        }
        _ => Vec::new(),
    };
    Ok(HistoryRead {
        epoch,
        newest,
        entries,
        continues,
    })
}

/// At most `most` posts after offset `after` and up to `newest`, through a consumer
/// made for the read (no acknowledgements, in memory, removed after).
async fn read_entries(
    stream: &mut stream::Stream,
    after: u64,
    newest: u64,
    most: usize,
) -> Result<Vec<(u64, Vec<u8>)>, ClusterError> {
    let first = stream.cached_info().state.first_sequence.max(after + 1);
    if first > newest {
        return Ok(Vec::new());
    }
    let wanted = usize::try_from(newest - first + 1).unwrap_or(usize::MAX).min(most);
    let reader = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|error| unavailable("cannot read the channel's history", error))?;
    let name = reader.cached_info().name.clone();
    let mut entries = Vec::with_capacity(wanted);
    let fetched = async {
        while entries.len() < wanted {
            let mut batch = reader
                .fetch()
                .max_messages(wanted - entries.len())
                .messages()
                .await
                .map_err(|error| unavailable("cannot read the channel's history", error))?;
            let before = entries.len();
            while let Some(message) = batch.next().await {
                let message = message.map_err(|error| unavailable("cannot read the channel's history", error))?;
                let sequence = message
                    .info()
                    .map_err(|error| unavailable("cannot read the channel's history", error))?
                    .stream_sequence;
                if sequence > newest {
                    return Ok(());
                }
                entries.push((sequence, message.payload.to_vec()));
            }
            if entries.len() == before {
                // Nothing more is kept (expired meanwhile).
                return Ok(());
            }
        }
        Ok::<(), ClusterError>(())
    }
    .await;
    let _ = stream.delete_consumer(&name).await;
    fetched.map(|()| entries)
}

/// Where a node's feed of a channel starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// After the newest post (the first attach: a history read follows).
    AfterNewest,
    /// At the stream's first post (it was just created).
    First,
    /// At `offset` of `epoch` (after a reconnect), or the first post of another epoch.
    At(String, u64),
}

/// One node's feed of one channel's posts, in the stream's order, to its inbox, until
/// the task is aborted (the node's last listener left). `ready` says when a history
/// read may follow: the consumer is in place, or the node waits for the stream's
/// creation.
pub(super) async fn feed(
    js: jetstream::Context,
    client: async_nats::Client,
    stream_name: String,
    channel: String,
    deliver: Sink,
    ready: watch::Sender<bool>,
) {
    static FAILED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
    let stats = client.statistics();
    let mut start = Start::AfterNewest;
    loop {
        ready.send_replace(false);
        if client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let connects = stats.connects.load(Ordering::Relaxed);
        let reconnected = || stats.connects.load(Ordering::Relaxed) != connects;
        let advisory = format!("$JS.EVENT.ADVISORY.STREAM.CREATED.{stream_name}");
        let attached = async {
            let created = client.subscribe(advisory).await.map_err(|error| error.to_string())?;
            match js.get_stream(&stream_name).await {
                Ok(stream) => attach(&client, stream, &start).await.map(Attached::Live),
                Err(error) if stream_not_found(&error) => Ok(Attached::Waiting(created)),
                Err(error) => Err(error.to_string()),
            }
        }
        .await;
        match attached {
            Ok(Attached::Waiting(mut created)) => {
                ready.send_replace(true);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = created.next() => break,
                        _ = tick.tick() => if reconnected() { break },
                    }
                }
                start = Start::First;
            }
            Ok(Attached::Live((epoch, first, mut messages))) => {
                // Again from here, unless posts are delivered.
                start = Start::At(epoch.clone(), first);
                ready.send_replace(true);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    // A new connection may reach a NATS that lost the stream (the
                    // consumer would wait for it): checked before each post, and each
                    // second.
                    let message = tokio::select! {
                        message = messages.next() => message,
                        _ = tick.tick() => if reconnected() { break } else { continue },
                    };
                    let Some(Ok(message)) = message else { break };
                    if reconnected() {
                        break;
                    }
                    let Ok(offset) = message.info().map(|info| info.stream_sequence) else {
                        continue;
                    };
                    if let Some(positioned) = positioned(&epoch, offset, &message.payload) {
                        deliver(Received {
                            channel: Some(&channel),
                            payload: &positioned,
                        });
                    }
                    start = Start::At(epoch.clone(), offset + 1);
                }
            }
            Err(error) => {
                if let Some(left_out) = FAILED.ready() {
                    tracing::warn!(target: "streampod::cluster", %error, left_out, "cannot follow a channel's history in JetStream; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

enum Attached {
    Waiting(async_nats::Subscriber),
    Live((String, u64, Box<jetstream::consumer::push::Ordered>)),
}

/// Starts an ordered consumer on `stream` where `start` says; answers the epoch and
/// the first offset it delivers.
async fn attach(
    client: &async_nats::Client,
    stream: stream::Stream,
    start: &Start,
) -> Result<(String, u64, Box<jetstream::consumer::push::Ordered>), String> {
    let info = stream.cached_info();
    let epoch = epoch_of(info);
    let first = match start {
        Start::AfterNewest => info.state.last_sequence + 1,
        Start::At(was, offset) if *was == epoch => *offset,
        Start::First | Start::At(..) => 1,
    };
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ..Default::default()
        })
        .await
        .map_err(|error| error.to_string())?;
    let messages = consumer.messages().await.map_err(|error| error.to_string())?;
    Ok((epoch, first, Box::new(messages)))
}

/// `payload` (a JSON object) with `"epoch":…,"offset":…,` inserted after its `{`.
fn positioned(epoch: &str, offset: u64, payload: &[u8]) -> Option<Vec<u8>> {
    let rest = payload.strip_prefix(b"{")?;
    let mut out = Vec::with_capacity(payload.len() + epoch.len() + 40);
    out.extend_from_slice(b"{\"epoch\":\"");
    out.extend_from_slice(epoch.as_bytes());
    out.extend_from_slice(b"\",\"offset\":");
    out.extend_from_slice(offset.to_string().as_bytes());
    out.push(b',');
    out.extend_from_slice(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_subjects_are_named_per_channel() {
        let names = Names::new("app");
        assert_eq!(names.subject("room.1"), "app.history.room%2E1");
        assert_eq!(names.stream("room.1"), "app-history-room%2E1");
        let long = "é".repeat(150);
        let stream = names.stream(&long);
        assert_eq!(stream.len(), LONGEST_STREAM_NAME);
        assert_ne!(stream, names.stream(&"é".repeat(151)));
        assert!(!stream.contains(['.', '*', '>', ' ']));
    }

    #[test]
    fn a_stream_holds_its_bytes_or_a_larger_post_alone() {
        let retention = Retention {
            size: 10,
            ttl: Duration::from_secs(1),
            bytes: 4096,
        };
        assert_eq!(max_bytes(retention, "s", 100), 4096);
        assert_eq!(max_bytes(retention, "s", 6000), 6000 + 1 + STORED_OVERHEAD as i64);
    }

    #[test]
    fn posts_carry_their_position() {
        let positioned = positioned("e1", 7, br#"{"object":1}"#).unwrap();
        assert_eq!(positioned, br#"{"epoch":"e1","offset":7,"object":1}"#);
        assert!(super::positioned("e1", 7, b"[]").is_none());
    }

    #[test]
    fn provisional_epochs_name_their_generation() {
        assert_eq!(provisional_at("~abc:123", "abc"), Some(123));
        assert_eq!(provisional_at("~abd:123", "abc"), None);
        assert_eq!(provisional_at("0123", "abc"), None);
    }
}

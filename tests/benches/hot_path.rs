//! Micro-benchmarks of the hot path: encoding an outbound frame, reading an inbound frame
//! into the typed `Protocol` (the CPU side of dispatching one frame), and posting to a
//! channel with 1, 100 and 10,000 in-memory listeners (one encode, then one hand-off per
//! listener).
//!
//! ```text
//! cargo bench -p streampod-tests --bench hot_path
//! ```

// Benchmarks panic on a broken setup, like tests.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use streampod::messages::Reach;
use streampod::protocol::frame::{self, Frame};
use streampod::{ModelSet, Server};
use streampod_tests::fixtures::{ChatMessage, Priority, Protocol};

fn chat() -> ChatMessage {
    ChatMessage {
        sender_name: "ann".into(),
        content: "hello, a message of about a hundred bytes once it is framed".into(),
        timestamp: Some("2026-01-01T12:00:00Z".parse().unwrap()),
        channel_id: "room-1".into(),
        priority: Priority::Normal,
    }
}

fn frames(c: &mut Criterion) {
    let message = Protocol::from(chat());
    let mut buffer = Vec::with_capacity(256);
    c.bench_function("encode a ChatMessage frame", |b| {
        b.iter(|| {
            buffer.clear();
            frame::encode_message("chat", black_box(&message), &mut buffer).unwrap();
        });
    });
    buffer.clear();
    frame::encode_message("chat", &message, &mut buffer).unwrap();
    let text = String::from_utf8(buffer.clone()).unwrap();
    c.bench_function("parse and decode a ChatMessage frame", |b| {
        b.iter(|| {
            let Frame::Message(parsed) = Frame::parse(black_box(&text)).unwrap() else {
                unreachable!()
            };
            Protocol::decode(&parsed.class_name, parsed.data).unwrap()
        });
    });
}

fn posts(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(async {
        Server::<Protocol>::builder()
            .bind("127.0.0.1:0")
            .await
            .unwrap()
    });
    let messages = server.handle().messages();
    let mut group = c.benchmark_group("post to a channel");
    for listeners in [1_usize, 100, 10_000] {
        let channel = format!("bench-{listeners}");
        let heard = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..listeners)
            .map(|_| {
                let heard = heard.clone();
                messages
                    .add_listener(&channel, move |_| {
                        heard.fetch_add(1, Ordering::Relaxed);
                    })
                    .expect("a short channel name")
            })
            .collect();
        group.throughput(Throughput::Elements(listeners as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(listeners),
            &channel,
            |b, channel| {
                b.iter(|| {
                    messages
                        .post_message(channel, chat(), Reach::Local)
                        .unwrap()
                });
            },
        );
        for handle in handles {
            handle.remove();
        }
        assert!(heard.load(Ordering::Relaxed) > 0);
    }
    group.finish();
    runtime.block_on(server.shutdown());
}

criterion_group!(benches, frames, posts);
criterion_main!(benches);

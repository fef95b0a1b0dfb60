//! Prometheus metrics of one server, in the OpenMetrics text format at `GET /metrics`
//! ([`ServerConfig::metrics_path`](crate::ServerConfig::metrics_path)).
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client): a registry per
//! server, so several servers in one process (tests, a cluster on one machine) each
//! report their own. Events are counted where they happen (accepts, refusals, rate
//! limiting, method calls, writer batches); levels and the message central's counters
//! are read when scraped, so the delivery hot path pays nothing extra.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Label pairs of one series.
pub(crate) type Labels = Vec<(&'static str, String)>;

type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Levels and totals read at scrape time.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) connections_open: usize,
    pub(crate) sessions: usize,
    pub(crate) channels: usize,
    pub(crate) listeners: usize,
    pub(crate) posts: u64,
    pub(crate) deliveries: u64,
    pub(crate) frames_encoded: u64,
    /// Frames dropped, by the policy that dropped them (`direct`: sends and broadcasts
    /// to sessions under the server's direct policy).
    pub(crate) frames_dropped: [(&'static str, u64); 3],
    /// Sessions closed because their queue overflowed (`Disconnect`).
    pub(crate) slow_consumer_disconnects: u64,
    /// `None` without a cluster; otherwise whether Redis is connected.
    pub(crate) cluster_connected: Option<bool>,
    /// The last publish pipeline's round trip to Redis.
    pub(crate) cluster_round_trip: Option<Duration>,
    /// Global posts that failed after being queued (`None` without a cluster).
    pub(crate) cluster_posts_failed: Option<u64>,
    /// Global messages dropped on arrival as older than `max_global_age`.
    pub(crate) cluster_stale_dropped: Option<u64>,
}

/// What the server reads at each scrape.
pub(crate) type Source = Box<dyn Fn() -> Snapshot + Send + Sync>;

/// The metrics of one server.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections_accepted: Counter,
    pub(crate) connections_refused: Family<Labels, Counter>,
    pub(crate) streams_open: Family<Labels, Gauge>,
    pub(crate) rate_limited: Counter,
    pub(crate) memory_guard_closes: Counter,
    pub(crate) writer_batch_frames: Histogram,
    pub(crate) method_calls: Family<Labels, Counter>,
    pub(crate) method_seconds: Histograms,
    pub(crate) method_stream_opens: Family<Labels, Counter>,
    pub(crate) method_streams_open: Family<Labels, Gauge>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn call_histogram() -> Histogram {
    // 100 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

impl Metrics {
    /// A registry with every metric, reading levels from `source` when scraped.
    pub(crate) fn new(source: Source) -> Self {
        let mut metrics = Self {
            connections_accepted: Counter::default(),
            connections_refused: Family::default(),
            streams_open: Family::default(),
            rate_limited: Counter::default(),
            memory_guard_closes: Counter::default(),
            // 1 to 4,096 frames per write.
            writer_batch_frames: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            method_calls: Family::default(),
            method_seconds: Family::new_with_constructor(call_histogram),
            method_stream_opens: Family::default(),
            method_streams_open: Family::default(),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "streampod_connections_accepted",
            "TCP connections accepted",
            metrics.connections_accepted.clone(),
        );
        registry.register(
            "streampod_connections_refused",
            "TCP connections refused at a connection cap, by reason (full, per_address)",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "streampod_streams_open",
            "Endpoint streams open (stream_opened succeeded, stream_closed not yet run), by endpoint",
            metrics.streams_open.clone(),
        );
        registry.register(
            "streampod_inbound_rate_limited_frames",
            "Client frames refused by the inbound rate limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "streampod_memory_guard_closes",
            "Sessions closed by the server-wide queued-bytes guard",
            metrics.memory_guard_closes.clone(),
        );
        registry.register(
            "streampod_writer_batch_frames",
            "Frames a connection's writer took from its outbound queue at once (the queue's depth when drained)",
            metrics.writer_batch_frames.clone(),
        );
        registry.register(
            "streampod_method_calls",
            "HTTP method calls, by endpoint, method and status",
            metrics.method_calls.clone(),
        );
        registry.register(
            "streampod_method_call_seconds",
            "HTTP method call latency, by endpoint and method",
            metrics.method_seconds.clone(),
        );
        registry.register(
            "streampod_method_stream_opens",
            "Streaming-method opens (/v1/websocket), by endpoint, method and open result",
            metrics.method_stream_opens.clone(),
        );
        registry.register(
            "streampod_method_streams_open",
            "Streaming-method calls open (opened, not yet ended or closed), by endpoint and method",
            metrics.method_streams_open.clone(),
        );
        registry.register_collector(Box::new(Levels(source)));
        metrics.registry = registry;
        metrics
    }

    /// The metrics in the OpenMetrics text format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a finished method call.
    pub(crate) fn method_call(&self, endpoint: &str, method: &str, status: u16, took: Duration) {
        let labels = vec![
            ("endpoint", endpoint.to_owned()),
            ("method", method.to_owned()),
        ];
        self.method_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        let mut with_status = labels;
        with_status.push(("status", status.to_string()));
        self.method_calls.get_or_create(&with_status).inc();
    }

    /// Counts a streaming-method open by its result. Names the server does not know
    /// are `unknown`, so a client cannot grow the labels.
    pub(crate) fn method_stream_opened(&self, endpoint: &str, method: &str, result: &str) {
        self.method_stream_opens
            .get_or_create(&vec![
                ("endpoint", endpoint.to_owned()),
                ("method", method.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// The open-calls gauge of a streaming method.
    pub(crate) fn method_streams(&self, endpoint: &str, method: &str) -> Gauge {
        self.method_streams_open
            .get_or_create(&vec![
                ("endpoint", endpoint.to_owned()),
                ("method", method.to_owned()),
            ])
            .clone()
    }

    /// The open-streams gauge of `endpoint`.
    pub(crate) fn streams(&self, endpoint: &str) -> Gauge {
        self.streams_open
            .get_or_create(&vec![("endpoint", endpoint.to_owned())])
            .clone()
    }
}

/// The scrape-time part.
struct Levels(Source);

impl fmt::Debug for Levels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Levels")
    }
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn level(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for Levels {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let now = (self.0)();
        let e = &mut encoder;
        gauge(
            e,
            "streampod_connections_open",
            "TCP connections open",
            level(now.connections_open),
        )?;
        gauge(
            e,
            "streampod_sessions",
            "WebSocket sessions open",
            level(now.sessions),
        )?;
        gauge(
            e,
            "streampod_channels",
            "Message-central channels with a listener",
            level(now.channels),
        )?;
        gauge(
            e,
            "streampod_listeners",
            "Listeners on all channels",
            level(now.listeners),
        )?;
        counter(e, "streampod_posts", "Posts and broadcasts made", now.posts)?;
        counter(
            e,
            "streampod_deliveries",
            "Messages queued for or handed to a listener",
            now.deliveries,
        )?;
        counter(
            e,
            "streampod_frames_encoded",
            "Frames encoded for posts (one per post and endpoint, not per recipient)",
            now.frames_encoded,
        )?;
        let mut dropped = e.encode_descriptor(
            "streampod_frames_dropped",
            "Frames dropped for slow consumers, by the policy that dropped them",
            None,
            MetricType::Counter,
        )?;
        for (policy, count) in now.frames_dropped {
            let labels = [("policy", policy)];
            ConstCounter::new(count).encode(dropped.encode_family(&labels)?)?;
        }
        counter(
            e,
            "streampod_slow_consumer_disconnects",
            "Sessions closed because their outbound queue overflowed (Disconnect policy)",
            now.slow_consumer_disconnects,
        )?;
        if let Some(connected) = now.cluster_connected {
            gauge(
                e,
                "streampod_cluster_connected",
                "1 while the cluster's Redis connection is up",
                i64::from(connected),
            )?;
        }
        if let Some(failed) = now.cluster_posts_failed {
            counter(
                e,
                "streampod_cluster_posts_failed",
                "Global posts that failed after being queued: not published, or unconfirmed",
                failed,
            )?;
        }
        if let Some(stale) = now.cluster_stale_dropped {
            counter(
                e,
                "streampod_cluster_stale_dropped",
                "Global messages dropped on arrival for being older than max_global_age",
                stale,
            )?;
        }
        if let Some(round_trip) = now.cluster_round_trip {
            let metric = ConstGauge::new(round_trip.as_secs_f64());
            metric.encode(e.encode_descriptor(
                "streampod_cluster_round_trip_seconds",
                "Round trip of the last publish pipeline to Redis",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// A duration in microseconds, shareable between tasks (the cluster's last round trip).
#[derive(Debug, Default)]
pub(crate) struct Micros(AtomicU64);

impl Micros {
    pub(crate) fn set(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.0
            .store(micros.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// `None` before the first measurement.
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_levels_are_rendered() {
        let metrics = Metrics::new(Box::new(|| Snapshot {
            sessions: 3,
            posts: 7,
            cluster_connected: Some(true),
            ..Snapshot::default()
        }));
        metrics.connections_accepted.inc();
        metrics
            .connections_refused
            .get_or_create(&vec![("reason", "full".to_owned())])
            .inc();
        metrics.method_call(
            "notification",
            "sendNotification",
            200,
            Duration::from_millis(3),
        );
        metrics.streams("chat").inc();
        let text = metrics.render();
        for line in [
            "streampod_connections_accepted_total 1",
            "streampod_connections_refused_total{reason=\"full\"} 1",
            "streampod_sessions 3",
            "streampod_posts_total 7",
            "streampod_cluster_connected 1",
            "streampod_streams_open{endpoint=\"chat\"} 1",
            "streampod_method_calls_total{endpoint=\"notification\",method=\"sendNotification\",status=\"200\"} 1",
            "streampod_method_call_seconds_count{endpoint=\"notification\",method=\"sendNotification\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}

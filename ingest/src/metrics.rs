//! The ingest node's telemetry: one prometheus-client registry, typed label sets with bounded
//! values, and one method per event that records the metric (and, where useful, the log line)
//! together. Names end in their unit; counters get `_total` from the encoder.
//!
//! Every series of a bounded label set (endpoint × outcome) exists from start-up at 0, so a
//! rate or `increase()` sees the first occurrence of an outcome too (a series born at 1 has no
//! earlier sample, and an alert on it would wait for the second).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use strum::VariantArray;

/// The most queues: the size of the resolved per-queue counter table (a queue id outside it
/// takes the family's own lookup).
const MAX_QUEUES: usize = 4096;

/// Increments the counter of `labels` in `family`, through its resolved copy in `slots[index]`
/// when there is such a slot.
fn inc_resolved<L>(
    slots: &[OnceLock<Counter>],
    index: usize,
    family: &Family<L, Counter>,
    labels: &L,
) where
    L: Clone + std::hash::Hash + Eq,
{
    match slots.get(index) {
        Some(slot) => slot
            .get_or_init(|| family.get_or_create(labels).clone())
            .inc(),
        None => family.get_or_create(labels).inc(),
    };
}

/// Which endpoint answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue, VariantArray)]
pub enum Endpoint {
    /// A single hit to `matomo.php`.
    Tracker,
    /// A bulk POST to `matomo.php`.
    Bulk,
    /// A static file (`matomo.js`…).
    Static,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue, VariantArray)]
pub enum Outcome {
    /// Accepted and queued (GIF, 204 or bulk JSON).
    Queued,
    /// Rejected as Matomo would (400).
    Invalid,
    /// The "This resource is part of Matomo" notice.
    Notice,
    /// CORS preflight.
    Preflight,
    /// `record_statistics = 0` (503).
    Disabled,
    /// Too large (413/414) or too many bulk entries.
    TooLarge,
    /// The client was too slow (408).
    Timeout,
    /// Redis did not take the hit (503).
    Unavailable,
    /// Redis could not take the hit and the spool was full (503).
    SpoolFull,
    /// A static file was served.
    Served,
    /// A static file was not modified (304).
    NotModified,
    /// A static file does not exist (404).
    NotFound,
    /// The handler panicked (a bug some request triggers): answered 500.
    Panic,
}

/// Labels of `ingest_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Outcome.
    pub outcome: Outcome,
}

/// Labels of `ingest_entry_compression`: the `queue.compression` mode in use.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompressionLabels {
    /// `default`, `zlib`, `fast` or `none`.
    pub mode: &'static str,
}

/// Labels of `ingest_enqueued_entries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue id (bounded by `numQueueWorkers` ≤ 4096).
    pub queue: u16,
}

/// Labels of `ingest_lane_connections`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    /// Lane number (bounded by `ingest.threads` ≤ 1024).
    pub lane: u16,
}

/// Every metric of the node.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The counters of `ingest_requests_total`, by endpoint and outcome, all created at
    /// start-up: the hot path skips the family's lock and label hash.
    request_counters: Box<[Counter]>,
    hits_tracked: Counter,
    hits_invalid: Counter,
    enqueue_seconds: Histogram,
    request_seconds: Family<LaneLabels, Histogram, fn() -> Histogram>,
    bulk_requests: Histogram,
    request_body_bytes: Counter,
    queued_bytes: Counter,
    redis_errors: Counter,
    enqueued: Family<QueueLabels, Counter>,
    /// The counters of `enqueued`, by queue id, each resolved on first use.
    enqueued_counters: Box<[OnceLock<Counter>]>,
    sites_cached: Gauge,
    site_cache_errors: Counter,
    entry_compression: Family<CompressionLabels, Gauge>,
    lane_connections: Family<LaneLabels, Gauge>,
    /// The spool's and the Redis guard's metrics.
    pub spool: crate::spool::metrics::SpoolMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ingest");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by endpoint and outcome",
            requests.clone(),
        );
        let hits_tracked = Counter::default();
        registry.register(
            "hits_tracked",
            "Tracking requests accepted",
            hits_tracked.clone(),
        );
        let hits_invalid = Counter::default();
        registry.register(
            "hits_invalid",
            "Tracking requests rejected",
            hits_invalid.clone(),
        );
        let enqueue_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "enqueue_duration_seconds",
            "Time from handing entries to the sink until Redis acknowledged them",
            enqueue_seconds.clone(),
        );
        let request_seconds =
            Family::<LaneLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
            });
        registry.register(
            "request_duration_seconds",
            "Time from reading an HTTP/1 request's first bytes until the end of its exchange (its answer written, or the client gone), per lane",
            request_seconds.clone(),
        );
        let bulk_requests = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register(
            "bulk_size_requests",
            "Entries per bulk request",
            bulk_requests.clone(),
        );
        let request_body_bytes = Counter::default();
        registry.register(
            "request_body_bytes",
            "Request body bytes read",
            request_body_bytes.clone(),
        );
        let queued_bytes = Counter::default();
        registry.register(
            "queued_bytes",
            "Encoded entry bytes written to Redis",
            queued_bytes.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Failed or timed-out Redis writes",
            redis_errors.clone(),
        );
        let enqueued = Family::<QueueLabels, Counter>::default();
        registry.register(
            "enqueued_entries",
            "Entries written, per queue",
            enqueued.clone(),
        );
        let sites_cached = Gauge::default();
        registry.register(
            "sites_cached",
            "Sites in the validation cache",
            sites_cached.clone(),
        );
        let site_cache_errors = Counter::default();
        registry.register(
            "site_cache_refresh_errors",
            "Failed refreshes of the site/token cache",
            site_cache_errors.clone(),
        );
        let entry_compression = Family::<CompressionLabels, Gauge>::default();
        registry.register(
            "entry_compression",
            "The form of the queue entries this node writes (1 for the mode in use; queue.compression = auto picks it at start-up)",
            entry_compression.clone(),
        );
        let lane_connections = Family::<LaneLabels, Gauge>::default();
        registry.register(
            "lane_connections",
            "Open client connections per lane (thread serving connections, ingest.threads)",
            lane_connections.clone(),
        );
        let spool = crate::spool::metrics::SpoolMetrics::register(&mut registry);
        // In the order `request` indexes them: endpoint-major, each enum in declaration order.
        let request_counters = Endpoint::VARIANTS
            .iter()
            .flat_map(|&endpoint| Outcome::VARIANTS.iter().map(move |&o| (endpoint, o)))
            .map(|(endpoint, outcome)| {
                requests
                    .get_or_create(&RequestLabels { endpoint, outcome })
                    .clone()
            })
            .collect();
        Self {
            spool,
            registry,
            hits_tracked,
            hits_invalid,
            enqueue_seconds,
            request_seconds,
            bulk_requests,
            request_body_bytes,
            queued_bytes,
            redis_errors,
            enqueued,
            enqueued_counters: (0..MAX_QUEUES).map(|_| OnceLock::new()).collect(),
            request_counters,
            sites_cached,
            site_cache_errors,
            entry_compression,
            lane_connections,
        }
    }

    /// The open-connection gauges of `lanes` lanes, all created now (at 0).
    pub fn lane_connections(&self, lanes: usize) -> Vec<Gauge> {
        (0..lanes)
            .map(|lane| {
                let lane = u16::try_from(lane).unwrap_or(u16::MAX);
                self.lane_connections
                    .get_or_create(&LaneLabels { lane })
                    .clone()
            })
            .collect()
    }

    /// The entry form the node writes (set once at start-up).
    pub fn entry_compression(&self, mode: tier_config::EntryCompression) {
        use tier_config::EntryCompression as E;
        let mode = match mode {
            E::Default => "default",
            E::Zlib => "zlib",
            E::Fast => "fast",
            E::None => "none",
        };
        self.entry_compression
            .get_or_create(&CompressionLabels { mode })
            .set(1);
    }

    /// One answered request.
    pub fn request(&self, endpoint: Endpoint, outcome: Outcome) {
        self.request_counters[endpoint as usize * Outcome::VARIANTS.len() + outcome as usize].inc();
    }

    /// Hits accepted and rejected by one request.
    pub fn hits(&self, tracked: usize, invalid: usize) {
        self.hits_tracked.inc_by(tracked as u64);
        self.hits_invalid.inc_by(invalid as u64);
    }

    /// A bulk request's entry count.
    pub fn bulk_size(&self, entries: usize) {
        self.bulk_requests.observe(entries as f64);
    }

    /// Bytes of a request body.
    pub fn body_bytes(&self, bytes: usize) {
        self.request_body_bytes.inc_by(bytes as u64);
    }

    /// A successful write of `entries` (queue id, encoded size) that took `elapsed`.
    pub fn enqueued(&self, entries: impl Iterator<Item = (u16, usize)>, elapsed: Duration) {
        self.enqueue_seconds.observe(elapsed.as_secs_f64());
        for (queue, bytes) in entries {
            let labels = QueueLabels { queue };
            inc_resolved(
                &self.enqueued_counters,
                queue.into(),
                &self.enqueued,
                &labels,
            );
            self.queued_bytes.inc_by(bytes as u64);
        }
    }

    /// The request-duration histogram of `lane` (the lane's own, so that lanes on different
    /// cores do not share one lock): a connection takes it once and observes each request's
    /// time from its first bytes read (for a pipelined request, the end of the one before it)
    /// to the end of its exchange — its answer written, or, for a refused body, the answer and
    /// the wait before closing, or the client gone before the answer. Connections always run on
    /// a lane; `None` (a test driving a connection itself) counts as lane 0.
    pub fn request_durations(&self, lane: Option<usize>) -> Histogram {
        let lane = lane.map_or(0, |lane| u16::try_from(lane).unwrap_or(u16::MAX));
        self.request_seconds
            .get_or_create(&LaneLabels { lane })
            .clone()
    }

    /// A failed write.
    pub fn redis_error(&self, error: &crate::queue::EnqueueError) {
        self.redis_errors.inc();
        tracing::warn!(%error, "enqueue failed");
    }

    /// A site cache refresh.
    pub fn site_cache(&self, result: Result<usize, &crate::sites::LoadError>) {
        match result {
            Ok(n) => {
                self.sites_cached.set(n as i64);
                tracing::debug!(sites = n, "site cache refreshed");
            }
            Err(error) => {
                self.site_cache_errors.inc();
                tracing::warn!(%error, "site cache refresh failed; keeping the previous copy");
            }
        }
    }

    /// The registry in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_series_exists_from_the_start_and_counts_in_its_family() {
        let metrics = Metrics::new();
        let fresh = metrics.encode();
        let series = fresh
            .lines()
            .filter(|l| l.starts_with("ingest_requests_total{"))
            .collect::<Vec<_>>();
        assert_eq!(
            series.len(),
            Endpoint::VARIANTS.len() * Outcome::VARIANTS.len(),
            "{fresh}"
        );
        assert!(series.iter().all(|l| l.ends_with("} 0")), "{fresh}");
        assert!(
            fresh.contains("ingest_requests_total{endpoint=\"Static\",outcome=\"Panic\"} 0"),
            "{fresh}"
        );
        metrics.request(Endpoint::Tracker, Outcome::Queued);
        metrics.request(Endpoint::Tracker, Outcome::Queued);
        metrics.request(Endpoint::Bulk, Outcome::Invalid);
        metrics.request(Endpoint::Static, Outcome::Panic);
        metrics.enqueued([(0, 10), (4095, 5), (0, 1)].into_iter(), Duration::ZERO);
        let text = metrics.encode();
        for line in [
            "ingest_requests_total{endpoint=\"Tracker\",outcome=\"Queued\"} 2",
            "ingest_requests_total{endpoint=\"Bulk\",outcome=\"Invalid\"} 1",
            "ingest_requests_total{endpoint=\"Static\",outcome=\"Panic\"} 1",
            "ingest_requests_total{endpoint=\"Tracker\",outcome=\"Served\"} 0",
            "ingest_enqueued_entries_total{queue=\"0\"} 2",
            "ingest_enqueued_entries_total{queue=\"4095\"} 1",
            "ingest_queued_bytes_total 16",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // Per-queue series appear once used: their number is the operator's queue count.
        assert!(!text.contains("queue=\"1\""), "{text}");
    }
}

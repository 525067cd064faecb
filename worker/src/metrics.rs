//! The worker's telemetry: one prometheus-client [`Registry`] with typed label sets.
//!
//! Names end in their unit (`_total`, `_seconds`, `_entries`). Label values are bounded: the
//! queue id (at most 4096 queues) and small enums. Every series of a small enum (lock events,
//! backend errors, dead-letter reasons, bisection causes, request outcomes) exists from start-up
//! at 0, so a rate or `increase()` sees its first occurrence too: a series born at 1 has no
//! earlier sample, and an alert on it would wait for the second.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use strum::VariantArray;

/// What became of a queue entry.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum EntryOutcome {
    /// Its rows were committed.
    Processed,
    /// Set aside in the dead-letter list.
    DeadLettered,
    /// Dropped without trace (as PHP would).
    Dropped,
    /// Found already committed after a crash and trimmed without reprocessing.
    AlreadyCommitted,
}

/// Labels of per-queue entry counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryLabels {
    /// Queue id.
    pub queue: u16,
    /// Outcome.
    pub outcome: EntryOutcome,
}

/// Labels of per-queue gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue id.
    pub queue: u16,
}

/// Lock events.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue, VariantArray)]
pub enum LockEvent {
    /// Taken.
    Acquired,
    /// Held by someone else when we tried.
    Contended,
    /// Renewed by the heartbeat.
    Renewed,
    /// Found gone or taken over while we worked.
    Lost,
    /// Given back.
    Released,
}

/// Labels of lock event counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LockLabels {
    /// Event.
    pub event: LockEvent,
}

/// A backing service.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue, VariantArray)]
pub enum Service {
    /// Redis.
    Redis,
    /// MySQL / MariaDB.
    Mysql,
}

/// Labels of error counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service.
    pub service: Service,
}

/// Request outcome inside processed sets.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue, VariantArray)]
pub enum RequestOutcome {
    /// Recorded.
    Recorded,
    /// Skipped by the tracker (excluded, rec≠1…).
    Skipped,
}

/// Labels of request counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Outcome.
    pub outcome: RequestOutcome,
}

/// Why an entry went to the dead-letter list.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue, VariantArray)]
pub enum DeadLetterReason {
    /// Its bytes do not decode (neither zlib nor JSON).
    Undecodable,
    /// The tracker rejected it (a hit PHP would also fail on).
    Rejected,
    /// MySQL refused its values (isolated by bisecting the batch).
    MysqlData,
    /// Its batch kept failing transiently while MySQL answered, and it failed alone (isolated
    /// by bisection, confirmed by the entries after it committing without it).
    Suspect,
    /// Decided by a worker that crashed before trimming; found in the progress marker.
    Recovered,
    /// The processor panicked on it (isolated by bisection): a tracker bug this entry
    /// triggers, kept so it can be replayed once fixed.
    Panic,
}

/// Labels of dead-letter counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// Reason.
    pub reason: DeadLetterReason,
}

/// Why a batch was split in two.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue, VariantArray)]
pub enum BisectCause {
    /// MySQL refused a value of the batch (data error).
    MysqlData,
    /// The batch kept failing transiently while MySQL answered a health probe.
    Suspect,
    /// The processor panicked on the batch.
    Panic,
}

/// Labels of bisection counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BisectLabels {
    /// Cause.
    pub cause: BisectCause,
}

fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric of the worker.
#[derive(Debug)]
pub struct Metrics {
    /// Queue entries by queue and outcome.
    pub entries: Family<EntryLabels, Counter>,
    /// Tracking requests by outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Entries per committed batch.
    pub batch_size: Histogram,
    /// Time from reading a batch to its trim.
    pub batch_duration: Histogram,
    /// Time of COMMIT.
    pub commit_latency: Histogram,
    /// Lock events.
    pub locks: Family<LockLabels, Counter>,
    /// Batches retried after a transient failure.
    pub retries: Counter,
    /// Errors talking to Redis or MySQL.
    pub errors: Family<ServiceLabels, Counter>,
    /// Entries dead-lettered, by reason.
    pub dead_lettered: Family<DeadLetterLabels, Counter>,
    /// Batches (or parts of them) split in two to find an entry MySQL refuses.
    pub bisections: Family<BisectLabels, Counter>,
    /// Entries waiting per queue (sampled).
    pub queue_length: Family<QueueLabels, Gauge>,
    /// Age of the oldest entry per queue in seconds (sampled).
    pub queue_lag: Family<QueueLabels, Gauge>,
    /// Dead letters waiting per queue (sampled).
    pub dead_letters: Family<QueueLabels, Gauge>,
    /// Entries processed since start (for rates in logs and `monitor`).
    processed_total: AtomicU64,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` (prefix `matomo_worker`).
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            entries: Family::default(),
            requests: Family::default(),
            batch_size: size_histogram(),
            batch_duration: seconds_histogram(),
            commit_latency: seconds_histogram(),
            locks: Family::default(),
            retries: Counter::default(),
            errors: Family::default(),
            dead_lettered: Family::default(),
            bisections: Family::default(),
            queue_length: Family::default(),
            queue_lag: Family::default(),
            dead_letters: Family::default(),
            processed_total: AtomicU64::new(0),
        };
        let r = registry.sub_registry_with_prefix("matomo_worker");
        r.register(
            "queue_entries",
            "Queue entries by queue and outcome",
            m.entries.clone(),
        );
        r.register(
            "requests",
            "Tracking requests in processed entries, by outcome",
            m.requests.clone(),
        );
        r.register(
            "batch_size_entries",
            "Entries per committed batch",
            m.batch_size.clone(),
        );
        r.register(
            "batch_duration_seconds",
            "From reading a batch to trimming it",
            m.batch_duration.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Latency of the batch COMMIT",
            m.commit_latency.clone(),
        );
        r.register(
            "lock_events",
            "Shard lock acquisitions, contentions, renewals, losses, releases",
            m.locks.clone(),
        );
        r.register(
            "batch_retries",
            "Batches rolled back and retried after a transient failure",
            m.retries.clone(),
        );
        r.register(
            "backend_errors",
            "Errors talking to Redis or MySQL",
            m.errors.clone(),
        );
        r.register(
            "dead_lettered",
            "Entries moved to a dead-letter list, by reason",
            m.dead_lettered.clone(),
        );
        r.register(
            "bisections",
            "Batches split in two to isolate an entry MySQL refuses, by cause",
            m.bisections.clone(),
        );
        r.register(
            "queue_length_entries",
            "Entries waiting per queue (sampled)",
            m.queue_length.clone(),
        );
        r.register(
            "queue_lag_seconds",
            "Age of the oldest waiting entry per queue (sampled)",
            m.queue_lag.clone(),
        );
        r.register(
            "dead_letter_entries",
            "Dead letters waiting per queue (sampled)",
            m.dead_letters.clone(),
        );
        r.register(
            "pattern_match_errors",
            "Configuration regex matches PCRE gave up on (backtracking, depth or JIT stack limit, subject not UTF-8 under u), which count as no match, as in PHP",
            crate::tracker::pcre::MATCH_ERRORS.clone(),
        );
        // Creating a series is what makes it exist; the handle returned is not needed.
        for &event in LockEvent::VARIANTS {
            let _ = m.locks.get_or_create(&LockLabels { event });
        }
        for &service in Service::VARIANTS {
            let _ = m.errors.get_or_create(&ServiceLabels { service });
        }
        for &reason in DeadLetterReason::VARIANTS {
            let _ = m.dead_lettered.get_or_create(&DeadLetterLabels { reason });
        }
        for &cause in BisectCause::VARIANTS {
            let _ = m.bisections.get_or_create(&BisectLabels { cause });
        }
        for &outcome in RequestOutcome::VARIANTS {
            let _ = m.requests.get_or_create(&RequestLabels { outcome });
        }
        m
    }

    /// Counts `n` entries of `queue` with `outcome`.
    pub fn entries(&self, queue: u16, outcome: EntryOutcome, n: usize) {
        if n == 0 {
            return;
        }
        self.entries
            .get_or_create(&EntryLabels { queue, outcome })
            .inc_by(n as u64);
        if outcome == EntryOutcome::Processed {
            self.processed_total.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Counts a lock event.
    pub fn lock(&self, event: LockEvent) {
        self.locks.get_or_create(&LockLabels { event }).inc();
    }

    /// Counts an error of `service`.
    pub fn error(&self, service: Service) {
        self.errors.get_or_create(&ServiceLabels { service }).inc();
    }

    /// Counts `n` dead letters with `reason`.
    pub fn dead_letters(&self, reason: DeadLetterReason, n: usize) {
        if n > 0 {
            self.dead_lettered
                .get_or_create(&DeadLetterLabels { reason })
                .inc_by(n as u64);
        }
    }

    /// Counts one bisection step.
    pub fn bisection(&self, cause: BisectCause) {
        self.bisections.get_or_create(&BisectLabels { cause }).inc();
    }

    /// Counts requests.
    pub fn requests(&self, outcome: RequestOutcome, n: usize) {
        if n > 0 {
            self.requests
                .get_or_create(&RequestLabels { outcome })
                .inc_by(n as u64);
        }
    }

    /// Entries processed since start.
    pub fn processed_total(&self) -> u64 {
        self.processed_total.load(Ordering::Relaxed)
    }
}

/// A registry with the worker's metrics registered, for tests and commands that need one.
pub fn standalone() -> (Registry, std::sync::Arc<Metrics>) {
    let mut registry = Registry::default();
    let metrics = std::sync::Arc::new(Metrics::new(&mut registry));
    (registry, metrics)
}

/// The registry in Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_units_and_labels() {
        let (registry, m) = standalone();
        m.entries(3, EntryOutcome::DeadLettered, 2);
        m.lock(LockEvent::Acquired);
        m.batch_size.observe(25.0);
        m.dead_letters(DeadLetterReason::MysqlData, 1);
        m.bisection(BisectCause::Suspect);
        let text = render(&registry);
        assert!(
            text.contains(
                "matomo_worker_queue_entries_total{queue=\"3\",outcome=\"DeadLettered\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("matomo_worker_lock_events_total{event=\"Acquired\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("matomo_worker_dead_lettered_total{reason=\"MysqlData\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("matomo_worker_bisections_total{cause=\"Suspect\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("matomo_worker_batch_size_entries_bucket"),
            "{text}"
        );
    }

    #[test]
    fn every_small_enum_series_exists_from_the_start() {
        let (registry, _m) = standalone();
        let text = render(&registry);
        let zero_series = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")) && l.ends_with("} 0"))
                .count()
        };
        for (name, variants) in [
            ("matomo_worker_lock_events_total", LockEvent::VARIANTS.len()),
            (
                "matomo_worker_backend_errors_total",
                Service::VARIANTS.len(),
            ),
            (
                "matomo_worker_dead_lettered_total",
                DeadLetterReason::VARIANTS.len(),
            ),
            (
                "matomo_worker_bisections_total",
                BisectCause::VARIANTS.len(),
            ),
            (
                "matomo_worker_requests_total",
                RequestOutcome::VARIANTS.len(),
            ),
        ] {
            assert_eq!(zero_series(name), variants, "{name} in {text}");
        }
        assert!(
            text.contains("matomo_worker_dead_lettered_total{reason=\"Panic\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("matomo_worker_backend_errors_total{service=\"Mysql\"} 0"),
            "{text}"
        );
        // A counter without labels: one series, there from the start (other tests in this
        // process may have counted already, so only its presence is checked).
        assert!(
            text.lines()
                .any(|l| l.starts_with("matomo_worker_pattern_match_errors_total ")),
            "{text}"
        );
    }
}

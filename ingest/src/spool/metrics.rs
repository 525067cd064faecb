//! Metrics of the spool and the Redis guard, registered in the node's registry
//! ([`crate::metrics::Metrics`]). Each method records the metric and, for events an operator
//! must see, the log line together.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The spool's and the guard's metrics (cheap to clone: handles to the same values).
#[derive(Debug, Clone, Default)]
pub struct SpoolMetrics {
    bytes: Gauge,
    entries: Gauge,
    segments: Gauge,
    replaying: Gauge,
    written: Counter,
    replayed: Counter,
    corrupt: Counter,
    truncated_bytes: Counter,
    full: Counter,
    unknown_outcome: Counter,
    guard_over: Gauge,
    redis_used_memory: Gauge,
    redis_queued: Gauge,
}

impl SpoolMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let gauges = [
            (
                "spool_bytes",
                "Bytes of the spool's segment files",
                &m.bytes,
            ),
            (
                "spool_entries",
                "Spooled entries not yet replayed to Redis",
                &m.entries,
            ),
            ("spool_segments", "Segment files of the spool", &m.segments),
            (
                "spool_replaying",
                "1 while the replayer moves entries to Redis",
                &m.replaying,
            ),
            (
                "redis_guard_over_budget",
                "1 while Redis is over the memory/queue-length budget (hits go to the spool)",
                &m.guard_over,
            ),
            (
                "redis_used_memory_bytes",
                "Redis used_memory at the last guard poll",
                &m.redis_used_memory,
            ),
            (
                "redis_queued_entries",
                "Entries in all queue lists at the last guard poll",
                &m.redis_queued,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        let counters = [
            (
                "spool_written_entries",
                "Entries written to the spool",
                &m.written,
            ),
            (
                "spool_replayed_entries",
                "Spooled entries moved to Redis",
                &m.replayed,
            ),
            (
                "spool_corrupt_records",
                "Corrupt spool records skipped (lost)",
                &m.corrupt,
            ),
            (
                "spool_truncated_bytes",
                "Bytes of half-written records cut off at start",
                &m.truncated_bytes,
            ),
            (
                "spool_full_rejections",
                "Requests refused because the spool was full",
                &m.full,
            ),
            (
                "redis_unknown_outcome_writes",
                "Redis writes sent without a reply (answered 503; Redis may have stored them once)",
                &m.unknown_outcome,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        m
    }

    /// The spool's size.
    pub fn state(&self, bytes: u64, entries: u64, segments: u64) {
        self.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.segments
            .set(i64::try_from(segments).unwrap_or(i64::MAX));
    }

    /// Whether the replayer is moving entries.
    pub fn replaying(&self, on: bool) {
        self.replaying.set(i64::from(on));
    }

    /// Entries appended.
    pub fn written(&self, entries: u64) {
        self.written.inc_by(entries);
    }

    /// A replayed batch: entries moved, corrupt records skipped.
    pub fn replayed(&self, entries: u64, corrupt: u64) {
        self.replayed.inc_by(entries);
        if corrupt > 0 {
            self.corrupt.inc_by(corrupt);
            tracing::error!(
                corrupt,
                "corrupt spool records skipped; their hits are lost"
            );
        }
    }

    /// Bytes of a half-written tail cut off on start.
    pub fn truncated(&self, bytes: u64) {
        self.truncated_bytes.inc_by(bytes);
        tracing::warn!(
            bytes,
            "spool: cut off a half-written record (never acknowledged)"
        );
    }

    /// A request refused because the spool is full.
    pub fn full(&self) {
        self.full.inc();
        tracing::warn!("spool full (ingest.spool.max_bytes): refusing hits with 503");
    }

    /// A Redis write whose outcome is unknown.
    pub fn unknown_outcome(&self) {
        self.unknown_outcome.inc();
    }

    /// The guard's view of Redis.
    pub fn guard(&self, over: bool, used_memory: u64, queued: u64) {
        self.guard_over.set(i64::from(over));
        self.redis_used_memory
            .set(i64::try_from(used_memory).unwrap_or(i64::MAX));
        self.redis_queued
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// Corrupt records skipped so far.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt.get()
    }
}

//! Measurements of the send side: per-target counters, HDR latency histograms, and one record
//! per second of the run for the time-series plots.
//!
//! Latency is always measured from the hit's *intended* send time (coordinated-omission
//! corrected), so a stalled target or a late generator shows up as latency, never disappears.
//! Only 2xx counts as success; every other outcome has its own counter.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::Outcome;

/// Highest latency the histograms hold (longer ones are clamped), in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A fresh latency histogram (microseconds, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_LATENCY_US);
    let _ = h.record(us);
}

/// Counters and latency of one target (or of all targets together).
#[derive(Debug, Clone)]
pub struct TargetStats {
    /// Requests sent.
    pub requests: u64,
    /// Hits the schedule offered to this target.
    pub offered_hits: u64,
    /// Hits actually sent.
    pub sent_hits: u64,
    /// Hits answered with 2xx (bulk: `tracked`).
    pub accepted_hits: u64,
    /// Hits refused as invalid (400, bulk `invalid`).
    pub invalid_hits: u64,
    /// Hits of requests that failed: non-2xx, timeouts, connection errors.
    pub failed_hits: u64,
    /// Hits not sent because too many requests were in flight.
    pub dropped_hits: u64,
    /// Requests sent later than the late threshold after their due time.
    pub late_requests: u64,
    /// Requests by status class and failure kind: `2xx`, `4xx`, `5xx`, `timeout`, `error`.
    pub outcomes: BTreeMap<String, u64>,
    /// A few distinct error messages, for the report.
    pub error_samples: Vec<String>,
    /// Latency from due time to complete answer, microseconds.
    pub latency: Histogram<u64>,
}

impl Default for TargetStats {
    fn default() -> Self {
        Self {
            requests: 0,
            offered_hits: 0,
            sent_hits: 0,
            accepted_hits: 0,
            invalid_hits: 0,
            failed_hits: 0,
            dropped_hits: 0,
            late_requests: 0,
            outcomes: BTreeMap::new(),
            error_samples: Vec::new(),
            latency: latency_histogram(),
        }
    }
}

/// What happened in one second of the run.
#[derive(Debug, Clone)]
pub struct Second {
    /// Hits due in this second.
    pub offered_hits: u64,
    /// Hits whose 2xx answer arrived in this second.
    pub accepted_hits: u64,
    /// Hits whose failure arrived in this second.
    pub failed_hits: u64,
    /// Hits dropped in this second.
    pub dropped_hits: u64,
    /// Late requests sent in this second.
    pub late_requests: u64,
    /// Latency of requests due in this second.
    pub latency: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Self {
            offered_hits: 0,
            accepted_hits: 0,
            failed_hits: 0,
            dropped_hits: 0,
            late_requests: 0,
            latency: latency_histogram(),
        }
    }
}

/// One event from the dispatcher or a send task.
#[derive(Debug)]
pub enum Event {
    /// Hits due now were dropped (in-flight limit).
    Dropped {
        /// Target index.
        target: usize,
        /// Hits in the request.
        hits: u32,
        /// Due time since start.
        due: Duration,
    },
    /// A request finished.
    Done {
        /// Target index.
        target: usize,
        /// Hits in the request.
        hits: u32,
        /// Due time since start.
        due: Duration,
        /// How long after its due time it was sent.
        lateness: Duration,
        /// When the answer was complete, since start.
        done: Duration,
        /// The answer.
        outcome: Outcome,
    },
}

/// Everything measured on the send side.
#[derive(Debug, Clone)]
pub struct Stats {
    /// One entry per target, in `--target` order.
    pub targets: Vec<TargetStats>,
    /// All targets together.
    pub total: TargetStats,
    /// One entry per second of the run.
    pub seconds: Vec<Second>,
    /// Sends later than this after their due time count as late.
    pub late_threshold: Duration,
    /// Requests due before this count everywhere but in the latency of `targets` and `total`.
    pub warmup: Duration,
}

impl Stats {
    /// Empty statistics for `targets` targets.
    pub fn new(targets: usize, late_threshold: Duration) -> Self {
        Self {
            targets: vec![TargetStats::default(); targets],
            total: TargetStats::default(),
            seconds: Vec::new(),
            late_threshold,
            warmup: Duration::ZERO,
        }
    }

    /// The same statistics, leaving requests due before `warmup` out of the latency of the
    /// targets and the total.
    pub fn with_warmup(mut self, warmup: Duration) -> Self {
        self.warmup = warmup;
        self
    }

    fn second(&mut self, at: Duration) -> &mut Second {
        let i = at.as_secs() as usize;
        if self.seconds.len() <= i {
            self.seconds.resize_with(i + 1, Second::default);
        }
        &mut self.seconds[i]
    }

    /// Applies one event.
    pub fn apply(&mut self, event: &Event) {
        match *event {
            Event::Dropped { target, hits, due } => {
                let hits = u64::from(hits);
                for t in [&mut self.targets[target], &mut self.total] {
                    t.offered_hits += hits;
                    t.dropped_hits += hits;
                }
                let s = self.second(due);
                s.offered_hits += hits;
                s.dropped_hits += hits;
            }
            Event::Done {
                target,
                hits,
                due,
                lateness,
                done,
                ref outcome,
            } => {
                let late = lateness > self.late_threshold;
                let hits = u64::from(hits);
                let (class, accepted, invalid, error) = match outcome {
                    Outcome::Answered {
                        status,
                        accepted,
                        invalid,
                    } => (
                        format!("{}xx", status / 100),
                        u64::from(*accepted),
                        u64::from(*invalid),
                        None,
                    ),
                    Outcome::Timeout => ("timeout".to_owned(), 0, 0, None),
                    Outcome::Failed(e) => ("error".to_owned(), 0, 0, Some(e.clone())),
                };
                let failed = hits - accepted.min(hits);
                let measured = due >= self.warmup;
                for t in [&mut self.targets[target], &mut self.total] {
                    t.requests += 1;
                    t.offered_hits += hits;
                    t.sent_hits += hits;
                    t.accepted_hits += accepted;
                    t.invalid_hits += invalid;
                    t.failed_hits += failed;
                    t.late_requests += u64::from(late);
                    *t.outcomes.entry(class.clone()).or_default() += 1;
                    if measured {
                        record(&mut t.latency, done.saturating_sub(due));
                    }
                    if let Some(e) = &error {
                        if t.error_samples.len() < 5 && !t.error_samples.contains(e) {
                            t.error_samples.push(e.clone());
                        }
                    }
                }
                let s = self.second(due);
                s.offered_hits += hits;
                s.late_requests += u64::from(late);
                record(&mut s.latency, done.saturating_sub(due));
                let s = self.second(done);
                s.accepted_hits += accepted;
                s.failed_hits += failed;
            }
        }
    }
}

/// Latency summary of a histogram, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Percentiles of a microsecond histogram, in milliseconds.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        count: h.len(),
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

/// The HDR percentile curve: (percentile, milliseconds) at the histogram's own steps.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(2)
        .map(|v| {
            (
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect()
}

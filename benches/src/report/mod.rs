//! The results of a run: the JSON document, the self-contained HTML report, and the thresholds
//! that decide the exit code.

mod html;
pub mod svg;
mod thresholds;

use std::collections::BTreeMap;

use serde::Serialize;

pub use html::render_html;
pub use thresholds::{check_thresholds, ThresholdResult, Thresholds};

use crate::probe::Sample;
use crate::reconcile::Reconciliation;
use crate::schedule::RateProfile;
use crate::stats::{percentile_curve, summarize, LatencySummary, Stats, TargetStats};

/// Summary of one target (or of all).
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    /// Endpoint (`all` for the total).
    pub url: String,
    /// Relative weight.
    pub weight: u32,
    /// Requests sent.
    pub requests: u64,
    /// Hits the schedule offered.
    pub offered_hits: u64,
    /// Hits sent.
    pub sent_hits: u64,
    /// Hits accepted (2xx only).
    pub accepted_hits: u64,
    /// Hits refused as invalid.
    pub invalid_hits: u64,
    /// Hits of failed requests (non-2xx, timeouts, connection errors).
    pub failed_hits: u64,
    /// Hits dropped at the in-flight limit.
    pub dropped_hits: u64,
    /// Requests sent late.
    pub late_requests: u64,
    /// Accepted hits per second of load.
    pub accepted_rate: f64,
    /// Failed + dropped hits over offered hits.
    pub error_ratio: f64,
    /// Requests by outcome class.
    pub outcomes: BTreeMap<String, u64>,
    /// Sample error messages.
    pub error_samples: Vec<String>,
    /// Latency from due time (coordinated-omission corrected).
    pub latency: LatencySummary,
}

/// Summary of `t` over a load of `secs` seconds.
pub fn target_summary(url: &str, weight: u32, t: &TargetStats, secs: f64) -> TargetSummary {
    let bad = t.failed_hits + t.dropped_hits;
    TargetSummary {
        url: url.to_owned(),
        weight,
        requests: t.requests,
        offered_hits: t.offered_hits,
        sent_hits: t.sent_hits,
        accepted_hits: t.accepted_hits,
        invalid_hits: t.invalid_hits,
        failed_hits: t.failed_hits,
        dropped_hits: t.dropped_hits,
        late_requests: t.late_requests,
        accepted_rate: t.accepted_hits as f64 / secs.max(1e-9),
        error_ratio: if t.offered_hits == 0 {
            0.0
        } else {
            bad as f64 / t.offered_hits as f64
        },
        outcomes: t.outcomes.clone(),
        error_samples: t.error_samples.clone(),
        latency: summarize(&t.latency),
    }
}

/// One second of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    /// Second since the start.
    pub t: u64,
    /// Intended (offered) hits per second.
    pub intended_rate: f64,
    /// Hits due in this second.
    pub offered: u64,
    /// Hits accepted in this second.
    pub accepted: u64,
    /// Hits failed in this second.
    pub failed: u64,
    /// Hits dropped in this second.
    pub dropped: u64,
    /// Requests sent late in this second.
    pub late: u64,
    /// Latency p50 of requests due in this second, ms.
    pub p50_ms: f64,
    /// p90, ms.
    pub p90_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
    /// Max, ms.
    pub max_ms: f64,
}

/// The per-second timeline of a run.
pub fn timeline(stats: &Stats, profile: &RateProfile) -> Vec<TimelineRow> {
    stats
        .seconds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let q = |p: f64| {
                if s.latency.is_empty() {
                    0.0
                } else {
                    s.latency.value_at_quantile(p) as f64 / 1000.0
                }
            };
            TimelineRow {
                t: i as u64,
                intended_rate: profile.rate_at(std::time::Duration::from_secs_f64(i as f64 + 0.5)),
                offered: s.offered_hits,
                accepted: s.accepted_hits,
                failed: s.failed_hits,
                dropped: s.dropped_hits,
                late: s.late_requests,
                p50_ms: q(0.5),
                p90_ms: q(0.9),
                p99_ms: q(0.99),
                max_ms: if s.latency.is_empty() {
                    0.0
                } else {
                    s.latency.max() as f64 / 1000.0
                },
            }
        })
        .collect()
}

/// Queue and row samples plus what they say about the drain.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StackSummary {
    /// Redis lists watched (empty when Redis was not probed).
    pub queue_keys: Vec<String>,
    /// Largest total queue depth seen.
    pub max_queue_depth: u64,
    /// Total queue depth at the last sample.
    pub final_queue_depth: u64,
    /// Highest rate of this run's rows reaching MySQL over one sample interval, rows/s.
    pub peak_drain_rate: f64,
    /// This run's rows per second from the first to the last tagged row seen.
    pub mean_drain_rate: f64,
    /// Seconds from the end of the load until the queues were empty and the rows settled.
    pub drain_secs_after_load: Option<f64>,
    /// All samples.
    pub samples: Vec<Sample>,
}

/// Drain figures from the samples.
pub fn stack_summary(
    keys: Vec<String>,
    samples: Vec<Sample>,
    drain_secs_after_load: Option<f64>,
) -> StackSummary {
    let depth = |s: &Sample| s.depths.iter().sum::<u64>();
    let mut peak = 0.0f64;
    for pair in samples.windows(2) {
        let dt = pair[1].t - pair[0].t;
        if dt > 0.0 {
            peak = peak.max(pair[1].tagged_rows as f64 / dt);
        }
    }
    let with_rows: Vec<&Sample> = samples.iter().filter(|s| s.tagged_rows > 0).collect();
    let mean = match (with_rows.first(), with_rows.last()) {
        (Some(a), Some(b)) if b.t > a.t => {
            let rows: u64 = with_rows.iter().skip(1).map(|s| s.tagged_rows).sum();
            rows as f64 / (b.t - a.t)
        }
        _ => 0.0,
    };
    StackSummary {
        queue_keys: keys,
        max_queue_depth: samples.iter().map(depth).max().unwrap_or(0),
        final_queue_depth: samples.last().map(depth).unwrap_or(0),
        peak_drain_rate: peak,
        mean_drain_rate: mean,
        drain_secs_after_load,
        samples,
    }
}

/// One step of a stepped profile, judged.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// Intended rate of the step, hits/s.
    pub rate: f64,
    /// Seconds since start where the step starts.
    pub start_secs: f64,
    /// Where it ends.
    pub end_secs: f64,
    /// Accepted hits per second (first second of the step left out as warm-up).
    pub accepted_rate: f64,
    /// Failed + dropped over offered.
    pub error_ratio: f64,
    /// p99 latency of the step, ms.
    pub p99_ms: f64,
    /// Late requests.
    pub late: u64,
    /// Queue depth change over the step (entries), when Redis was probed.
    pub queue_growth: Option<i64>,
    /// The ingest side kept up: accepted ≥ 97% of intended, errors ≤ 0.1%, p99 within limit.
    pub ingest_sustained: bool,
    /// And the queue did not grow by more than one second's worth of hits.
    pub end_to_end_sustained: Option<bool>,
}

/// The capacity verdict of a stepped run.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityResult {
    /// p99 limit a step must meet, ms.
    pub p99_limit_ms: f64,
    /// Highest step rate at which ingest kept up (every lower step too).
    pub max_sustainable_ingest_rate: Option<f64>,
    /// Highest step rate at which the whole stack kept up, when Redis was probed.
    pub max_sustainable_end_to_end_rate: Option<f64>,
    /// The steps.
    pub steps: Vec<StepResult>,
}

/// Judges each step of a stepped profile.
pub fn capacity(
    stats: &Stats,
    profile: &RateProfile,
    samples: &[Sample],
    p99_limit_ms: f64,
) -> CapacityResult {
    let mut steps = Vec::new();
    for (start, end, rate) in profile.windows() {
        let (s0, s1) = (start.as_secs() as usize + 1, end.as_secs() as usize);
        let secs = &stats.seconds[s0.min(stats.seconds.len())..s1.min(stats.seconds.len())];
        let n = secs.len().max(1) as f64;
        let mut h = crate::stats::latency_histogram();
        let (mut offered, mut accepted, mut bad, mut late) = (0u64, 0u64, 0u64, 0u64);
        for s in secs {
            let _ = h.add(&s.latency);
            offered += s.offered_hits;
            accepted += s.accepted_hits;
            bad += s.failed_hits + s.dropped_hits;
            late += s.late_requests;
        }
        let p99_ms = if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(0.99) as f64 / 1000.0
        };
        let error_ratio = if offered == 0 {
            0.0
        } else {
            bad as f64 / offered as f64
        };
        let accepted_rate = accepted as f64 / n;
        let in_step = |t: f64| t >= start.as_secs_f64() && t < end.as_secs_f64();
        let depths: Vec<u64> = samples
            .iter()
            .filter(|s| in_step(s.t) && !s.depths.is_empty())
            .map(|s| s.depths.iter().sum())
            .collect();
        let queue_growth = match (depths.first(), depths.last()) {
            (Some(a), Some(b)) => Some(*b as i64 - *a as i64),
            _ => None,
        };
        let ingest_sustained =
            accepted_rate >= 0.97 * rate && error_ratio <= 0.001 && p99_ms <= p99_limit_ms;
        let end_to_end_sustained =
            queue_growth.map(|g| ingest_sustained && (g as f64) <= rate.max(1.0));
        steps.push(StepResult {
            rate,
            start_secs: start.as_secs_f64(),
            end_secs: end.as_secs_f64(),
            accepted_rate,
            error_ratio,
            p99_ms,
            late,
            queue_growth,
            ingest_sustained,
            end_to_end_sustained,
        });
    }
    let highest = |ok: &dyn Fn(&StepResult) -> Option<bool>| {
        let mut best = None;
        for s in &steps {
            match ok(s) {
                Some(true) => best = Some(s.rate),
                Some(false) => break,
                None => return None,
            }
        }
        best
    };
    CapacityResult {
        p99_limit_ms,
        max_sustainable_ingest_rate: highest(&|s| Some(s.ingest_sustained)),
        max_sustainable_end_to_end_rate: highest(&|s| s.end_to_end_sustained),
        steps,
    }
}

/// The whole JSON result.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// `matomo-loadgen <version>`.
    pub tool: String,
    /// What was run: `run`, `capacity`, `build-then-drain`.
    pub command: String,
    /// Random id of the run (in order ids).
    pub run_id: String,
    /// Two-character tag that opens every `pv_id` of the run.
    pub run_tag: String,
    /// The settings, as given.
    pub settings: serde_json::Value,
    /// Unix time the load started.
    pub started_at: i64,
    /// Length of the load profile, s.
    pub load_secs: f64,
    /// From start to the last answer, s.
    pub elapsed_secs: f64,
    /// All targets together.
    pub total: TargetSummary,
    /// Each target.
    pub targets: Vec<TargetSummary>,
    /// Per second.
    pub timeline: Vec<TimelineRow>,
    /// HDR percentile curve of the latency: (percentile, ms).
    pub latency_curve: Vec<(f64, f64)>,
    /// Queue and rows.
    pub stack: StackSummary,
    /// Step verdicts (stepped profiles).
    pub capacity: Option<CapacityResult>,
    /// build-then-drain figures.
    pub build_then_drain: Option<serde_json::Value>,
    /// Hits accepted against rows stored.
    pub reconciliation: Reconciliation,
    /// Thresholds and their verdicts.
    pub thresholds: Vec<ThresholdResult>,
    /// Every threshold met.
    pub passed: bool,
}

/// The latency curve of all targets.
pub fn latency_curve(stats: &Stats) -> Vec<(f64, f64)> {
    percentile_curve(&stats.total.latency)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::Outcome;
    use crate::stats::Event;

    fn done(stats: &mut Stats, due_ms: u64, status: u16, latency_ms: u64) {
        let accepted = u32::from((200..300).contains(&status));
        stats.apply(&Event::Done {
            target: 0,
            hits: 1,
            due: Duration::from_millis(due_ms),
            lateness: Duration::ZERO,
            done: Duration::from_millis(due_ms + latency_ms),
            outcome: Outcome::Answered {
                status,
                accepted,
                invalid: 0,
            },
        });
    }

    fn sample(t: f64, depth: u64) -> Sample {
        Sample {
            t,
            depths: vec![depth],
            rows: 0,
            tagged_rows: 0,
        }
    }

    /// Two steps of 3 s at 10 and 20 hits/s: the first is served, the second half fails.
    fn stepped() -> (Stats, RateProfile) {
        let profile =
            RateProfile::steps(10.0, 10.0, Duration::from_secs(3), Duration::from_secs(6)).unwrap();
        let mut stats = Stats::new(1, Duration::from_millis(10));
        for (i, due) in profile.arrivals().enumerate() {
            let ms = due.as_millis() as u64;
            let status = if ms >= 3_000 && i % 2 == 0 { 503 } else { 200 };
            done(&mut stats, ms, status, 2);
        }
        (stats, profile)
    }

    #[test]
    fn capacity_reports_the_last_step_that_kept_up() {
        let (stats, profile) = stepped();
        let samples = [
            sample(0.5, 0),
            sample(2.5, 5),
            sample(3.5, 5),
            sample(5.5, 200),
        ];
        let c = capacity(&stats, &profile, &samples, 50.0);
        assert_eq!(c.steps.len(), 2);
        assert!(c.steps[0].ingest_sustained, "{:?}", c.steps[0]);
        assert!(!c.steps[1].ingest_sustained, "{:?}", c.steps[1]);
        assert_eq!(c.max_sustainable_ingest_rate, Some(10.0));
        assert_eq!(c.steps[0].queue_growth, Some(5));
        assert_eq!(c.steps[1].queue_growth, Some(195));
        assert_eq!(c.max_sustainable_end_to_end_rate, Some(10.0));
        // a tighter p99 limit than the 2 ms served: nothing is sustained
        assert_eq!(
            capacity(&stats, &profile, &samples, 1.0).max_sustainable_ingest_rate,
            None
        );
    }

    #[test]
    fn thresholds_decide_and_the_report_renders() {
        let (stats, profile) = stepped();
        let mut result = RunResult {
            tool: "t".into(),
            command: "run".into(),
            run_id: "r".into(),
            run_tag: "Ab".into(),
            settings: serde_json::json!({}),
            started_at: 0,
            load_secs: 6.0,
            elapsed_secs: 6.1,
            total: target_summary("all", 0, &stats.total, 6.0),
            targets: vec![target_summary(
                "http://a/matomo.php",
                1,
                &stats.targets[0],
                6.0,
            )],
            timeline: timeline(&stats, &profile),
            latency_curve: latency_curve(&stats),
            stack: stack_summary(vec!["trackingQueueV1".into()], vec![sample(1.0, 3)], None),
            capacity: Some(capacity(&stats, &profile, &[], 50.0)),
            build_then_drain: None,
            reconciliation: Reconciliation::skipped(75, 0, "no MySQL"),
            thresholds: Vec::new(),
            passed: true,
        };
        let limits = Thresholds {
            max_p99_ms: Some(10.0),
            max_error_ratio: Some(0.01),
            max_lost: Some(0),
            ..Default::default()
        };
        let verdicts = check_thresholds(&limits, &result);
        let by_name = |n: &str| verdicts.iter().find(|v| v.name == n).unwrap().clone();
        assert!(by_name("max-p99-ms").passed);
        assert!(!by_name("max-error-ratio").passed, "30 of 90 hits failed");
        assert!(!by_name("max-lost").passed, "not measured fails");
        assert_eq!(by_name("max-lost").actual, None);
        result.thresholds = verdicts;
        result.passed = false;
        let html = render_html(&result);
        assert!(html.contains("FAILED") && html.contains("Steps (p99 limit 50 ms)"));
        assert_eq!(
            html.matches("<svg").count(),
            4,
            "rate, latency, HDR curve, queue depth"
        );
        assert_eq!(result.timeline[4].offered, 20);
        assert_eq!(result.timeline[4].failed, 10);
    }

    #[test]
    fn warmup_requests_count_but_leave_the_latency_alone() {
        let mut stats =
            Stats::new(1, Duration::from_millis(10)).with_warmup(Duration::from_secs(1));
        // A slow start (connections being opened), then a steady 2 ms.
        for ms in [0, 100, 900] {
            done(&mut stats, ms, 200, 40);
        }
        for ms in [1_000, 1_500, 2_000] {
            done(&mut stats, ms, 200, 2);
        }
        for t in [&stats.total, &stats.targets[0]] {
            assert_eq!(t.accepted_hits, 6);
            assert_eq!(t.requests, 6);
            assert_eq!(t.latency.len(), 3);
            assert_eq!(t.latency.max(), 2_000);
        }
        // The per-second figures keep every request.
        assert_eq!(stats.seconds[0].latency.len(), 3);
        assert_eq!(stats.seconds[0].latency.max() / 1_000, 40);
    }
}

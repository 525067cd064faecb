//! Pass/fail limits on a run's figures; any failed limit makes the exit code 1.

use serde::Serialize;

use super::RunResult;

/// Limits given on the command line (each optional).
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
pub struct Thresholds {
    /// Fail when the overall p99 latency exceeds this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub max_p99_ms: Option<f64>,
    /// Fail when failed + dropped hits exceed this share of offered hits (0.01 = 1%).
    #[arg(long, value_name = "RATIO")]
    pub max_error_ratio: Option<f64>,
    /// Fail when more hits than this were dropped at the in-flight limit.
    #[arg(long, value_name = "N")]
    pub max_dropped: Option<u64>,
    /// Fail when accepted hits are below this share of offered hits.
    #[arg(long, value_name = "RATIO")]
    pub min_accepted_ratio: Option<f64>,
    /// Fail when more accepted hits than this have no row (needs MySQL).
    #[arg(long, value_name = "N")]
    pub max_lost: Option<u64>,
    /// Fail when more duplicate rows than this were found (needs MySQL).
    #[arg(long, value_name = "N")]
    pub max_duplicated: Option<u64>,
    /// Fail when the p99 accept-to-row lag exceeds this many milliseconds (needs MySQL).
    #[arg(long, value_name = "MS")]
    pub max_lag_p99_ms: Option<f64>,
}

/// One limit and its verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThresholdResult {
    /// The flag's name.
    pub name: String,
    /// The limit.
    pub limit: f64,
    /// The measured value (`None`: not measured, which fails).
    pub actual: Option<f64>,
    /// Met.
    pub passed: bool,
}

/// Checks every given limit against the result.
pub fn check_thresholds(t: &Thresholds, r: &RunResult) -> Vec<ThresholdResult> {
    let total = &r.total;
    let rec = &r.reconciliation;
    let accepted_ratio = if total.offered_hits == 0 {
        0.0
    } else {
        total.accepted_hits as f64 / total.offered_hits as f64
    };
    let checks: [(&str, Option<f64>, Option<f64>, bool); 7] = [
        ("max-p99-ms", t.max_p99_ms, Some(total.latency.p99_ms), true),
        (
            "max-error-ratio",
            t.max_error_ratio,
            Some(total.error_ratio),
            true,
        ),
        (
            "max-dropped",
            t.max_dropped.map(|v| v as f64),
            Some(total.dropped_hits as f64),
            true,
        ),
        (
            "min-accepted-ratio",
            t.min_accepted_ratio,
            Some(accepted_ratio),
            false,
        ),
        (
            "max-lost",
            t.max_lost.map(|v| v as f64),
            rec.lost.map(|v| v as f64),
            true,
        ),
        (
            "max-duplicated",
            t.max_duplicated.map(|v| v as f64),
            rec.duplicated.map(|v| v as f64),
            true,
        ),
        (
            "max-lag-p99-ms",
            t.max_lag_p99_ms,
            rec.lag.as_ref().map(|l| l.p99_ms),
            true,
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(name, limit, actual, is_max)| {
            let limit = limit?;
            let passed = actual.is_some_and(|a| if is_max { a <= limit } else { a >= limit });
            Some(ThresholdResult {
                name: name.to_owned(),
                limit,
                actual,
                passed,
            })
        })
        .collect()
}

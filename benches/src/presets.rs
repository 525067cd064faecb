//! The presets: `capacity` (a staircase of rates, each step judged, the highest sustained step
//! reported) and `build-then-drain` (fill the queues with the workers stopped, start them,
//! time the drain). Both are ordinary sessions with a particular profile and hooks.

use std::time::Duration;

use serde_json::json;

use crate::cli::{self, BuildThenDrainArgs, CapacityArgs, RunArgs};
use crate::report::{self, RunResult};
use crate::schedule::RateProfile;
use crate::session::{self, Plan, SessionError};

/// `run`: constant, ramp or steps.
pub async fn run(args: &RunArgs) -> Result<RunResult, SessionError> {
    let duration = cli::secs("duration", args.duration)?;
    let profile = match (args.ramp_to, args.step_by) {
        (Some(to), _) => RateProfile::ramp(args.rate, to, duration)?,
        (None, Some(by)) => RateProfile::steps(
            args.rate,
            by,
            cli::secs("step-secs", args.step_secs)?,
            duration,
        )?,
        (None, None) => RateProfile::constant(args.rate, duration)?,
    };
    let stepped = args.step_by.is_some();
    let out = session::run_session(Plan {
        command: "run",
        load: &args.load,
        stack: &args.stack,
        profile,
        thresholds: &args.thresholds,
        step_p99_limit_ms: stepped.then_some(args.thresholds.max_p99_ms.unwrap_or(50.0)),
        before_load: None,
        after_load: None,
        extra_settings: json!({}),
    })
    .await?;
    session::write_outputs(&args.load, &out.result)?;
    Ok(out.result)
}

/// `capacity`: steps from `start_rate` by `step_by`, `steps` times.
pub async fn capacity(args: &CapacityArgs) -> Result<RunResult, SessionError> {
    let step = cli::secs("step-secs", args.step_secs)?;
    if args.steps == 0 {
        return Err(cli::ArgError::Invalid("steps", "must be at least 1".into()).into());
    }
    let profile = RateProfile::steps(args.start_rate, args.step_by, step, step * args.steps)?;
    let out = session::run_session(Plan {
        command: "capacity",
        load: &args.load,
        stack: &args.stack,
        profile,
        thresholds: &args.thresholds,
        step_p99_limit_ms: Some(args.p99_limit_ms),
        before_load: None,
        after_load: None,
        extra_settings: json!({ "start_rate": args.start_rate, "step_by": args.step_by, "step_secs": args.step_secs, "steps": args.steps, "p99_limit_ms": args.p99_limit_ms }),
    })
    .await?;
    let result = out.result;
    if let Some(c) = &result.capacity {
        let show = |v: Option<f64>| {
            v.map_or("none (the first step already failed)".to_owned(), |v| {
                format!("{v:.0} hits/s")
            })
        };
        eprintln!(
            "maximum sustainable rate: ingest {}",
            show(c.max_sustainable_ingest_rate)
        );
        if c.steps.iter().any(|s| s.end_to_end_sustained.is_some()) {
            eprintln!(
                "maximum sustainable rate: end to end {}",
                show(c.max_sustainable_end_to_end_rate)
            );
        }
    }
    session::write_outputs(&args.load, &result)?;
    Ok(result)
}

/// `build-then-drain`: the figures of the drain phase.
pub async fn build_then_drain(args: &BuildThenDrainArgs) -> Result<RunResult, SessionError> {
    let duration = cli::secs("duration", args.duration)?;
    if args.stack.no_redis {
        return Err(cli::ArgError::Invalid(
            "no-redis",
            "build-then-drain measures the queues; Redis must be probed".into(),
        )
        .into());
    }
    if args.start_workers.is_none() {
        eprintln!("no --start-workers: start the workers yourself once the fill is over; the drain is timed from then");
    }
    let out = session::run_session(Plan {
        command: "build-then-drain",
        load: &args.load,
        stack: &args.stack,
        profile: RateProfile::constant(args.rate, duration)?,
        thresholds: &args.thresholds,
        step_p99_limit_ms: None,
        before_load: args.stop_workers.clone(),
        after_load: args.start_workers.clone(),
        extra_settings: json!({ "stop_workers": args.stop_workers, "start_workers": args.start_workers }),
    })
    .await?;
    let mut result = out.result;
    let figures = drain_figures(&result.stack.samples, out.hook_secs);
    eprintln!(
        "queues held {} entries when the workers started; drained in {} → {} entries/s, {} rows/s",
        figures["depth_at_start"],
        figures["drain_secs"],
        figures["entries_per_sec"],
        figures["rows_per_sec"]
    );
    result.build_then_drain = Some(figures);
    result.thresholds = report::check_thresholds(&args.thresholds, &result);
    result.passed = result.thresholds.iter().all(|t| t.passed);
    session::write_outputs(&args.load, &result)?;
    Ok(result)
}

/// Drain figures from the samples taken after the workers were started at `from` seconds.
pub fn drain_figures(samples: &[crate::probe::Sample], from: f64) -> serde_json::Value {
    let after: Vec<&crate::probe::Sample> = samples
        .iter()
        .filter(|s| s.t >= from && !s.depths.is_empty())
        .collect();
    let depth = |s: &crate::probe::Sample| s.depths.iter().sum::<u64>();
    let start_depth = after.first().map_or(0, |s| depth(s));
    let empty_at = after.iter().find(|s| depth(s) == 0).map(|s| s.t);
    let drain_secs = empty_at.map(|t| (t - from).max(Duration::from_millis(1).as_secs_f64()));
    let rows: u64 = after
        .iter()
        .filter(|s| empty_at.is_none_or(|e| s.t <= e))
        .map(|s| s.tagged_rows)
        .sum();
    json!({
        "depth_at_start": start_depth,
        "drain_secs": drain_secs,
        "entries_per_sec": drain_secs.map(|d| start_depth as f64 / d),
        "rows_per_sec": drain_secs.map(|d| rows as f64 / d),
        "rows_during_drain": rows,
        "complete": empty_at.is_some(),
    })
}

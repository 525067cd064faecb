//! One complete harness session: check the targets, connect the probes, send the load, wait for
//! the stack to drain, reconcile, and assemble the result. `run`, `capacity` and
//! `build-then-drain` are all one session with different profiles and hooks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli::{self, ArgError, LoadArgs, StackArgs};
use crate::ledger::Ledger;
use crate::probe::{self, ProbeError, Probes, QueueProbe, RowProbe, Sample};
use crate::reconcile::{self, Reconciliation};
use crate::report::{self, RunResult, Thresholds};
use crate::runner::{self, LiveGauges, LoadSettings, RunError};
use crate::schedule::{ProfileError, RateProfile};
use crate::tag::{RunTag, MAX_HITS_PER_RUN};
use crate::target::{self, TargetError};
use crate::validate;
use crate::visitor::VisitorModel;

/// Why a session could not run.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A bad option.
    #[error(transparent)]
    Arg(#[from] ArgError),
    /// A bad target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A bad rate profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A bad configuration file or setting.
    #[error(transparent)]
    Config(#[from] tier_config::ConfigError),
    /// A target failed the pre-flight check.
    #[error("validation failed for {0}; fix the target or pass --no-validate")]
    Validation(String),
    /// Redis or MySQL unreachable with --require-stack, or failing at the end.
    #[error(transparent)]
    Stack(#[from] ProbeError),
    /// A bad MySQL URL.
    #[error("mysql url: {0}")]
    MysqlUrl(String),
    /// The load loop failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The run is larger than its tags.
    #[error("the profile offers {0:.0} hits, more than the {MAX_HITS_PER_RUN} one run can tag; shorten it")]
    TooLarge(f64),
    /// A hook command failed.
    #[error("command {0:?} failed: {1}")]
    Hook(String, String),
    /// Writing a report failed.
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
}

/// Where the probes connect, resolved from the flags and tier-config.
#[derive(Debug, Clone)]
pub struct StackSettings {
    /// Redis (fred's settings), unless disabled.
    pub redis: Option<fred::prelude::Config>,
    /// MySQL URL, unless disabled.
    pub mysql_url: Option<String>,
    /// Matomo table prefix.
    pub table_prefix: String,
    /// Redis key prefix.
    pub key_prefix: String,
    /// Number of queues.
    pub queues: u16,
}

/// Resolves the stack settings: tier-config (defaults: the local stack) overridden by flags.
pub fn stack_settings(args: &StackArgs) -> Result<StackSettings, SessionError> {
    // With --matomo-config, QueuedTracking's settings stored in Matomo's database apply, as
    // they do for the tier's binaries.
    let config = tier_config::load_matomo(&args.common).map_err(|e| match e {
        tier_config::LoadError::Refused(e) | tier_config::LoadError::Unavailable(e) => e,
    })?;
    Ok(StackSettings {
        redis: match (args.no_redis, &args.redis_url) {
            (true, _) => None,
            (false, Some(url)) => {
                Some(tier_config::fred_config_from_url(url).map_err(ProbeError::from)?)
            }
            (false, None) => Some(config.fred_config().map_err(ProbeError::from)?),
        },
        mysql_url: (!args.no_mysql)
            .then(|| args.mysql_url.clone().unwrap_or_else(|| config.mysql_url())),
        table_prefix: args
            .table_prefix
            .clone()
            .unwrap_or(config.database.tables_prefix),
        key_prefix: args.key_prefix.clone().unwrap_or(config.queue.key_prefix),
        queues: args.queues.unwrap_or(config.queue.num_queue_workers),
    })
}

/// Connects the probes that are enabled; an unreachable service is reported and left out
/// unless `require` is set.
pub async fn connect_probes(
    st: &StackSettings,
    require: bool,
) -> Result<(Probes, Option<mysql_async::Pool>), SessionError> {
    let mut probes = Probes {
        queue: None,
        rows: None,
    };
    let mut pool = None;
    if let Some(redis) = &st.redis {
        match QueueProbe::connect(redis.clone(), &st.key_prefix, st.queues).await {
            Ok(q) => {
                eprintln!("redis: watching {} queue(s) {}…", q.keys().len(), q.keys()[0]);
                probes.queue = Some(q);
            }
            Err(e) if !require => eprintln!("redis: not probed ({e}); queue depth will be missing (--require-stack makes this fatal)"),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(url) = &st.mysql_url {
        let opts =
            mysql_async::Opts::from_url(url).map_err(|e| SessionError::MysqlUrl(e.to_string()))?;
        let p = mysql_async::Pool::new(opts);
        match RowProbe::start(p.clone(), &st.table_prefix).await {
            Ok(r) => {
                eprintln!("mysql: watching {}log_link_visit_action above idlink_va {}", st.table_prefix, r.start_watermark);
                probes.rows = Some(r);
                pool = Some(p);
            }
            Err(e) if !require => eprintln!("mysql: not probed ({e}); no reconciliation or lag (--require-stack makes this fatal)"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok((probes, pool))
}

/// A shell command run at a point of the session.
pub async fn run_hook(cmd: &str) -> Result<(), SessionError> {
    eprintln!("running: {cmd}");
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .await
        .map_err(|e| SessionError::Hook(cmd.into(), e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(SessionError::Hook(cmd.into(), status.to_string()))
    }
}

/// What a session is asked to do.
pub struct Plan<'a> {
    /// `run`, `capacity`, `build-then-drain`.
    pub command: &'static str,
    /// Load options.
    pub load: &'a LoadArgs,
    /// Stack options.
    pub stack: &'a StackArgs,
    /// The rate profile.
    pub profile: RateProfile,
    /// Limits.
    pub thresholds: &'a Thresholds,
    /// Judge each segment as a step with this p99 limit (ms).
    pub step_p99_limit_ms: Option<f64>,
    /// Run before the load (e.g. stop the workers).
    pub before_load: Option<String>,
    /// Run after the load, before the drain wait (e.g. start the workers).
    pub after_load: Option<String>,
    /// Extra settings to echo in the result.
    pub extra_settings: serde_json::Value,
}

/// What a session produced, beyond the result document.
pub struct SessionOutput {
    /// The result (already written to --json/--html when given).
    pub result: RunResult,
    /// Seconds since start when the load ended.
    pub load_end_secs: f64,
    /// Seconds since start when the after-load hook had run.
    pub hook_secs: f64,
}

/// Seconds since the Unix epoch, now (0 before it).
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs a whole session.
pub async fn run_session(plan: Plan<'_>) -> Result<SessionOutput, SessionError> {
    let load = plan.load;
    let weights = if load.weights.is_empty() {
        vec![1; load.targets.len()]
    } else {
        load.weights.clone()
    };
    let targets = target::parse_targets(&load.targets, &weights)?;
    let tag = RunTag::from_random(rand::random());
    let model_cfg = load.visitors.model_config(
        load.distribution,
        targets.iter().map(|t| t.weight).collect(),
        load.mode == crate::client::Mode::Bulk,
        now_unix(),
        tag.clone(),
    )?;
    let timeout = cli::secs("timeout", load.timeout)?;
    let late = cli::secs("late-ms", load.late_ms / 1000.0)?;
    let warmup = cli::secs("warmup-secs", load.warmup_secs)?;
    let drain_timeout = cli::secs("drain-timeout", plan.stack.drain_timeout)?;
    let settle = cli::secs("settle-secs", plan.stack.settle_secs)?;
    if load.bulk_size == 0 {
        return Err(ArgError::Invalid("bulk-size", "must be at least 1".into()).into());
    }
    let total = plan.profile.total_hits();
    let capacity = total.ceil() as u64 + (targets.len() * load.bulk_size) as u64 + 16;
    if capacity > MAX_HITS_PER_RUN {
        return Err(SessionError::TooLarge(total));
    }
    if !load.no_validate {
        for check in validate::check_targets(&targets, load.mode, model_cfg.sites[0].0).await {
            for line in &check.lines {
                eprintln!("validate {}: {line}", check.url);
            }
            if !check.ok {
                return Err(SessionError::Validation(check.url));
            }
        }
    }
    let st = stack_settings(plan.stack)?;
    let (mut probes, pool) = connect_probes(&st, plan.stack.require_stack).await?;
    if let Some(q) = &probes.queue {
        let depth: u64 = q.depths().await?.iter().sum();
        if depth > 0 {
            eprintln!(
                "note: the queues already hold {depth} entries (the validation requests are queued \
                 too); the drain figures include them"
            );
        }
    }
    eprintln!(
        "run {} (pv_id tag {}): {:.0} hits over {:.0} s to {} target(s)",
        tag.long(),
        tag.short(),
        total,
        plan.profile.duration().as_secs_f64(),
        targets.len()
    );
    let mut model = VisitorModel::new(model_cfg, load.visitors.seed);
    let ledger = Arc::new(Ledger::new(capacity as usize));
    let gauges = Arc::new(LiveGauges::default());
    let samples: probe::Samples = Arc::new(Mutex::new(Vec::new()));
    if let Some(cmd) = &plan.before_load {
        run_hook(cmd).await?;
    }
    let started_at = now_unix();
    let start = Instant::now();
    let probing = probes.queue.is_some() || probes.rows.is_some();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let interval = Duration::from_millis(plan.stack.sample_ms.max(10));
    let keys = probes
        .queue
        .as_ref()
        .map(|q| q.keys().to_vec())
        .unwrap_or_default();
    let has_rows = probes.rows.is_some();
    let has_queue = probes.queue.is_some();
    let sampler = probing.then(|| {
        let p = std::mem::replace(
            &mut probes,
            Probes {
                queue: None,
                rows: None,
            },
        );
        let ctx = probe::SamplerContext {
            tag: tag.clone(),
            ledger: Arc::clone(&ledger),
            gauges: Arc::clone(&gauges),
            samples: Arc::clone(&samples),
            start,
            interval,
        };
        tokio::spawn(probe::sample_loop(p, ctx, stop_rx))
    });
    let settings = LoadSettings {
        targets: targets.clone(),
        mode: load.mode,
        bulk_size: load.bulk_size,
        timeout,
        max_in_flight: load.max_in_flight.max(1),
        late_threshold: late,
        warmup,
        token_auth: load.token_auth.clone(),
        progress: !load.quiet,
    };
    let outcome = runner::run_load(
        &settings,
        &plan.profile,
        &mut model,
        Arc::clone(&ledger),
        Arc::clone(&gauges),
        start,
    )
    .await;
    let load_end = start.elapsed();
    if let Some(cmd) = &plan.after_load {
        run_hook(cmd).await?;
    }
    let hook_secs = start.elapsed().as_secs_f64();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = stop_tx.send(true);
            return Err(e.into());
        }
    };
    let mut drain_secs = None;
    if probing {
        if !load.quiet {
            eprintln!(
                "load done; waiting up to {:.0} s for the queues to drain and rows to arrive",
                drain_timeout.as_secs_f64()
            );
        }
        drain_secs = wait_for_drain(
            &samples,
            &ledger,
            has_queue,
            has_rows,
            load_end,
            drain_timeout,
            settle,
            interval,
        )
        .await;
    }
    let _ = stop_tx.send(true);
    if let Some(s) = sampler {
        if let Ok(p) = s.await {
            probes = p;
        }
    }
    let stats = outcome.stats;
    let accepted = stats.total.accepted_hits;
    let invalid = stats.total.invalid_hits;
    let reconciliation = match (&pool, &probes.rows) {
        (Some(pool), Some(rows)) => {
            let found =
                reconcile::find_rows(pool, &st.table_prefix, &tag, rows.start_watermark).await?;
            reconcile::reconcile(&ledger, &found, accepted, invalid)
        }
        _ => Reconciliation::skipped(
            accepted,
            invalid,
            "MySQL was not probed (--no-mysql or unreachable): rows could not be counted",
        ),
    };
    let mut reconciliation = reconciliation;
    if probing && drain_secs.is_none() && reconciliation.status == "complete" {
        reconciliation.status = "drain-timeout".into();
        reconciliation.note = format!(
            "the queues did not drain within --drain-timeout: `lost` counts hits still queued or \
             stuck as well as hits really lost; {}",
            reconciliation.note
        );
    }
    if let Some(p) = pool {
        let _ = p.disconnect().await;
    }
    let samples: Vec<Sample> = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let load_secs = plan.profile.duration().as_secs_f64();
    let capacity = plan
        .step_p99_limit_ms
        .map(|limit| report::capacity(&stats, &plan.profile, &samples, limit));
    let mut settings_echo = serde_json::json!({
        "load": load,
        "profile": plan.profile,
        "stack": { "redis": st.redis.is_some(), "mysql": st.mysql_url.is_some(), "table_prefix": st.table_prefix, "key_prefix": st.key_prefix, "queues": st.queues, "sample_ms": plan.stack.sample_ms },
        "thresholds": plan.thresholds,
    });
    if let Some(obj) = settings_echo.as_object_mut() {
        obj.insert(
            "token_auth".into(),
            serde_json::Value::Bool(load.token_auth.is_some()),
        );
        if let Some(l) = obj.get_mut("load").and_then(|l| l.as_object_mut()) {
            l.remove("token_auth");
        }
        obj.insert("extra".into(), plan.extra_settings.clone());
    }
    let mut result = RunResult {
        tool: format!("matomo-loadgen {}", env!("CARGO_PKG_VERSION")),
        command: plan.command.to_owned(),
        run_id: tag.long().to_owned(),
        run_tag: tag.short().to_owned(),
        settings: settings_echo,
        started_at,
        load_secs,
        elapsed_secs: outcome.elapsed.as_secs_f64(),
        total: report::target_summary("all", 0, &stats.total, load_secs),
        targets: targets
            .iter()
            .zip(&stats.targets)
            .map(|(t, s)| report::target_summary(&t.url, t.weight, s, load_secs))
            .collect(),
        timeline: report::timeline(&stats, &plan.profile),
        latency_curve: report::latency_curve(&stats),
        stack: report::stack_summary(keys, samples, drain_secs),
        capacity,
        build_then_drain: None,
        reconciliation,
        thresholds: Vec::new(),
        passed: true,
    };
    result.thresholds = report::check_thresholds(plan.thresholds, &result);
    result.passed = result.thresholds.iter().all(|t| t.passed);
    Ok(SessionOutput {
        result,
        load_end_secs: load_end.as_secs_f64(),
        hook_secs,
    })
}

/// Writes the JSON and HTML files asked for.
pub fn write_outputs(load: &LoadArgs, result: &RunResult) -> Result<(), SessionError> {
    if let Some(path) = &load.json {
        let text = serde_json::to_string_pretty(result).unwrap_or_default();
        std::fs::write(path, text)
            .map_err(|e| SessionError::Write(path.display().to_string(), e))?;
    }
    if let Some(path) = &load.html {
        std::fs::write(path, report::render_html(result))
            .map_err(|e| SessionError::Write(path.display().to_string(), e))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn wait_for_drain(
    samples: &probe::Samples,
    ledger: &Ledger,
    has_queue: bool,
    has_rows: bool,
    load_end: Duration,
    timeout: Duration,
    settle: Duration,
    interval: Duration,
) -> Option<f64> {
    let waited = Instant::now();
    let expected_action_hits = || {
        (0..ledger.generated())
            .filter(|&s| {
                ledger.kind(s).is_some_and(|k| k.writes_action_row())
                    && ledger.accepted_at(s).is_some()
            })
            .count()
    };
    let expected = expected_action_hits();
    loop {
        tokio::time::sleep(interval).await;
        let state = samples.lock().ok().and_then(|s| {
            let last = s.last()?;
            let depth_zero = !has_queue || last.depths.iter().sum::<u64>() == 0;
            let activity = s
                .iter()
                .rev()
                .find(|x| x.tagged_rows > 0 || x.depths.iter().sum::<u64>() > 0)
                .map_or(0.0, |x| x.t);
            Some((depth_zero, activity, last.t))
        });
        let Some((depth_zero, last_activity, now)) = state else {
            if waited.elapsed() >= timeout {
                return None;
            }
            continue;
        };
        let seen = if has_rows {
            (0..ledger.generated())
                .filter(|&s| ledger.seen_at(s).is_some())
                .count()
        } else {
            0
        };
        let rows_done =
            !has_rows || seen >= expected || now - last_activity >= settle.as_secs_f64();
        if depth_zero && rows_done {
            return Some((last_activity - load_end.as_secs_f64()).max(0.0));
        }
        if waited.elapsed() >= timeout {
            eprintln!("drain not complete after {:.0} s (queues empty: {depth_zero}, rows of accepted hits seen: {seen} of {expected})", timeout.as_secs_f64());
            return None;
        }
    }
}

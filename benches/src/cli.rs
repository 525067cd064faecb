//! Command-line arguments, and their translation into validated settings.
//!
//! `matomo-loadgen run --target URL [--target URL …] --rate HITS_PER_S --duration SECS
//! --json FILE --html FILE` plus the options below; `capacity`, `build-then-drain` and
//! `validate` share the same load and stack options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::Mode;
use crate::report::Thresholds;
use crate::tag::RunTag;
use crate::target::Distribution;
use crate::visitor::{Mix, ModelConfig};

/// Load harness for Matomo's Tracking HTTP API: realistic visitors at open-model rates,
/// end-to-end reconciliation, JSON and HTML reports.
#[derive(Debug, Parser)]
#[command(name = "matomo-loadgen", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A load run: constant rate, ramp (`--ramp-to`) or steps (`--step-by`).
    Run(RunArgs),
    /// Step loads to find the maximum sustainable rate (the knee).
    Capacity(CapacityArgs),
    /// Fill the queues with workers stopped, then time the drain.
    BuildThenDrain(BuildThenDrainArgs),
    /// Check every target (and Redis/MySQL) without sending load.
    Validate(ValidateArgs),
    /// Latency of one target at a fixed rate, from one thread sending pre-built hits over
    /// kept-alive connections: a generator of small, steady cost, for tens of thousands of
    /// hits/s on one core. No probes, no reconciliation.
    Pace(PaceArgs),
}

/// Options of the `run` command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Hits per second (the start rate of a ramp or of the steps).
    #[arg(long, value_name = "HITS_PER_S")]
    pub rate: f64,
    /// Length of the load in seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: f64,
    /// Ramp linearly from --rate to this rate over the duration.
    #[arg(long, value_name = "HITS_PER_S", conflicts_with = "step_by")]
    pub ramp_to: Option<f64>,
    /// Steps: raise the rate by this much every --step-secs.
    #[arg(long, value_name = "HITS_PER_S")]
    pub step_by: Option<f64>,
    /// Length of one step.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub step_secs: f64,
    /// Load options.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Stack options.
    #[command(flatten)]
    pub stack: StackArgs,
    /// Limits.
    #[command(flatten)]
    pub thresholds: Thresholds,
}

/// Options of the `capacity` preset.
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Rate of the first step.
    #[arg(long, value_name = "HITS_PER_S", default_value_t = 100.0)]
    pub start_rate: f64,
    /// Rate added at each step.
    #[arg(long, value_name = "HITS_PER_S", default_value_t = 100.0)]
    pub step_by: f64,
    /// Length of one step.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub step_secs: f64,
    /// Number of steps.
    #[arg(long, default_value_t = 10)]
    pub steps: u32,
    /// A step is sustained only with p99 latency at or under this.
    #[arg(long, value_name = "MS", default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// Load options.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Stack options.
    #[command(flatten)]
    pub stack: StackArgs,
    /// Limits.
    #[command(flatten)]
    pub thresholds: Thresholds,
}

/// Options of the `build-then-drain` preset.
#[derive(Debug, Args)]
pub struct BuildThenDrainArgs {
    /// Hits per second while filling.
    #[arg(long, value_name = "HITS_PER_S")]
    pub rate: f64,
    /// Length of the fill in seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: f64,
    /// Shell command run before filling, to stop the workers (e.g. `kill -STOP <pid>`).
    #[arg(long, value_name = "CMD")]
    pub stop_workers: Option<String>,
    /// Shell command run after filling, to start the workers (e.g. `kill -CONT <pid>`). Without
    /// it the harness waits for the queues to start shrinking.
    #[arg(long, value_name = "CMD")]
    pub start_workers: Option<String>,
    /// Load options.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Stack options.
    #[command(flatten)]
    pub stack: StackArgs,
    /// Limits.
    #[command(flatten)]
    pub thresholds: Thresholds,
}

/// Options of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Load options (targets, mode and site are used).
    #[command(flatten)]
    pub load: LoadArgs,
    /// Stack options.
    #[command(flatten)]
    pub stack: StackArgs,
}

/// Options of `pace`.
#[derive(Debug, Args)]
pub struct PaceArgs {
    /// Tracking endpoint (`http://host:port/matomo.php`; a URL ending in `/` gets `matomo.php`).
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Hits per second.
    #[arg(long, value_name = "HITS_PER_S")]
    pub rate: f64,
    /// Length of the load in seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: f64,
    /// Hits due in the first SECS are sent but left out of the latency (connections opening).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub warmup_secs: f64,
    /// Kept-alive connections, one request in flight on each; a hit due while all are busy
    /// waits, and its latency includes the wait.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Distinct hits drawn from the visitor model before the run and sent in turn.
    #[arg(long, default_value_t = 20_000)]
    pub distinct_hits: usize,
    /// The visitor model.
    #[command(flatten)]
    pub visitors: VisitorArgs,
    /// Longest time from a hit's due time to its answer, seconds; a hit that waited that long
    /// for a connection fails unsent.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Hits waiting for a free connection above which the hits due are dropped (and counted).
    #[arg(long, default_value_t = 100_000)]
    pub max_queued: usize,
    /// Write each measured hit answered more than --slow-ms after its due time to FILE, one
    /// line each: due, sent and answered, in microseconds from the run's start — when in the
    /// run the tail happened (a few stalls, or spread out). Its header gives the run's start on
    /// CLOCK_MONOTONIC, to lay the hits beside a kernel trace (bpftrace, perf).
    #[arg(long, value_name = "FILE")]
    pub slow_log: Option<std::path::PathBuf>,
    /// The threshold of --slow-log, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2.0)]
    pub slow_ms: f64,
}

/// The visitor model's options, shared by the load commands and `pace`.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct VisitorArgs {
    /// Seed of the visitor model (same seed, same hits).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Site ids, optionally weighted: `1,2` or `1:3,2:1`.
    #[arg(long, value_name = "ID[:W],…", default_value = "1")]
    pub sites: String,
    /// Mix of hits after the landing page view, e.g. `pageview=55,event=14,ping=16,order=1`.
    #[arg(long, value_name = "KIND=W,…")]
    pub mix: Option<String>,
    /// Mean hits per visit (landing page view included).
    #[arg(long, default_value_t = 6.0)]
    pub hits_per_visit: f64,
    /// Share of visits by returning visitors (0..1).
    #[arg(long, default_value_t = 0.3)]
    pub returning: f64,
    /// Visits open at the same time.
    #[arg(long, default_value_t = 500)]
    pub concurrent_visits: usize,
    /// Scheme and host of the generated page URLs.
    #[arg(long, default_value = "https://www.example.com")]
    pub page_base: String,
    /// Goal ids for manual goal conversions (each must exist for its site; leave `goal` out of
    /// `--mix` to send none).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub goal_ids: Vec<u32>,
}

impl VisitorArgs {
    /// The model's settings: these options, parsed, with how its visitors reach the targets.
    pub fn model_config(
        &self,
        distribution: Distribution,
        target_weights: Vec<u32>,
        params_carry_headers: bool,
        epoch: i64,
        run_tag: RunTag,
    ) -> Result<ModelConfig, ArgError> {
        Ok(ModelConfig {
            sites: parse_sites(&self.sites)?,
            mix: parse_mix(self.mix.as_deref())?,
            mean_hits_per_visit: self.hits_per_visit,
            returning_share: self.returning,
            concurrent_visits: self.concurrent_visits,
            page_base: self.page_base.trim_end_matches('/').to_owned(),
            goal_ids: self.goal_ids.clone(),
            distribution,
            target_weights,
            params_carry_headers,
            epoch,
            run_tag,
        })
    }
}

/// What is sent, and how.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct LoadArgs {
    /// Tracking endpoint (`http://host:port/matomo.php`; a URL ending in `/` gets `matomo.php`).
    /// Repeat for several targets.
    #[arg(long = "target", value_name = "URL", required = true)]
    pub targets: Vec<String>,
    /// Weights of the targets, comma-separated, in --target order (default all 1).
    #[arg(long, value_name = "W,W,…", value_delimiter = ',')]
    pub weights: Vec<u32>,
    /// How visitors are spread over targets; all hits of a visitor go to one target.
    #[arg(long, value_enum, default_value_t = Distribution::RoundRobin)]
    pub distribution: Distribution,
    /// One GET per hit, one POST per hit, or bulk POSTs.
    #[arg(long, value_enum, default_value_t = Mode::Get)]
    pub mode: Mode,
    /// Hits per bulk request.
    #[arg(long, default_value_t = 50)]
    pub bulk_size: usize,
    /// The visitor model.
    #[command(flatten)]
    #[serde(flatten)]
    pub visitors: VisitorArgs,
    /// token_auth added to every request (needed for bulk `invalid_indices`, `cip`, `cdt`).
    #[arg(long, env = "MATOMO_LOADGEN_TOKEN_AUTH", hide_env_values = true)]
    pub token_auth: Option<String>,
    /// Longest wait for one answer, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Requests in flight above which due hits are dropped (and counted).
    #[arg(long, default_value_t = 2000)]
    pub max_in_flight: usize,
    /// A send later than this after its due time counts as late, ms.
    #[arg(long, value_name = "MS", default_value_t = 10.0)]
    pub late_ms: f64,
    /// Hits due in the first SECS are sent, counted and reconciled like the others but left
    /// out of the latency figures of the totals and targets (the per-second ones keep them):
    /// the client opening its connections would otherwise set the p99 of a short run.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub warmup_secs: f64,
    /// Write the JSON result here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Skip the pre-flight check of the targets.
    #[arg(long)]
    pub no_validate: bool,
}

/// Where the queues and the database are (defaults: the local stack).
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// tier-config options (`--config FILE`, `--matomo-config PATH`, `--set k=v`): Redis,
    /// database, table prefix, key prefix and number of queues come from there.
    #[command(flatten)]
    pub common: tier_config::CommonArgs,
    /// Redis URL (overrides the configuration), e.g. `redis://127.0.0.1:6379/0`, or
    /// `redis+unix:///run/redis/redis.sock?db=0` for a Unix socket.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// MySQL URL (overrides the configuration), e.g. `mysql://matomo:matomo@127.0.0.1:3306/matomo`.
    #[arg(long, value_name = "URL")]
    pub mysql_url: Option<String>,
    /// Matomo table prefix (overrides the configuration).
    #[arg(long)]
    pub table_prefix: Option<String>,
    /// Prefix of the Redis keys (overrides the configuration).
    #[arg(long)]
    pub key_prefix: Option<String>,
    /// Number of queues (overrides the configuration's `queue.num_queue_workers`).
    #[arg(long)]
    pub queues: Option<u16>,
    /// Do not probe Redis (e.g. a PHP Matomo without QueuedTracking).
    #[arg(long)]
    pub no_redis: bool,
    /// Do not probe MySQL (no reconciliation, no lag).
    #[arg(long)]
    pub no_mysql: bool,
    /// Fail instead of carrying on without probes when Redis or MySQL is unreachable.
    #[arg(long)]
    pub require_stack: bool,
    /// Interval between samples of queue depth and rows, ms (also the lag resolution).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub sample_ms: u64,
    /// Longest wait after the load for the queues to drain and the rows to arrive, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub drain_timeout: f64,
    /// The drain is over when the queues are empty and no new row came for this long, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub settle_secs: f64,
}

/// A value that does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// Anything else, with the option's name.
    #[error("--{0}: {1}")]
    Invalid(&'static str, String),
}

/// Seconds from a flag, checked.
pub fn secs(name: &'static str, v: f64) -> Result<Duration, ArgError> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| ArgError::Invalid(name, format!("{v} is not a number of seconds")))
}

/// The same for a value in milliseconds.
pub fn millis(name: &'static str, v: f64) -> Result<Duration, ArgError> {
    Duration::try_from_secs_f64(v / 1000.0)
        .map_err(|_| ArgError::Invalid(name, format!("{v} is not a number of milliseconds")))
}

/// `1,2` or `1:3,2:1` → (site, weight) pairs.
pub fn parse_sites(s: &str) -> Result<Vec<(u32, u32)>, ArgError> {
    let bad = |e: &str| {
        ArgError::Invalid(
            "sites",
            format!("{e:?} is not ID or ID:WEIGHT with positive numbers"),
        )
    };
    let sites = s
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (id, w) = e.split_once(':').unwrap_or((e, "1"));
            let id: u32 = id.trim().parse().map_err(|_| bad(e))?;
            let w: u32 = w.trim().parse().map_err(|_| bad(e))?;
            if id == 0 {
                return Err(bad(e));
            }
            Ok((id, w))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if sites.is_empty() || sites.iter().all(|s| s.1 == 0) {
        return Err(ArgError::Invalid(
            "sites",
            "at least one site with a positive weight is needed".into(),
        ));
    }
    Ok(sites)
}

/// The mix flag, or the default mix.
pub fn parse_mix(s: Option<&str>) -> Result<Mix, ArgError> {
    s.map_or(Ok(Mix::default()), |m| {
        m.parse()
            .map_err(|e: crate::visitor::MixError| ArgError::Invalid("mix", e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_parse_with_and_without_weights() {
        assert_eq!(parse_sites("1").unwrap(), vec![(1, 1)]);
        assert_eq!(parse_sites("1:3, 2:1").unwrap(), vec![(1, 3), (2, 1)]);
        assert!(parse_sites("0").is_err());
        assert!(parse_sites("a").is_err());
        assert!(parse_sites("1:0").is_err());
        assert!(secs("duration", -1.0).is_err());
        assert!(secs("duration", f64::NAN).is_err());
        assert!(secs("duration", 1e20).is_err());
        assert_eq!(millis("slow-ms", 2.5).unwrap(), Duration::from_micros(2500));
        assert!(millis("slow-ms", -1.0).is_err());
        assert_eq!(secs("duration", 1.5).unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn the_documented_command_line_parses() {
        let cli = Cli::try_parse_from([
            "matomo-loadgen",
            "run",
            "--target",
            "http://127.0.0.1:8080/",
            "--target",
            "http://127.0.0.1:8081/",
            "--rate",
            "500",
            "--duration",
            "30",
            "--json",
            "r.json",
            "--html",
            "r.html",
            "--mode",
            "bulk",
            "--distribution",
            "weighted",
            "--weights",
            "3,1",
            "--max-p99-ms",
            "20",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(run.load.targets.len(), 2);
        assert_eq!(run.load.weights, vec![3, 1]);
        assert_eq!(run.thresholds.max_p99_ms, Some(20.0));
    }
}
